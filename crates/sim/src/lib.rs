//! A deterministic model of a Windows machine and of KMDF's request dispatch, running ctxscope's
//! own callback logic ([`ctxscope_core::logic`]) through the same [`Kernel`] trait the driver's
//! Windows glue implements, and producing the same events through the same ring and protocol.
//!
//! [`Kernel`]: ctxscope_core::logic::Kernel
//!
//! # The machine
//! `cpus` processors, each with an IRQL, a DPC queue and a current thread; the Idle process
//! (PID 0, one idle thread per processor, each with thread ID 0 as Windows shows them), System
//! (PID 4: two worker threads that take work items, two threads that compute and sleep), three
//! background processes (`svchost.exe`, `explorer.exe`, `MsMpEng.exe`) sharing
//! `background_threads` threads that compute and sleep, and `processes` `ctxctl.exe` processes of
//! `threads` workers (the first also runs the collector that drains the ring and, if asked, the
//! close demonstration). Process and thread IDs are multiples of four from one table.
//!
//! # What is modelled, and from where
//! Each rule is documented where it is implemented, with its source. In short:
//! - Scheduling: round robin with a 31.25 ms quantum; a thread blocks on synchronous I/O and is
//!   readied when the request completes; an idle processor runs its idle thread.
//! - Interrupts: the edu device's level-triggered interrupt reaches a processor chosen at random
//!   (seeded) `interrupt_latency_us` after the raise-register write, and the ISR runs at the
//!   device's DIRQL in whatever thread that processor was running. The DPC is queued on that
//!   processor and runs when its IRQL drops below `DISPATCH_LEVEL`, in the thread it was running.
//!   A root-enumerated device has no interrupt resource: nothing is connected, no ISR ever runs.
//! - The WDF timer: a one-shot kernel timer re-armed at each tick; its DPC runs at
//!   `DISPATCH_LEVEL` on a processor chosen at random (seeded).
//! - The I/O manager: each IRP records its requesting thread and holds a reference on its file
//!   object; `CloseHandle` sends `IRP_MJ_CLEANUP` in the closing thread; the file object's last
//!   reference sends `IRP_MJ_CLOSE`, synchronously in the closing thread if the handle held it,
//!   from a System worker thread (deferred deletion) if a completing IRP did; a thread that exits
//!   with IRPs outstanding has them cancelled.
//! - KMDF: `EvtIoInCallerContext` in the caller's thread, then `WdfDeviceEnqueueRequest` (or the
//!   `METHOD_NEITHER` probe-and-lock first); a sequential queue presents a request at once,
//!   nested in the enqueue, when it owns none, and otherwise the next one when the driver
//!   completes the previous, in the completing context; a parallel queue presents at once;
//!   cleanup flushes the file object's requests still waiting in the queues.
//!
//! # Simplifications
//! - Callbacks take no simulated time: each runs at the instant of the event that caused it.
//! - All threads have one priority and share one ready queue; Windows' priority boosts on I/O
//!   completion, per-processor ready queues and ideal processors are not modelled, so a woken
//!   thread waits for an idle processor or the end of a quantum.
//! - An IRP's reference on its file object is dropped when the request completes (Windows drops
//!   it a little later, in the completion APC in the requestor's thread).
//! - The edu interrupt is `INTx` (one interrupt per assertion of the line), not MSI.

#![forbid(unsafe_code)]

mod buffer;
mod edu;
mod engine;
mod kernel;
mod rng;

use core::cell::RefCell;

use ctxscope_core::Event;
use ctxscope_core::logic::{Driver, DriverRing};
use ctxscope_core::protocol::{InfoReply, Mode, TIMER_PERIOD_MS_MAX, TIMER_PERIOD_MS_MIN};
use ctxscope_core::ring::RingStats;

pub use kernel::COUNTER_FREQUENCY;

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
    /// When false, the simulated app configures the driver's log level `off` (events are
    /// recorded whatever the level), so no line is formatted. Default true.
    pub capture_log: bool,
}

/// How far a simulation has got, for a progress bar. Counts the workload's requests (the
/// workers' reads, writes, `GetInfo`s and `METHOD_NEITHER` demonstrations, and the close
/// demonstration's reads), not the collector's.
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
    /// Events recorded after the app's final drain (the collector's own cleanup and close, the
    /// device's removal, `EvtDriverUnload`, a late interrupt or timer tick), read out of the
    /// ring after the driver unloaded as a debugger would read its memory: the app never sees
    /// them, and nothing is left out of the accounting.
    pub teardown: Vec<Event>,
    /// The ring's counters in the app's last `GetEvents` reply (after its batch):
    /// `recorded + dropped` events were produced by then, `consumed` of them delivered.
    pub final_reply: RingStats,
    /// The ring's counters after the driver unloaded and [`SimRun::teardown`] was read out:
    /// `produced() = events + teardown + dropped`.
    pub ring: RingStats,
    /// What the simulated app checked in each reply it decoded.
    pub checks: AppChecks,
    /// The edu interrupt's `DIRQL` (`None` in root mode: no interrupt is connected).
    pub interrupt_irql: Option<u8>,
    /// Simulated time from boot to unload, nanoseconds.
    pub simulated_ns: u64,
}

/// What the simulated `ctxctl` found when it decoded the driver's replies, as the real one does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppChecks {
    /// Read receipts that decoded and named the request, its requestor and the mode.
    pub receipts: u64,
    /// Read receipts that failed to decode or disagreed with the request.
    pub receipts_invalid: u64,
    /// Valid receipts whose trail has an `EvtInterruptIsr` entry.
    pub receipts_with_isr: u64,
    /// Valid receipts completed by `EvtInterruptDpc`.
    pub completed_by_interrupt_dpc: u64,
    /// Valid receipts completed by `EvtTimerFunc`.
    pub completed_by_timer_dpc: u64,
    /// `METHOD_NEITHER` replies that decoded, named the requestor as the thread that locked the
    /// buffers, and checksummed the input correctly.
    pub neither: u64,
    /// `METHOD_NEITHER` replies that did not.
    pub neither_invalid: u64,
    /// `GetInfo` replies that decoded and reported the run's mode.
    pub info_replies: u64,
    /// `GetInfo` replies that did not.
    pub info_invalid: u64,
    /// `GetEvents` replies decoded.
    pub get_events: u64,
    /// `GetEvents` replies that failed to decode.
    pub get_events_invalid: u64,
    /// `GetEvents` replies whose cursor did not continue the previous one.
    pub cursor_gaps: u64,
}

/// Request accounting of a run: every read, write and device control the app sent, the
/// collector's `GetEvents`, `GetInfo` and `Configure` included. `issued = completed + cancelled +
/// pending`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Requests issued.
    pub issued: u64,
    /// Completed successfully or with an error status.
    pub completed: u64,
    /// Completed with `STATUS_CANCELLED` (not counted in `completed`).
    pub cancelled: u64,
    /// Of `completed`, those with an error status.
    pub failed: u64,
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

impl Default for Workload {
    fn default() -> Self {
        Self {
            seed: 0x00c7_5c09,
            cpus: 4,
            mode: Mode::Edu,
            processes: 1,
            threads: 4,
            reads: 50,
            writes: 20,
            ioctls: 5,
            neither: 2,
            overlapped: 0,
            timer_period_ms: ctxscope_core::logic::DEFAULT_TIMER_PERIOD_MS,
            interrupt_latency_us: 50,
            background_threads: 3,
            close_with_io_outstanding: true,
            capture_log: true,
        }
    }
}

/// Largest count of any one kind of request per worker thread.
pub const MAX_REQUESTS_PER_THREAD: u32 = 10_000_000;

fn check_range(
    field: &'static str,
    value: u32,
    range: core::ops::RangeInclusive<u32>,
    expected: &'static str,
) -> Result<(), SimError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(SimError::OutOfRange {
            field,
            value: u64::from(value),
            expected,
        })
    }
}

impl Workload {
    /// Checks every field; the first one out of range is the error.
    ///
    /// # Errors
    /// [`SimError::OutOfRange`] naming the field, the value and what is allowed;
    /// [`SimError::InvalidMode`] for `Mode::Starting`.
    pub fn validate(&self) -> Result<(), SimError> {
        check_range("cpus", self.cpus, 1..=64, "1..=64")?;
        if self.mode == Mode::Starting {
            return Err(SimError::InvalidMode);
        }
        check_range("processes", self.processes, 1..=16, "1..=16")?;
        check_range("threads", self.threads, 1..=64, "1..=64")?;
        check_range(
            "reads",
            self.reads,
            0..=MAX_REQUESTS_PER_THREAD,
            "0..=10000000",
        )?;
        check_range(
            "writes",
            self.writes,
            0..=MAX_REQUESTS_PER_THREAD,
            "0..=10000000",
        )?;
        check_range(
            "ioctls",
            self.ioctls,
            0..=MAX_REQUESTS_PER_THREAD,
            "0..=10000000",
        )?;
        check_range(
            "neither",
            self.neither,
            0..=MAX_REQUESTS_PER_THREAD,
            "0..=10000000",
        )?;
        check_range("overlapped", self.overlapped, 0..=64, "0..=64")?;
        check_range(
            "timer_period_ms",
            self.timer_period_ms,
            TIMER_PERIOD_MS_MIN..=TIMER_PERIOD_MS_MAX,
            "1..=60000",
        )?;
        check_range(
            "interrupt_latency_us",
            self.interrupt_latency_us,
            0..=1_000_000,
            "0..=1000000",
        )?;
        check_range(
            "background_threads",
            self.background_threads,
            0..=256,
            "0..=256",
        )?;
        Ok(())
    }

    /// How many workload requests a run issues: what [`Progress::requests_total`] reports.
    #[must_use]
    pub fn requests_total(&self) -> u64 {
        engine::workload_requests(self)
    }
}

/// Runs the workload on the simulated machine and returns what the simulated app gathered.
///
/// `observer` is called with the progress every 0.5% of the workload's requests and once at the
/// end; when it returns `false` (Ctrl-C) the app stops issuing new requests, lets those in flight
/// finish, drains the ring, closes its handles, and the run returns what was gathered with
/// [`SimRun::stopped_early`] set.
///
/// # Errors
/// [`SimError`] if the workload does not validate ([`Workload::validate`]).
pub fn simulate(
    workload: &Workload,
    observer: &mut dyn FnMut(Progress) -> bool,
) -> Result<SimRun, SimError> {
    workload.validate()?;
    // One ring per simulation, on the heap (the driver's is a 295 KB static).
    let ring: Box<DriverRing> = Box::default();
    let driver = Driver::new(&ring);
    let log = RefCell::new(Vec::new());
    let machine = engine::Machine::new(workload, &driver, workload.capture_log.then_some(&log));
    let outcome = machine.run(observer);
    Ok(SimRun {
        workload: workload.clone(),
        events: outcome.events,
        log: log.into_inner(),
        processes: outcome.processes,
        threads: outcome.threads,
        info: outcome.info,
        requests: outcome.requests,
        handles: outcome.handles,
        stopped_early: outcome.stopped_early,
        teardown: outcome.teardown,
        final_reply: outcome.reply_stats,
        ring: outcome.ring,
        checks: outcome.checks,
        interrupt_irql: outcome.interrupt_irql,
        simulated_ns: outcome.simulated_ns,
    })
}
