//! Typed object contexts and WDF structure sizes: what `WDF_DECLARE_CONTEXT_TYPE`,
//! `WDF_OBJECT_ATTRIBUTES_INIT_CONTEXT_TYPE` and `WDF_STRUCTURE_SIZE` do in C, which wdk-sys 0.5
//! does not generate (they are macros and inline functions in the WDF headers).

use core::marker::PhantomData;
use core::ptr::NonNull;

use wdk_sys::{
    _WDF_EXECUTION_LEVEL, _WDF_SYNCHRONIZATION_SCOPE, PCWDF_OBJECT_CONTEXT_TYPE_INFO, ULONG,
    USHORT, WDF_OBJECT_ATTRIBUTES, WDF_OBJECT_CONTEXT_TYPE_INFO, WDFOBJECT,
    call_unsafe_wdf_function_binding,
};

/// `sizeof(T)` as the `ULONG` `Size` member of a WDF structure, checked at compile time.
#[allow(
    clippy::cast_possible_truncation,
    reason = "checked by the assertion above it"
)]
pub const fn wdf_size<T>() -> ULONG {
    let size = size_of::<T>();
    assert!(
        size <= ULONG::MAX as usize,
        "WDF structure too large for its Size member"
    );
    size as ULONG
}

/// `sizeof(T)` as a `USHORT` `Size` member (`WDF_REQUEST_PARAMETERS`), checked at compile time.
#[allow(
    clippy::cast_possible_truncation,
    reason = "checked by the assertion above it"
)]
pub const fn wdf_size_u16<T>() -> USHORT {
    let size = size_of::<T>();
    assert!(
        size <= USHORT::MAX as usize,
        "WDF structure too large for its Size member"
    );
    size as USHORT
}

/// `WDF_OBJECT_ATTRIBUTES_INIT`: no context, execution level and synchronization scope inherited
/// from the parent.
pub fn object_attributes() -> WDF_OBJECT_ATTRIBUTES {
    WDF_OBJECT_ATTRIBUTES {
        Size: wdf_size::<WDF_OBJECT_ATTRIBUTES>(),
        ExecutionLevel: _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent,
        SynchronizationScope: _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent,
        ..WDF_OBJECT_ATTRIBUTES::default()
    }
}

/// The context type information of a context `T`: what `WDF_DECLARE_CONTEXT_TYPE(T)` declares.
/// Each one lives in a `static` whose `UniqueType` points at itself, as the C macro's does, so the
/// framework tells context types apart by address.
#[repr(C)]
pub struct ContextType<T> {
    info: WDF_OBJECT_CONTEXT_TYPE_INFO,
    marker: PhantomData<fn() -> T>,
}

// SAFETY: a `ContextType` is never written after its constant initializer; its pointers are to
// `'static` data (a C string literal and the `static` itself), so sharing it between threads is
// sharing immutable data.
unsafe impl<T> Sync for ContextType<T> {}

impl<T> ContextType<T> {
    /// The type information of `T`, named `name`; `this` must be the address of the `static` being
    /// initialized.
    pub const fn new(name: &'static core::ffi::CStr, this: *const Self) -> Self {
        Self {
            info: WDF_OBJECT_CONTEXT_TYPE_INFO {
                Size: wdf_size::<WDF_OBJECT_CONTEXT_TYPE_INFO>(),
                ContextName: name.as_ptr(),
                ContextSize: size_of::<T>(),
                // `info` is the first field of this `repr(C)` struct, so the address of the
                // `static` is the address of its `WDF_OBJECT_CONTEXT_TYPE_INFO`.
                UniqueType: this.cast::<WDF_OBJECT_CONTEXT_TYPE_INFO>(),
                EvtDriverGetUniqueContextType: None,
            },
            marker: PhantomData,
        }
    }

    /// The pointer the framework takes as `ContextTypeInfo`.
    pub const fn info(&'static self) -> PCWDF_OBJECT_CONTEXT_TYPE_INFO {
        &raw const self.info
    }

    /// `WDF_OBJECT_ATTRIBUTES_INIT_CONTEXT_TYPE`: attributes that give the new object a context of
    /// type `T`, which the framework allocates zeroed and frees with the object.
    pub fn attributes(&'static self) -> WDF_OBJECT_ATTRIBUTES {
        WDF_OBJECT_ATTRIBUTES {
            ContextTypeInfo: self.info(),
            ..object_attributes()
        }
    }

    /// The context of type `T` of `object` (`WdfObjectGetTypedContext`), or `None` if the object
    /// has none of this type. The context lives as long as the object.
    ///
    /// # Safety
    /// `object` must be a valid framework object handle (`WdfObjectGetTypedContextWorker`
    /// bug-checks on an invalid one); callable at any IRQL.
    pub unsafe fn get(&'static self, object: WDFOBJECT) -> Option<NonNull<T>> {
        // SAFETY: the caller passes a valid handle; `self.info()` points at a `'static` type
        // information whose `UniqueType` is itself, as the framework requires.
        let context = unsafe {
            call_unsafe_wdf_function_binding!(WdfObjectGetTypedContextWorker, object, self.info())
        };
        NonNull::new(context.cast::<T>())
    }
}
