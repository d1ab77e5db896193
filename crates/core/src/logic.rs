//! Each callback's logic, written against [`Kernel`]: what it records, logs and decides.
//!
//! The driver's Windows glue (`src/` of the `ctxscope` package) gathers raw facts through wdk-sys,
//! calls the function for the callback that is running, and carries out the decision it returns
//! (enqueue, pend, complete with a status, write a register, arm the timer). The simulator calls
//! the same functions from its model of KMDF. Nothing here blocks, allocates or takes a lock, so
//! every function may run at the IRQL of the callback that calls it, DIRQL included.
//!
//! What the `detail` field of each event holds:
//!
//! | callback | detail |
//! |---|---|
//! | `EvtDevicePrepareHardware` | the mode chosen (`Mode as u8`), or the failing NTSTATUS as `u32` with bit 32 set |
//! | `EvtDeviceD0Entry` | the previous `WDF_POWER_DEVICE_STATE` |
//! | `EvtDeviceD0Exit` | the target `WDF_POWER_DEVICE_STATE` |
//! | `EvtIoInCallerContext` | the request: `IoKind::code` |
//! | `EvtIoRead` | bytes requested |
//! | `EvtIoWrite` | bytes written |
//! | `EvtIoDeviceControl` | the I/O control code |
//! | `EvtTimerFunc` | the tick number (1 for the first tick) |
//! | `EvtInterruptIsr` | the edu interrupt-status register (0: the interrupt was not ours) |
//! | `EvtInterruptDpc` | the interrupt status the ISR acknowledged (0 if none was handed over) |
//! | others | 0 |

use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use crate::event::{Event, ExecContext, Requestor};
use crate::kind::CallbackKind;
use crate::logline::{self, LineBuf};
use crate::protocol::{
    AlignedBuf, CompletedBy, ConfigureRequest, DriverCounters, DriverVersion, EventsReplyHeader,
    GetEventsReply, GetEventsRequest, InfoReply, Ioctl, LogLevel, Mode, NeitherDemoReply,
    ReadReceipt, ResetReply, TrailEntry, TrailSlot, checksum_of, events_reply_capacity,
};
use crate::ring::EventRing;

pub use crate::protocol::ntstatus as status;

/// NTSTATUS values the logic decides besides the protocol's.
pub mod more_status {
    /// `STATUS_DEVICE_BUSY`: another reader holds the event ring.
    pub const STATUS_DEVICE_BUSY: i32 = 0x8000_0011_u32.cast_signed();
    /// `STATUS_CANCELLED`.
    pub const STATUS_CANCELLED: i32 = 0xC000_0120_u32.cast_signed();
    /// `STATUS_DEVICE_NOT_READY`: the device has not started.
    pub const STATUS_DEVICE_NOT_READY: i32 = 0xC000_00A3_u32.cast_signed();
    /// `STATUS_DEVICE_CONFIGURATION_ERROR`: the hardware is not the edu device it claims to be.
    pub const STATUS_DEVICE_CONFIGURATION_ERROR: i32 = 0xC000_0182_u32.cast_signed();
}
use more_status::{
    STATUS_CANCELLED, STATUS_DEVICE_BUSY, STATUS_DEVICE_CONFIGURATION_ERROR,
    STATUS_DEVICE_NOT_READY,
};
use status::{
    STATUS_BUFFER_TOO_SMALL, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER,
    STATUS_SUCCESS,
};

/// Lanes of the driver's event ring: one per CPU for up to 8 CPUs (more CPUs share lanes).
pub const DRIVER_RING_LANES: usize = 8;
/// Slots per lane of the driver's event ring.
pub const DRIVER_RING_CAP: usize = 512;
/// The driver's event ring: 8 × 512 events, about 295 KB of non-paged static storage.
pub type DriverRing = EventRing<DRIVER_RING_LANES, DRIVER_RING_CAP>;

/// Timer period until the app configures another, in milliseconds.
pub const DEFAULT_TIMER_PERIOD_MS: u32 = 10;
/// Log level until the app configures another.
pub const DEFAULT_LOG_LEVEL: LogLevel = LogLevel::Every;
/// Largest `METHOD_BUFFERED` input any control code takes; the glue copies the input (which shares
/// the system buffer with the output) into an aligned local buffer of this size before the output
/// is touched.
pub const MAX_BUFFERED_INPUT: usize = 64;
/// Largest input buffer the `METHOD_NEITHER` demonstration probes and locks.
pub const MAX_NEITHER_INPUT: usize = 4096;
/// Largest output buffer the `METHOD_NEITHER` demonstration probes and locks (it writes 32 bytes
/// and zeroes the rest, so there is no reason to lock more).
pub const MAX_NEITHER_OUTPUT: usize = 4096;

/// The kernel services the callback logic needs. The driver implements it with wdk-sys, the
/// simulator with its model of the machine.
pub trait Kernel {
    /// A handle to an I/O request (`WDFREQUEST` in the driver).
    type Request: Copy;

    /// The current process, thread, IRQL and processor (`PsGetCurrentProcessId`,
    /// `PsGetCurrentThreadId`, `KeGetCurrentIrql`, `KeGetCurrentProcessorNumberEx`: all callable
    /// at any IRQL).
    fn current(&self) -> ExecContext;
    /// The performance counter now (`KeQueryPerformanceCounter`).
    fn counter(&self) -> u64;
    /// The performance counter's frequency, ticks per second (fixed at boot).
    fn counter_frequency(&self) -> u64;
    /// The thread that issued `request` (the IRP's `Tail.Overlay.Thread` and its process), if the
    /// request came with one.
    fn requestor(&self, request: Self::Request) -> Option<Requestor>;
    /// Prints one log line (`DbgPrintEx(DPFLTR_IHVDRIVER_ID, level, "%s", line)` in the driver,
    /// with [`LineBuf::as_cstr_bytes`]). The line is ASCII, ends with a newline, and is
    /// NUL-terminated in its buffer.
    fn log(&self, line: &LineBuf);
}

/// 32-bit access to the edu device's BAR0 registers.
pub trait DeviceRegisters {
    /// Reads the register at `offset`.
    fn read32(&mut self, offset: u32) -> u32;
    /// Writes the register at `offset`.
    fn write32(&mut self, offset: u32, value: u32);
}

/// QEMU's `edu` device (docs/specs/edu.rst in QEMU's source).
pub mod edu {
    /// PCI vendor ID.
    pub const VENDOR_ID: u16 = 0x1234;
    /// PCI device ID.
    pub const DEVICE_ID: u16 = 0x11e8;
    /// Identification register: `0xRRrr00ed`, major and minor version above the `0xed` tag.
    pub const REG_IDENTIFICATION: u32 = 0x00;
    /// Liveness register: reads back the bitwise inverse of what was written.
    pub const REG_LIVENESS: u32 = 0x04;
    /// Interrupt status register (read-only).
    pub const REG_INTERRUPT_STATUS: u32 = 0x24;
    /// Interrupt raise register (write-only): ORs the value into the status and raises the IRQ.
    pub const REG_INTERRUPT_RAISE: u32 = 0x60;
    /// Interrupt acknowledge register (write-only): clears the written bits; the ISR must write it
    /// or a level-triggered `INTx` keeps firing.
    pub const REG_INTERRUPT_ACK: u32 = 0x64;
    /// The low 16 bits of the identification register (`0x00ed`).
    pub const IDENTIFICATION_TAG: u32 = 0x00ed;
    /// Smallest BAR0 that holds every register used (QEMU's is 1 MiB).
    pub const MIN_BAR0_LEN: u64 = 0x80;
    /// The status bit a read raises.
    pub const READ_INTERRUPT_BIT: u32 = 0x1;
    /// The value written to the liveness register at start.
    pub const LIVENESS_PROBE: u32 = 0x5ca1_ab1e;
}

/// How a queue presents requests (`WDF_IO_QUEUE_DISPATCH_TYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueDispatch {
    /// One request at a time; the next is presented when the previous completes.
    Sequential,
    /// Requests are presented as they arrive.
    Parallel,
}

/// What `EvtDriverDeviceAdd` sets up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceSetup {
    /// The read queue. Sequential, so that a read completed from a DPC presents the next read in
    /// that DPC: the effect ctxscope exists to show (KMDF, fxioqueue.cpp).
    pub read_queue: QueueDispatch,
    /// The write queue: writes complete inline, so parallel.
    pub write_queue: QueueDispatch,
    /// The device-control queue: sequential, so that the event ring's single reader is never
    /// contended by two `GetEvents` at once.
    pub control_queue: QueueDispatch,
}

/// The hardware `EvtDevicePrepareHardware` found in its resource lists.
#[derive(Debug)]
pub enum Hardware<'a, R> {
    /// No memory or interrupt resource: a root-enumerated device.
    None,
    /// Resources were found but the glue could not use them (mapping BAR0 or creating the
    /// interrupt object failed): the device fails to start with `status`.
    Unusable {
        /// What failed, for the note line.
        what: &'static str,
        /// The status of the failed call.
        status: i32,
    },
    /// A memory resource, mapped by the glue, and whether an interrupt resource came with it.
    Edu {
        /// Access to the mapped BAR0.
        registers: &'a mut R,
        /// BAR0's length in bytes.
        bar0_len: u64,
        /// An interrupt resource (line or message) was assigned.
        has_interrupt: bool,
    },
}

/// What a request is, as `EvtIoInCallerContext` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoKind {
    /// `IRP_MJ_READ` of `length` bytes.
    Read {
        /// Output length.
        length: usize,
    },
    /// `IRP_MJ_WRITE` of `length` bytes.
    Write {
        /// Input length.
        length: usize,
    },
    /// `IRP_MJ_DEVICE_CONTROL`.
    DeviceControl {
        /// The control code.
        code: u32,
        /// Input buffer length.
        input_length: usize,
        /// Output buffer length.
        output_length: usize,
    },
}

impl IoKind {
    /// `IRP_MJ_*` major function in the upper 32 bits, the control code (or 0) in the lower: the
    /// `detail` of the `EvtIoInCallerContext` event.
    #[must_use]
    pub const fn code(self) -> u64 {
        const IRP_MJ_READ: u64 = 0x03;
        const IRP_MJ_WRITE: u64 = 0x04;
        const IRP_MJ_DEVICE_CONTROL: u64 = 0x0e;
        match self {
            Self::Read { .. } => IRP_MJ_READ << 32,
            Self::Write { .. } => IRP_MJ_WRITE << 32,
            Self::DeviceControl { code, .. } => (IRP_MJ_DEVICE_CONTROL << 32) | code as u64,
        }
    }
}

/// How to finish a request: `WdfRequestCompleteWithInformation(request, status, information)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The NTSTATUS.
    pub status: i32,
    /// Bytes transferred (exact: what the caller may read).
    pub information: usize,
}

impl Completion {
    /// Failure with no bytes transferred.
    #[must_use]
    pub const fn failed(status: i32) -> Self {
        Self {
            status,
            information: 0,
        }
    }
}

/// What `EvtIoInCallerContext` decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerDecision {
    /// `WdfDeviceEnqueueRequest`.
    Enqueue,
    /// The `METHOD_NEITHER` demonstration: retrieve the unsafe user buffers, probe and lock them
    /// (`WdfRequestProbeAndLockUserBufferForRead` for the input if `input_length > 0`,
    /// `...ForWrite` for the output), keep the `WDFMEMORY` objects in the request context, then
    /// call [`Driver::neither_buffers_locked`].
    ProbeAndLock {
        /// Input bytes to lock for reading (0: none).
        input_length: usize,
        /// Output bytes to lock for writing.
        output_length: usize,
    },
    /// Complete now, in the caller's thread.
    Complete(Completion),
}

/// What `EvtIoRead` decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadDecision {
    /// Edu mode: make the request cancelable, keep it as the pending read, then write `value` to
    /// [`edu::REG_INTERRUPT_RAISE`]; the interrupt DPC completes it.
    RaiseInterrupt {
        /// The value to write.
        value: u32,
    },
    /// Root mode: make the request cancelable and keep it as the pending read; the next timer
    /// tick completes it.
    WaitForTimer,
    /// Complete now.
    Complete(Completion),
}

/// What `EvtInterruptIsr` decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsrDecision {
    /// Not our interrupt: return `FALSE`.
    NotOurs,
    /// Our interrupt: write `acknowledge` to [`edu::REG_INTERRUPT_ACK`], hand `isr` and the status
    /// to the DPC under the interrupt lock, `WdfInterruptQueueDpcForIsr`, return `TRUE`.
    Claim {
        /// The status bits to acknowledge.
        acknowledge: u32,
        /// The ISR's trail entry for the pending read's receipt.
        isr: TrailEntry,
    },
}

/// What a timer tick decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerDecision {
    /// Re-arm the (one-shot) timer this many milliseconds from now: the configured period, read at
    /// every tick so that `Configure` takes effect at the next one.
    pub rearm_ms: u32,
}

/// Per-request state the glue keeps in the request's context (`WDF_REQUEST_CONTEXT`), created by
/// `EvtIoInCallerContext`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestState {
    /// The request's identifier in events and receipts.
    pub id: u64,
    /// The file object's identifier.
    pub file_id: u64,
    /// The thread that issued the request.
    pub requestor: Option<Requestor>,
    /// The request as `EvtIoInCallerContext` saw it.
    pub kind: IoKind,
    /// The context trail for the read receipt, indexed by [`TrailSlot`].
    pub trail: [TrailEntry; 5],
    /// The `METHOD_NEITHER` buffers were probed and locked in the caller's context.
    pub neither_locked: bool,
}

/// Per-file-object state the glue keeps in the file object's context. Set once by
/// `EvtDeviceFileCreate` and only read afterwards, so requests still in flight when the last
/// handle closes can read it while cleanup runs; the thread that closed the handle is kept apart
/// by the glue and passed to [`Driver::file_cleanup`] and [`Driver::file_close`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileState {
    /// The file object's identifier in events.
    pub id: u64,
    /// The thread that opened it.
    pub opener: Option<Requestor>,
}

/// A pending read handed to the callback that completes it. The glue has already taken it out of
/// the pending slot and made it non-cancelable (`WdfRequestUnmarkCancelable` succeeded), so this
/// callback owns its completion.
#[derive(Debug)]
pub struct ReadToComplete<'a> {
    /// The request's state.
    pub state: &'a mut RequestState,
    /// The read's output buffer (the system buffer: buffered I/O, valid in any context).
    pub buffer: &'a mut [u8],
}

/// A `METHOD_BUFFERED` input, copied out of the system buffer before the output is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferedInput<'a> {
    /// The input, copied into an 8-byte aligned local buffer.
    Copied(&'a [u8]),
    /// The input was longer than [`MAX_BUFFERED_INPUT`]; its length.
    TooLong(usize),
}

/// User pages probed and locked in caller context and mapped to system space
/// (`WdfMemoryGetBuffer` on the locked `WDFMEMORY`). The user process can change them at any
/// moment, from any of its threads, so the driver never makes a Rust slice of them: the glue
/// reads and writes them one volatile access at a time, and the logic reads each byte once.
pub trait UserMemory {
    /// Length in bytes.
    fn len(&self) -> usize;
    /// Whether the buffer has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The byte at `offset` (below `len()`), as it is now.
    fn read(&self, offset: usize) -> u8;
}

/// Locked user memory the driver may write.
pub trait UserMemoryMut: UserMemory {
    /// Writes `bytes` at `offset` (`offset + bytes.len()` at most `len()`).
    fn write(&mut self, offset: usize, bytes: &[u8]);
}

/// Bytes no one else can see or change (the simulator's buffers, tests): plain memory.
#[derive(Debug)]
pub struct PrivateBytes<'a>(pub &'a [u8]);

/// Writable bytes no one else can see or change.
#[derive(Debug)]
pub struct PrivateBytesMut<'a>(pub &'a mut [u8]);

impl UserMemory for PrivateBytes<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn read(&self, offset: usize) -> u8 {
        self.0[offset]
    }
}

impl UserMemory for PrivateBytesMut<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn read(&self, offset: usize) -> u8 {
        self.0[offset]
    }
}

impl UserMemoryMut for PrivateBytesMut<'_> {
    fn write(&mut self, offset: usize, bytes: &[u8]) {
        self.0[offset..offset + bytes.len()].copy_from_slice(bytes);
    }
}

/// The `METHOD_NEITHER` buffers locked in caller context.
pub struct NeitherBuffers<'a> {
    /// The locked input (empty if there was none).
    pub input: &'a dyn UserMemory,
    /// The locked output.
    pub output: &'a mut dyn UserMemoryMut,
}

impl core::fmt::Debug for NeitherBuffers<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NeitherBuffers")
            .field("input_len", &self.input.len())
            .field("output_len", &self.output.len())
            .finish()
    }
}

/// Driver-wide state: the event ring, the configuration and the counters. The driver keeps one in
/// a `static`; each simulation has its own.
pub struct Driver<'ring> {
    ring: &'ring DriverRing,
    mode: AtomicU8,
    timer_period_ms: AtomicU32,
    log_level: AtomicU8,
    timer_ticks: AtomicU64,
    next_request_id: AtomicU64,
    next_file_id: AtomicU64,
    interrupts: AtomicU64,
    spurious_interrupts: AtomicU64,
    reads_completed: AtomicU64,
    reads_cancelled: AtomicU64,
    log_lines_printed: AtomicU64,
    log_lines_suppressed: AtomicU64,
}

impl core::fmt::Debug for Driver<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Driver")
            .field("mode", &self.mode())
            .field("ring", &self.ring.stats())
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

/// The version of this build, which the driver reports in `GetInfo`.
pub const DRIVER_VERSION: DriverVersion = DriverVersion {
    major: parse_u16(env!("CARGO_PKG_VERSION_MAJOR")),
    minor: parse_u16(env!("CARGO_PKG_VERSION_MINOR")),
    patch: parse_u16(env!("CARGO_PKG_VERSION_PATCH")),
};

const fn parse_u16(text: &str) -> u16 {
    let bytes = text.as_bytes();
    let mut value: u16 = 0;
    let mut index = 0;
    while index < bytes.len() {
        value = value * 10 + (bytes[index] - b'0') as u16;
        index += 1;
    }
    value
}

impl<'ring> Driver<'ring> {
    /// Driver state over `ring`, before `DriverEntry`.
    #[must_use]
    pub const fn new(ring: &'ring DriverRing) -> Self {
        Self {
            ring,
            mode: AtomicU8::new(Mode::Starting as u8),
            timer_period_ms: AtomicU32::new(DEFAULT_TIMER_PERIOD_MS),
            log_level: AtomicU8::new(DEFAULT_LOG_LEVEL as u8),
            timer_ticks: AtomicU64::new(0),
            next_request_id: AtomicU64::new(1),
            next_file_id: AtomicU64::new(1),
            interrupts: AtomicU64::new(0),
            spurious_interrupts: AtomicU64::new(0),
            reads_completed: AtomicU64::new(0),
            reads_cancelled: AtomicU64::new(0),
            log_lines_printed: AtomicU64::new(0),
            log_lines_suppressed: AtomicU64::new(0),
        }
    }

    /// The event ring.
    #[must_use]
    pub const fn ring(&self) -> &'ring DriverRing {
        self.ring
    }

    /// How the driver is running.
    #[must_use]
    pub fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::Relaxed)).unwrap_or(Mode::Starting)
    }

    /// The log level in force.
    #[must_use]
    pub fn log_level(&self) -> LogLevel {
        LogLevel::from_u8(self.log_level.load(Ordering::Relaxed)).unwrap_or(DEFAULT_LOG_LEVEL)
    }

    /// The timer period in force, ms.
    #[must_use]
    pub fn timer_period_ms(&self) -> u32 {
        self.timer_period_ms.load(Ordering::Relaxed)
    }

    /// Whether timer ticks complete pending reads: in root mode, where no interrupt ever comes.
    #[must_use]
    pub fn timer_completes_reads(&self) -> bool {
        self.mode() == Mode::Root
    }

    /// The driver's counters.
    #[must_use]
    pub fn counters(&self) -> DriverCounters {
        DriverCounters {
            interrupts: self.interrupts.load(Ordering::Relaxed),
            spurious_interrupts: self.spurious_interrupts.load(Ordering::Relaxed),
            timer_ticks: self.timer_ticks.load(Ordering::Relaxed),
            reads_completed: self.reads_completed.load(Ordering::Relaxed),
            reads_cancelled: self.reads_cancelled.load(Ordering::Relaxed),
            log_lines_printed: self.log_lines_printed.load(Ordering::Relaxed),
            log_lines_suppressed: self.log_lines_suppressed.load(Ordering::Relaxed),
        }
    }

    /// The `GetInfo` reply as of now.
    #[must_use]
    #[allow(clippy::cast_possible_truncation)] // ring dimensions are small constants
    pub fn info<K: Kernel>(&self, kernel: &K) -> InfoReply {
        InfoReply {
            driver_version: DRIVER_VERSION,
            mode: self.mode(),
            counter_frequency: kernel.counter_frequency().max(1),
            ring_lanes: DRIVER_RING_LANES as u32,
            lane_capacity: DRIVER_RING_CAP as u32,
            ring: self.ring.stats(),
            counters: self.counters(),
            timer_period_ms: self.timer_period_ms(),
            log_level: self.log_level(),
        }
    }

    /// Takes the current context and time and builds an event of `kind`.
    fn observe<K: Kernel>(kernel: &K, kind: CallbackKind) -> Event {
        Event::new(kind, kernel.current(), kernel.counter())
    }

    /// Stores the event in the ring and prints its line if the log level asks for it. Returns the
    /// event as stored (with its lane and position). A dropped event (full lane) is counted by the
    /// ring and not printed, so that the log and the ring hold the same events.
    fn record<K: Kernel>(&self, kernel: &K, mut event: Event) -> Event {
        if let Ok(recorded) = self.ring.record(event) {
            event.lane = recorded.lane;
            event.seq = recorded.seq;
            if self.log_level().logs_event(event.kind) {
                let mut line = LineBuf::new();
                logline::format_event(&event, &mut line);
                kernel.log(&line);
                self.log_lines_printed.fetch_add(1, Ordering::Relaxed);
            } else {
                self.log_lines_suppressed.fetch_add(1, Ordering::Relaxed);
            }
        }
        event
    }

    /// Prints an error line (prefix `ctxscope-note:`, which the event-line parser skips) if the
    /// log level allows errors.
    fn log_error<K: Kernel>(&self, kernel: &K, what: &str, status: i32) {
        if !self.log_level().logs_errors() {
            self.log_lines_suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut line = LineBuf::new();
        logline::format_note(what, status, &mut line);
        kernel.log(&line);
        self.log_lines_printed.fetch_add(1, Ordering::Relaxed);
    }

    // ---- Driver and device lifetime ------------------------------------------------------------

    /// `DriverEntry`, after `WdfDriverCreate` succeeded.
    pub fn driver_entry<K: Kernel>(&self, kernel: &K) {
        self.record(kernel, Self::observe(kernel, CallbackKind::DriverEntry));
    }

    /// `EvtDriverUnload`.
    pub fn driver_unload<K: Kernel>(&self, kernel: &K) {
        self.record(kernel, Self::observe(kernel, CallbackKind::EvtDriverUnload));
    }

    /// `EvtDriverDeviceAdd`: records, and says how to set the device up.
    pub fn device_add<K: Kernel>(&self, kernel: &K) -> DeviceSetup {
        self.record(
            kernel,
            Self::observe(kernel, CallbackKind::EvtDriverDeviceAdd),
        );
        DeviceSetup {
            read_queue: QueueDispatch::Sequential,
            write_queue: QueueDispatch::Parallel,
            control_queue: QueueDispatch::Sequential,
        }
    }

    /// `EvtDevicePrepareHardware`: decides the mode from the resources found, checking that a
    /// memory resource really is an edu device.
    ///
    /// # Errors
    /// The NTSTATUS to fail the callback with (the device then shows Code 10): an edu BAR without
    /// an interrupt, a BAR too small, or identification or liveness registers that do not answer
    /// as the edu device's do.
    pub fn prepare_hardware<K: Kernel, R: DeviceRegisters>(
        &self,
        kernel: &K,
        hardware: Hardware<'_, R>,
    ) -> Result<Mode, i32> {
        let event = Self::observe(kernel, CallbackKind::EvtDevicePrepareHardware);
        let outcome = match hardware {
            Hardware::None => Ok(Mode::Root),
            Hardware::Unusable { what, status } => Err((what, status)),
            Hardware::Edu {
                registers,
                bar0_len,
                has_interrupt,
            } => Self::check_edu(registers, bar0_len, has_interrupt),
        };
        #[allow(clippy::cast_sign_loss)] // the NTSTATUS bits, as documented for `detail`
        let detail = match outcome {
            Ok(mode) => mode as u64,
            Err((_, status)) => (1 << 32) | u64::from(status as u32),
        };
        self.record(kernel, event.with_detail(detail));
        match outcome {
            Ok(mode) => {
                self.mode.store(mode as u8, Ordering::Relaxed);
                Ok(mode)
            }
            Err((what, status)) => {
                self.log_error(kernel, what, status);
                Err(status)
            }
        }
    }

    fn check_edu<R: DeviceRegisters>(
        registers: &mut R,
        bar0_len: u64,
        has_interrupt: bool,
    ) -> Result<Mode, (&'static str, i32)> {
        if bar0_len < edu::MIN_BAR0_LEN {
            return Err(("edu BAR0 is too small", STATUS_DEVICE_CONFIGURATION_ERROR));
        }
        if !has_interrupt {
            return Err((
                "edu device has no interrupt resource",
                STATUS_DEVICE_CONFIGURATION_ERROR,
            ));
        }
        let identification = registers.read32(edu::REG_IDENTIFICATION);
        if identification & 0xffff != edu::IDENTIFICATION_TAG {
            return Err((
                "edu identification register mismatch",
                STATUS_DEVICE_CONFIGURATION_ERROR,
            ));
        }
        registers.write32(edu::REG_LIVENESS, edu::LIVENESS_PROBE);
        if registers.read32(edu::REG_LIVENESS) != !edu::LIVENESS_PROBE {
            return Err((
                "edu liveness check failed",
                STATUS_DEVICE_CONFIGURATION_ERROR,
            ));
        }
        Ok(Mode::Edu)
    }

    /// `EvtDeviceReleaseHardware`: the framework has disconnected the interrupt; the glue unmaps
    /// BAR0 after this returns.
    pub fn release_hardware<K: Kernel>(&self, kernel: &K) {
        self.record(
            kernel,
            Self::observe(kernel, CallbackKind::EvtDeviceReleaseHardware),
        );
        self.mode.store(Mode::Starting as u8, Ordering::Relaxed);
    }

    /// `EvtDeviceD0Entry`: records; the glue then starts the timer for the returned period.
    pub fn d0_entry<K: Kernel>(&self, kernel: &K, previous_state: u32) -> TimerDecision {
        let event = Self::observe(kernel, CallbackKind::EvtDeviceD0Entry);
        self.record(kernel, event.with_detail(u64::from(previous_state)));
        TimerDecision {
            rearm_ms: self.timer_period_ms(),
        }
    }

    /// `EvtDeviceD0Exit`: records; the glue then stops the timer, waiting for a running tick
    /// (`WdfTimerStop(timer, TRUE)`), so no tick runs outside D0.
    pub fn d0_exit<K: Kernel>(&self, kernel: &K, target_state: u32) {
        let event = Self::observe(kernel, CallbackKind::EvtDeviceD0Exit);
        self.record(kernel, event.with_detail(u64::from(target_state)));
    }

    // ---- File objects --------------------------------------------------------------------------

    /// `EvtDeviceFileCreate`: records with the opener as requestor; the glue stores the returned
    /// state in the file object's context and completes the create request.
    pub fn file_create<K: Kernel>(
        &self,
        kernel: &K,
        request: K::Request,
    ) -> (FileState, Completion) {
        let requestor = kernel.requestor(request);
        let file = FileState {
            id: self.next_file_id.fetch_add(1, Ordering::Relaxed),
            opener: requestor,
        };
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let event = Self::observe(kernel, CallbackKind::EvtDeviceFileCreate)
            .with_requestor(requestor)
            .with_ids(request_id, file.id)
            .completing(true);
        self.record(kernel, event);
        (
            file,
            Completion {
                status: STATUS_SUCCESS,
                information: 0,
            },
        )
    }

    /// `EvtFileCleanup`. `closer` is the thread of the cleanup IRP (captured by the glue's
    /// `IRP_MJ_CLEANUP` preprocess callback from `Irp->Tail.Overlay.Thread`); the glue keeps it
    /// for `EvtFileClose`.
    pub fn file_cleanup<K: Kernel>(&self, kernel: &K, file: &FileState, closer: Option<Requestor>) {
        let event = Self::observe(kernel, CallbackKind::EvtFileCleanup)
            .with_requestor(closer)
            .with_ids(0, file.id);
        self.record(kernel, event);
    }

    /// `EvtFileClose`: records with the thread that closed the last handle (`closer`, as given
    /// to [`Driver::file_cleanup`]) as requestor, so the report shows when the close ran
    /// elsewhere (the last reference went when outstanding I/O completed).
    pub fn file_close<K: Kernel>(&self, kernel: &K, file: &FileState, closer: Option<Requestor>) {
        let event = Self::observe(kernel, CallbackKind::EvtFileClose)
            .with_requestor(closer)
            .with_ids(0, file.id);
        self.record(kernel, event);
    }

    // ---- Requests ------------------------------------------------------------------------------

    /// `EvtIoInCallerContext`: gives the request its identity and trail, records, and decides.
    pub fn in_caller_context<K: Kernel>(
        &self,
        kernel: &K,
        request: K::Request,
        file: &FileState,
        kind: IoKind,
    ) -> (RequestState, CallerDecision) {
        let requestor = kernel.requestor(request);
        let id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let mut state = RequestState {
            id,
            file_id: file.id,
            requestor,
            kind,
            trail: [TrailEntry::ABSENT; 5],
            neither_locked: false,
        };
        let event = Self::observe(kernel, CallbackKind::EvtIoInCallerContext)
            .with_requestor(requestor)
            .with_ids(id, file.id)
            .with_detail(kind.code());
        let decision = match kind {
            IoKind::DeviceControl {
                code,
                input_length,
                output_length,
            } if Ioctl::from_code(code) == Some(Ioctl::NeitherDemo) => {
                if output_length < NeitherDemoReply::SIZE {
                    CallerDecision::Complete(Completion::failed(STATUS_BUFFER_TOO_SMALL))
                } else if input_length > MAX_NEITHER_INPUT || output_length > MAX_NEITHER_OUTPUT {
                    CallerDecision::Complete(Completion::failed(STATUS_INVALID_PARAMETER))
                } else {
                    CallerDecision::ProbeAndLock {
                        input_length,
                        output_length,
                    }
                }
            }
            _ => CallerDecision::Enqueue,
        };
        let event = self.record(
            kernel,
            event.completing(matches!(decision, CallerDecision::Complete(_))),
        );
        state.trail[TrailSlot::InCallerContext as usize] = TrailEntry::from_event(&event);
        (state, decision)
    }

    /// After the glue probed and locked the `METHOD_NEITHER` buffers: `Ok(())`, or the status
    /// `WdfRequestProbeAndLockUserBuffer...` or `WdfRequestRetrieveUnsafeUser...` failed with
    /// (an invalid user address raises an exception those functions turn into a status).
    pub fn neither_buffers_locked(
        &self,
        state: &mut RequestState,
        locked: Result<(), i32>,
    ) -> CallerDecision {
        match locked {
            Ok(()) => {
                state.neither_locked = true;
                CallerDecision::Enqueue
            }
            Err(status) => CallerDecision::Complete(Completion::failed(status)),
        }
    }

    /// `EvtIoRead` on the sequential read queue.
    pub fn io_read<K: Kernel>(
        &self,
        kernel: &K,
        state: &mut RequestState,
        length: usize,
    ) -> ReadDecision {
        let event = Self::observe(kernel, CallbackKind::EvtIoRead)
            .with_requestor(state.requestor)
            .with_ids(state.id, state.file_id)
            .with_detail(length as u64);
        let decision = if length < ReadReceipt::SIZE {
            ReadDecision::Complete(Completion::failed(STATUS_BUFFER_TOO_SMALL))
        } else {
            match self.mode() {
                Mode::Edu => ReadDecision::RaiseInterrupt {
                    value: edu::READ_INTERRUPT_BIT,
                },
                Mode::Root => ReadDecision::WaitForTimer,
                Mode::Starting => {
                    ReadDecision::Complete(Completion::failed(STATUS_DEVICE_NOT_READY))
                }
            }
        };
        let event = self.record(
            kernel,
            event.completing(matches!(decision, ReadDecision::Complete(_))),
        );
        state.trail[TrailSlot::IoRead as usize] = TrailEntry::from_event(&event);
        decision
    }

    /// `EvtInterruptIsr`, with the value of [`edu::REG_INTERRUPT_STATUS`] the glue just read.
    pub fn interrupt_isr<K: Kernel>(&self, kernel: &K, interrupt_status: u32) -> IsrDecision {
        self.interrupts.fetch_add(1, Ordering::Relaxed);
        let event = Self::observe(kernel, CallbackKind::EvtInterruptIsr)
            .with_detail(u64::from(interrupt_status));
        let event = self.record(kernel, event);
        if interrupt_status == 0 {
            self.spurious_interrupts.fetch_add(1, Ordering::Relaxed);
            IsrDecision::NotOurs
        } else {
            IsrDecision::Claim {
                acknowledge: interrupt_status,
                isr: TrailEntry::from_event(&event),
            }
        }
    }

    /// `EvtInterruptDpc`. `isr` is what the ISR handed over (taken under the interrupt lock) with
    /// the status it acknowledged; `read` is the pending read, if there was one and the DPC won it
    /// from the cancel routine. Returns how to complete the read.
    pub fn interrupt_dpc<K: Kernel>(
        &self,
        kernel: &K,
        isr: Option<(TrailEntry, u32)>,
        read: Option<ReadToComplete<'_>>,
    ) -> Option<Completion> {
        let event = Self::observe(kernel, CallbackKind::EvtInterruptDpc)
            .with_detail(isr.map_or(0, |(_, status)| u64::from(status)));
        let event = self.record(kernel, Self::completing_read(event, read.as_ref()));
        let read = read?;
        if let Some((entry, _)) = isr {
            read.state.trail[TrailSlot::Isr as usize] = entry;
        }
        Some(self.complete_read(kernel, &event, CompletedBy::InterruptDpc, read))
    }

    /// `EvtTimerFunc` (a DPC at `DISPATCH_LEVEL`). `read` is the pending read when
    /// [`Driver::timer_completes_reads`] and the timer won it from the cancel routine.
    pub fn timer<K: Kernel>(
        &self,
        kernel: &K,
        read: Option<ReadToComplete<'_>>,
    ) -> (TimerDecision, Option<Completion>) {
        let tick = self.timer_ticks.fetch_add(1, Ordering::Relaxed) + 1;
        let event = Self::observe(kernel, CallbackKind::EvtTimerFunc).with_detail(tick);
        let event = self.record(kernel, Self::completing_read(event, read.as_ref()));
        let completion =
            read.map(|read| self.complete_read(kernel, &event, CompletedBy::TimerDpc, read));
        (
            TimerDecision {
                rearm_ms: self.timer_period_ms(),
            },
            completion,
        )
    }

    /// A deferred callback's event, carrying the read it completes (if any): the read's requestor
    /// and identifiers, and the completing flag.
    fn completing_read(event: Event, read: Option<&ReadToComplete<'_>>) -> Event {
        match read {
            Some(read) => event
                .with_requestor(read.state.requestor)
                .with_ids(read.state.id, read.state.file_id)
                .completing(true),
            None => event,
        }
    }

    /// Fills the read receipt into the read's buffer.
    fn complete_read<K: Kernel>(
        &self,
        kernel: &K,
        deferred: &Event,
        completed_by: CompletedBy,
        read: ReadToComplete<'_>,
    ) -> Completion {
        let state = read.state;
        state.trail[TrailSlot::Deferred as usize] = TrailEntry::from_event(deferred);
        let mut completion = TrailEntry::from_event(deferred);
        completion.timestamp = kernel.counter();
        state.trail[TrailSlot::Completion as usize] = completion;
        self.write_receipt(state, completed_by, read.buffer)
    }

    fn write_receipt(
        &self,
        state: &RequestState,
        completed_by: CompletedBy,
        buffer: &mut [u8],
    ) -> Completion {
        buffer.fill(0);
        let requestor = state.requestor.unwrap_or(Requestor { pid: 0, tid: 0 });
        let receipt = ReadReceipt {
            request_id: state.id,
            requestor_pid: requestor.pid,
            requestor_tid: requestor.tid,
            mode: self.mode(),
            completed_by,
            trail: state.trail,
        };
        match receipt.encode(buffer) {
            Ok(size) => {
                self.reads_completed.fetch_add(1, Ordering::Relaxed);
                Completion {
                    status: STATUS_SUCCESS,
                    information: size,
                }
            }
            Err(error) => Completion::failed(error.ntstatus()),
        }
    }

    /// The pending read's cancel routine (`EvtRequestCancel`, arbitrary context): the read is
    /// completed with `STATUS_CANCELLED` and no data. Cancellation is not a callback kind of its
    /// own; it is counted in [`DriverCounters::reads_cancelled`].
    pub fn read_cancelled(&self) -> Completion {
        self.reads_cancelled.fetch_add(1, Ordering::Relaxed);
        Completion::failed(STATUS_CANCELLED)
    }

    /// `EvtIoWrite` on the parallel write queue: records and completes inline, accepting (and
    /// discarding) every byte.
    pub fn io_write<K: Kernel>(
        &self,
        kernel: &K,
        state: &RequestState,
        length: usize,
    ) -> Completion {
        let event = Self::observe(kernel, CallbackKind::EvtIoWrite)
            .with_requestor(state.requestor)
            .with_ids(state.id, state.file_id)
            .with_detail(length as u64)
            .completing(true);
        self.record(kernel, event);
        Completion {
            status: STATUS_SUCCESS,
            information: length,
        }
    }

    /// `EvtIoDeviceControl` on the sequential control queue. `output` is the `METHOD_BUFFERED`
    /// output buffer (empty if none); `neither` the buffers locked in caller context for the
    /// `METHOD_NEITHER` demonstration. Outputs are zeroed before anything is written, and the
    /// completion's information is exactly what was written.
    pub fn io_device_control<K: Kernel>(
        &self,
        kernel: &K,
        state: &RequestState,
        code: u32,
        input: BufferedInput<'_>,
        output: &mut [u8],
        neither: Option<NeitherBuffers<'_>>,
    ) -> Completion {
        let event = Self::observe(kernel, CallbackKind::EvtIoDeviceControl)
            .with_requestor(state.requestor)
            .with_ids(state.id, state.file_id)
            .with_detail(u64::from(code))
            .completing(true);
        let event = self.record(kernel, event);
        let Some(ioctl) = Ioctl::from_code(code) else {
            return Completion::failed(STATUS_INVALID_DEVICE_REQUEST);
        };
        output.fill(0);
        let result = match (ioctl, input) {
            // The METHOD_NEITHER demonstration uses only the buffers locked in caller context.
            (Ioctl::NeitherDemo, _) => {
                return match neither {
                    Some(buffers) if state.neither_locked => {
                        Self::neither_demo(state, &event, buffers)
                    }
                    _ => Completion::failed(STATUS_INVALID_DEVICE_REQUEST),
                };
            }
            (_, BufferedInput::TooLong(_)) => Err(STATUS_INVALID_PARAMETER),
            (Ioctl::GetInfo, BufferedInput::Copied(input)) => Self::expect_no_input(input)
                .and_then(|()| self.info(kernel).encode(output).map_err(|e| e.ntstatus())),
            (Ioctl::GetEvents, BufferedInput::Copied(input)) => self.get_events(input, output),
            (Ioctl::Reset, BufferedInput::Copied(input)) => {
                Self::expect_no_input(input).and_then(|()| self.reset(output))
            }
            (Ioctl::Configure, BufferedInput::Copied(input)) => self.configure(input),
        };
        match result {
            Ok(information) => Completion {
                status: STATUS_SUCCESS,
                information,
            },
            Err(status) => {
                output.fill(0);
                Completion::failed(status)
            }
        }
    }

    fn expect_no_input(input: &[u8]) -> Result<(), i32> {
        if input.is_empty() {
            Ok(())
        } else {
            Err(STATUS_INVALID_PARAMETER)
        }
    }

    fn get_events(&self, input: &[u8], output: &mut [u8]) -> Result<usize, i32> {
        // The request is validated; its cursor is the app's, which the app compares with the
        // cursor this reply carries (`EventsReplyHeader::check_cursor`) to detect events that
        // went to another reader or a reset.
        GetEventsRequest::decode(input).map_err(|e| e.ntstatus())?;
        let capacity = events_reply_capacity(output.len());
        if capacity == 0 {
            return Err(STATUS_BUFFER_TOO_SMALL);
        }
        let Some(mut reader) = self.ring.reader() else {
            return Err(STATUS_DEVICE_BUSY);
        };
        let cursor = self.ring.stats().consumed;
        // Drain in small chunks straight into the output: kernel stacks are small.
        let mut count = 0;
        let mut chunk = [Event::ZERO; 16];
        while count < capacity {
            let want = (capacity - count).min(chunk.len());
            let got = reader.drain(&mut chunk[..want]);
            for event in &chunk[..got] {
                let at = GetEventsReply::FIXED_SIZE + count * Event::SIZE;
                output[at..at + Event::SIZE].copy_from_slice(&event.to_bytes());
                count += 1;
            }
            if got < want {
                break;
            }
        }
        drop(reader);
        let header = EventsReplyHeader {
            cursor,
            next_cursor: cursor + count as u64,
            stats: self.ring.stats(),
        };
        crate::protocol::encode_events_reply_fixed(&header, count, output).map_err(|e| e.ntstatus())
    }

    fn reset(&self, output: &mut [u8]) -> Result<usize, i32> {
        let Some(mut reader) = self.ring.reader() else {
            return Err(STATUS_DEVICE_BUSY);
        };
        let discarded = reader.discard();
        drop(reader);
        ResetReply { discarded }
            .encode(output)
            .map_err(|e| e.ntstatus())
    }

    fn configure(&self, input: &[u8]) -> Result<usize, i32> {
        let request = ConfigureRequest::decode(input).map_err(|e| e.ntstatus())?;
        self.timer_period_ms
            .store(request.timer_period_ms, Ordering::Relaxed);
        self.log_level
            .store(request.log_level as u8, Ordering::Relaxed);
        Ok(0)
    }

    #[allow(clippy::cast_possible_truncation)] // input is at most MAX_NEITHER_INPUT bytes
    fn neither_demo(
        state: &RequestState,
        event: &Event,
        buffers: NeitherBuffers<'_>,
    ) -> Completion {
        let NeitherBuffers { input, output } = buffers;
        if input.len() > MAX_NEITHER_INPUT || output.len() > MAX_NEITHER_OUTPUT {
            // Locked in caller context after the same checks; different lengths now mean the glue
            // handed over something else.
            return Completion::failed(STATUS_INVALID_DEVICE_REQUEST);
        }
        let locked_by = state.trail[TrailSlot::InCallerContext as usize];
        let reply = NeitherDemoReply {
            locked_by_pid: locked_by.pid,
            locked_by_tid: locked_by.tid,
            filled_by_pid: event.pid,
            filled_by_tid: event.tid,
            input_len: input.len() as u32,
            input_checksum: checksum_of((0..input.len()).map(|offset| input.read(offset))),
        };
        let mut encoded = AlignedBuf::<{ NeitherDemoReply::SIZE }>::new();
        let size = match reply.encode(&mut encoded.0) {
            Ok(size) => size,
            Err(error) => return Completion::failed(error.ntstatus()),
        };
        if output.len() < size {
            return Completion::failed(STATUS_BUFFER_TOO_SMALL);
        }
        // Zero the whole output, then write the reply: the caller sees nothing stale.
        let zeros = [0u8; 64];
        let mut offset = 0;
        while offset < output.len() {
            let chunk = (output.len() - offset).min(zeros.len());
            output.write(offset, &zeros[..chunk]);
            offset += chunk;
        }
        output.write(0, &encoded.0[..size]);
        Completion {
            status: STATUS_SUCCESS,
            information: size,
        }
    }
}
