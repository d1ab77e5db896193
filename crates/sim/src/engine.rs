//! The discrete-event model: CPUs, threads and their scheduler, interrupts and DPCs, the I/O
//! manager's side of each request and file object, KMDF's queues, the edu device, and the
//! simulated `ctxctl` that drives it all.
//!
//! Time is simulated nanoseconds. Every driver callback is instantaneous: it runs at the instant
//! of the simulated event that caused it, on one CPU, in whatever thread that CPU is running, at
//! the IRQL the model says; what takes time is the threads' computing and sleeping, the device's
//! interrupt latency and the timer period. Events are taken from a binary heap in `(time,
//! sequence)` order, so equal times keep the order they were scheduled in and a seed replays
//! exactly.
//!
//! KMDF behaviour is cited by file and function of the framework's open source
//! (<https://github.com/microsoft/Windows-Driver-Frameworks>, under `src/framework/shared/`):
//! - `irphandlers/io/fxioqueue.cpp`: `FxIoQueue::DispatchEvents` (presentation rules),
//!   `FxIoQueue::QueueRequestFromForward` (`WdfDeviceEnqueueRequest` dispatches at once),
//!   `FxIoQueue::FlushByFileObject` (cleanup cancels queued requests);
//! - `inc/private/common/fxioqueue.hpp`: `RequestCompletedCallback` → `DispatchInternalEvents`
//!   (the next request is presented by the completing thread unless a dispatch loop runs);
//! - `core/fxrequest.cpp`: `FxRequest::CompleteInternal` (the IRP is completed before the queue
//!   presents the next request);
//! - `irphandlers/general/fxpkggeneral.cpp`: `FxPkgGeneral::OnCleanup` (`EvtFileCleanup`, then
//!   the flush);
//! - `irphandlers/io/fxpkgio.cpp`: `FxPkgIo::EnqueueRequest`.

use core::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use ctxscope_core::kind::{DISPATCH_LEVEL, IDLE_PID, PASSIVE_LEVEL, SYSTEM_PID};
use ctxscope_core::logic::{
    BufferedInput, CallerDecision, Completion, DeviceRegisters, Driver, FileState, Hardware,
    IoKind, IsrDecision, MAX_BUFFERED_INPUT, NeitherBuffers, PrivateBytes, PrivateBytesMut,
    QueueDispatch, ReadDecision, ReadToComplete, RequestState, edu, more_status::STATUS_CANCELLED,
};
use ctxscope_core::protocol::{
    CompletedBy, ConfigureRequest, CursorCheck, GetEventsReply, GetEventsRequest, InfoReply, Ioctl,
    LogLevel, Mode, NeitherDemoReply, ReadReceipt, TrailEntry, TrailSlot, checksum,
};
use ctxscope_core::ring::RingStats;
use ctxscope_core::{Event, ExecContext, Requestor};

use crate::buffer::SystemBuffer;
use crate::edu::{BAR0_LEN, EduDevice};
use crate::kernel::{SimKernel, SimRequest};
use crate::rng::SimRng;
use crate::{AppChecks, HandleCounts, ProcessInfo, Progress, RequestCounts, ThreadInfo, Workload};

// ---- Model constants ---------------------------------------------------------------------------

const US: u64 = 1_000;
const MS: u64 = 1_000_000;

/// A thread's quantum: on client editions of Windows, two clock intervals of 15.625 ms
/// (<https://learn.microsoft.com/windows/win32/procthread/scheduling>: "the system assigns time
/// slices in a round-robin fashion to all threads with the highest priority"; the length is the
/// client default of `Win32PrioritySeparation`,
/// <https://learn.microsoft.com/previous-versions/windows/it-pro/windows-2000-server/cc976120(v=technet.10)>).
const QUANTUM_NS: u64 = 31_250 * US;

/// How often the simulated `ctxctl` drains the driver's ring with `GetEvents` (its collector
/// thread sleeps this long between drains). Short enough that a lane of 512 events rarely fills
/// (a lane takes the events of one CPU), long enough that the 64 KB reply the driver zeroes each
/// time is not the run's main cost.
const DRAIN_INTERVAL_NS: u64 = 2 * MS;

/// The `GetEvents` output buffer `ctxctl` passes: the largest reply the protocol allows.
const GET_EVENTS_OUTPUT: usize =
    GetEventsReply::FIXED_SIZE + GetEventsReply::MAX_EVENTS * Event::SIZE;

/// `WdfPowerDeviceD3Final` in `WDF_POWER_DEVICE_STATE`: the state before the first `D0Entry`
/// and the target of the last `D0Exit`
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wudfddi_types/ne-wudfddi_types-_wdf_power_device_state>).
const WDF_POWER_DEVICE_D3_FINAL: u32 = 5;

/// System worker threads (`ExWorkerThread`s waiting for work items) and periodic System threads
/// (the kernel's own housekeeping, which competes for the CPUs like any thread).
const SYSTEM_WORKERS: usize = 2;
const SYSTEM_PERIODIC: usize = 2;

/// Background processes the machine runs besides the app: their threads compute and sleep.
const BACKGROUND_PROCESSES: [&str; 3] = ["svchost.exe", "explorer.exe", "MsMpEng.exe"];

/// Time a System worker spends on one work item before looking for the next.
const WORK_ITEM_NS: u64 = 5 * US;

// ---- Scheduling model ----------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunState {
    Ready,
    Running(usize),
    /// Waiting on a dispatcher object (I/O completion, a work queue, a barrier).
    Blocked,
    Sleeping,
    Exited,
}

/// What a blocked app thread waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    None,
    /// One request (synchronous I/O).
    Request(usize),
    /// Any of its outstanding reads (overlapped I/O, `WaitForMultipleObjects(bWaitAll = FALSE)`).
    AnyRead,
    /// All of its outstanding requests.
    All,
    /// The device to start (app threads are created once the device interface exists).
    DeviceStart,
    /// Every worker thread to finish (the close demonstration runs after them).
    Workers,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WorkerPhase {
    Open,
    Ops,
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CollectorPhase {
    Open,
    Configure,
    Drain,
    FinalInfo,
    FinalDrain,
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DemoPhase {
    /// Open a handle, queue two overlapped reads, close the handle with both outstanding.
    CloseWithReads,
    /// Both reads are done (one cancelled by KMDF at cleanup, one completed by the DPC/timer).
    WaitReads,
    /// Open a handle, queue one overlapped read, close the handle, and end the thread with the
    /// read still in the driver: the I/O manager cancels it.
    ExitWithRead,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Program {
    Idle,
    SystemWorker,
    /// A thread that computes for `compute` then sleeps for `sleep` (ranges in ns), forever.
    Periodic {
        compute: (u64, u64),
        sleep: (u64, u64),
    },
    Worker(WorkerPhase),
    Collector(CollectorPhase),
    Demo(DemoPhase),
}

struct Thread {
    tid: u32,
    pid: u32,
    program: Program,
    state: RunState,
    /// Computing left before the thread's next action.
    burst_left: u64,
    /// When the current burst started running (for preemption).
    run_start: u64,
    /// Invalidates scheduled actions and wakes when the thread's state changes.
    token: u32,
    // ---- the app's threads ----
    wait: Wait,
    file: Option<usize>,
    outstanding: u32,
    outstanding_reads: u32,
    /// Reads, writes, `GetInfo`s and `METHOD_NEITHER` demonstrations left to issue.
    ops_left: [u32; 4],
}

impl Thread {
    fn new(tid: u32, pid: u32, program: Program, state: RunState) -> Self {
        Self {
            tid,
            pid,
            program,
            state,
            burst_left: 0,
            run_start: 0,
            token: 0,
            wait: Wait::None,
            file: None,
            outstanding: 0,
            outstanding_reads: 0,
            ops_left: [0; 4],
        }
    }

    const fn requestor(&self) -> Requestor {
        Requestor {
            pid: self.pid,
            tid: self.tid,
        }
    }
}

/// What a thread does when its burst ends.
enum Step {
    Compute(u64),
    Block(Wait),
    Sleep { ns: u64, then: u64 },
    Exit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dpc {
    Interrupt,
    Timer,
}

struct Cpu {
    current: usize,
    idle_thread: usize,
    irql: u8,
    /// The processor's DPC queue.
    dpcs: VecDeque<Dpc>,
    token: u32,
}

impl Cpu {
    const fn is_idle(&self) -> bool {
        self.current == self.idle_thread
    }
}

/// Something that happens at a simulated instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    /// A running thread's burst ends.
    Action { thread: usize, token: u32 },
    /// A CPU's quantum ends.
    QuantumEnd { cpu: usize, token: u32 },
    /// A sleeping thread's timeout expires.
    Wake { thread: usize, token: u32 },
    /// The edu device's interrupt reaches a processor.
    Interrupt,
    /// The WDF timer's due time.
    TimerDue { token: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    time: u64,
    seq: u64,
    #[allow(clippy::struct_field_names)]
    ev_index: u8,
    a: u64,
    b: u32,
}

impl Due {
    fn new(time: u64, seq: u64, ev: Ev) -> Self {
        let (ev_index, a, b) = match ev {
            Ev::Action { thread, token } => (0, thread as u64, token),
            Ev::QuantumEnd { cpu, token } => (1, cpu as u64, token),
            Ev::Wake { thread, token } => (2, thread as u64, token),
            Ev::Interrupt => (3, 0, 0),
            Ev::TimerDue { token } => (4, 0, token),
        };
        Self {
            time,
            seq,
            ev_index,
            a,
            b,
        }
    }

    #[allow(clippy::cast_possible_truncation)] // `a` was a usize
    fn ev(self) -> Ev {
        match self.ev_index {
            0 => Ev::Action {
                thread: self.a as usize,
                token: self.b,
            },
            1 => Ev::QuantumEnd {
                cpu: self.a as usize,
                token: self.b,
            },
            2 => Ev::Wake {
                thread: self.a as usize,
                token: self.b,
            },
            3 => Ev::Interrupt,
            _ => Ev::TimerDue { token: self.b },
        }
    }
}

/// Work for a System worker thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Work {
    /// The I/O manager loads the driver and the `PnP` manager adds the device.
    LoadAndAdd,
    /// The framework's `PnP`/power state machine starts the device.
    Start,
    /// The object manager's deferred deletion of a file object: `IRP_MJ_CLOSE`.
    Close(usize),
    /// Surprise-free removal at the end: D0 exit, release hardware, unload.
    Remove,
}

// ---- I/O model -----------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Read,
    Write,
    GetInfo,
    Neither,
    GetEvents,
    Configure,
}

impl Op {
    const WORKLOAD: [Self; 4] = [Self::Read, Self::Write, Self::GetInfo, Self::Neither];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QueueId {
    Read = 0,
    Write = 1,
    Control = 2,
}

/// A KMDF queue: requests waiting to be presented, and how many the driver owns.
struct Queue {
    dispatch: QueueDispatch,
    waiting: VecDeque<usize>,
    driver_owned: u32,
    /// `m_Dispatching` of fxioqueue.cpp: a presentation loop is running (higher on the stack).
    dispatching: u32,
}

impl Queue {
    const fn new() -> Self {
        Self {
            dispatch: QueueDispatch::Sequential,
            waiting: VecDeque::new(),
            driver_owned: 0,
            dispatching: 0,
        }
    }
}

/// An IRP and its `WDFREQUEST`. Slots are reused, with their buffers, so that the hot path does
/// not allocate.
struct Irp {
    live: bool,
    generation: u32,
    thread: usize,
    requestor: Requestor,
    file: usize,
    op: Op,
    state: Option<RequestState>,
    queue: Option<QueueId>,
    presented: bool,
    /// Counts toward [`Progress`].
    workload: bool,
    input: SystemBuffer,
    input_len: usize,
    out: SystemBuffer,
    out_len: usize,
}

impl Irp {
    const fn empty() -> Self {
        Self {
            live: false,
            generation: 0,
            thread: 0,
            requestor: Requestor { pid: 0, tid: 0 },
            file: 0,
            op: Op::Read,
            state: None,
            queue: None,
            presented: false,
            workload: false,
            input: SystemBuffer::new(),
            input_len: 0,
            out: SystemBuffer::new(),
            out_len: 0,
        }
    }
}

/// A file object: the driver's context, and the object manager's reference count (one for the
/// handle while it is open, one for each IRP issued on it).
struct File {
    state: FileState,
    /// The thread that closed the last handle, kept for `EvtFileClose` as the driver's glue does.
    closer: Option<Requestor>,
    refs: u32,
    /// Opened by a workload thread (not the collector).
    app: bool,
    closed: bool,
}

// ---- The machine --------------------------------------------------------------------------------

/// Everything the run gathers for [`crate::SimRun`].
pub(crate) struct Outcome {
    pub(crate) events: Vec<Event>,
    pub(crate) teardown: Vec<Event>,
    pub(crate) processes: Vec<ProcessInfo>,
    pub(crate) threads: Vec<ThreadInfo>,
    pub(crate) info: InfoReply,
    pub(crate) requests: RequestCounts,
    pub(crate) handles: HandleCounts,
    pub(crate) checks: AppChecks,
    pub(crate) reply_stats: RingStats,
    pub(crate) ring: RingStats,
    pub(crate) interrupt_irql: Option<u8>,
    pub(crate) simulated_ns: u64,
    pub(crate) stopped_early: bool,
}

#[allow(clippy::struct_excessive_bools)] // independent facts of the machine's state, not a mode
pub(crate) struct Machine<'r> {
    workload: Workload,
    driver: &'r Driver<'r>,
    log: Option<&'r RefCell<Vec<String>>>,
    rng: SimRng,
    now: u64,
    seq: u64,
    heap: BinaryHeap<Reverse<Due>>,

    cpus: Vec<Cpu>,
    idle_cpus: usize,
    threads: Vec<Thread>,
    ready: VecDeque<usize>,
    processes: Vec<ProcessInfo>,
    thread_infos: Vec<ThreadInfo>,

    irps: Vec<Irp>,
    free_irps: Vec<usize>,
    files: Vec<File>,
    scratch: Vec<usize>,
    queues: [Queue; 3],
    /// The driver's pending read (marked cancelable), taken by the DPC, the timer or the cancel
    /// routine.
    pending_read: Option<usize>,
    /// What the ISR hands to the DPC under the interrupt lock.
    handover: Option<(TrailEntry, u32)>,
    interrupt_dpc_queued: bool,
    timer_dpc_queued: bool,

    edu: EduDevice,
    mode: Mode,
    interrupt_connected: bool,
    dirql: u8,
    timer_token: u32,
    timer_period_ms: u32,

    work: VecDeque<Work>,
    idle_workers: Vec<usize>,

    // ---- the app ----
    app_threads: Vec<usize>,
    workers_alive: u32,
    app_alive: u32,
    app_files_open: u32,
    demo: Option<usize>,
    cursor: u64,
    last_batch_full: bool,
    stopping: bool,
    finished: bool,

    // ---- results ----
    events: Vec<Event>,
    info: Option<InfoReply>,
    requests: RequestCounts,
    handles: HandleCounts,
    checks: AppChecks,
    reply_stats: RingStats,
    progress: Progress,
}

/// Hands out process and thread IDs, as the kernel's CID table does: multiples of four, never
/// reused within a run.
struct CidTable {
    next: u32,
}

impl CidTable {
    fn take(&mut self) -> u32 {
        let id = self.next;
        self.next += 4;
        id
    }
}

/// Number of the workload requests a run issues (for [`Progress::requests_total`]).
pub(crate) fn workload_requests(workload: &Workload) -> u64 {
    let per_thread = u64::from(workload.reads)
        + u64::from(workload.writes)
        + u64::from(workload.ioctls)
        + u64::from(workload.neither);
    let demo = if workload.close_with_io_outstanding {
        3
    } else {
        0
    };
    u64::from(workload.processes) * u64::from(workload.threads) * per_thread + demo
}

impl<'r> Machine<'r> {
    #[allow(clippy::too_many_lines)] // builds the whole machine, one part after another
    pub(crate) fn new(
        workload: &Workload,
        driver: &'r Driver<'r>,
        log: Option<&'r RefCell<Vec<String>>>,
    ) -> Self {
        let mut rng = SimRng::new(workload.seed);
        let cpu_count = workload.cpus as usize;
        let mut threads = Vec::new();
        let mut thread_infos = Vec::new();
        let mut processes = vec![
            ProcessInfo {
                pid: IDLE_PID,
                name: "Idle".to_owned(),
            },
            ProcessInfo {
                pid: SYSTEM_PID,
                name: "System".to_owned(),
            },
        ];
        let mut add = |threads: &mut Vec<Thread>, tid, pid, program, state, label: String| {
            threads.push(Thread::new(tid, pid, program, state));
            thread_infos.push(ThreadInfo { tid, pid, label });
            threads.len() - 1
        };

        // Idle: one thread per processor. Windows shows every idle thread with ID 0 (its
        // CLIENT_ID is all zero), which is what PsGetCurrentThreadId returns in it.
        let mut cpus = Vec::with_capacity(cpu_count);
        for cpu in 0..cpu_count {
            let thread = add(
                &mut threads,
                0,
                IDLE_PID,
                Program::Idle,
                RunState::Running(cpu),
                format!("idle thread CPU {cpu}"),
            );
            cpus.push(Cpu {
                current: thread,
                idle_thread: thread,
                irql: PASSIVE_LEVEL,
                dpcs: VecDeque::with_capacity(4),
                token: 0,
            });
        }

        // Process and thread IDs come from one table (the CID table), in multiples of four, so
        // no thread ID is ever a process ID. System's threads come first; processes started
        // later get higher IDs.
        let mut cids = CidTable { next: 8 };
        let mut take_id = || cids.take();
        let mut idle_workers = Vec::new();
        for index in 0..SYSTEM_WORKERS {
            let thread = add(
                &mut threads,
                take_id(),
                SYSTEM_PID,
                Program::SystemWorker,
                RunState::Blocked,
                format!("System worker thread {index}"),
            );
            idle_workers.push(thread);
        }
        for index in 0..SYSTEM_PERIODIC {
            let thread = add(
                &mut threads,
                take_id(),
                SYSTEM_PID,
                Program::Periodic {
                    compute: (50 * US, 500 * US),
                    sleep: (500 * US, 4 * MS),
                },
                RunState::Sleeping,
                format!("System thread {index}"),
            );
            threads[thread].burst_left = rng.between(50 * US, 500 * US);
        }
        // The background processes share `background_threads` threads round robin.
        let background_pids: Vec<u32> = BACKGROUND_PROCESSES
            .iter()
            .map(|name| {
                let pid = take_id();
                processes.push(ProcessInfo {
                    pid,
                    name: (*name).to_owned(),
                });
                pid
            })
            .collect();
        for index in 0..workload.background_threads as usize {
            let which = index % BACKGROUND_PROCESSES.len();
            let thread = add(
                &mut threads,
                take_id(),
                background_pids[which],
                Program::Periodic {
                    compute: (200 * US, 3 * MS),
                    sleep: (500 * US, 8 * MS),
                },
                RunState::Sleeping,
                format!(
                    "{} thread {}",
                    BACKGROUND_PROCESSES[which],
                    index / BACKGROUND_PROCESSES.len()
                ),
            );
            threads[thread].burst_left = rng.between(200 * US, 3 * MS);
        }

        // The app: `processes` ctxctl.exe processes of `threads` workers; the first also runs
        // the collector (which drains the ring) and, if asked, the close demonstration.
        let mut app_threads = Vec::new();
        let mut demo = None;
        for process in 0..workload.processes {
            let pid = take_id();
            processes.push(ProcessInfo {
                pid,
                name: "ctxctl.exe".to_owned(),
            });
            if process == 0 {
                let collector = add(
                    &mut threads,
                    take_id(),
                    pid,
                    Program::Collector(CollectorPhase::Open),
                    RunState::Blocked,
                    "ctxctl collector (main thread)".to_owned(),
                );
                app_threads.push(collector);
            }
            for index in 0..workload.threads {
                let thread = add(
                    &mut threads,
                    take_id(),
                    pid,
                    Program::Worker(WorkerPhase::Open),
                    RunState::Blocked,
                    format!("ctxctl worker {index} (process {process})"),
                );
                threads[thread].ops_left = [
                    workload.reads,
                    workload.writes,
                    workload.ioctls,
                    workload.neither,
                ];
                app_threads.push(thread);
            }
            if process == 0 && workload.close_with_io_outstanding {
                let thread = add(
                    &mut threads,
                    take_id(),
                    pid,
                    Program::Demo(DemoPhase::CloseWithReads),
                    RunState::Blocked,
                    "ctxctl close demonstration".to_owned(),
                );
                demo = Some(thread);
            }
        }
        for &thread in &app_threads {
            threads[thread].wait = Wait::DeviceStart;
        }
        if let Some(thread) = demo {
            threads[thread].wait = Wait::Workers;
        }
        let workers_alive = workload.processes * workload.threads;
        let app_alive = workers_alive + u32::from(demo.is_some());

        // The edu device's DIRQL: x64 Windows derives it from the interrupt vector the PnP
        // manager assigns (IRQL = vector / 16), somewhere in the device range.
        #[allow(clippy::cast_possible_truncation)] // 5..=11
        let dirql = rng.between(5, 11) as u8;

        let mut machine = Self {
            workload: workload.clone(),
            driver,
            log,
            rng,
            now: 0,
            seq: 0,
            heap: BinaryHeap::with_capacity(1024),
            idle_cpus: cpu_count,
            cpus,
            threads,
            ready: VecDeque::new(),
            processes,
            thread_infos,
            irps: Vec::new(),
            free_irps: Vec::new(),
            files: Vec::new(),
            scratch: Vec::new(),
            queues: [Queue::new(), Queue::new(), Queue::new()],
            pending_read: None,
            handover: None,
            interrupt_dpc_queued: false,
            timer_dpc_queued: false,
            edu: EduDevice::default(),
            mode: workload.mode,
            interrupt_connected: false,
            dirql,
            timer_token: 0,
            timer_period_ms: 0,
            work: VecDeque::new(),
            idle_workers,
            app_threads,
            workers_alive,
            app_alive,
            app_files_open: 0,
            demo,
            cursor: 0,
            last_batch_full: false,
            stopping: false,
            finished: false,
            events: Vec::new(),
            info: None,
            requests: RequestCounts::default(),
            handles: HandleCounts::default(),
            checks: AppChecks::default(),
            reply_stats: RingStats::default(),
            progress: Progress {
                requests_done: 0,
                requests_total: workload_requests(workload),
            },
        };
        // Periodic threads start asleep, at staggered times.
        for thread in 0..machine.threads.len() {
            if machine.threads[thread].state == RunState::Sleeping {
                let at = machine.rng.between(0, 2 * MS);
                let token = machine.threads[thread].token;
                machine.schedule(at, Ev::Wake { thread, token });
            }
        }
        // Boot: the I/O manager loads the driver from a System worker thread.
        machine.queue_work(Work::LoadAndAdd);
        machine
    }

    // ---- the event loop -------------------------------------------------------------------------

    pub(crate) fn run(mut self, observer: &mut dyn FnMut(Progress) -> bool) -> Outcome {
        let step = (self.progress.requests_total / 200).max(1);
        let mut next_report = step;
        let mut observing = true;
        let mut last_progress_at = 0;
        let mut last_done = 0;
        self.dispatch_ready();
        while !self.finished {
            let Some(Reverse(due)) = self.heap.pop() else {
                panic!("simulation has nothing left to do before the driver unloaded: a model bug");
            };
            self.now = due.time;
            match due.ev() {
                Ev::Action { thread, token } => self.on_action(thread, token),
                Ev::QuantumEnd { cpu, token } => self.on_quantum_end(cpu, token),
                Ev::Wake { thread, token } => self.on_wake(thread, token),
                Ev::Interrupt => self.on_interrupt(),
                Ev::TimerDue { token } => self.on_timer_due(token),
            }
            self.dispatch_ready();
            if self.progress.requests_done != last_done {
                last_done = self.progress.requests_done;
                last_progress_at = self.now;
            }
            assert!(
                self.now - last_progress_at < 600_000 * MS,
                "simulation made no progress for 10 simulated minutes: a model bug"
            );
            if observing && self.progress.requests_done >= next_report {
                next_report = self.progress.requests_done + step;
                if !observer(self.progress) {
                    observing = false;
                    self.stopping = true;
                }
            }
        }
        if observing {
            observing = observer(self.progress);
        }
        let _ = observing;
        self.outcome()
    }

    fn outcome(self) -> Outcome {
        // After the driver unloaded, what is left in the ring is read out of its memory as a
        // debugger would (the app had closed its handle): nothing is lost from the accounting.
        let mut teardown = Vec::new();
        let ring = self.driver.ring();
        if let Some(mut reader) = ring.reader() {
            let mut chunk = [Event::ZERO; 64];
            loop {
                let got = reader.drain(&mut chunk);
                teardown.extend_from_slice(&chunk[..got]);
                if got < chunk.len() {
                    break;
                }
            }
        }
        let kernel = SimKernel {
            context: ExecContext {
                pid: SYSTEM_PID,
                tid: 0,
                irql: PASSIVE_LEVEL,
                cpu: 0,
            },
            now_ns: self.now,
            log: None,
        };
        let info = self.info.unwrap_or_else(|| self.driver.info(&kernel));
        let mut requests = self.requests;
        requests.pending = requests.issued - requests.completed - requests.cancelled;
        Outcome {
            events: self.events,
            teardown,
            processes: self.processes,
            threads: self.thread_infos,
            info,
            requests,
            handles: self.handles,
            checks: self.checks,
            reply_stats: self.reply_stats,
            ring: ring.stats(),
            interrupt_irql: (self.mode == Mode::Edu).then_some(self.dirql),
            simulated_ns: self.now,
            stopped_early: self.stopping,
        }
    }

    fn schedule(&mut self, time: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse(Due::new(time, self.seq, ev)));
    }

    /// The kernel services as seen on `cpu` now.
    fn kernel(&self, cpu: usize) -> SimKernel<'r> {
        let c = &self.cpus[cpu];
        let thread = &self.threads[c.current];
        SimKernel {
            context: ExecContext {
                pid: thread.pid,
                tid: thread.tid,
                irql: c.irql,
                cpu: u32::try_from(cpu).unwrap_or(u32::MAX),
            },
            now_ns: self.now,
            log: self.log,
        }
    }

    // ---- the dispatcher -------------------------------------------------------------------------

    fn make_ready(&mut self, thread: usize) {
        let t = &mut self.threads[thread];
        debug_assert!(matches!(t.state, RunState::Blocked | RunState::Sleeping));
        t.state = RunState::Ready;
        t.token = t.token.wrapping_add(1);
        self.ready.push_back(thread);
    }

    /// Ends a blocked app thread's wait: it runs again after a little computing (returning from
    /// the wait, looking at the result).
    fn satisfy_wait(&mut self, thread: usize) {
        let think = self.rng.between(10 * US, 300 * US);
        let t = &mut self.threads[thread];
        t.wait = Wait::None;
        t.burst_left = think;
        self.make_ready(thread);
    }

    /// Runs ready threads on idle processors. A woken thread goes to an idle processor chosen
    /// at random (seeded): equal priorities, no ideal processor.
    fn dispatch_ready(&mut self) {
        while self.idle_cpus > 0 {
            let Some(thread) = self.ready.pop_front() else {
                return;
            };
            let mut pick = self.rng.index(self.idle_cpus);
            let mut chosen = 0;
            for (index, cpu) in self.cpus.iter().enumerate() {
                if cpu.is_idle() {
                    if pick == 0 {
                        chosen = index;
                        break;
                    }
                    pick -= 1;
                }
            }
            self.switch_to(chosen, thread);
        }
    }

    fn switch_to(&mut self, cpu: usize, thread: usize) {
        let was_idle = self.cpus[cpu].is_idle();
        if was_idle {
            self.idle_cpus -= 1;
            let idle = self.cpus[cpu].idle_thread;
            self.threads[idle].state = RunState::Ready;
        }
        let now = self.now;
        let c = &mut self.cpus[cpu];
        c.current = thread;
        c.token = c.token.wrapping_add(1);
        let cpu_token = c.token;
        let t = &mut self.threads[thread];
        t.state = RunState::Running(cpu);
        t.run_start = now;
        t.token = t.token.wrapping_add(1);
        let (token, burst) = (t.token, t.burst_left);
        self.schedule(now + burst, Ev::Action { thread, token });
        self.schedule(
            now + QUANTUM_NS,
            Ev::QuantumEnd {
                cpu,
                token: cpu_token,
            },
        );
    }

    /// The processor's thread stopped running: the next ready thread runs, or the idle thread.
    fn vacate(&mut self, cpu: usize) {
        if let Some(next) = self.ready.pop_front() {
            self.switch_to(cpu, next);
        } else {
            let c = &mut self.cpus[cpu];
            c.current = c.idle_thread;
            c.token = c.token.wrapping_add(1);
            let idle = c.idle_thread;
            self.threads[idle].state = RunState::Running(cpu);
            self.idle_cpus += 1;
        }
    }

    fn on_quantum_end(&mut self, cpu: usize, token: u32) {
        if self.cpus[cpu].token != token || self.cpus[cpu].is_idle() {
            return;
        }
        if let Some(next) = self.ready.pop_front() {
            // Round robin: the thread goes to the back of the ready queue with what is left of
            // its burst.
            let current = self.cpus[cpu].current;
            let now = self.now;
            let t = &mut self.threads[current];
            t.burst_left = t.burst_left.saturating_sub(now - t.run_start);
            t.state = RunState::Ready;
            t.token = t.token.wrapping_add(1);
            self.ready.push_back(current);
            self.switch_to(cpu, next);
        } else {
            let c = &mut self.cpus[cpu];
            c.token = c.token.wrapping_add(1);
            let token = c.token;
            self.schedule(self.now + QUANTUM_NS, Ev::QuantumEnd { cpu, token });
        }
    }

    fn on_wake(&mut self, thread: usize, token: u32) {
        let t = &self.threads[thread];
        if t.token == token && t.state == RunState::Sleeping {
            self.make_ready(thread);
        }
    }

    fn on_action(&mut self, thread: usize, token: u32) {
        let t = &self.threads[thread];
        if t.token != token {
            return;
        }
        let RunState::Running(cpu) = t.state else {
            return;
        };
        self.threads[thread].burst_left = 0;
        let step = self.step(thread, cpu);
        let now = self.now;
        let t = &mut self.threads[thread];
        t.token = t.token.wrapping_add(1);
        match step {
            Step::Compute(ns) => {
                t.burst_left = ns;
                t.run_start = now;
                let token = t.token;
                self.schedule(now + ns, Ev::Action { thread, token });
            }
            Step::Block(wait) => {
                t.state = RunState::Blocked;
                t.wait = wait;
                self.vacate(cpu);
            }
            Step::Sleep { ns, then } => {
                t.state = RunState::Sleeping;
                t.burst_left = then;
                let token = t.token;
                self.schedule(now + ns, Ev::Wake { thread, token });
                self.vacate(cpu);
            }
            Step::Exit => {
                t.state = RunState::Exited;
                self.vacate(cpu);
            }
        }
    }

    // ---- interrupts, DPCs and the timer ---------------------------------------------------------

    /// The edu interrupt reaches a processor chosen at random (seeded): under Windows' default
    /// interrupt policy any processor of the machine may take a device's interrupt
    /// (<https://learn.microsoft.com/windows-hardware/drivers/kernel/interrupt-affinity-and-priority>).
    /// The ISR runs at the device's `DIRQL` in whatever thread that processor was running
    /// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdfinterrupt/nc-wdfinterrupt-evt_wdf_interrupt_isr>).
    /// A root-enumerated device has no interrupt resource, so nothing is connected and no ISR
    /// ever runs (KMDF's interruptobject.cpp connects only an assigned resource).
    fn on_interrupt(&mut self) {
        // Level-triggered: taken only while the line is still asserted and connected.
        if !self.interrupt_connected || !self.edu.line_asserted() {
            return;
        }
        let cpu = self.rng.index(self.cpus.len());
        let previous = self.cpus[cpu].irql;
        self.cpus[cpu].irql = self.dirql;
        let status = self.edu.read32(edu::REG_INTERRUPT_STATUS);
        let kernel = self.kernel(cpu);
        match self.driver.interrupt_isr(&kernel, status) {
            IsrDecision::NotOurs => {}
            IsrDecision::Claim { acknowledge, isr } => {
                self.edu.write32(edu::REG_INTERRUPT_ACK, acknowledge);
                // Handed over under the interrupt lock; a second interrupt before the DPC ran
                // adds its status bits.
                self.handover = Some(match self.handover {
                    Some((_, earlier)) => (isr, earlier | acknowledge),
                    None => (isr, acknowledge),
                });
                // WdfInterruptQueueDpcForIsr: KeInsertQueueDpc queues the DPC on the processor
                // that requested it, once
                // (<https://learn.microsoft.com/windows-hardware/drivers/kernel/organization-of-dpc-queues>).
                if !self.interrupt_dpc_queued {
                    self.interrupt_dpc_queued = true;
                    self.cpus[cpu].dpcs.push_back(Dpc::Interrupt);
                }
            }
        }
        self.lower_irql(cpu, previous);
    }

    /// The WDF timer is due: its DPC is queued on a processor chosen at random (seeded). The
    /// timer is a kernel timer with a DPC
    /// (<https://learn.microsoft.com/windows-hardware/drivers/kernel/timer-objects-and-dpcs>); which
    /// processor expires it is not documented, so the model does not pretend to know.
    fn on_timer_due(&mut self, token: u32) {
        if token != self.timer_token || self.timer_dpc_queued {
            return;
        }
        let cpu = self.rng.index(self.cpus.len());
        self.timer_dpc_queued = true;
        self.cpus[cpu].dpcs.push_back(Dpc::Timer);
        let previous = self.cpus[cpu].irql;
        self.lower_irql(cpu, previous);
    }

    /// Lowers the processor's IRQL to `to`; when it drops below `DISPATCH_LEVEL` the processor
    /// drains its DPC queue at `DISPATCH_LEVEL`, in the thread it was running
    /// (<https://learn.microsoft.com/windows-hardware/drivers/kernel/introduction-to-dpcs>).
    fn lower_irql(&mut self, cpu: usize, to: u8) {
        self.cpus[cpu].irql = to;
        if to >= DISPATCH_LEVEL {
            return;
        }
        while let Some(dpc) = self.cpus[cpu].dpcs.pop_front() {
            self.cpus[cpu].irql = DISPATCH_LEVEL;
            match dpc {
                Dpc::Interrupt => self.interrupt_dpc(cpu),
                Dpc::Timer => self.timer_dpc(cpu),
            }
            self.cpus[cpu].irql = to;
        }
    }

    /// `EvtInterruptDpc`: completes the pending read, if it wins it from the cancel routine.
    fn interrupt_dpc(&mut self, cpu: usize) {
        self.interrupt_dpc_queued = false;
        let isr = self.handover.take();
        let read = self.pending_read.take();
        let kernel = self.kernel(cpu);
        let driver = self.driver;
        let completion = match read {
            Some(slot) => {
                let irp = &mut self.irps[slot];
                let out_len = irp.out_len;
                let (state, buffer) = (irp.state.as_mut(), &mut irp.out[..out_len]);
                let state = state.expect("a presented request has its state");
                driver.interrupt_dpc(&kernel, isr, Some(ReadToComplete { state, buffer }))
            }
            None => driver.interrupt_dpc(&kernel, isr, None),
        };
        if let (Some(slot), Some(completion)) = (read, completion) {
            self.complete(slot, completion, cpu);
        }
    }

    /// `EvtTimerFunc`, then the timer is re-armed (one-shot `WdfTimerStart`).
    fn timer_dpc(&mut self, cpu: usize) {
        self.timer_dpc_queued = false;
        let driver = self.driver;
        let read = if driver.timer_completes_reads() {
            self.pending_read.take()
        } else {
            None
        };
        let kernel = self.kernel(cpu);
        let (decision, completion) = match read {
            Some(slot) => {
                let irp = &mut self.irps[slot];
                let out_len = irp.out_len;
                let (state, buffer) = (irp.state.as_mut(), &mut irp.out[..out_len]);
                let state = state.expect("a presented request has its state");
                driver.timer(&kernel, Some(ReadToComplete { state, buffer }))
            }
            None => driver.timer(&kernel, None),
        };
        self.start_timer(decision.rearm_ms);
        if let (Some(slot), Some(completion)) = (read, completion) {
            self.complete(slot, completion, cpu);
        }
    }

    fn start_timer(&mut self, period_ms: u32) {
        self.timer_token = self.timer_token.wrapping_add(1);
        self.timer_period_ms = period_ms;
        let token = self.timer_token;
        self.schedule(self.now + u64::from(period_ms) * MS, Ev::TimerDue { token });
    }

    // ---- System worker threads ------------------------------------------------------------------

    /// Queues a work item; an idle System worker thread wakes for it
    /// (<https://learn.microsoft.com/windows-hardware/drivers/kernel/system-worker-threads>).
    fn queue_work(&mut self, work: Work) {
        self.work.push_back(work);
        if let Some(worker) = self.idle_workers.pop() {
            self.threads[worker].burst_left = 0;
            self.make_ready(worker);
        }
    }

    fn system_worker_step(&mut self, thread: usize, cpu: usize) -> Step {
        let Some(work) = self.work.pop_front() else {
            self.idle_workers.push(thread);
            return Step::Block(Wait::None);
        };
        let driver = self.driver;
        let kernel = self.kernel(cpu);
        match work {
            Work::LoadAndAdd => {
                // DriverEntry: the I/O manager, in a System thread
                // (<https://learn.microsoft.com/windows-hardware/drivers/kernel/writing-a-driverentry-routine>);
                // EvtDriverDeviceAdd: the PnP manager, in a System thread
                // (<https://learn.microsoft.com/windows-hardware/drivers/kernel/adddevice-routines-in-function-or-filter-drivers>).
                driver.driver_entry(&kernel);
                let setup = driver.device_add(&kernel);
                self.queues[QueueId::Read as usize].dispatch = setup.read_queue;
                self.queues[QueueId::Write as usize].dispatch = setup.write_queue;
                self.queues[QueueId::Control as usize].dispatch = setup.control_queue;
                // The framework's PnP state machine goes on with the start, possibly in another
                // System thread.
                self.queue_work(Work::Start);
            }
            Work::Start => self.start_device(&kernel),
            Work::Close(file) => {
                // IRP_MJ_CLOSE, sent when the file object's last reference went: EvtFileClose at
                // PASSIVE_LEVEL in an arbitrary thread
                // (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdffileobject/nc-wdffileobject-evt_wdf_file_close>).
                self.close_file(file, &kernel);
            }
            Work::Remove => {
                // EvtDeviceD0Exit, then the framework disconnects the interrupt and stops the
                // timer (WdfTimerStop with Wait), then EvtDeviceReleaseHardware; the I/O manager
                // then unloads the driver (EvtDriverUnload), all in System threads at PASSIVE.
                driver.d0_exit(&kernel, WDF_POWER_DEVICE_D3_FINAL);
                self.timer_token = self.timer_token.wrapping_add(1);
                self.interrupt_connected = false;
                driver.release_hardware(&kernel);
                driver.driver_unload(&kernel);
                self.finished = true;
            }
        }
        Step::Compute(WORK_ITEM_NS)
    }

    /// `EvtDevicePrepareHardware` with the resources of the mode, then `EvtDeviceD0Entry`, then the
    /// framework connects the interrupt (if there is one) and the driver starts its timer.
    fn start_device(&mut self, kernel: &SimKernel<'r>) {
        let driver = self.driver;
        let hardware = match self.mode {
            Mode::Edu => Hardware::Edu {
                registers: &mut self.edu,
                bar0_len: BAR0_LEN,
                has_interrupt: true,
            },
            _ => Hardware::None,
        };
        let mode = driver.prepare_hardware(kernel, hardware);
        assert_eq!(
            mode,
            Ok(self.mode),
            "the simulated hardware must pass the driver's checks"
        );
        let timer = driver.d0_entry(kernel, WDF_POWER_DEVICE_D3_FINAL);
        self.interrupt_connected = self.mode == Mode::Edu;
        self.start_timer(timer.rearm_ms);
        // The device interface is enabled: the app's threads start, at staggered moments.
        for index in 0..self.app_threads.len() {
            let thread = self.app_threads[index];
            let start = self.rng.between(10 * US, 200 * US);
            let t = &mut self.threads[thread];
            t.wait = Wait::None;
            t.burst_left = start;
            self.make_ready(thread);
        }
    }

    fn close_file(&mut self, file: usize, kernel: &SimKernel<'r>) {
        let f = &mut self.files[file];
        debug_assert!(!f.closed, "a file object is closed once");
        f.closed = true;
        self.driver.file_close(kernel, &f.state, f.closer);
        self.handles.closed += 1;
        if f.app {
            self.app_files_open -= 1;
        }
    }

    // ---- threads' programs ----------------------------------------------------------------------

    fn step(&mut self, thread: usize, cpu: usize) -> Step {
        match self.threads[thread].program {
            Program::Idle => Step::Block(Wait::None),
            Program::SystemWorker => self.system_worker_step(thread, cpu),
            Program::Periodic { compute, sleep } => {
                let ns = self.rng.between(sleep.0, sleep.1);
                let then = self.rng.between(compute.0, compute.1);
                Step::Sleep { ns, then }
            }
            Program::Worker(phase) => self.worker_step(thread, cpu, phase),
            Program::Collector(phase) => self.collector_step(thread, cpu, phase),
            Program::Demo(phase) => self.demo_step(thread, cpu, phase),
        }
    }

    fn think(&mut self) -> u64 {
        self.rng.between(10 * US, 300 * US)
    }

    fn set_program(&mut self, thread: usize, program: Program) {
        self.threads[thread].program = program;
    }

    fn worker_step(&mut self, thread: usize, cpu: usize, phase: WorkerPhase) -> Step {
        match phase {
            WorkerPhase::Open => {
                let file = self.open(thread, cpu, true);
                self.threads[thread].file = Some(file);
                self.set_program(thread, Program::Worker(WorkerPhase::Ops));
                Step::Compute(self.think())
            }
            WorkerPhase::Ops => {
                let t = &self.threads[thread];
                let left: u32 = t.ops_left.iter().sum();
                if left == 0 || self.stopping {
                    self.set_program(thread, Program::Worker(WorkerPhase::Close));
                    if self.threads[thread].outstanding > 0 {
                        return Step::Block(Wait::All);
                    }
                    return self.worker_step(thread, cpu, WorkerPhase::Close);
                }
                let mut pick = self.rng.below(u64::from(left));
                let mut which = 0;
                for (index, &count) in t.ops_left.iter().enumerate() {
                    if pick < u64::from(count) {
                        which = index;
                        break;
                    }
                    pick -= u64::from(count);
                }
                let op = Op::WORKLOAD[which];
                let overlapped = self.workload.overlapped;
                let file = t.file.expect("a worker opens its handle first");
                if op == Op::Read && overlapped > 1 {
                    if t.outstanding_reads >= overlapped {
                        return Step::Block(Wait::AnyRead);
                    }
                    self.threads[thread].ops_left[which] -= 1;
                    self.issue(thread, cpu, op, file, true);
                    return Step::Compute(self.rng.between(2 * US, 20 * US));
                }
                self.threads[thread].ops_left[which] -= 1;
                let (slot, done) = self.issue(thread, cpu, op, file, true);
                if done {
                    Step::Compute(self.think())
                } else {
                    Step::Block(Wait::Request(slot))
                }
            }
            WorkerPhase::Close => {
                let file = self.threads[thread].file.take().expect("open handle");
                self.close_handle(thread, cpu, file);
                self.exit_app_thread(thread, cpu);
                self.workers_alive -= 1;
                if self.workers_alive == 0
                    && let Some(demo) = self.demo
                {
                    self.satisfy_wait(demo);
                }
                Step::Exit
            }
        }
    }

    fn collector_step(&mut self, thread: usize, cpu: usize, phase: CollectorPhase) -> Step {
        match phase {
            CollectorPhase::Open => {
                let file = self.open(thread, cpu, false);
                self.threads[thread].file = Some(file);
                self.set_program(thread, Program::Collector(CollectorPhase::Configure));
                Step::Compute(self.think())
            }
            CollectorPhase::Configure => {
                // ctxctl sets the timer period it was asked for.
                self.set_program(thread, Program::Collector(CollectorPhase::Drain));
                let file = self.threads[thread].file.expect("open handle");
                let (slot, done) = self.issue(thread, cpu, Op::Configure, file, false);
                if done {
                    Step::Compute(self.think())
                } else {
                    Step::Block(Wait::Request(slot))
                }
            }
            CollectorPhase::Drain | CollectorPhase::FinalDrain => {
                let file = self.threads[thread].file.expect("open handle");
                if !self.last_batch_full {
                    // The ring is drained: sleep, or finish once the app's work is all done.
                    if phase == CollectorPhase::FinalDrain {
                        self.set_program(thread, Program::Collector(CollectorPhase::Close));
                        return Step::Compute(self.think());
                    }
                    if self.app_alive == 0 && self.app_files_open == 0 {
                        self.set_program(thread, Program::Collector(CollectorPhase::FinalInfo));
                        return Step::Compute(self.think());
                    }
                    self.last_batch_full = true;
                    let think = self.think();
                    return Step::Sleep {
                        ns: DRAIN_INTERVAL_NS,
                        then: think,
                    };
                }
                let (slot, done) = self.issue(thread, cpu, Op::GetEvents, file, false);
                if done {
                    Step::Compute(self.rng.between(5 * US, 20 * US))
                } else {
                    Step::Block(Wait::Request(slot))
                }
            }
            CollectorPhase::FinalInfo => {
                let file = self.threads[thread].file.expect("open handle");
                self.set_program(thread, Program::Collector(CollectorPhase::FinalDrain));
                self.last_batch_full = true;
                let (slot, done) = self.issue(thread, cpu, Op::GetInfo, file, false);
                if done {
                    Step::Compute(self.think())
                } else {
                    Step::Block(Wait::Request(slot))
                }
            }
            CollectorPhase::Close => {
                let file = self.threads[thread].file.take().expect("open handle");
                self.close_handle(thread, cpu, file);
                // The app is gone; PnP removes the device and the driver unloads.
                self.queue_work(Work::Remove);
                Step::Exit
            }
        }
    }

    fn demo_step(&mut self, thread: usize, cpu: usize, phase: DemoPhase) -> Step {
        if self.stopping && phase != DemoPhase::WaitReads {
            self.exit_app_thread(thread, cpu);
            return Step::Exit;
        }
        match phase {
            DemoPhase::CloseWithReads => {
                // Two overlapped reads on a fresh handle: the queue is idle (the workers are
                // done), so the first is presented at once and stays in the driver; the second
                // waits in the queue. Then CloseHandle with both outstanding.
                let file = self.open(thread, cpu, true);
                self.issue(thread, cpu, Op::Read, file, true);
                self.issue(thread, cpu, Op::Read, file, true);
                self.close_handle(thread, cpu, file);
                self.set_program(thread, Program::Demo(DemoPhase::WaitReads));
                if self.threads[thread].outstanding > 0 {
                    Step::Block(Wait::All)
                } else {
                    Step::Compute(self.think())
                }
            }
            DemoPhase::WaitReads => {
                if self.stopping {
                    self.exit_app_thread(thread, cpu);
                    return Step::Exit;
                }
                self.set_program(thread, Program::Demo(DemoPhase::ExitWithRead));
                Step::Compute(self.think())
            }
            DemoPhase::ExitWithRead => {
                let file = self.open(thread, cpu, true);
                self.issue(thread, cpu, Op::Read, file, true);
                self.close_handle(thread, cpu, file);
                self.exit_app_thread(thread, cpu);
                Step::Exit
            }
        }
    }

    /// The thread ends. The I/O manager cancels the IRPs it still has outstanding
    /// (`IoCancelIrp` on each; <https://learn.microsoft.com/windows-hardware/drivers/kernel/canceling-irps>:
    /// an IRP is cancelled when the thread that issued it exits).
    fn exit_app_thread(&mut self, thread: usize, cpu: usize) {
        if self.threads[thread].outstanding > 0 {
            self.scratch.clear();
            for (slot, irp) in self.irps.iter().enumerate() {
                if irp.live && irp.thread == thread {
                    self.scratch.push(slot);
                }
            }
            let slots = core::mem::take(&mut self.scratch);
            for &slot in &slots {
                self.cancel_irp(slot, cpu);
            }
            self.scratch = slots;
        }
        self.app_alive -= 1;
    }

    /// `IoCancelIrp`: a request the driver holds as its cancelable pending read goes to its
    /// cancel routine (`EvtRequestCancel`, called at `DISPATCH_LEVEL` in the canceller's thread:
    /// <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdfrequest/nc-wdfrequest-evt_wdf_request_cancel>);
    /// one still waiting in a queue is completed by the framework with `STATUS_CANCELLED`.
    fn cancel_irp(&mut self, slot: usize, cpu: usize) {
        if !self.irps[slot].live {
            return;
        }
        if self.pending_read == Some(slot) {
            self.pending_read = None;
            let previous = self.cpus[cpu].irql;
            self.cpus[cpu].irql = DISPATCH_LEVEL;
            let completion = self.driver.read_cancelled();
            self.complete(slot, completion, cpu);
            self.lower_irql(cpu, previous);
        } else if let Some(queue) = self.irps[slot].queue
            && !self.irps[slot].presented
        {
            self.queues[queue as usize].waiting.retain(|&s| s != slot);
            self.finish_irp(slot, Completion::failed(STATUS_CANCELLED));
        }
    }

    // ---- the I/O manager and the framework ------------------------------------------------------

    /// `CreateFile`: `IRP_MJ_CREATE`, and `EvtDeviceFileCreate` synchronously in the opening thread
    /// at `PASSIVE_LEVEL`
    /// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_file_create>).
    fn open(&mut self, thread: usize, cpu: usize, app: bool) -> usize {
        let kernel = self.kernel(cpu);
        let request = SimRequest {
            slot: u32::MAX,
            thread: Some(self.threads[thread].requestor()),
        };
        let (state, completion) = self.driver.file_create(&kernel, request);
        debug_assert_eq!(completion.status, 0);
        self.handles.opened += 1;
        if app {
            self.app_files_open += 1;
        }
        self.files.push(File {
            closer: None,
            state,
            refs: 1,
            app,
            closed: false,
        });
        self.files.len() - 1
    }

    /// `CloseHandle` on the last handle: `IRP_MJ_CLEANUP`, whose `EvtFileCleanup` runs in the closing
    /// thread
    /// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdffileobject/nc-wdffileobject-evt_wdf_file_cleanup>);
    /// then KMDF cancels the file object's requests still waiting in its queues, but not those
    /// the driver holds (fxpkggeneral.cpp, `FxPkgGeneral::OnCleanup` →
    /// `FxIoQueue::FlushByFileObject`). Then the handle's reference goes: if it was the last,
    /// `IRP_MJ_CLOSE` follows at once in this thread; otherwise the last IRP to complete releases
    /// the file object.
    fn close_handle(&mut self, thread: usize, cpu: usize, file: usize) {
        let kernel = self.kernel(cpu);
        let closer = Some(self.threads[thread].requestor());
        self.driver
            .file_cleanup(&kernel, &self.files[file].state, closer);
        self.files[file].closer = closer;
        self.handles.cleaned_up += 1;
        for queue in [QueueId::Read, QueueId::Write, QueueId::Control] {
            self.scratch.clear();
            let irps = &self.irps;
            let scratch = &mut self.scratch;
            self.queues[queue as usize].waiting.retain(|&slot| {
                let flush = irps[slot].file == file;
                if flush {
                    scratch.push(slot);
                }
                !flush
            });
            let slots = core::mem::take(&mut self.scratch);
            for &slot in &slots {
                self.finish_irp(slot, Completion::failed(STATUS_CANCELLED));
            }
            self.scratch = slots;
            self.dispatch_queue(queue, cpu);
        }
        let f = &mut self.files[file];
        f.refs -= 1;
        if f.refs == 0 {
            // ObDereferenceObject at PASSIVE_LEVEL: the object is deleted synchronously.
            self.close_file(file, &kernel);
        }
    }

    fn alloc_irp(&mut self) -> usize {
        if let Some(slot) = self.free_irps.pop() {
            slot
        } else {
            self.irps.push(Irp::empty());
            self.irps.len() - 1
        }
    }

    /// Builds and sends one IRP from `thread`; returns its slot and whether it completed before
    /// the call returned.
    #[allow(clippy::too_many_lines)] // one arm per kind of request
    fn issue(
        &mut self,
        thread: usize,
        cpu: usize,
        op: Op,
        file: usize,
        workload: bool,
    ) -> (usize, bool) {
        let slot = self.alloc_irp();
        let requestor = self.threads[thread].requestor();
        let write_length = self.rng.index(4096) + 1;
        let neither_input = self.rng.index(257);
        let irp = &mut self.irps[slot];
        irp.live = true;
        irp.generation = irp.generation.wrapping_add(1);
        let generation = irp.generation;
        irp.thread = thread;
        irp.requestor = requestor;
        irp.file = file;
        irp.op = op;
        irp.state = None;
        irp.queue = None;
        irp.presented = false;
        irp.workload = workload;
        let kind = match op {
            Op::Read => {
                irp.out_len = ReadReceipt::SIZE;
                irp.input_len = 0;
                IoKind::Read {
                    length: ReadReceipt::SIZE,
                }
            }
            Op::Write => {
                irp.out_len = 0;
                irp.input_len = write_length;
                IoKind::Write {
                    length: write_length,
                }
            }
            Op::GetInfo => {
                irp.out_len = InfoReply::SIZE;
                irp.input_len = 0;
                ioctl_kind(Ioctl::GetInfo, 0, InfoReply::SIZE)
            }
            Op::GetEvents => {
                irp.out_len = GET_EVENTS_OUTPUT;
                irp.input_len = GetEventsRequest::SIZE;
                ioctl_kind(Ioctl::GetEvents, GetEventsRequest::SIZE, GET_EVENTS_OUTPUT)
            }
            Op::Configure => {
                irp.out_len = 0;
                irp.input_len = ConfigureRequest::SIZE;
                ioctl_kind(Ioctl::Configure, ConfigureRequest::SIZE, 0)
            }
            Op::Neither => {
                irp.out_len = NeitherDemoReply::SIZE;
                irp.input_len = neither_input;
                ioctl_kind(Ioctl::NeitherDemo, neither_input, NeitherDemoReply::SIZE)
            }
        };
        if irp.out.len() < irp.out_len {
            irp.out.resize(irp.out_len);
        }
        if irp.input.len() < irp.input_len.max(GetEventsRequest::SIZE) {
            irp.input.resize(
                irp.input_len
                    .max(ConfigureRequest::SIZE.max(GetEventsRequest::SIZE)),
            );
        }
        match op {
            Op::GetEvents => {
                let request = GetEventsRequest {
                    cursor: self.cursor,
                };
                let irp = &mut self.irps[slot];
                request
                    .encode(&mut irp.input)
                    .expect("the input buffer holds a GetEventsRequest");
            }
            Op::Configure => {
                // Lines nobody captures are not worth printing: a quiet ctxctl turns the
                // driver's debugger output off (events are recorded whatever the level).
                let request = ConfigureRequest {
                    timer_period_ms: self.workload.timer_period_ms,
                    log_level: if self.workload.capture_log {
                        LogLevel::Every
                    } else {
                        LogLevel::Off
                    },
                };
                let irp = &mut self.irps[slot];
                request
                    .encode(&mut irp.input)
                    .expect("the input buffer holds a ConfigureRequest");
            }
            Op::Neither => {
                for index in 0..neither_input {
                    let byte = self.rng.byte();
                    self.irps[slot].input[index] = byte;
                }
            }
            _ => {}
        }

        self.requests.issued += 1;
        self.files[file].refs += 1;
        let t = &mut self.threads[thread];
        t.outstanding += 1;
        if op == Op::Read {
            t.outstanding_reads += 1;
        }

        // EvtIoInCallerContext, in the requesting thread at its IRQL
        // (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_io_in_caller_context>).
        let kernel = self.kernel(cpu);
        let request = SimRequest {
            slot: u32::try_from(slot).unwrap_or(u32::MAX),
            thread: Some(requestor),
        };
        let driver = self.driver;
        let (mut state, decision) =
            driver.in_caller_context(&kernel, request, &self.files[file].state, kind);
        let decision = match decision {
            CallerDecision::ProbeAndLock { .. } => {
                // WdfRequestRetrieveUnsafeUser*Buffer and WdfRequestProbeAndLockUserBufferFor*:
                // the simulated app's buffers are always valid user memory, so locking succeeds
                // and the locked pages stay the app's buffers
                // (<https://learn.microsoft.com/windows-hardware/drivers/wdf/accessing-data-buffers-in-wdf-drivers>).
                driver.neither_buffers_locked(&mut state, Ok(()))
            }
            other => other,
        };
        self.irps[slot].state = Some(state);
        match decision {
            // WdfDeviceEnqueueRequest: presented at once, nested in this call, if the queue can
            // take it: fxpkgio.cpp `FxPkgIo::EnqueueRequest` → fxioqueue.cpp
            // `FxIoQueue::QueueRequestFromForward` → `DispatchEvents` (the request came from the
            // I/O manager, so it is dispatched at once, never deferred).
            CallerDecision::Enqueue => self.enqueue(slot, cpu),
            CallerDecision::Complete(completion) => self.complete(slot, completion, cpu),
            CallerDecision::ProbeAndLock { .. } => {
                unreachable!("neither_buffers_locked decides Enqueue or Complete")
            }
        }
        let irp = &self.irps[slot];
        (slot, !irp.live || irp.generation != generation)
    }

    fn enqueue(&mut self, slot: usize, cpu: usize) {
        let queue = match self.irps[slot].op {
            Op::Read => QueueId::Read,
            Op::Write => QueueId::Write,
            _ => QueueId::Control,
        };
        self.irps[slot].queue = Some(queue);
        self.queues[queue as usize].waiting.push_back(slot);
        self.dispatch_queue(queue, cpu);
    }

    /// `FxIoQueue::DispatchEvents` (fxioqueue.cpp): oldest request first; a sequential queue
    /// presents nothing while the driver owns one of its requests; a parallel queue presents
    /// everything. Presentation happens in the calling context: the requesting thread for a new
    /// request, the completing context (a DPC, the timer) for the next one.
    fn dispatch_queue(&mut self, queue: QueueId, cpu: usize) {
        let q = queue as usize;
        self.queues[q].dispatching += 1;
        loop {
            let entry = &mut self.queues[q];
            if entry.dispatch == QueueDispatch::Sequential && entry.driver_owned > 0 {
                break;
            }
            let Some(slot) = entry.waiting.pop_front() else {
                break;
            };
            entry.driver_owned += 1;
            self.irps[slot].presented = true;
            self.present(slot, cpu);
        }
        self.queues[q].dispatching -= 1;
    }

    /// Presents a request to the driver's queue callback (request handlers run in an arbitrary
    /// thread context: <https://learn.microsoft.com/windows-hardware/drivers/wdf/request-handlers>).
    fn present(&mut self, slot: usize, cpu: usize) {
        let kernel = self.kernel(cpu);
        let driver = self.driver;
        let irp = &mut self.irps[slot];
        let out_len = irp.out_len;
        let input_len = irp.input_len;
        let state = irp.state.as_mut().expect("EvtIoInCallerContext ran first");
        let completion = match irp.op {
            Op::Read => match driver.io_read(&kernel, state, out_len) {
                ReadDecision::RaiseInterrupt { value } => {
                    // Marked cancelable and kept as the pending read; the raise register makes
                    // the device interrupt.
                    debug_assert!(self.pending_read.is_none());
                    self.pending_read = Some(slot);
                    self.edu.write32(edu::REG_INTERRUPT_RAISE, value);
                    if self.edu.take_assertion() {
                        let latency = u64::from(self.workload.interrupt_latency_us) * US;
                        self.schedule(self.now + latency, Ev::Interrupt);
                    }
                    None
                }
                ReadDecision::WaitForTimer => {
                    debug_assert!(self.pending_read.is_none());
                    self.pending_read = Some(slot);
                    None
                }
                ReadDecision::Complete(completion) => Some(completion),
            },
            Op::Write => Some(driver.io_write(&kernel, state, input_len)),
            Op::Neither => {
                // The simulated user process does not touch its buffers while the request is
                // in flight, so they are private bytes here.
                let buffers = NeitherBuffers {
                    input: &PrivateBytes(&irp.input[..input_len]),
                    output: &mut PrivateBytesMut(&mut irp.out[..out_len]),
                };
                let code = Ioctl::NeitherDemo.code();
                Some(driver.io_device_control(
                    &kernel,
                    state,
                    code,
                    BufferedInput::Copied(&[]),
                    &mut [],
                    Some(buffers),
                ))
            }
            Op::GetInfo | Op::GetEvents | Op::Configure => {
                let code = match irp.op {
                    Op::GetInfo => Ioctl::GetInfo,
                    Op::GetEvents => Ioctl::GetEvents,
                    _ => Ioctl::Configure,
                }
                .code();
                // The glue copies the buffered input out of the system buffer (which the output
                // shares) into an aligned local buffer first.
                let mut local = [0u8; MAX_BUFFERED_INPUT];
                let input = if input_len <= MAX_BUFFERED_INPUT {
                    local[..input_len].copy_from_slice(&irp.input[..input_len]);
                    BufferedInput::Copied(&local[..input_len])
                } else {
                    BufferedInput::TooLong(input_len)
                };
                Some(driver.io_device_control(
                    &kernel,
                    state,
                    code,
                    input,
                    &mut irp.out[..out_len],
                    None,
                ))
            }
        };
        if let Some(completion) = completion {
            self.complete(slot, completion, cpu);
        }
    }

    /// `WdfRequestCompleteWithInformation`: the framework takes the request off its queue's
    /// driver-owned list, completes the IRP, then lets the queue present its next request in
    /// this same context unless a presentation loop is already running higher on the stack
    /// (fxrequest.cpp `FxRequest::CompleteInternal`; fxioqueue.hpp
    /// `RequestCompletedCallback` → `DispatchInternalEvents`).
    fn complete(&mut self, slot: usize, completion: Completion, cpu: usize) {
        let queue = self.irps[slot].queue;
        let presented = self.irps[slot].presented;
        if let (Some(queue), true) = (queue, presented) {
            self.queues[queue as usize].driver_owned -= 1;
        }
        self.finish_irp(slot, completion);
        if let (Some(queue), true) = (queue, presented)
            && self.queues[queue as usize].dispatching == 0
        {
            self.dispatch_queue(queue, cpu);
        }
    }

    /// The I/O manager completes the IRP: the app's wait ends (and it looks at the result), and
    /// the IRP's reference on the file object goes. When that was the last reference the object
    /// is deleted in a System worker thread (`ObDereferenceObjectDeferDelete`:
    /// <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-obdereferenceobjectdeferdelete>),
    /// which sends `IRP_MJ_CLOSE`.
    fn finish_irp(&mut self, slot: usize, completion: Completion) {
        self.check_result(slot, completion);
        let irp = &mut self.irps[slot];
        irp.live = false;
        let (thread, file, op, workload) = (irp.thread, irp.file, irp.op, irp.workload);
        self.free_irps.push(slot);
        if completion.status == STATUS_CANCELLED {
            self.requests.cancelled += 1;
        } else {
            self.requests.completed += 1;
            if completion.status < 0 {
                self.requests.failed += 1;
            }
        }
        if workload {
            self.progress.requests_done += 1;
        }
        let t = &mut self.threads[thread];
        t.outstanding -= 1;
        if op == Op::Read {
            t.outstanding_reads -= 1;
        }
        if t.state == RunState::Blocked {
            let satisfied = match t.wait {
                Wait::Request(waited) => waited == slot,
                Wait::AnyRead => op == Op::Read,
                Wait::All => t.outstanding == 0,
                Wait::None | Wait::DeviceStart | Wait::Workers => false,
            };
            if satisfied {
                self.satisfy_wait(thread);
            }
        }
        let f = &mut self.files[file];
        f.refs -= 1;
        if f.refs == 0 {
            self.queue_work(Work::Close(file));
        }
    }

    /// What `ctxctl` does with each reply: decode and check it.
    fn check_result(&mut self, slot: usize, completion: Completion) {
        let irp = &self.irps[slot];
        if completion.status != 0 {
            return;
        }
        let reply = &irp.out[..completion.information.min(irp.out.len())];
        match irp.op {
            Op::Read => {
                let state = irp.state.as_ref();
                let ok = ReadReceipt::decode(reply).is_ok_and(|receipt| {
                    let consistent = state.is_some_and(|s| s.id == receipt.request_id)
                        && receipt.requestor_pid == irp.requestor.pid
                        && receipt.requestor_tid == irp.requestor.tid
                        && receipt.mode == self.mode;
                    if consistent {
                        match receipt.completed_by {
                            CompletedBy::InterruptDpc => {
                                self.checks.completed_by_interrupt_dpc += 1;
                            }
                            CompletedBy::TimerDpc => self.checks.completed_by_timer_dpc += 1,
                            CompletedBy::Cancelled | CompletedBy::ReadHandler => {}
                        }
                        if receipt.entry(TrailSlot::Isr).is_some() {
                            self.checks.receipts_with_isr += 1;
                        }
                    }
                    consistent
                });
                if ok {
                    self.checks.receipts += 1;
                } else {
                    self.checks.receipts_invalid += 1;
                }
            }
            Op::Neither => {
                let input = &irp.input[..irp.input_len];
                let state = irp.state.as_ref();
                let ok = NeitherDemoReply::decode(reply).is_ok_and(|demo| {
                    demo.locked_by_pid == irp.requestor.pid
                        && demo.locked_by_tid == irp.requestor.tid
                        && demo.input_len as usize == input.len()
                        && demo.input_checksum == checksum(input)
                        && state.is_some_and(|s| s.neither_locked)
                });
                if ok {
                    self.checks.neither += 1;
                } else {
                    self.checks.neither_invalid += 1;
                }
            }
            Op::GetInfo => match InfoReply::decode(reply) {
                Ok(info) if info.mode == self.mode => {
                    self.checks.info_replies += 1;
                    if !irp.workload {
                        self.info = Some(info);
                    }
                }
                _ => self.checks.info_invalid += 1,
            },
            Op::GetEvents => {
                if let Ok(batch) = GetEventsReply::decode(reply) {
                    self.checks.get_events += 1;
                    if batch.header.check_cursor(self.cursor) != CursorCheck::InStep {
                        self.checks.cursor_gaps += 1;
                    }
                    self.cursor = batch.header.next_cursor;
                    self.reply_stats = batch.header.stats;
                    self.last_batch_full = batch.len() == GetEventsReply::MAX_EVENTS;
                    self.events.extend(batch.events());
                } else {
                    self.checks.get_events_invalid += 1;
                    self.last_batch_full = false;
                }
            }
            Op::Write | Op::Configure => {}
        }
    }
}

const fn ioctl_kind(ioctl: Ioctl, input_length: usize, output_length: usize) -> IoKind {
    IoKind::DeviceControl {
        code: ioctl.code(),
        input_length,
        output_length,
    }
}
