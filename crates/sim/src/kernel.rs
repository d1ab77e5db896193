//! The simulator's implementation of [`Kernel`]: what `PsGetCurrentProcessId`,
//! `PsGetCurrentThreadId`, `KeGetCurrentIrql`, `KeGetCurrentProcessorNumberEx`,
//! `KeQueryPerformanceCounter` and `DbgPrintEx` answer on the simulated machine.

use core::cell::RefCell;

use ctxscope_core::logic::Kernel;
use ctxscope_core::logline::LineBuf;
use ctxscope_core::{ExecContext, Requestor};

/// The simulated performance counter's frequency: 10 MHz, what `KeQueryPerformanceCounter`
/// reports on most current x64 Windows machines
/// (<https://learn.microsoft.com/windows/win32/sysinfo/acquiring-high-resolution-time-stamps>).
pub const COUNTER_FREQUENCY: u64 = 10_000_000;

/// Simulated nanoseconds per counter tick.
pub(crate) const NS_PER_TICK: u64 = 1_000_000_000 / COUNTER_FREQUENCY;

/// A simulated `WDFREQUEST`: the request's slot, and the IRP's `Tail.Overlay.Thread` (as a
/// process and thread ID) that the I/O manager stored when it built the IRP.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SimRequest {
    /// The request's slot in the simulator (for diagnostics).
    #[allow(dead_code)]
    // kept so that a request handle identifies its request, as WDFREQUEST does
    pub(crate) slot: u32,
    /// The thread that issued the IRP.
    pub(crate) thread: Option<Requestor>,
}

/// The kernel services, as seen by one callback on one simulated CPU at one instant.
pub(crate) struct SimKernel<'a> {
    /// The CPU's current thread, IRQL and number.
    pub(crate) context: ExecContext,
    /// The simulated time, in nanoseconds since boot.
    pub(crate) now_ns: u64,
    /// Where `DbgPrintEx` output goes, if the run captures it.
    pub(crate) log: Option<&'a RefCell<Vec<String>>>,
}

impl Kernel for SimKernel<'_> {
    type Request = SimRequest;

    fn current(&self) -> ExecContext {
        self.context
    }

    fn counter(&self) -> u64 {
        self.now_ns / NS_PER_TICK
    }

    fn counter_frequency(&self) -> u64 {
        COUNTER_FREQUENCY
    }

    fn requestor(&self, request: SimRequest) -> Option<Requestor> {
        request.thread
    }

    fn log(&self, line: &LineBuf) {
        if let Some(log) = self.log {
            log.borrow_mut().push(line.as_str().to_owned());
        }
    }
}
