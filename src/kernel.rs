//! The [`Kernel`] the callback logic runs against, implemented with the NT and WDF services it
//! names. Every function here may run at any IRQL up to DIRQL, as the logic requires: each service
//! used is documented as callable there (noted at each call).

use ctxscope_core::logic::Kernel;
use ctxscope_core::logline::LineBuf;
use ctxscope_core::{ExecContext, Requestor};
use wdk_sys::ntddk::{
    DbgPrintEx, KeGetCurrentIrql, KeGetCurrentProcessorNumberEx, KeQueryPerformanceCounter,
    PsGetCurrentProcessId, PsGetCurrentThreadId, PsGetThreadId, PsGetThreadProcessId,
};
use wdk_sys::{
    _DPFLTR_TYPE, DPFLTR_INFO_LEVEL, HANDLE, LARGE_INTEGER, PETHREAD, PIRP, ULONG, WDFREQUEST,
    call_unsafe_wdf_function_binding,
};

/// `DPFLTR_IHVDRIVER_ID`, the component ID drivers print under (an `enum` constant in the WDK,
/// which bindgen makes a C `int`; the value is a small positive number).
#[allow(
    clippy::cast_sign_loss,
    reason = "DPFLTR_IHVDRIVER_ID is a small positive enum value"
)]
const COMPONENT_IHVDRIVER: ULONG = _DPFLTR_TYPE::DPFLTR_IHVDRIVER_ID as ULONG;

/// The driver's [`Kernel`]: stateless, every fact is read when asked for.
#[derive(Clone, Copy, Debug, Default)]
pub struct WdkKernel;

/// A process or thread ID `HANDLE` as the 32 bits the event record stores; an ID that does not fit
/// (none does in practice: they are small multiples of four) is clamped to `u32::MAX`, as
/// `ctxscope_core::Event` documents.
fn id_of(handle: HANDLE) -> u32 {
    u32::try_from(handle.addr()).unwrap_or(u32::MAX)
}

/// The requestor an IRP records: the thread the I/O manager stored in `Irp->Tail.Overlay.Thread`
/// when it built the IRP for a user-mode request, and that thread's process. `None` if the IRP
/// carries no thread (an IRP a driver built without one).
///
/// # Safety
/// `irp` must point to a live IRP that the caller's driver currently handles (so the I/O manager
/// keeps it, and the thread it references, alive for the call). Callable at `IRQL <=
/// DISPATCH_LEVEL`.
pub unsafe fn irp_thread(irp: PIRP) -> Option<PETHREAD> {
    if irp.is_null() {
        return None;
    }
    // SAFETY: `irp` is a live IRP (the caller's contract). Taking the address of a field through
    // the raw pointer creates no reference, so nothing is asserted about other fields the I/O
    // manager may update concurrently (`Cancel`, `IoStatus`).
    let thread_field = unsafe { &raw const (*irp).Tail.Overlay.Thread };
    // SAFETY: the field is a properly aligned `PETHREAD` inside the live IRP; the I/O manager sets
    // it when it builds the IRP and does not change it afterwards.
    let thread = unsafe { thread_field.read() };
    (!thread.is_null()).then_some(thread)
}

/// The requestor of a thread: its process ID (`PsGetThreadProcessId`) and thread ID
/// (`PsGetThreadId`), both callable at any IRQL.
///
/// # Safety
/// `thread` must be a referenced, live `ETHREAD` (one an IRP the caller handles refers to).
pub unsafe fn thread_requestor(thread: PETHREAD) -> Requestor {
    // SAFETY: `thread` is a live thread object (the caller's contract).
    let pid = unsafe { PsGetThreadProcessId(thread) };
    // SAFETY: as above.
    let tid = unsafe { PsGetThreadId(thread) };
    Requestor {
        pid: id_of(pid),
        tid: id_of(tid),
    }
}

impl Kernel for WdkKernel {
    type Request = WDFREQUEST;

    fn current(&self) -> ExecContext {
        // SAFETY: `PsGetCurrentProcessId` takes no argument and is callable at any IRQL.
        let pid = unsafe { PsGetCurrentProcessId() };
        // SAFETY: `PsGetCurrentThreadId` takes no argument and is callable at any IRQL.
        let tid = unsafe { PsGetCurrentThreadId() };
        // SAFETY: `KeGetCurrentIrql` takes no argument and is callable at any IRQL.
        let irql = unsafe { KeGetCurrentIrql() };
        // SAFETY: a null `ProcNumber` is documented as allowed (the group-relative number is then
        // not returned); callable at any IRQL.
        let cpu = unsafe { KeGetCurrentProcessorNumberEx(core::ptr::null_mut()) };
        ExecContext {
            pid: id_of(pid),
            tid: id_of(tid),
            irql,
            cpu,
        }
    }

    fn counter(&self) -> u64 {
        // SAFETY: a null `PerformanceFrequency` is documented as allowed; callable at any IRQL.
        let now = unsafe { KeQueryPerformanceCounter(core::ptr::null_mut()) };
        // SAFETY: `LARGE_INTEGER` is a union whose every member covers the same 64 bits;
        // `QuadPart` is the whole value, which `KeQueryPerformanceCounter` wrote.
        let ticks = unsafe { now.QuadPart };
        ticks.cast_unsigned()
    }

    fn counter_frequency(&self) -> u64 {
        let mut frequency = LARGE_INTEGER::default();
        // SAFETY: `frequency` is a writable `LARGE_INTEGER` that outlives the call; callable at
        // any IRQL. The returned counter value is not needed.
        let _ = unsafe { KeQueryPerformanceCounter(&raw mut frequency) };
        // SAFETY: `KeQueryPerformanceCounter` wrote the frequency as the whole 64-bit value.
        let ticks_per_second = unsafe { frequency.QuadPart };
        ticks_per_second.cast_unsigned()
    }

    fn requestor(&self, request: WDFREQUEST) -> Option<Requestor> {
        // SAFETY: `request` is a request the calling callback was handed by the framework and
        // still owns; `WdfRequestWdmGetIrp` is callable at `IRQL <= DISPATCH_LEVEL`.
        let irp = unsafe { call_unsafe_wdf_function_binding!(WdfRequestWdmGetIrp, request) };
        // SAFETY: the IRP belongs to `request`, which the caller owns, so it is live.
        let thread = unsafe { irp_thread(irp) }?;
        // SAFETY: as for `WdfRequestWdmGetIrp`; `WdfRequestGetRequestorProcessId` (KMDF 1.21+)
        // is callable at `IRQL <= DISPATCH_LEVEL` and returns the process of the IRP's thread.
        let pid =
            unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetRequestorProcessId, request) };
        // SAFETY: the thread is referenced by the live IRP.
        let tid = unsafe { PsGetThreadId(thread) };
        Some(Requestor {
            pid,
            tid: id_of(tid),
        })
    }

    fn log(&self, line: &LineBuf) {
        let text = line.as_cstr_bytes();
        // SAFETY: the format is the constant "%s", so nothing in the line is interpreted; `text`
        // is the line with its terminating NUL (`LineBuf::as_cstr_bytes`) and outlives the call.
        // `DbgPrintEx` is callable at `IRQL <= DIRQL` when, as here, no Unicode conversion is
        // used, and prints at most 512 bytes (a line is at most `LineBuf::CAPACITY`, 288).
        unsafe {
            DbgPrintEx(
                COMPONENT_IHVDRIVER,
                DPFLTR_INFO_LEVEL,
                c"%s".as_ptr(),
                text.as_ptr(),
            );
        }
    }
}
