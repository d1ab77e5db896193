//! The framework file object: `EvtDeviceFileCreate`, `EvtFileCleanup`, `EvtFileClose`, and the
//! file context that holds the logic's [`FileState`].

use core::cell::UnsafeCell;

use ctxscope_core::Requestor;
use ctxscope_core::logic::FileState;
use wdk_sys::{
    _WDF_EXECUTION_LEVEL, _WDF_FILEOBJECT_CLASS, _WDF_SYNCHRONIZATION_SCOPE, _WDF_TRI_STATE,
    PFILE_OBJECT, PIRP, PWDFDEVICE_INIT, WDF_FILEOBJECT_CONFIG, WDFDEVICE, WDFFILEOBJECT,
    WDFREQUEST, call_unsafe_wdf_function_binding,
};

use crate::DRIVER;
use crate::context::{ContextType, wdf_size};
use crate::kernel::WdkKernel;
use crate::queue::complete;

/// A file object's context, written whole by `EvtDeviceFileCreate` before it completes the create
/// (so before any other callback can see the file object).
pub struct FileContext {
    /// The state the logic gave the file object at create. Never written afterwards, so I/O
    /// callbacks racing with the cleanup of the last handle read it safely.
    pub opened: FileState,
    /// The thread that closed the last handle, captured by the `IRP_MJ_CLEANUP` preprocess
    /// callback and completed by `EvtFileCleanup`; read by `EvtFileClose`. Those three run one
    /// after another for a file object (the close only after the cleanup), never concurrently.
    closer: UnsafeCell<Option<Requestor>>,
}

/// `WDF_DECLARE_CONTEXT_TYPE(FileContext)`.
pub static FILE_CONTEXT: ContextType<FileContext> =
    ContextType::new(c"FileContext", &raw const FILE_CONTEXT);

/// The context of `file_object`, or `None` for a null handle.
///
/// # Safety
/// `file_object` must be null or a file object of this driver's device, still open, whose create
/// succeeded (so its context is initialized); the reference must not outlive the callback.
pub unsafe fn file_context<'a>(file_object: WDFFILEOBJECT) -> Option<&'a FileContext> {
    if file_object.is_null() {
        return None;
    }
    // SAFETY: a valid file object handle (the caller's contract).
    let context = unsafe { FILE_CONTEXT.get(file_object.cast()) }?;
    // SAFETY: `EvtDeviceFileCreate` wrote the whole context before completing the create; after
    // that only `closer` changes, and it is interior-mutable.
    Some(unsafe { context.as_ref() })
}

/// Registers the file-object callbacks and context on `device_init` (`WDF_FILEOBJECT_CONFIG_INIT`
/// and `WdfDeviceInitSetFileObjectConfig`, `PASSIVE_LEVEL`). The file object's execution level is
/// passive, so the framework never calls `EvtFileCleanup` or `EvtFileClose` above
/// `PASSIVE_LEVEL` (a close whose last reference is dropped in a DPC is deferred to a worker).
///
/// # Safety
/// `device_init` must be the framework's `WDFDEVICE_INIT`, before `WdfDeviceCreate`.
pub unsafe fn register(device_init: PWDFDEVICE_INIT) {
    let mut config = WDF_FILEOBJECT_CONFIG {
        Size: wdf_size::<WDF_FILEOBJECT_CONFIG>(),
        EvtDeviceFileCreate: Some(evt_device_file_create),
        EvtFileClose: Some(evt_file_close),
        EvtFileCleanup: Some(evt_file_cleanup),
        AutoForwardCleanupClose: _WDF_TRI_STATE::WdfUseDefault,
        FileObjectClass: _WDF_FILEOBJECT_CLASS::WdfFileObjectWdfCannotUseFsContexts,
        ..WDF_FILEOBJECT_CONFIG::default()
    };
    // A passive execution level for file objects must come with no synchronization scope when the
    // device's are not those (the device inherits dispatch level): otherwise `WdfDeviceCreate`
    // fails (`WdfDeviceInitSetFileObjectConfig`'s documentation).
    let mut attributes = FILE_CONTEXT.attributes();
    attributes.ExecutionLevel = _WDF_EXECUTION_LEVEL::WdfExecutionLevelPassive;
    attributes.SynchronizationScope = _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeNone;
    // SAFETY: `device_init` is the framework's (the caller's contract); both structures are
    // initialized as their `_INIT` functions do and copied by the call.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetFileObjectConfig,
            device_init,
            &raw mut config,
            &raw mut attributes
        );
    }
}

/// Called by the `IRP_MJ_CLEANUP` preprocess callback: remembers `closer` in the context of the
/// file object the IRP is for (`WdfDeviceGetFileObject`, `IRQL <= DISPATCH_LEVEL`).
///
/// # Safety
/// `device` must be this driver's device and `irp` the live cleanup IRP being preprocessed.
pub unsafe fn remember_closer(device: WDFDEVICE, irp: PIRP, closer: Option<Requestor>) {
    // SAFETY: `irp` is live (the caller's contract); the address of the field is taken without
    // creating a reference. `CurrentStackLocation` is the field `IoGetCurrentIrpStackLocation`
    // reads (an inline function the bindings do not contain); bindgen names the anonymous
    // struct and union around it `__bindgen_anon_2` and `__bindgen_anon_1`.
    let location_field = unsafe {
        &raw const (*irp)
            .Tail
            .Overlay
            .__bindgen_anon_2
            .__bindgen_anon_1
            .CurrentStackLocation
    };
    // SAFETY: an aligned pointer-sized field of the live IRP, which the I/O manager set before
    // sending it; it does not change while this driver's dispatch runs.
    let location = unsafe { location_field.read() };
    if location.is_null() {
        return;
    }
    // SAFETY: the current stack location of the live IRP; its `FileObject` is the file object
    // whose last handle was closed.
    let wdm_file_object: PFILE_OBJECT = unsafe { (*location).FileObject };
    // SAFETY: `device` is this driver's; `WdfDeviceGetFileObject` returns the framework file
    // object for a WDM file object of the device, or null.
    let file_object = unsafe {
        call_unsafe_wdf_function_binding!(WdfDeviceGetFileObject, device, wdm_file_object)
    };
    // SAFETY: null or this device's open file object, created successfully.
    if let Some(context) = unsafe { file_context(file_object) } {
        // SAFETY: only the preprocess callback, `EvtFileCleanup` and `EvtFileClose` touch
        // `closer`, one after another (see `FileContext`).
        unsafe { context.closer.get().write(closer) };
    }
}

/// `EvtDeviceFileCreate` (`PASSIVE_LEVEL`, the opening thread): the logic gives the file object
/// its state, which is stored before the create is completed as the logic says.
extern "C" fn evt_device_file_create(
    _device: WDFDEVICE,
    request: WDFREQUEST,
    file_object: WDFFILEOBJECT,
) {
    let kernel = WdkKernel;
    let (opened, completion) = DRIVER.file_create(&kernel, request);
    if !file_object.is_null() {
        // SAFETY: the framework's file object for this create, with a `FileContext`.
        if let Some(context) = unsafe { FILE_CONTEXT.get(file_object.cast()) } {
            // SAFETY: the framework allocated the context zeroed with the file object; nothing
            // reads it before the create completes, so this write is its initialization.
            unsafe {
                context.as_ptr().write(FileContext {
                    opened,
                    closer: UnsafeCell::new(None),
                });
            }
        }
    }
    // SAFETY: the framework handed this create request to the callback, which owns it.
    unsafe { complete(request, completion) };
}

/// `EvtFileCleanup` (`PASSIVE_LEVEL`, the thread that closed the last handle): records with the
/// thread the preprocess callback captured from the cleanup IRP.
extern "C" fn evt_file_cleanup(file_object: WDFFILEOBJECT) {
    let kernel = WdkKernel;
    // SAFETY: the framework passes an open file object of this device whose create succeeded.
    let Some(context) = (unsafe { file_context(file_object) }) else {
        return;
    };
    // SAFETY: the preprocess callback wrote `closer` earlier in this thread; nothing else
    // touches it now (see `FileContext`).
    let closer = unsafe { context.closer.get().read() };
    DRIVER.file_cleanup(&kernel, &context.opened, closer);
}

/// `EvtFileClose` (`PASSIVE_LEVEL`, an arbitrary thread): records with the thread that closed the
/// last handle as requestor.
extern "C" fn evt_file_close(file_object: WDFFILEOBJECT) {
    let kernel = WdkKernel;
    // SAFETY: the framework passes a file object of this device whose create succeeded.
    let Some(context) = (unsafe { file_context(file_object) }) else {
        return;
    };
    // SAFETY: `EvtFileCleanup` wrote `closer` before the framework called this callback.
    let closer = unsafe { context.closer.get().read() };
    DRIVER.file_close(&kernel, &context.opened, closer);
}
