//! A deterministic model of a Windows machine and of KMDF's request dispatch, running ctxscope's
//! own callback logic ([`ctxscope_core::logic`]) through the same [`Kernel`] trait the driver's
//! Windows glue implements, and producing the same events through the same ring and protocol.
//!
//! [`Kernel`]: ctxscope_core::logic::Kernel

#![forbid(unsafe_code)]

use ctxscope_core::Event;
use ctxscope_core::protocol::{InfoReply, Mode};

/// What to simulate. Every field has a default ([`Workload::default`]); [`Workload::validate`]
/// says what is out of range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Seed of every random choice: the same seed gives the identical event stream.
    pub seed: u64,
    /// CPUs of the machine (1..=64). Default 4.
    pub cpus: u32,
    /// `Mode::Edu` (QEMU's edu device: real interrupts) or `Mode::Root` (root-enumerated: no
    /// interrupt resource, the timer completes reads). Default edu.
    pub mode: Mode,
    /// App processes (1..=16). Default 1.
    pub processes: u32,
    /// Worker threads per app process (1..=64). Default 4.
    pub threads: u32,
    /// Reads per worker thread. Default 50.
    pub reads: u32,
    /// Writes per worker thread. Default 20.
    pub writes: u32,
    /// `GetInfo` I/O controls per worker thread. Default 5.
    pub ioctls: u32,
    /// `METHOD_NEITHER` demonstrations per worker thread. Default 2.
    pub neither: u32,
    /// Overlapped I/O: each worker keeps up to this many reads outstanding (0 or 1: synchronous
    /// I/O). Default 0.
    pub overlapped: u32,
    /// Driver timer period, ms (1..=60000). Default 10.
    pub timer_period_ms: u32,
    /// Delay from the interrupt-raise register write to the interrupt, µs. Default 50.
    pub interrupt_latency_us: u32,
    /// Background threads (other processes) competing for the CPUs. Default 3.
    pub background_threads: u32,
    /// Close one handle with reads still outstanding, so `EvtFileClose` runs in the completing
    /// context. Default true.
    pub close_with_io_outstanding: bool,
    /// Keep every log line the driver prints in [`SimRun::log`] (costs memory on large runs).
    /// Default true.
    pub capture_log: bool,
}

/// How far a simulation has got, for a progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Requests completed so far.
    pub requests_done: u64,
    /// Requests the workload issues in all.
    pub requests_total: u64,
}

/// A process of the simulated machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Process ID.
    pub pid: u32,
    /// Image name, as Windows would show it (`Idle`, `System`, `ctxctl.exe`, ...).
    pub name: String,
}

/// A thread of the simulated machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadInfo {
    /// Thread ID.
    pub tid: u32,
    /// Owning process ID.
    pub pid: u32,
    /// What the thread is (`idle thread CPU 0`, `System worker 2`, `ctxctl worker 3`, ...).
    pub label: String,
}

/// What a simulation produced.
#[derive(Clone, Debug)]
pub struct SimRun {
    /// The workload that ran.
    pub workload: Workload,
    /// Every event the simulated app drained from the driver's ring with `GetEvents`, in delivery
    /// order.
    pub events: Vec<Event>,
    /// Every line the driver printed, in order, as `DbgPrintEx` would have (each ends in `\n`).
    /// Empty unless [`Workload::capture_log`].
    pub log: Vec<String>,
    /// Processes of the machine.
    pub processes: Vec<ProcessInfo>,
    /// Threads of the machine.
    pub threads: Vec<ThreadInfo>,
    /// `GetInfo` at the end of the run (counters, mode, counter frequency).
    pub info: InfoReply,
    /// Requests issued, completed, cancelled, and left pending at the end (always 0 unless the
    /// run was stopped early).
    pub requests: RequestCounts,
    /// File handles opened, cleaned up and closed.
    pub handles: HandleCounts,
    /// The observer asked to stop before the workload finished.
    pub stopped_early: bool,
}

/// Request accounting of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Requests issued.
    pub issued: u64,
    /// Completed successfully or with an error status.
    pub completed: u64,
    /// Completed with `STATUS_CANCELLED`.
    pub cancelled: u64,
    /// Still pending at the end.
    pub pending: u64,
}

/// Handle accounting of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandleCounts {
    /// Handles opened (`EvtDeviceFileCreate`).
    pub opened: u64,
    /// `EvtFileCleanup` calls.
    pub cleaned_up: u64,
    /// `EvtFileClose` calls.
    pub closed: u64,
}

/// Why a workload cannot run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// A workload field is out of range.
    #[error("{field} = {value} is out of range: {expected}")]
    OutOfRange {
        /// The field (as the command-line flag names it, e.g. `cpus`).
        field: &'static str,
        /// The value given.
        value: u64,
        /// What is allowed, e.g. `1..=64`.
        expected: &'static str,
    },
    /// `Mode::Starting` is not a mode a run can have.
    #[error("mode must be edu or root")]
    InvalidMode,
}
