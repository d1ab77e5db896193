//! The framework timer: one-shot, at `DISPATCH_LEVEL` (a DPC), started in D0 entry for the period
//! the logic returns, re-armed at every tick for the period the logic returns then, and stopped
//! with a wait in D0 exit. In root mode a tick also completes the pending read.

use core::sync::atomic::Ordering;

use wdk::nt_success;
use wdk_sys::{
    NTSTATUS, WDF_NO_HANDLE, WDF_TIMER_CONFIG, WDFDEVICE, WDFTIMER,
    call_unsafe_wdf_function_binding,
};

use crate::DRIVER;
use crate::context::{object_attributes, wdf_size};
use crate::device::{DeviceContext, device_context};
use crate::kernel::WdkKernel;
use crate::queue::{complete_read_with, take_pending_read};

/// `WDF_REL_TIMEOUT_IN_MS(ms)`: a relative due time, in the negative 100-nanosecond units
/// `WdfTimerStart` takes.
fn relative_due_time(ms: u32) -> i64 {
    -(i64::from(ms) * 10_000)
}

/// Creates the device's timer (`WdfTimerCreate`, `IRQL <= DISPATCH_LEVEL`): one-shot (period 0),
/// not serialized with the device's callbacks (the pending read has its own lock), a child of the
/// device whose execution level it inherits (the framework's default: dispatch, so the callback
/// is a DPC).
///
/// # Safety
/// `device` must be this driver's device.
pub unsafe fn create(device: WDFDEVICE) -> Result<WDFTIMER, NTSTATUS> {
    let mut config = WDF_TIMER_CONFIG {
        Size: wdf_size::<WDF_TIMER_CONFIG>(),
        EvtTimerFunc: Some(evt_timer_func),
        Period: 0,
        AutomaticSerialization: 0,
        TolerableDelay: 0,
        ..WDF_TIMER_CONFIG::default()
    };
    let mut attributes = object_attributes();
    attributes.ParentObject = device.cast();
    let mut timer: WDFTIMER = WDF_NO_HANDLE.cast();
    // SAFETY: the configuration is initialized as `WDF_TIMER_CONFIG_INIT` does (with automatic
    // serialization off); all pointers are to locals that outlive the call.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfTimerCreate,
            &raw mut config,
            &raw mut attributes,
            &raw mut timer
        )
    };
    if nt_success(status) {
        Ok(timer)
    } else {
        Err(status)
    }
}

/// Starts the timer `ms` milliseconds from now (`WdfTimerStart`, `IRQL <= DISPATCH_LEVEL`) and
/// lets ticks re-arm it.
pub fn start(device: &DeviceContext, ms: u32) {
    device.timer_running.store(true, Ordering::SeqCst);
    // SAFETY: the device's timer, created in `EvtDriverDeviceAdd`, lives as long as the device.
    // The return value (whether the timer was already queued) is of no use here.
    let _ = unsafe {
        call_unsafe_wdf_function_binding!(WdfTimerStart, device.timer, relative_due_time(ms))
    };
}

/// Stops the timer and waits for a running tick to return (`WdfTimerStop(timer, TRUE)`,
/// `PASSIVE_LEVEL`, never from the timer's own callback). Ticks re-arm the timer only while
/// `timer_running` is set, which is cleared first; a tick that read it before it was cleared may
/// re-arm the timer while the first stop waits for it, so the timer is stopped a second time,
/// after which no tick can arm it.
pub fn stop(device: &DeviceContext) {
    device.timer_running.store(false, Ordering::SeqCst);
    for _ in 0..2 {
        // SAFETY: the device's timer; called from D0 exit at PASSIVE_LEVEL. Whether it was queued
        // is of no use here.
        let _ = unsafe { call_unsafe_wdf_function_binding!(WdfTimerStop, device.timer, 1) };
    }
}

/// `EvtTimerFunc` (`DISPATCH_LEVEL`, an arbitrary thread): in root mode takes the pending read if
/// it wins it from the cancel routine; the logic records, completes the read if it got one, and
/// says when to tick next.
extern "C" fn evt_timer_func(timer: WDFTIMER) {
    let kernel = WdkKernel;
    // SAFETY: the framework passes this driver's timer; `WdfTimerGetParentObject` is callable at
    // `IRQL <= DISPATCH_LEVEL` and returns the device the timer was created under.
    let parent = unsafe { call_unsafe_wdf_function_binding!(WdfTimerGetParentObject, timer) };
    // SAFETY: the timer's parent is this driver's device.
    let Some(device) = (unsafe { device_context(parent.cast()) }) else {
        return;
    };
    let read = if DRIVER.timer_completes_reads() {
        take_pending_read(device)
    } else {
        None
    };
    // SAFETY: `read` is a request this tick won from the cancel routine, or none.
    let decision = unsafe { complete_read_with(read, |read| DRIVER.timer(&kernel, read)) };
    if device.timer_running.load(Ordering::SeqCst) {
        // SAFETY: the device's timer; re-arming a one-shot timer from its own callback is
        // allowed (`IRQL <= DISPATCH_LEVEL`).
        let _ = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfTimerStart,
                timer,
                relative_due_time(decision.rearm_ms)
            )
        };
    }
}
