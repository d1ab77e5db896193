//! The edu device's BAR0, mapped uncached into system space, and the logic's
//! [`DeviceRegisters`] over it: `READ_REGISTER_ULONG` / `WRITE_REGISTER_ULONG` as volatile 32-bit
//! accesses.

use ctxscope_core::logic::DeviceRegisters;
use wdk_sys::ntddk::{MmMapIoSpaceEx, MmUnmapIoSpace};
use wdk_sys::{PAGE_NOCACHE, PAGE_READWRITE, PHYSICAL_ADDRESS, SIZE_T, ULONG};

/// A mapping of BAR0: its system-space base and length. `Copy`, so that each callback works on
/// its own copy (the ISR and a read both write registers; neither holds a `&mut` the other could
/// alias). Only [`Bar0::map`] creates a mapped value, and the device context holds it from
/// `EvtDevicePrepareHardware` to `EvtDeviceReleaseHardware`, the only window in which the
/// framework calls the callbacks that use it (the interrupt is connected after the former and
/// disconnected before the latter; power-managed queues run only in D0, inside that window).
#[derive(Clone, Copy, Debug)]
pub struct Bar0 {
    base: *mut u8,
    length: usize,
}

impl Bar0 {
    /// No mapping: every read returns 0 and every write is dropped.
    pub const UNMAPPED: Self = Self {
        base: core::ptr::null_mut(),
        length: 0,
    };

    /// Whether this is a mapping.
    pub fn is_mapped(&self) -> bool {
        !self.base.is_null()
    }

    /// BAR0's length in bytes.
    pub fn length(&self) -> u64 {
        u64::try_from(self.length).unwrap_or(u64::MAX)
    }

    /// Maps `length` bytes of device memory at `start` (`MmMapIoSpaceEx`, read-write, uncached,
    /// as device registers must be). `None` if the system could not map it.
    ///
    /// # Safety
    /// `start` and `length` must describe a memory resource the Plug and Play manager assigned to
    /// this device (a translated `CmResourceTypeMemory` descriptor); call at
    /// `IRQL <= DISPATCH_LEVEL`.
    pub unsafe fn map(start: PHYSICAL_ADDRESS, length: ULONG) -> Option<Self> {
        let size = SIZE_T::from(length);
        let length = usize::try_from(length).ok()?;
        // SAFETY: the range is this device's memory resource (the caller's contract), so mapping
        // it aliases nothing else; `MmMapIoSpaceEx` is callable at `IRQL <= DISPATCH_LEVEL`.
        let base = unsafe { MmMapIoSpaceEx(start, size, PAGE_READWRITE | PAGE_NOCACHE) };
        let base = base.cast::<u8>();
        (!base.is_null()).then_some(Self { base, length })
    }

    /// Unmaps the mapping (`MmUnmapIoSpace`) if there is one.
    ///
    /// # Safety
    /// No other copy of this mapping may be used afterwards (the framework has disconnected the
    /// interrupt and stopped the power-managed queues when `EvtDeviceReleaseHardware` runs); call
    /// at `IRQL <= DISPATCH_LEVEL`.
    pub unsafe fn unmap(self) {
        // The size converts back: it came from a `SIZE_T` in `map`.
        if let (true, Ok(size)) = (self.is_mapped(), SIZE_T::try_from(self.length)) {
            // SAFETY: `base` and `size` are exactly what `MmMapIoSpaceEx` mapped, and no copy is
            // used afterwards (the caller's contract).
            unsafe { MmUnmapIoSpace(self.base.cast(), size) };
        }
    }

    /// The register at `offset`, if it lies within the mapping and is 4-byte aligned.
    #[allow(
        clippy::cast_ptr_alignment,
        reason = "the offset is checked to be 4-byte aligned, and the mapping is page-aligned"
    )]
    fn register(&self, offset: u32) -> Option<*mut u32> {
        let offset = usize::try_from(offset).ok()?;
        let fits = offset
            .checked_add(size_of::<u32>())
            .is_some_and(|end| end <= self.length);
        (self.is_mapped() && fits && offset % size_of::<u32>() == 0)
            // `wrapping_add` computes the address without asserting anything; it is in bounds.
            .then(|| self.base.wrapping_add(offset).cast::<u32>())
    }
}

impl DeviceRegisters for Bar0 {
    fn read32(&mut self, offset: u32) -> u32 {
        match self.register(offset) {
            // SAFETY: `register` checked that the 4 aligned bytes lie inside the live uncached
            // mapping of BAR0 (see the type's documentation for why it is live). A volatile read
            // is one 32-bit MMIO load the compiler neither merges nor reorders with other volatile
            // accesses, which is what `READ_REGISTER_ULONG` is on x64.
            Some(register) => unsafe { register.read_volatile() },
            None => 0,
        }
    }

    fn write32(&mut self, offset: u32, value: u32) {
        if let Some(register) = self.register(offset) {
            // SAFETY: as in `read32`; a volatile write is `WRITE_REGISTER_ULONG` on x64.
            unsafe { register.write_volatile(value) };
        }
    }
}
