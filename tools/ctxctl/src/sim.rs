//! `ctxctl simulate`: the workload flags as a simulator [`Workload`], and a [`SimRun`] as a
//! [`Run`].

use ctxscope_core::kind::IDLE_PID;
use ctxscope_core::protocol::Mode;
use ctxscope_sim::{SimRun, Workload};

use crate::cli::{SimMode, SimulateArgs};
use crate::model::{Meta, Names, Origin, Run, Source, ThreadName, WorkloadMeta};

/// The simulator workload the flags describe.
#[must_use]
pub fn workload(args: &SimulateArgs) -> Workload {
    let w = &args.workload;
    Workload {
        seed: args.seed,
        cpus: args.cpus,
        mode: match args.mode {
            SimMode::Edu => Mode::Edu,
            SimMode::Root => Mode::Root,
        },
        processes: w.processes,
        threads: w.threads,
        reads: w.reads,
        writes: w.writes,
        ioctls: w.ioctls,
        neither: w.neither,
        overlapped: w.overlapped,
        timer_period_ms: args.timer_period_ms,
        interrupt_latency_us: args.interrupt_latency_us,
        background_threads: args.background,
        close_with_io_outstanding: true,
        // The report's `log` format is formatted from the events; the driver's own printout is
        // not needed.
        capture_log: false,
    }
}

/// The workload as the report's meta records it.
#[must_use]
pub fn workload_meta(w: &Workload) -> WorkloadMeta {
    WorkloadMeta {
        processes: w.processes,
        threads: w.threads,
        reads: w.reads,
        writes: w.writes,
        ioctls: w.ioctls,
        neither: w.neither,
        overlapped: w.overlapped,
        timer_period_ms: Some(w.timer_period_ms),
        interrupt_latency_us: Some(w.interrupt_latency_us),
        background_threads: Some(w.background_threads),
    }
}

/// A simulation's result as a run, names from the simulated machine's processes and threads.
#[must_use]
pub fn to_run(sim: &SimRun) -> Run {
    let mut meta = Meta::new(Source::Simulator, Origin::Simulated);
    meta.mode = Some(sim.info.mode.name().to_owned());
    meta.seed = Some(sim.workload.seed);
    meta.cpus = Some(sim.workload.cpus);
    meta.counter_frequency = Some(sim.info.counter_frequency);
    meta.driver_version = Some(sim.info.driver_version.to_string());
    meta.workload = Some(workload_meta(&sim.workload));
    meta.stopped_early = sim.stopped_early;
    // The ring's drops as of the app's last GetEvents: what the app knows it lost.
    meta.lost.dropped = sim.final_reply.dropped;
    let mut names = Names::default();
    for process in &sim.processes {
        names.processes.insert(process.pid, process.name.clone());
    }
    // The Idle process's threads all have ID 0 (one per CPU): they are named by CPU instead.
    for thread in sim.threads.iter().filter(|t| t.pid != IDLE_PID) {
        names.threads.insert(
            thread.tid,
            ThreadName {
                pid: thread.pid,
                label: thread.label.clone(),
            },
        );
    }
    Run {
        meta,
        events: sim.events.clone(),
        names,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SimulateArgs {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "ctxctl",
            "simulate",
            "--seed",
            "9",
            "--cpus",
            "2",
            "--mode",
            "root",
            "--threads",
            "3",
            "--reads",
            "4",
            "--background",
            "5",
            "--timer-period-ms",
            "7",
        ])
        .unwrap();
        match cli.command {
            crate::cli::Command::Simulate(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_become_the_workload() {
        let w = workload(&args());
        assert_eq!(w.seed, 9);
        assert_eq!(w.cpus, 2);
        assert_eq!(w.mode, Mode::Root);
        assert_eq!((w.processes, w.threads, w.reads, w.writes), (1, 3, 4, 20));
        assert_eq!(w.background_threads, 5);
        assert_eq!(w.timer_period_ms, 7);
        assert_eq!(w.interrupt_latency_us, 50);
    }

    #[test]
    fn a_sim_run_becomes_a_run_with_names() {
        let mut workload = workload(&args());
        workload.threads = 2;
        workload.reads = 3;
        workload.writes = 1;
        let sim = ctxscope_sim::simulate(&workload, &mut |_| true).unwrap();
        let run = to_run(&sim);
        assert_eq!(run.events, sim.events);
        assert!(!run.events.is_empty());
        assert_eq!(run.meta.source, Source::Simulator);
        assert_eq!(run.meta.mode.as_deref(), Some("root"));
        assert_eq!(run.meta.seed, Some(9));
        assert_eq!(run.meta.cpus, Some(2));
        assert_eq!(run.meta.counter_frequency, Some(sim.info.counter_frequency));
        assert_eq!(run.meta.lost.dropped, sim.final_reply.dropped);
        assert!(!run.meta.stopped_early);
        assert_eq!(
            run.meta.workload.as_ref().unwrap().background_threads,
            Some(5)
        );
        // Every process and thread the simulator named is named in the run.
        for process in &sim.processes {
            assert_eq!(run.names.process(process.pid), process.name);
        }
        for thread in sim.threads.iter().filter(|t| t.pid != IDLE_PID) {
            assert_eq!(run.names.thread(thread.tid, thread.pid), thread.label);
        }
    }

    #[test]
    fn stopping_early_is_recorded() {
        let sim = ctxscope_sim::simulate(&workload(&args()), &mut |_| false).unwrap();
        assert!(to_run(&sim).meta.stopped_early);
    }
}
