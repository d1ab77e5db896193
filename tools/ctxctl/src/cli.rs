//! The command line: subcommands and their flags.
// The doc comments of this module are the command-line help, where backticks would show.
#![allow(clippy::doc_markdown)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// ctxscope's test app: drive the ctxscope driver (or its simulator) and show where each KMDF
/// callback ran beside the thread that asked for it.
#[derive(Debug, Parser)]
#[command(name = "ctxctl", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a workload in the simulator (any OS) and report where each callback ran.
    Simulate(SimulateArgs),
    /// Run a workload against the installed driver (Windows) and report where each callback ran.
    Run(RunArgs),
    /// Re-render a saved run: a JSON export, or a DebugView / WinDbg log holding the driver's lines.
    Report(ReportArgs),
    /// Live, filterable tail of the driver's events (Windows).
    Watch(WatchArgs),
    /// The driver's mode, versions and counters (Windows).
    Info,
    /// Install the driver package on a test-signed machine, step by step, each step checked (Windows).
    Install(InstallArgs),
    /// Remove the driver's devices and driver package (Windows).
    Uninstall(UninstallArgs),
    /// What is installed: test signing, Secure Boot, driver packages, devices, the device interface (Windows).
    Status,
    /// Internal: the worker process `ctxctl run --processes N` starts.
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// The workload, shared by `run` and `simulate`.
#[derive(Clone, Debug, Args, PartialEq, Eq)]
pub struct WorkloadArgs {
    /// Processes issuing I/O (1..=16). `run` starts N-1 worker processes beside itself.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub processes: u32,
    /// Worker threads per process (1..=64).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub threads: u32,
    /// Reads per worker thread.
    #[arg(long, default_value_t = 50)]
    pub reads: u32,
    /// Writes per worker thread.
    #[arg(long, default_value_t = 20)]
    pub writes: u32,
    /// GetInfo I/O controls per worker thread.
    #[arg(long, default_value_t = 5)]
    pub ioctls: u32,
    /// METHOD_NEITHER demonstrations per worker thread (buffers probed and locked in the caller's
    /// context by EvtIoInCallerContext, filled by EvtIoDeviceControl).
    #[arg(long, default_value_t = 2)]
    pub neither: u32,
    /// Overlapped I/O: reads each worker keeps outstanding (0: synchronous I/O).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub overlapped: u32,
}

/// Where and how to show the report, shared by `run`, `simulate` and `report`.
#[derive(Clone, Debug, Args)]
pub struct OutputArgs {
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the report to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Also write a self-contained HTML timeline (a swim lane per thread) to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// Report formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table per callback kind, with a legend.
    Table,
    /// The whole run: meta, names, summary and events (stable field names; see README).
    Json,
    /// One row per event.
    Csv,
    /// The driver's log lines, as DebugView would capture them (readable by `ctxctl report`).
    Log,
}

/// Driver modes the simulator can model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SimMode {
    /// Bound to QEMU's edu PCI device: real interrupts complete reads.
    Edu,
    /// Root-enumerated: no interrupt resource; the timer completes reads.
    Root,
}

/// `ctxctl simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The workload.
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Seed of every random choice: the same seed gives the same events.
    #[arg(long, default_value_t = SimulateArgs::DEFAULT_SEED)]
    pub seed: u64,
    /// CPUs of the simulated machine (1..=64).
    #[arg(long, default_value_t = SimulateArgs::DEFAULT_CPUS, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub cpus: u32,
    /// How the simulated driver is bound.
    #[arg(long, value_enum, default_value_t = SimMode::Edu)]
    pub mode: SimMode,
    /// The driver's timer period, ms (1..=60000).
    #[arg(long, default_value_t = SimulateArgs::DEFAULT_TIMER_PERIOD_MS, value_parser = clap::value_parser!(u32).range(1..=60_000))]
    pub timer_period_ms: u32,
    /// Delay from the interrupt-raise register write to the interrupt, µs.
    #[arg(long, default_value_t = SimulateArgs::DEFAULT_INTERRUPT_LATENCY_US)]
    pub interrupt_latency_us: u32,
    /// Background threads of other processes competing for the CPUs.
    #[arg(long, default_value_t = SimulateArgs::DEFAULT_BACKGROUND)]
    pub background: u32,
    /// Output.
    #[command(flatten)]
    pub output: OutputArgs,
}

impl SimulateArgs {
    /// Default `--seed`.
    pub const DEFAULT_SEED: u64 = 1;
    /// Default `--cpus`.
    pub const DEFAULT_CPUS: u32 = 4;
    /// Default `--timer-period-ms`.
    pub const DEFAULT_TIMER_PERIOD_MS: u32 = 10;
    /// Default `--interrupt-latency-us`.
    pub const DEFAULT_INTERRUPT_LATENCY_US: u32 = 50;
    /// Default `--background`.
    pub const DEFAULT_BACKGROUND: u32 = 3;

    /// The simulation of what `ctxctl run` would do on Windows: the same workload and output,
    /// and the simulator's defaults for the machine.
    #[cfg(not(windows))]
    #[must_use]
    pub fn for_run(run: &RunArgs) -> Self {
        Self {
            workload: run.workload.clone(),
            seed: Self::DEFAULT_SEED,
            cpus: Self::DEFAULT_CPUS,
            mode: SimMode::Edu,
            timer_period_ms: run.timer_period_ms.unwrap_or(Self::DEFAULT_TIMER_PERIOD_MS),
            interrupt_latency_us: Self::DEFAULT_INTERRUPT_LATENCY_US,
            background: Self::DEFAULT_BACKGROUND,
            output: run.output.clone(),
        }
    }
}

/// `ctxctl run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The workload.
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Set the driver's timer period first (1..=60000 ms; IOCTL_CTXSCOPE_CONFIGURE, which affects
    /// every client until changed again).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=60_000))]
    pub timer_period_ms: Option<u32>,
    /// Keep the events the driver recorded before this run (default: discard them with
    /// IOCTL_CTXSCOPE_RESET so the report shows this run only).
    #[arg(long)]
    pub keep_earlier: bool,
    /// Output.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `ctxctl report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A JSON export (`--format json`), or a DebugView / WinDbg log, or a `--format log` file.
    pub file: PathBuf,
    /// Output.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `ctxctl watch`.
#[derive(Clone, Debug, Args, Default)]
pub struct WatchArgs {
    /// Show only this callback (repeatable), e.g. `--callback EvtIoRead`.
    #[arg(long, value_name = "NAME", value_parser = parse_callback)]
    pub callback: Vec<ctxscope_core::CallbackKind>,
    /// Show only events that ran in, or were requested by, this process ID (repeatable).
    #[arg(long)]
    pub pid: Vec<u32>,
    /// Show only events that contradict the documentation.
    #[arg(long)]
    pub violations_only: bool,
    /// Polling interval, ms.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub interval_ms: u64,
}

/// `ctxctl install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The driver package: the folder holding ctxscope.inf, ctxscope.sys, ctxscope.cat and the
    /// test certificate (.cer), as `cargo make` leaves it.
    #[arg(long, value_name = "DIR", default_value = "ctxscope_package")]
    pub package: PathBuf,
    /// Do not trust the package's test certificate (it is already trusted).
    #[arg(long)]
    pub skip_certificate: bool,
}

/// `ctxctl uninstall`.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Also remove the package's test certificate from the root and trustedpublisher stores;
    /// needs `--package` to find the .cer.
    #[arg(long, requires = "package")]
    pub untrust_certificate: bool,
    /// The driver package folder (only needed with `--untrust-certificate`).
    #[arg(long, value_name = "DIR")]
    pub package: Option<PathBuf>,
}

/// `ctxctl worker` (internal).
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The workload of this process (its `--processes` is ignored).
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// This process's index among the run's processes (1-based; the parent is 0).
    #[arg(long, default_value_t = 1)]
    pub index: u32,
}

/// Parses a callback name as Microsoft spells it.
///
/// # Errors
/// The name is not a callback ctxscope records; the message lists those that are.
pub fn parse_callback(name: &str) -> Result<ctxscope_core::CallbackKind, String> {
    ctxscope_core::CallbackKind::from_name(name).ok_or_else(|| {
        let names: Vec<_> = ctxscope_core::CallbackKind::ALL
            .iter()
            .map(|kind| kind.name())
            .collect();
        format!("unknown callback `{name}`; one of: {}", names.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_and_simulate_share_the_workload_flags() {
        let sim = Cli::try_parse_from([
            "ctxctl",
            "simulate",
            "--threads",
            "2",
            "--reads",
            "7",
            "--overlapped",
            "3",
        ])
        .unwrap();
        let run = Cli::try_parse_from([
            "ctxctl",
            "run",
            "--threads",
            "2",
            "--reads",
            "7",
            "--overlapped",
            "3",
        ])
        .unwrap();
        let (Command::Simulate(sim), Command::Run(run)) = (sim.command, run.command) else {
            panic!("wrong subcommands");
        };
        assert_eq!(sim.workload, run.workload);
        assert_eq!(sim.workload.reads, 7);
        assert_eq!(sim.workload.writes, 20);
    }

    #[test]
    fn callback_names_are_checked() {
        assert_eq!(
            parse_callback("EvtIoRead"),
            Ok(ctxscope_core::CallbackKind::EvtIoRead)
        );
        let err = parse_callback("EvtIoReed").unwrap_err();
        assert!(err.contains("EvtInterruptDpc"), "{err}");
        assert!(Cli::try_parse_from(["ctxctl", "simulate", "--threads", "0"]).is_err());
        assert!(Cli::try_parse_from(["ctxctl", "simulate", "--mode", "pci"]).is_err());
    }
}
