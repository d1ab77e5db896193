//! The framework interrupt object of the edu device: created in `EvtDevicePrepareHardware` for the
//! interrupt resource (line or message), its ISR at DIRQL and its DPC.
//!
//! The ISR hands the DPC what it saw (the `isr` trail entry and the status it acknowledged) in the
//! interrupt's context, which both access only under the interrupt lock: the framework holds it
//! while the ISR runs, and the DPC takes it with `WdfInterruptAcquireLock`.

use core::cell::UnsafeCell;

use ctxscope_core::logic::{DeviceRegisters, IsrDecision, edu};
use ctxscope_core::protocol::TrailEntry;
use wdk::nt_success;
use wdk_sys::{
    _WDF_TRI_STATE, BOOLEAN, NTSTATUS, STATUS_SUCCESS, ULONG, WDF_INTERRUPT_CONFIG, WDF_NO_HANDLE,
    WDFCMRESLIST, WDFDEVICE, WDFINTERRUPT, WDFOBJECT, call_unsafe_wdf_function_binding,
};

use crate::DRIVER;
use crate::context::{ContextType, wdf_size};
use crate::device::device_context;
use crate::kernel::WdkKernel;
use crate::queue::{complete_read_with, take_pending_read};

/// The interrupt's context: what the ISR hands to the DPC, accessed only under the interrupt
/// lock. If two interrupts come before the DPC runs, the later hand-over replaces the earlier
/// (the DPC is queued once).
pub struct InterruptContext {
    handover: UnsafeCell<Option<(TrailEntry, u32)>>,
}

/// `WDF_DECLARE_CONTEXT_TYPE(InterruptContext)`.
pub static INTERRUPT_CONTEXT: ContextType<InterruptContext> =
    ContextType::new(c"InterruptContext", &raw const INTERRUPT_CONTEXT);

/// The context of `interrupt`.
///
/// # Safety
/// `interrupt` must be an interrupt object `create` made (its context is then initialized); the
/// reference must not outlive the callback.
unsafe fn interrupt_context<'a>(interrupt: WDFINTERRUPT) -> Option<&'a InterruptContext> {
    // SAFETY: a valid interrupt handle (the caller's contract).
    let context = unsafe { INTERRUPT_CONTEXT.get(interrupt.cast()) }?;
    // SAFETY: `create` initialized it before the framework could connect the interrupt; its only
    // mutable field is interior-mutable.
    Some(unsafe { context.as_ref() })
}

/// Creates the interrupt object for resource `index` (`WdfInterruptCreate`, `PASSIVE_LEVEL`, from
/// `EvtDevicePrepareHardware` with both descriptors: the KMDF 1.11+ pattern). Automatic
/// serialization is off (the DPC synchronizes what it shares explicitly); the vector is shared or
/// not as the resource says (`WdfUseDefault`). The framework connects it after D0 entry,
/// disconnects it before `EvtDeviceReleaseHardware`, and deletes it after that.
///
/// # Safety
/// `device` must be this driver's device and the lists the ones the framework passed to
/// `EvtDevicePrepareHardware`, which must be the caller; `index` must be an interrupt resource.
pub unsafe fn create(
    device: WDFDEVICE,
    resources_raw: WDFCMRESLIST,
    resources_translated: WDFCMRESLIST,
    index: ULONG,
) -> NTSTATUS {
    // SAFETY: the framework's raw list; `index` is within it (the raw and translated lists
    // describe the same resources in the same order).
    let raw = unsafe {
        call_unsafe_wdf_function_binding!(WdfCmResourceListGetDescriptor, resources_raw, index)
    };
    // SAFETY: the framework's translated list; `index` is within it.
    let translated = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfCmResourceListGetDescriptor,
            resources_translated,
            index
        )
    };
    let mut config = WDF_INTERRUPT_CONFIG {
        Size: wdf_size::<WDF_INTERRUPT_CONFIG>(),
        ShareVector: _WDF_TRI_STATE::WdfUseDefault,
        AutomaticSerialization: 0,
        EvtInterruptIsr: Some(evt_interrupt_isr),
        EvtInterruptDpc: Some(evt_interrupt_dpc),
        InterruptRaw: raw,
        InterruptTranslated: translated,
        ReportInactiveOnPowerDown: _WDF_TRI_STATE::WdfUseDefault,
        ..WDF_INTERRUPT_CONFIG::default()
    };
    let mut attributes = INTERRUPT_CONTEXT.attributes();
    let mut interrupt: WDFINTERRUPT = WDF_NO_HANDLE.cast();
    // SAFETY: `device` is this driver's, in `EvtDevicePrepareHardware`; the configuration is
    // initialized as `WDF_INTERRUPT_CONFIG_INIT` does plus both descriptors; the attributes give
    // the object its context (parent: the device, by default); all pointers outlive the call.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfInterruptCreate,
            device,
            &raw mut config,
            &raw mut attributes,
            &raw mut interrupt
        )
    };
    if !nt_success(status) {
        return status;
    }
    // SAFETY: the interrupt was just created with an `InterruptContext`.
    if let Some(context) = unsafe { INTERRUPT_CONTEXT.get(interrupt.cast()) } {
        // SAFETY: the framework allocated the context zeroed; the interrupt is not connected yet,
        // so nothing reads it before this initialization.
        unsafe {
            context.as_ptr().write(InterruptContext {
                handover: UnsafeCell::new(None),
            });
        }
    }
    STATUS_SUCCESS
}

/// `EvtInterruptIsr` (DIRQL, whatever thread the CPU was running, the interrupt lock held by the
/// framework): reads the edu interrupt status, and if the logic claims the interrupt,
/// acknowledges it, hands the trail entry and status to the DPC, and queues the DPC.
extern "C" fn evt_interrupt_isr(interrupt: WDFINTERRUPT, _message_id: ULONG) -> BOOLEAN {
    let kernel = WdkKernel;
    // SAFETY: the framework passes this driver's interrupt; `WdfInterruptGetDevice` is callable
    // at DIRQL.
    let device = unsafe { call_unsafe_wdf_function_binding!(WdfInterruptGetDevice, interrupt) };
    // SAFETY: the interrupt's device is this driver's.
    let Some(device) = (unsafe { device_context(device) }) else {
        return 0;
    };
    let mut registers = device.bar0();
    let status = registers.read32(edu::REG_INTERRUPT_STATUS);
    match DRIVER.interrupt_isr(&kernel, status) {
        IsrDecision::NotOurs => 0,
        IsrDecision::Claim { acknowledge, isr } => {
            registers.write32(edu::REG_INTERRUPT_ACK, acknowledge);
            // SAFETY: an interrupt `create` made.
            if let Some(context) = unsafe { interrupt_context(interrupt) } {
                // SAFETY: the framework holds the interrupt lock while the ISR runs; the DPC reads
                // the hand-over only under the same lock.
                unsafe { context.handover.get().write(Some((isr, acknowledge))) };
            }
            // SAFETY: this driver's interrupt, from its ISR (DIRQL), as documented. FALSE (the DPC
            // was already queued) needs nothing more: the queued DPC reads the latest hand-over.
            let _ =
                unsafe { call_unsafe_wdf_function_binding!(WdfInterruptQueueDpcForIsr, interrupt) };
            1
        }
    }
}

/// `EvtInterruptDpc` (`DISPATCH_LEVEL`, an arbitrary DPC context): takes the ISR's hand-over under
/// the interrupt lock, takes the pending read if it wins it from the cancel routine, and lets the
/// logic record and complete it.
extern "C" fn evt_interrupt_dpc(interrupt: WDFINTERRUPT, _associated_object: WDFOBJECT) {
    let kernel = WdkKernel;
    // SAFETY: an interrupt `create` made.
    let handover = match unsafe { interrupt_context(interrupt) } {
        Some(context) => {
            // SAFETY: this driver's interrupt; `WdfInterruptAcquireLock` is callable at `IRQL <=
            // DISPATCH_LEVEL` for an interrupt without passive handling; released below.
            unsafe { call_unsafe_wdf_function_binding!(WdfInterruptAcquireLock, interrupt) };
            // SAFETY: the interrupt lock is held, the ISR's too.
            let handover = unsafe { context.handover.get().replace(None) };
            // SAFETY: acquired above.
            unsafe { call_unsafe_wdf_function_binding!(WdfInterruptReleaseLock, interrupt) };
            handover
        }
        None => None,
    };
    // SAFETY: this driver's interrupt; callable at any IRQL.
    let device = unsafe { call_unsafe_wdf_function_binding!(WdfInterruptGetDevice, interrupt) };
    // SAFETY: the interrupt's device is this driver's.
    let read = unsafe { device_context(device) }.and_then(take_pending_read);
    // SAFETY: `read` is a request this DPC won from the cancel routine, or none.
    unsafe {
        complete_read_with(read, |read| {
            ((), DRIVER.interrupt_dpc(&kernel, handover, read))
        });
    }
}
