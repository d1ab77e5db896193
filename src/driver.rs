//! The framework driver object: `DriverEntry`, `EvtDriverDeviceAdd` and `EvtDriverUnload`.

use wdk::nt_success;
use wdk_sys::{
    NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT, PWDFDEVICE_INIT, WDF_DRIVER_CONFIG, WDF_NO_HANDLE,
    WDF_NO_OBJECT_ATTRIBUTES, WDFDRIVER, call_unsafe_wdf_function_binding,
};

use crate::context::wdf_size;
use crate::kernel::WdkKernel;
use crate::{DRIVER, device};

/// `DriverEntry` (`PASSIVE_LEVEL`, a system thread): creates the framework driver object with
/// `EvtDriverDeviceAdd` and `EvtDriverUnload`, then records.
///
/// # Safety
/// Called only by the I/O manager, once, with its driver object and registry path.
#[unsafe(export_name = "DriverEntry")]
pub unsafe extern "system" fn driver_entry(
    driver: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    let mut config = WDF_DRIVER_CONFIG {
        Size: wdf_size::<WDF_DRIVER_CONFIG>(),
        EvtDriverDeviceAdd: Some(evt_driver_device_add),
        EvtDriverUnload: Some(evt_driver_unload),
        ..WDF_DRIVER_CONFIG::default()
    };
    // SAFETY: the I/O manager's driver object and registry path, passed through; the
    // configuration is initialized as `WDF_DRIVER_CONFIG_INIT` does, plus the unload callback;
    // no attributes; the driver handle is not needed (`WDF_NO_HANDLE`). PASSIVE_LEVEL.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDriverCreate,
            driver,
            registry_path,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut config,
            WDF_NO_HANDLE.cast::<WDFDRIVER>()
        )
    };
    if nt_success(status) {
        DRIVER.driver_entry(&WdkKernel);
    }
    status
}

/// `EvtDriverDeviceAdd` (`PASSIVE_LEVEL`, a system thread of the Plug and Play manager): records,
/// and sets the device up as the logic says.
extern "C" fn evt_driver_device_add(_driver: WDFDRIVER, device_init: PWDFDEVICE_INIT) -> NTSTATUS {
    let setup = DRIVER.device_add(&WdkKernel);
    // SAFETY: the framework's `WDFDEVICE_INIT` for this call.
    unsafe { device::create(device_init, &setup) }
}

/// `EvtDriverUnload` (`PASSIVE_LEVEL`, a system thread): records. Every framework object is a child
/// of the driver or its devices and is deleted by the framework; nothing else was allocated.
extern "C" fn evt_driver_unload(_driver: WDFDRIVER) {
    DRIVER.driver_unload(&WdkKernel);
}
