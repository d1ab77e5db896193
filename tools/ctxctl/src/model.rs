//! A run: the events gathered, where they came from, and the names of the processes and threads
//! they mention. Every source (the driver, the simulator, a saved file) produces one; every
//! renderer consumes one.

use std::collections::BTreeMap;

use ctxscope_core::kind::{IDLE_PID, SYSTEM_PID};
use ctxscope_core::{CallbackKind, Event};
use serde::{Deserialize, Serialize};

/// Where the events came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The ctxscope driver.
    Driver,
    /// The simulator.
    Simulator,
    /// A log of driver lines whose origin (driver or simulator) cannot be told.
    Log,
}

/// How the events were obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Drained live from the driver's ring with `GetEvents`.
    Live,
    /// Produced by the simulator.
    Simulated,
    /// Read from a `DebugView` saved log (`<seq>\t<time>\t<line>`).
    DebugviewLog,
    /// Read from a `WinDbg` log.
    WindbgLog,
    /// Read from a file of bare driver lines (`ctxctl ... --format log`).
    PlainLog,
}

/// The workload a run carried out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadMeta {
    /// Processes issuing I/O.
    pub processes: u32,
    /// Worker threads per process.
    pub threads: u32,
    /// Reads per worker.
    pub reads: u32,
    /// Writes per worker.
    pub writes: u32,
    /// `GetInfo` I/O controls per worker.
    pub ioctls: u32,
    /// `METHOD_NEITHER` demonstrations per worker.
    pub neither: u32,
    /// Overlapped reads outstanding per worker (0: synchronous).
    pub overlapped: u32,
    /// Driver timer period, ms, if known.
    pub timer_period_ms: Option<u32>,
    /// Simulated interrupt latency, µs (simulator only).
    pub interrupt_latency_us: Option<u32>,
    /// Simulated background threads (simulator only).
    pub background_threads: Option<u32>,
}

/// Events the app knows it did not receive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lost {
    /// Events the driver's ring refused during the run because a lane was full (the ring's
    /// `dropped` counter, end minus start).
    pub dropped: u64,
    /// Events consumed by another reader (or a reset) between two of the app's `GetEvents`
    /// (cursor gaps).
    pub cursor_gaps: u64,
    /// The driver's cursor went backwards: it was reloaded during the run.
    pub driver_restarted: bool,
}

/// Everything about a run except its events and names. Serialized as the `meta` object of the
/// JSON export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Version of this JSON layout; [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The tool and version that wrote it.
    pub tool: String,
    /// Where the events came from.
    pub source: Source,
    /// How they were obtained.
    pub origin: Origin,
    /// The driver's mode (`edu`, `root`, `starting`), if known.
    pub mode: Option<String>,
    /// The simulator's seed.
    pub seed: Option<u64>,
    /// CPUs of the (simulated) machine, if known.
    pub cpus: Option<u32>,
    /// `KeQueryPerformanceCounter` ticks per second, if known (timestamps are in ticks).
    pub counter_frequency: Option<u64>,
    /// The driver's version, if known.
    pub driver_version: Option<String>,
    /// The driver-app protocol version.
    pub protocol_version: u16,
    /// The workload, if known.
    pub workload: Option<WorkloadMeta>,
    /// The run was stopped (Ctrl-C) before the workload finished.
    pub stopped_early: bool,
    /// Events known to be missing.
    pub lost: Lost,
    /// Lines of the input log that were not ctxscope's (other drivers, debugger chatter).
    pub skipped_lines: u64,
    /// Lines of the input log that carried the ctxscope prefix but were malformed.
    pub malformed_lines: u64,
}

/// Version of the JSON export's layout.
pub const SCHEMA_VERSION: u32 = 1;

impl Meta {
    /// Meta for `source`/`origin` with everything else unknown.
    #[must_use]
    pub fn new(source: Source, origin: Origin) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            tool: concat!("ctxctl ", env!("CARGO_PKG_VERSION")).to_owned(),
            source,
            origin,
            mode: None,
            seed: None,
            cpus: None,
            counter_frequency: None,
            driver_version: None,
            protocol_version: ctxscope_core::protocol::PROTOCOL_VERSION,
            workload: None,
            stopped_early: false,
            lost: Lost::default(),
            skipped_lines: 0,
            malformed_lines: 0,
        }
    }
}

/// A thread's name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadName {
    /// Owning process.
    pub pid: u32,
    /// What the thread is (`ctxctl worker 3`, `System worker 2`, ...).
    pub label: String,
}

/// Names of the processes and threads a run mentions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    /// Image name by process ID.
    pub processes: BTreeMap<u32, String>,
    /// Thread by thread ID.
    pub threads: BTreeMap<u32, ThreadName>,
}

impl Names {
    /// The image name of `pid`: the known name, `Idle` and `System` for 0 and 4, else `pid N`.
    #[must_use]
    pub fn process(&self, pid: u32) -> String {
        if let Some(name) = self.processes.get(&pid) {
            return name.clone();
        }
        match pid {
            IDLE_PID => "Idle".to_owned(),
            SYSTEM_PID => "System".to_owned(),
            _ => format!("pid {pid}"),
        }
    }

    /// The label of the thread a callback ran in: as [`Names::thread`], except that the Idle
    /// process has one thread per CPU, all with ID 0, so the CPU tells which.
    #[must_use]
    pub fn context_thread(&self, tid: u32, pid: u32, cpu: u32) -> String {
        if pid == IDLE_PID {
            format!("idle thread CPU {cpu}")
        } else {
            self.thread(tid, pid)
        }
    }

    /// The label of thread `tid` (which ran in `pid`): the known label, else `<process> tid N`.
    #[must_use]
    pub fn thread(&self, tid: u32, pid: u32) -> String {
        match self.threads.get(&tid) {
            Some(thread) if thread.pid == pid => thread.label.clone(),
            _ => format!("{} tid {tid}", self.process(pid)),
        }
    }
}

/// Identifies the thread an event ran in: `(pid, tid, cpu)`, the CPU only for the Idle process,
/// whose per-CPU threads all have ID 0.
#[must_use]
pub fn thread_key(event: &Event) -> (u32, u32, Option<u32>) {
    (
        event.pid,
        event.tid,
        (event.pid == IDLE_PID).then_some(event.cpu),
    )
}

/// One run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// Where it came from and what it did.
    pub meta: Meta,
    /// The events, in the order they were received.
    pub events: Vec<Event>,
    /// Process and thread names.
    pub names: Names,
}

impl Run {
    /// The driver's mode: the meta's, or the one the `EvtDevicePrepareHardware` event recorded,
    /// or edu if an interrupt was seen.
    #[must_use]
    pub fn infer_mode(events: &[Event]) -> Option<String> {
        use ctxscope_core::protocol::Mode;
        let prepared = events
            .iter()
            .rev()
            .find(|event| event.kind == CallbackKind::EvtDevicePrepareHardware)
            .and_then(|event| u8::try_from(event.detail).ok())
            .and_then(Mode::from_u8)
            .filter(|mode| *mode != Mode::Starting);
        if let Some(mode) = prepared {
            return Some(mode.name().to_owned());
        }
        events
            .iter()
            .any(|event| event.kind == CallbackKind::EvtInterruptIsr)
            .then(|| Mode::Edu.name().to_owned())
    }

    /// Seconds per timestamp tick, if the counter frequency is known.
    #[must_use]
    pub fn seconds_per_tick(&self) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)] // a frequency, well within f64
        self.meta
            .counter_frequency
            .filter(|&f| f != 0)
            .map(|f| 1.0 / f as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctxscope_core::ExecContext;

    #[test]
    fn names_fall_back_sensibly() {
        let mut names = Names::default();
        names.processes.insert(1200, "ctxctl.exe".into());
        names.threads.insert(
            1204,
            ThreadName {
                pid: 1200,
                label: "ctxctl worker 1".into(),
            },
        );
        assert_eq!(names.process(0), "Idle");
        assert_eq!(names.process(4), "System");
        assert_eq!(names.process(1200), "ctxctl.exe");
        assert_eq!(names.process(77), "pid 77");
        assert_eq!(names.thread(1204, 1200), "ctxctl worker 1");
        // A recycled thread ID in another process is not that thread.
        assert_eq!(names.thread(1204, 4), "System tid 1204");
        assert_eq!(names.thread(9, 0), "Idle tid 9");
        assert_eq!(names.context_thread(0, 0, 3), "idle thread CPU 3");
        assert_eq!(names.context_thread(1204, 1200, 3), "ctxctl worker 1");
    }

    #[test]
    fn mode_is_inferred_from_prepare_hardware_or_interrupts() {
        let ctx = ExecContext {
            pid: 4,
            tid: 8,
            irql: 0,
            cpu: 0,
        };
        let prepare = Event::new(CallbackKind::EvtDevicePrepareHardware, ctx, 1).with_detail(2);
        assert_eq!(Run::infer_mode(&[prepare]).as_deref(), Some("root"));
        let isr = Event::new(
            CallbackKind::EvtInterruptIsr,
            ExecContext { irql: 5, ..ctx },
            2,
        );
        assert_eq!(Run::infer_mode(&[isr]).as_deref(), Some("edu"));
        let failed = prepare.with_detail((1 << 32) | 0xC000_0182);
        assert_eq!(Run::infer_mode(&[failed]), None);
        assert_eq!(Run::infer_mode(&[]), None);
    }
}
