//! The I/O queues and requests: `EvtIoInCallerContext`, the read, write and device-control queues
//! the logic asks for, `EvtIoRead`, `EvtIoWrite`, `EvtIoDeviceControl`, the request context that
//! holds the logic's [`RequestState`] and the `METHOD_NEITHER` buffers locked in the caller's
//! context, and the pending read with its cancel routine.
//!
//! # The pending read
//! At most one read is pending: the read queue is sequential, so the next read is presented only
//! after the previous one completed. The read is kept in the device context's `pending_read`
//! slot, guarded by the device's spin lock, and is completed exactly once, by whichever wins:
//! - the completer (interrupt DPC or timer tick) takes it out of the slot under the lock and calls
//!   `WdfRequestUnmarkCancelable`; if that returns `STATUS_CANCELLED` the cancel routine owns the
//!   request (it has run or will run) and the completer leaves it alone;
//! - the cancel routine takes the lock, clears the slot if it still holds the request, releases the
//!   lock, and completes the request as cancelled.
//!
//! The completer calls `WdfRequestUnmarkCancelable` with the lock held, and the cancel routine
//! clears the slot before it completes the request; so while the slot holds the request, the
//! request has not been completed and its handle is valid. `WdfRequestMarkCancelableEx` (not
//! `...MarkCancelable`) is used because it never calls the cancel routine itself, so it may be
//! called with the lock held.

use core::cell::UnsafeCell;

use ctxscope_core::logic::DeviceRegisters;
use ctxscope_core::logic::{
    BufferedInput, CallerDecision, Completion, FileState, IoKind, MAX_BUFFERED_INPUT,
    NeitherBuffers, QueueDispatch, ReadDecision, ReadToComplete, RequestState, UserMemory,
    UserMemoryMut, edu,
};
use ctxscope_core::protocol::AlignedBuf;
use wdk::nt_success;
use wdk_sys::{
    _WDF_IO_QUEUE_DISPATCH_TYPE, _WDF_REQUEST_TYPE, _WDF_TRI_STATE, NTSTATUS, PVOID,
    PWDFDEVICE_INIT, STATUS_INVALID_DEVICE_STATE, ULONG, ULONG_PTR, WDF_IO_QUEUE_CONFIG,
    WDF_NO_HANDLE, WDF_REQUEST_PARAMETERS, WDFDEVICE, WDFMEMORY, WDFQUEUE, WDFREQUEST,
    call_unsafe_wdf_function_binding,
};

use crate::DRIVER;
use crate::context::{ContextType, object_attributes, wdf_size, wdf_size_u16};
use crate::device::{DeviceContext, device_context};
use crate::file::file_context;
use crate::kernel::WdkKernel;

/// The status the glue completes a request with when a framework guarantee it relies on does not
/// hold (a request without the context every request is created with, or a decision the logic
/// documents it never returns at that point). None of these paths is reachable while the
/// framework and the logic keep their contracts; they exist so that a broken contract fails the
/// request instead of leaving it uncompleted or touching uninitialized memory.
const STATUS_GLUE_CONTRACT: NTSTATUS = STATUS_INVALID_DEVICE_STATE;

/// A request's context, written whole by `EvtIoInCallerContext` before the request is enqueued.
pub struct RequestContext {
    /// The logic's state for the request. Only the callback that currently owns the request (a
    /// queue callback, then the completer that won it) touches it, so at most one `&mut` exists.
    state: UnsafeCell<RequestState>,
    /// The `METHOD_NEITHER` input buffer, probed and locked in the caller's context (null if
    /// none). A child of the request: the framework unlocks and deletes it when the request
    /// completes.
    input_memory: WDFMEMORY,
    /// The `METHOD_NEITHER` output buffer, probed and locked for writing (null if none).
    output_memory: WDFMEMORY,
}

/// `WDF_DECLARE_CONTEXT_TYPE(RequestContext)`.
pub static REQUEST_CONTEXT: ContextType<RequestContext> =
    ContextType::new(c"RequestContext", &raw const REQUEST_CONTEXT);

/// The context of a request that went through `EvtIoInCallerContext`.
///
/// # Safety
/// `request` must be a read, write or device-control request the caller owns. The framework calls
/// `EvtIoInCallerContext` for every such request before it reaches a queue, and that callback
/// writes the context before enqueueing; the reference must not outlive the ownership.
unsafe fn request_context<'a>(request: WDFREQUEST) -> Option<&'a RequestContext> {
    // SAFETY: a valid request handle (the caller's contract).
    let context = unsafe { REQUEST_CONTEXT.get(request.cast()) }?;
    // SAFETY: initialized by `EvtIoInCallerContext` (the caller's contract); `state` is
    // interior-mutable, the other fields are never written again.
    Some(unsafe { context.as_ref() })
}

impl RequestContext {
    /// The request's state, for the owner of the request.
    ///
    /// # Safety
    /// The caller must own the request, and no other reference to the state may be live.
    #[allow(
        clippy::mut_from_ref,
        reason = "exclusive by request ownership, see `state`"
    )]
    unsafe fn state(&self) -> &mut RequestState {
        // SAFETY: the owner of the request is the only one touching the state (the caller's
        // contract).
        unsafe { &mut *self.state.get() }
    }
}

/// `WdfRequestCompleteWithInformation(request, status, information)`: completes the request as
/// the logic decided, with the exact number of bytes it wrote. Callable at `IRQL <=
/// DISPATCH_LEVEL`.
///
/// # Safety
/// The caller must own `request` and not touch it afterwards.
pub unsafe fn complete(request: WDFREQUEST, completion: Completion) {
    let information = ULONG_PTR::try_from(completion.information).unwrap_or(ULONG_PTR::MAX);
    // SAFETY: the caller owns the request and gives it up here.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestCompleteWithInformation,
            request,
            completion.status,
            information
        );
    }
}

/// Registers the request context and `EvtIoInCallerContext` on `device_init`
/// (`WdfDeviceInitSetRequestAttributes`, `WdfDeviceInitSetIoInCallerContextCallback`, both
/// `PASSIVE_LEVEL`).
///
/// # Safety
/// `device_init` must be the framework's `WDFDEVICE_INIT`, before `WdfDeviceCreate`.
pub unsafe fn register(device_init: PWDFDEVICE_INIT) {
    let mut attributes = REQUEST_CONTEXT.attributes();
    // SAFETY: the framework's `device_init`; the attributes are copied by the call.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetRequestAttributes,
            device_init,
            &raw mut attributes
        );
    }
    // SAFETY: as above.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetIoInCallerContextCallback,
            device_init,
            Some(evt_io_in_caller_context)
        );
    }
}

/// The queue callbacks one queue has: exactly one of read, write or device control.
enum Handler {
    Read,
    Write,
    DeviceControl,
}

/// Creates one non-default queue for one request type and routes that type to it
/// (`WdfIoQueueCreate`, `WdfDeviceConfigureRequestDispatching`, both `PASSIVE_LEVEL`). The queue
/// is a child of the device and power-managed (the framework's default for a function driver).
///
/// # Safety
/// `device` must be this driver's device, in `EvtDriverDeviceAdd`.
unsafe fn create_queue(device: WDFDEVICE, dispatch: QueueDispatch, handler: &Handler) -> NTSTATUS {
    let mut config = WDF_IO_QUEUE_CONFIG {
        Size: wdf_size::<WDF_IO_QUEUE_CONFIG>(),
        PowerManaged: _WDF_TRI_STATE::WdfUseDefault,
        DefaultQueue: 0,
        // Zero-length reads and writes reach the logic too (the framework would otherwise
        // complete them itself with success, and a zero-length read is one the logic refuses).
        AllowZeroLengthRequests: 1,
        DispatchType: match dispatch {
            QueueDispatch::Sequential => _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchSequential,
            QueueDispatch::Parallel => _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchParallel,
        },
        ..WDF_IO_QUEUE_CONFIG::default()
    };
    if dispatch == QueueDispatch::Parallel {
        // What `WDF_IO_QUEUE_CONFIG_INIT` sets for a parallel queue: no limit.
        config.Settings.Parallel.NumberOfPresentedRequests = ULONG::MAX;
    }
    let request_type = match handler {
        Handler::Read => {
            config.EvtIoRead = Some(evt_io_read);
            _WDF_REQUEST_TYPE::WdfRequestTypeRead
        }
        Handler::Write => {
            config.EvtIoWrite = Some(evt_io_write);
            _WDF_REQUEST_TYPE::WdfRequestTypeWrite
        }
        Handler::DeviceControl => {
            config.EvtIoDeviceControl = Some(evt_io_device_control);
            _WDF_REQUEST_TYPE::WdfRequestTypeDeviceControl
        }
    };
    let mut attributes = object_attributes();
    let mut queue: WDFQUEUE = WDF_NO_HANDLE.cast();
    // SAFETY: `device` is this driver's; the configuration is initialized as
    // `WDF_IO_QUEUE_CONFIG_INIT` does; all pointers are to locals that outlive the call.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut config,
            &raw mut attributes,
            &raw mut queue
        )
    };
    if !nt_success(status) {
        return status;
    }
    // SAFETY: `device` and the queue just created are this driver's.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceConfigureRequestDispatching,
            device,
            queue,
            request_type
        )
    }
}

/// Creates the read, write and device-control queues as `setup` says.
///
/// # Safety
/// `device` must be this driver's device, in `EvtDriverDeviceAdd`.
pub unsafe fn create_queues(
    device: WDFDEVICE,
    setup: &ctxscope_core::logic::DeviceSetup,
) -> NTSTATUS {
    let queues = [
        (setup.read_queue, Handler::Read),
        (setup.write_queue, Handler::Write),
        (setup.control_queue, Handler::DeviceControl),
    ];
    for (dispatch, handler) in &queues {
        // SAFETY: the caller's contract.
        let status = unsafe { create_queue(device, *dispatch, handler) };
        if !nt_success(status) {
            return status;
        }
    }
    wdk_sys::STATUS_SUCCESS
}

// ---- EvtIoInCallerContext ---------------------------------------------------------------------

/// What the request is, from `WdfRequestGetParameters` (`IRQL <= DISPATCH_LEVEL`); `None` for
/// request types the logic does not model (only kernel-mode components send them).
///
/// # Safety
/// `request` must be a request the caller owns.
unsafe fn io_kind(request: WDFREQUEST) -> Option<IoKind> {
    let mut parameters = WDF_REQUEST_PARAMETERS {
        Size: wdf_size_u16::<WDF_REQUEST_PARAMETERS>(),
        ..WDF_REQUEST_PARAMETERS::default()
    };
    // SAFETY: the caller owns `request`; `parameters` is initialized as
    // `WDF_REQUEST_PARAMETERS_INIT` does.
    unsafe {
        call_unsafe_wdf_function_binding!(WdfRequestGetParameters, request, &raw mut parameters);
    }
    match parameters.Type {
        _WDF_REQUEST_TYPE::WdfRequestTypeRead => {
            // SAFETY: for a read, the framework filled the `Read` member of the union.
            let read = unsafe { parameters.Parameters.Read };
            Some(IoKind::Read {
                length: read.Length,
            })
        }
        _WDF_REQUEST_TYPE::WdfRequestTypeWrite => {
            // SAFETY: for a write, the framework filled the `Write` member.
            let write = unsafe { parameters.Parameters.Write };
            Some(IoKind::Write {
                length: write.Length,
            })
        }
        _WDF_REQUEST_TYPE::WdfRequestTypeDeviceControl => {
            // SAFETY: for a device control, the framework filled the `DeviceIoControl` member.
            let control = unsafe { parameters.Parameters.DeviceIoControl };
            Some(IoKind::DeviceControl {
                code: control.IoControlCode,
                input_length: control.InputBufferLength,
                output_length: control.OutputBufferLength,
            })
        }
        _ => None,
    }
}

/// `WdfDeviceEnqueueRequest` (`IRQL <= DISPATCH_LEVEL`): hands the request to the queue its type
/// is routed to. If the framework refuses it, the driver still owns it and must complete it, with
/// the framework's status.
///
/// # Safety
/// The caller must own `request` and not touch it afterwards.
unsafe fn enqueue(device: WDFDEVICE, request: WDFREQUEST) {
    // SAFETY: `device` is this driver's and the caller owns `request`.
    let status =
        unsafe { call_unsafe_wdf_function_binding!(WdfDeviceEnqueueRequest, device, request) };
    if !nt_success(status) {
        // SAFETY: the framework refused the request, so the caller still owns it.
        unsafe { complete(request, Completion::failed(status)) };
    }
}

/// Retrieves and probes and locks the `METHOD_NEITHER` buffers the logic asked for
/// (`WdfRequestRetrieveUnsafeUserInputBuffer` / `...OutputBuffer`, then
/// `WdfRequestProbeAndLockUserBufferForRead` / `...ForWrite`; all `PASSIVE_LEVEL`, in the caller's
/// context, top-level driver only). The user pointers are only handed to the framework, which
/// probes them under exception handling; they are never dereferenced here.
///
/// # Safety
/// `request` must be a `METHOD_NEITHER` device-control request the caller owns, in
/// `EvtIoInCallerContext`.
unsafe fn lock_neither_buffers(
    request: WDFREQUEST,
    input_length: usize,
    output_length: usize,
    input_memory: &mut WDFMEMORY,
    output_memory: &mut WDFMEMORY,
) -> Result<(), NTSTATUS> {
    if input_length > 0 {
        let mut user_buffer: PVOID = core::ptr::null_mut();
        let mut user_length: usize = 0;
        // SAFETY: the caller owns the request; outputs are locals.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveUnsafeUserInputBuffer,
                request,
                0,
                &raw mut user_buffer,
                &raw mut user_length
            )
        };
        if !nt_success(status) {
            return Err(status);
        }
        // SAFETY: the pointer is the request's own user input buffer, passed through to the
        // framework, which probes it; the memory object is a child of the request.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestProbeAndLockUserBufferForRead,
                request,
                user_buffer,
                input_length,
                core::ptr::from_mut(input_memory)
            )
        };
        if !nt_success(status) {
            return Err(status);
        }
    }
    let mut user_buffer: PVOID = core::ptr::null_mut();
    let mut user_length: usize = 0;
    // SAFETY: as above, for the output buffer.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestRetrieveUnsafeUserOutputBuffer,
            request,
            0,
            &raw mut user_buffer,
            &raw mut user_length
        )
    };
    if !nt_success(status) {
        return Err(status);
    }
    // SAFETY: as above; probed for writing.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestProbeAndLockUserBufferForWrite,
            request,
            user_buffer,
            output_length,
            core::ptr::from_mut(output_memory)
        )
    };
    if nt_success(status) {
        Ok(())
    } else {
        Err(status)
    }
}

/// `EvtIoInCallerContext` (the caller's IRQL, PASSIVE for user-mode callers, in the thread that
/// sent the request): the logic gives the request its state and decides; the state is stored in
/// the request's context before the request is enqueued or completed.
extern "C" fn evt_io_in_caller_context(device: WDFDEVICE, request: WDFREQUEST) {
    let kernel = WdkKernel;
    // SAFETY: the framework hands the request to this callback, which owns it until it enqueues
    // or completes it.
    let Some(kind) = (unsafe { io_kind(request) }) else {
        // Not a request type the logic models: let the framework's dispatching decide (no queue
        // takes it, so the framework refuses it and `enqueue` completes it with that status).
        // SAFETY: the callback owns the request.
        unsafe { enqueue(device, request) };
        return;
    };
    // SAFETY: the callback owns the request; `WdfRequestGetFileObject` (`IRQL <=
    // DISPATCH_LEVEL`) returns its file object or null.
    let file_object =
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetFileObject, request) };
    // SAFETY: null, or the open file object the request was sent on (its create succeeded).
    let file = unsafe { file_context(file_object) }.map_or(
        // A request without a file object of this device: file ID 0, "none" in events.
        FileState {
            id: 0,
            opener: None,
        },
        |context| context.opened,
    );
    let (mut state, decision) = DRIVER.in_caller_context(&kernel, request, &file, kind);
    let mut input_memory: WDFMEMORY = core::ptr::null_mut();
    let mut output_memory: WDFMEMORY = core::ptr::null_mut();
    let decision = match decision {
        CallerDecision::ProbeAndLock {
            input_length,
            output_length,
        } => {
            // SAFETY: a `METHOD_NEITHER` device control (the logic decides this only for one),
            // owned by this callback, in the caller's context.
            let locked = unsafe {
                lock_neither_buffers(
                    request,
                    input_length,
                    output_length,
                    &mut input_memory,
                    &mut output_memory,
                )
            };
            DRIVER.neither_buffers_locked(&mut state, locked)
        }
        other => other,
    };
    // SAFETY: the callback owns the request, created with a `RequestContext`.
    let Some(context) = (unsafe { REQUEST_CONTEXT.get(request.cast()) }) else {
        // SAFETY: the callback owns the request.
        unsafe { complete(request, Completion::failed(STATUS_GLUE_CONTRACT)) };
        return;
    };
    // SAFETY: the framework allocated the context zeroed with the request and nothing has read
    // it; this write, before the request is enqueued, is its initialization.
    unsafe {
        context.as_ptr().write(RequestContext {
            state: UnsafeCell::new(state),
            input_memory,
            output_memory,
        });
    }
    match decision {
        // SAFETY: the callback owns the request and gives it up.
        CallerDecision::Enqueue => unsafe { enqueue(device, request) },
        // SAFETY: as above.
        CallerDecision::Complete(completion) => unsafe { complete(request, completion) },
        CallerDecision::ProbeAndLock { .. } => {
            // `neither_buffers_locked` returns only `Enqueue` or `Complete`.
            // SAFETY: as above.
            unsafe { complete(request, Completion::failed(STATUS_GLUE_CONTRACT)) };
        }
    }
}

// ---- Reads and the pending read ----------------------------------------------------------------

/// The device a queue belongs to (`WdfIoQueueGetDevice`, `IRQL <= DISPATCH_LEVEL`).
///
/// # Safety
/// `queue` must be one of this driver's queues.
unsafe fn queue_device(queue: WDFQUEUE) -> WDFDEVICE {
    // SAFETY: the caller's contract.
    unsafe { call_unsafe_wdf_function_binding!(WdfIoQueueGetDevice, queue) }
}

/// Makes `request` cancelable and keeps it as the pending read (see the module documentation).
/// Returns whether it is now pending; if not, it has been completed (cancelled, or with the
/// status `WdfRequestMarkCancelableEx` failed with).
///
/// # Safety
/// The caller must own `request`, a read from this device's read queue; if this returns `true`,
/// the request belongs to the pending slot and the caller must not touch it any more.
unsafe fn pend_read(device: &DeviceContext, request: WDFREQUEST) -> bool {
    // SAFETY: the device's spin lock (`IRQL <= DISPATCH_LEVEL`), released below.
    unsafe { call_unsafe_wdf_function_binding!(WdfSpinLockAcquire, device.pending_lock) };
    // SAFETY: `pending_read` is only accessed with the lock held, which it is. It is null here:
    // the sequential read queue presents no read while another is pending.
    unsafe { device.pending_read.get().write(request) };
    // SAFETY: the caller owns the request; `WdfRequestMarkCancelableEx` (`IRQL <=
    // DISPATCH_LEVEL`) never calls the cancel routine itself, so holding the lock the routine
    // takes is allowed.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestMarkCancelableEx,
            request,
            Some(evt_request_cancel)
        )
    };
    if !nt_success(status) {
        // SAFETY: the lock is held.
        unsafe { device.pending_read.get().write(core::ptr::null_mut()) };
    }
    // SAFETY: acquired above.
    unsafe { call_unsafe_wdf_function_binding!(WdfSpinLockRelease, device.pending_lock) };
    if nt_success(status) {
        return true;
    }
    let completion = if status == wdk_sys::STATUS_CANCELLED {
        // Already cancelled: the cancel routine was not set and will not run.
        DRIVER.read_cancelled()
    } else {
        Completion::failed(status)
    };
    // SAFETY: the request was not made cancelable, so the caller still owns it.
    unsafe { complete(request, completion) };
    false
}

/// Takes the pending read out of the slot for a completer (interrupt DPC or timer tick), if there
/// is one and the completer wins it from the cancel routine (see the module documentation).
/// Callable at `IRQL <= DISPATCH_LEVEL`. The caller then owns the returned request and must
/// complete it.
pub fn take_pending_read(device: &DeviceContext) -> Option<WDFREQUEST> {
    // SAFETY: the device's spin lock, released below.
    unsafe { call_unsafe_wdf_function_binding!(WdfSpinLockAcquire, device.pending_lock) };
    // SAFETY: the lock is held.
    let request = unsafe { device.pending_read.get().read() };
    let mut won = None;
    if !request.is_null() {
        // SAFETY: the slot holds the request, so the cancel routine has not completed it (it
        // clears the slot under this lock first): the handle is valid. `IRQL <= DISPATCH_LEVEL`.
        let status =
            unsafe { call_unsafe_wdf_function_binding!(WdfRequestUnmarkCancelable, request) };
        if status != wdk_sys::STATUS_CANCELLED {
            // SAFETY: the lock is held.
            unsafe { device.pending_read.get().write(core::ptr::null_mut()) };
            won = Some(request);
        }
        // Otherwise the cancel routine owns the request; it clears the slot itself.
    }
    // SAFETY: acquired above.
    unsafe { call_unsafe_wdf_function_binding!(WdfSpinLockRelease, device.pending_lock) };
    won
}

/// Hands a read the caller won to `complete_with` (the logic of the interrupt DPC or the timer
/// tick) as a [`ReadToComplete`], then completes it as the logic decided. With no read, calls
/// `complete_with(None)`. The read's buffer is its output buffer (`WdfRequestRetrieveOutputBuffer`,
/// `IRQL <= DISPATCH_LEVEL`; buffered I/O, so the system buffer, valid in any context until the
/// request completes); if the framework has none to give, the logic gets an empty buffer and
/// fails the read.
///
/// # Safety
/// If `request` is `Some`, the caller must own it (it won it with [`take_pending_read`]) and not
/// touch it afterwards: it is completed here.
pub unsafe fn complete_read_with<T>(
    request: Option<WDFREQUEST>,
    complete_with: impl FnOnce(Option<ReadToComplete<'_>>) -> (T, Option<Completion>),
) -> T {
    let Some(request) = request else {
        return complete_with(None).0;
    };
    // SAFETY: the caller won the request, so it owns it; it went through `EvtIoInCallerContext`.
    let Some(context) = (unsafe { request_context(request) }) else {
        let (value, _) = complete_with(None);
        // SAFETY: the caller owns the request.
        unsafe { complete(request, Completion::failed(STATUS_GLUE_CONTRACT)) };
        return value;
    };
    let mut buffer: PVOID = core::ptr::null_mut();
    let mut length: usize = 0;
    // SAFETY: the caller owns the request; the outputs are locals.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestRetrieveOutputBuffer,
            request,
            0,
            &raw mut buffer,
            &raw mut length
        )
    };
    let output: &mut [u8] = if nt_success(status) && !buffer.is_null() {
        // SAFETY: the framework returned the request's system buffer of `length` bytes, valid
        // until the request completes below; this callback owns the request, so nothing else
        // accesses the buffer meanwhile.
        unsafe { core::slice::from_raw_parts_mut(buffer.cast::<u8>(), length) }
    } else {
        &mut []
    };
    // SAFETY: the caller owns the request and no other reference to its state is live.
    let state = unsafe { context.state() };
    let (value, completion) = complete_with(Some(ReadToComplete {
        state,
        buffer: output,
    }));
    // The logic returns a completion whenever it is given a read.
    let completion = completion.unwrap_or(Completion::failed(STATUS_GLUE_CONTRACT));
    // SAFETY: the caller owns the request and gives it up.
    unsafe { complete(request, completion) };
    value
}

/// `EvtIoRead` on the sequential read queue (`IRQL <= DISPATCH_LEVEL`, an arbitrary thread):
/// completes, or keeps the read pending for the timer, or keeps it pending and raises the edu
/// interrupt, as the logic decides.
extern "C" fn evt_io_read(queue: WDFQUEUE, request: WDFREQUEST, length: usize) {
    let kernel = WdkKernel;
    // SAFETY: the framework hands the request to this callback, which owns it.
    let Some(context) = (unsafe { request_context(request) }) else {
        // SAFETY: the callback owns the request.
        unsafe { complete(request, Completion::failed(STATUS_GLUE_CONTRACT)) };
        return;
    };
    // SAFETY: the callback owns the request; no other reference to its state is live.
    let decision = DRIVER.io_read(&kernel, unsafe { context.state() }, length);
    let raise = match decision {
        ReadDecision::Complete(completion) => {
            // SAFETY: the callback owns the request.
            unsafe { complete(request, completion) };
            return;
        }
        ReadDecision::WaitForTimer => None,
        ReadDecision::RaiseInterrupt { value } => Some(value),
    };
    // SAFETY: `queue` is this driver's read queue.
    let device = unsafe { queue_device(queue) };
    // SAFETY: the framework's device for this queue.
    let Some(device) = (unsafe { device_context(device) }) else {
        // SAFETY: the callback owns the request.
        unsafe { complete(request, Completion::failed(STATUS_GLUE_CONTRACT)) };
        return;
    };
    // SAFETY: the callback owns the request, a read of this device's read queue.
    let pending = unsafe { pend_read(device, request) };
    if let (true, Some(value)) = (pending, raise) {
        // Raised after the read is pending, so the DPC the interrupt queues finds it.
        device.bar0().write32(edu::REG_INTERRUPT_RAISE, value);
    }
}

/// The pending read's cancel routine (`EvtRequestCancel`, `IRQL <= DISPATCH_LEVEL`, an arbitrary
/// thread): clears the slot if it still holds the request, then completes it as the logic says.
extern "C" fn evt_request_cancel(request: WDFREQUEST) {
    // SAFETY: the framework calls the cancel routine with the request it belongs to, still
    // delivered from the read queue; `WdfRequestGetIoQueue` is callable at `IRQL <=
    // DISPATCH_LEVEL`.
    let queue = unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetIoQueue, request) };
    if !queue.is_null() {
        // SAFETY: the request's queue is one of this driver's.
        let device = unsafe { queue_device(queue) };
        // SAFETY: the framework's device for this queue.
        if let Some(device) = unsafe { device_context(device) } {
            // SAFETY: the device's spin lock, released below.
            unsafe { call_unsafe_wdf_function_binding!(WdfSpinLockAcquire, device.pending_lock) };
            // SAFETY: the lock is held.
            let pending = unsafe { device.pending_read.get().read() };
            if pending == request {
                // SAFETY: the lock is held.
                unsafe { device.pending_read.get().write(core::ptr::null_mut()) };
            }
            // SAFETY: acquired above.
            unsafe { call_unsafe_wdf_function_binding!(WdfSpinLockRelease, device.pending_lock) };
        }
    }
    // SAFETY: the cancel routine owns the request it is called for.
    unsafe { complete(request, DRIVER.read_cancelled()) };
}

// ---- Writes and device controls -----------------------------------------------------------------

/// `EvtIoWrite` on the parallel write queue (`IRQL <= DISPATCH_LEVEL`): completes as the logic
/// decides.
extern "C" fn evt_io_write(_queue: WDFQUEUE, request: WDFREQUEST, length: usize) {
    let kernel = WdkKernel;
    // SAFETY: the framework hands the request to this callback, which owns it.
    let completion = match unsafe { request_context(request) } {
        // SAFETY: the callback owns the request; no other reference to its state is live.
        Some(context) => DRIVER.io_write(&kernel, unsafe { context.state() }, length),
        None => Completion::failed(STATUS_GLUE_CONTRACT),
    };
    // SAFETY: the callback owns the request.
    unsafe { complete(request, completion) };
}

/// Copies a `METHOD_BUFFERED` input (`WdfRequestRetrieveInputBuffer`, `IRQL <= DISPATCH_LEVEL`)
/// into `local` before anything touches the output, which shares the system buffer. No input
/// (`STATUS_BUFFER_TOO_SMALL` for a zero length, or any other refusal) is an empty input, which
/// the logic validates like any other.
///
/// # Safety
/// The caller must own `request`, and no reference into its system buffer may be live.
unsafe fn copy_buffered_input(
    request: WDFREQUEST,
    local: &mut AlignedBuf<MAX_BUFFERED_INPUT>,
) -> BufferedInput<'_> {
    let mut buffer: PVOID = core::ptr::null_mut();
    let mut length: usize = 0;
    // SAFETY: the caller owns the request; outputs are locals.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestRetrieveInputBuffer,
            request,
            0,
            &raw mut buffer,
            &raw mut length
        )
    };
    if !nt_success(status) || buffer.is_null() {
        return BufferedInput::Copied(&local.as_bytes()[..0]);
    }
    if length > MAX_BUFFERED_INPUT {
        return BufferedInput::TooLong(length);
    }
    // SAFETY: the framework returned the system buffer holding `length` input bytes, valid while
    // the caller owns the request; the slice is dropped at the end of this function, before any
    // reference to the output exists.
    let input = unsafe { core::slice::from_raw_parts(buffer.cast::<u8>(), length) };
    local.as_mut_bytes()[..length].copy_from_slice(input);
    BufferedInput::Copied(&local.as_bytes()[..length])
}

/// The `METHOD_BUFFERED` output buffer (`WdfRequestRetrieveOutputBuffer`, `IRQL <=
/// DISPATCH_LEVEL`), or an empty one if there is none (`STATUS_BUFFER_TOO_SMALL` for a zero
/// length).
///
/// # Safety
/// The caller must own `request` and hold no other reference into its system buffer while the
/// returned slice lives (the request must not complete before the slice is dropped).
unsafe fn buffered_output<'a>(request: WDFREQUEST) -> &'a mut [u8] {
    let mut buffer: PVOID = core::ptr::null_mut();
    let mut length: usize = 0;
    // SAFETY: the caller owns the request; outputs are locals.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestRetrieveOutputBuffer,
            request,
            0,
            &raw mut buffer,
            &raw mut length
        )
    };
    if !nt_success(status) || buffer.is_null() {
        return &mut [];
    }
    // SAFETY: the request's system buffer of `length` bytes, exclusively the caller's (contract).
    unsafe { core::slice::from_raw_parts_mut(buffer.cast::<u8>(), length) }
}

/// The system-space mapping of user pages locked in the caller's context (`WdfMemoryGetBuffer`
/// on the `WDFMEMORY` from `WdfRequestProbeAndLockUserBufferFor...`). The pages stay shared with
/// the user process, whose threads may change them at any time, so no Rust reference to them is
/// ever made: every access is one volatile byte read or write through the raw pointer.
struct LockedUserBuffer {
    base: *mut u8,
    length: usize,
}

impl LockedUserBuffer {
    /// The mapping of `memory`, or `None` for a null handle or a null buffer.
    ///
    /// # Safety
    /// `memory` must be null or a memory object locked in caller context for a request the caller
    /// owns; the value must not be used after the request completes (the framework unlocks the
    /// pages then).
    unsafe fn of(memory: WDFMEMORY) -> Option<Self> {
        if memory.is_null() {
            return None;
        }
        let mut length: usize = 0;
        // SAFETY: a memory object of the request (the caller's contract); `WdfMemoryGetBuffer` is
        // callable at any IRQL and returns the buffer with its size.
        let base = unsafe {
            call_unsafe_wdf_function_binding!(WdfMemoryGetBuffer, memory, &raw mut length)
        };
        if base.is_null() {
            return None;
        }
        Some(Self {
            base: base.cast::<u8>(),
            length,
        })
    }
}

impl UserMemory for LockedUserBuffer {
    fn len(&self) -> usize {
        self.length
    }

    fn read(&self, offset: usize) -> u8 {
        if offset >= self.length {
            return 0;
        }
        // SAFETY: `offset` is below `length`, so the result stays inside the buffer.
        let byte = unsafe { self.base.add(offset) };
        // SAFETY: `byte` is inside the locked, system-mapped buffer, valid until the request
        // completes (see `LockedUserBuffer::of`); a volatile read copes with the user process
        // changing the byte concurrently.
        unsafe { byte.read_volatile() }
    }
}

impl UserMemoryMut for LockedUserBuffer {
    fn write(&mut self, offset: usize, bytes: &[u8]) {
        for (index, &byte) in bytes.iter().enumerate() {
            let at = offset + index;
            if at >= self.length {
                return;
            }
            // SAFETY: `at` is below `length` (checked above), so the result stays inside the
            // buffer.
            let target = unsafe { self.base.add(at) };
            // SAFETY: `target` is inside the locked, system-mapped buffer, locked for write access
            // by `WdfRequestProbeAndLockUserBufferForWrite` and valid until the request completes;
            // a volatile write, as the user process may read the byte concurrently.
            unsafe { target.write_volatile(byte) };
        }
    }
}

/// `EvtIoDeviceControl` on the sequential control queue (`IRQL <= DISPATCH_LEVEL`): hands the
/// logic its buffers (the locked `METHOD_NEITHER` ones if it locked them in caller context, else
/// the copied `METHOD_BUFFERED` input and the output) and completes as it decides.
extern "C" fn evt_io_device_control(
    _queue: WDFQUEUE,
    request: WDFREQUEST,
    _output_buffer_length: usize,
    _input_buffer_length: usize,
    io_control_code: ULONG,
) {
    let kernel = WdkKernel;
    // SAFETY: the framework hands the request to this callback, which owns it.
    let Some(context) = (unsafe { request_context(request) }) else {
        // SAFETY: the callback owns the request.
        unsafe { complete(request, Completion::failed(STATUS_GLUE_CONTRACT)) };
        return;
    };
    // SAFETY: the callback owns the request; no other reference to its state is live.
    let state: &RequestState = unsafe { context.state() };
    let completion = if state.neither_locked {
        // SAFETY: memory objects of this request, locked in caller context; used only until the
        // request is completed below.
        let input = unsafe { LockedUserBuffer::of(context.input_memory) };
        // SAFETY: as above.
        let output = unsafe { LockedUserBuffer::of(context.output_memory) };
        let no_input = LockedUserBuffer {
            base: core::ptr::null_mut(),
            length: 0,
        };
        let input = input.unwrap_or(no_input);
        let mut output = output;
        let neither = output.as_mut().map(|output| NeitherBuffers {
            input: &input,
            output,
        });
        DRIVER.io_device_control(
            &kernel,
            state,
            io_control_code,
            BufferedInput::Copied(&[]),
            &mut [],
            neither,
        )
    } else {
        let mut local = AlignedBuf::<MAX_BUFFERED_INPUT>::new();
        // SAFETY: the callback owns the request and holds no reference into its buffer.
        let input = unsafe { copy_buffered_input(request, &mut local) };
        // SAFETY: the input slice refers to `local`, not the system buffer; the output slice is
        // the only reference into the system buffer and is dropped before the request completes.
        let output = unsafe { buffered_output(request) };
        DRIVER.io_device_control(&kernel, state, io_control_code, input, output, None)
    };
    // SAFETY: the callback owns the request; no slice into its buffers is live any more.
    unsafe { complete(request, completion) };
}
