//! `ctxctl`: ctxscope's user-mode test app. It drives the ctxscope driver (Windows) or the
//! simulator (any OS) with reads, writes and I/O controls from several threads and processes,
//! gathers the driver's events, and shows each callback beside the thread that asked for it:
//! where it ran, where Microsoft documents it to run, and whether they agree.

#![deny(unsafe_code)]

mod cli;
// The portable half of a Windows-only subcommand: tested everywhere, used on Windows.
#[cfg_attr(not(windows), allow(dead_code))]
mod drain;
mod export;
mod html;
// The portable half of a Windows-only subcommand: tested everywhere, used on Windows.
#[cfg_attr(not(windows), allow(dead_code))]
mod info;
mod input;
// The portable half of a Windows-only subcommand: tested everywhere, used on Windows.
#[cfg_attr(not(windows), allow(dead_code))]
mod install;
mod model;
mod output;
mod sim;
mod stop;
mod summary;
mod table;
// The portable half of a Windows-only subcommand: tested everywhere, used on Windows.
#[cfg_attr(not(windows), allow(dead_code))]
mod watch;
// The portable half of a Windows-only subcommand: tested everywhere, used on Windows.
#[cfg_attr(not(windows), allow(dead_code))]
mod wide;
// The portable half of a Windows-only subcommand: tested everywhere, used on Windows.
#[cfg_attr(not(windows), allow(dead_code))]
mod worker;

#[cfg(windows)]
#[allow(unsafe_code)]
mod windows;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use crate::cli::{Cli, Command, ReportArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Simulate(args) => simulate(&args),
        Command::Report(args) => report(&args),
        Command::Run(args) => platform::run(&args),
        Command::Watch(args) => platform::watch(&args),
        Command::Info => platform::info(),
        Command::Install(args) => platform::install(&args),
        Command::Uninstall(args) => platform::uninstall(&args),
        Command::Status => platform::status(),
        Command::Worker(args) => platform::worker(&args),
    }
}

/// How many malformed lines `report` lists one by one.
const ISSUES_LISTED: usize = 10;

fn report(args: &ReportArgs) -> Result<()> {
    let loaded = input::load(&args.file)?;
    for issue in loaded.issues.iter().take(ISSUES_LISTED) {
        eprintln!("warning: {}: {issue}", args.file.display());
    }
    if loaded.issues.len() > ISSUES_LISTED {
        eprintln!(
            "warning: ... and {} more malformed line(s)",
            loaded.issues.len() - ISSUES_LISTED
        );
    }
    let meta = &loaded.run.meta;
    if meta.skipped_lines > 0 || meta.malformed_lines > 0 {
        eprintln!(
            "read {} event(s) from {}; skipped {} other line(s) and {} malformed ctxscope line(s)",
            loaded.run.events.len(),
            args.file.display(),
            meta.skipped_lines,
            meta.malformed_lines
        );
    }
    output::emit(&loaded.run, &args.output)
}

fn simulate(args: &cli::SimulateArgs) -> Result<()> {
    sim_exec::execute(args)
}

mod sim_exec;

/// The subcommands that need the driver, on a machine where it cannot run.
#[cfg(not(windows))]
mod platform {
    use anyhow::{Result, bail};

    use crate::cli::{InstallArgs, RunArgs, UninstallArgs, WatchArgs, WorkerArgs};

    const ONLY_WINDOWS: &str = "the ctxscope driver runs only on Windows";

    /// There is no driver to drive off Windows: say so, and run the same workload in the
    /// simulator, so that the README's one command shows the picture on any machine.
    pub fn run(args: &RunArgs) -> Result<()> {
        eprintln!(
            "note: {ONLY_WINDOWS}; simulating the same workload instead (this is `ctxctl simulate`, which also takes --seed, --cpus, --mode)"
        );
        crate::sim_exec::execute(&crate::cli::SimulateArgs::for_run(args))
    }

    pub fn watch(_: &WatchArgs) -> Result<()> {
        bail!(
            "{ONLY_WINDOWS}, so there are no live events to watch here; `ctxctl report FILE` reads a saved DebugView or WinDbg log, and `ctxctl simulate --format log` shows what the driver prints"
        )
    }

    pub fn info() -> Result<()> {
        bail!("{ONLY_WINDOWS}; `ctxctl simulate` models it on this machine")
    }

    pub fn install(_: &InstallArgs) -> Result<()> {
        bail!("{ONLY_WINDOWS}: install it on a test-signed Windows machine (see docs/vm-guide.md)")
    }

    pub fn uninstall(_: &UninstallArgs) -> Result<()> {
        bail!("{ONLY_WINDOWS}: there is nothing to uninstall here")
    }

    pub fn status() -> Result<()> {
        bail!("{ONLY_WINDOWS}: it cannot be installed on this machine; use `ctxctl simulate`")
    }

    pub fn worker(_: &WorkerArgs) -> Result<()> {
        bail!("{ONLY_WINDOWS}; `ctxctl worker` is started by `ctxctl run`")
    }
}

#[cfg(windows)]
use windows as platform;
