//! The callbacks ctxscope observes, and what Microsoft documents about where each one runs.

/// `PASSIVE_LEVEL`.
pub const PASSIVE_LEVEL: u8 = 0;
/// `APC_LEVEL`.
pub const APC_LEVEL: u8 = 1;
/// `DISPATCH_LEVEL`.
pub const DISPATCH_LEVEL: u8 = 2;

/// Process ID of the Idle process, whose threads run when a CPU has nothing else to do.
pub const IDLE_PID: u32 = 0;
/// Process ID of the System process, home of the kernel's worker threads.
pub const SYSTEM_PID: u32 = 4;

/// Where a callback is documented to run, in the sense of "process and thread context".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContextClass {
    /// A specific context: the thread that issued the request (or opened, or closed, the handle).
    Requestor,
    /// An arbitrary context: whatever thread the CPU happened to be running.
    Arbitrary,
    /// A thread of the System process (Plug and Play manager, power manager, I/O manager, worker threads).
    System,
}

impl ContextClass {
    /// Every class, in a stable order.
    pub const ALL: [Self; 3] = [Self::Requestor, Self::Arbitrary, Self::System];

    /// Stable lower-case name used in JSON and on the command line.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Requestor => "requestor",
            Self::Arbitrary => "arbitrary",
            Self::System => "system",
        }
    }

    /// Parses [`ContextClass::name`].
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|class| class.name() == name)
    }
}

/// The IRQL a callback is documented to be called at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IrqlRule {
    /// Exactly `PASSIVE_LEVEL`.
    Passive,
    /// At most `DISPATCH_LEVEL` (queue request handlers).
    AtMostDispatch,
    /// Exactly `DISPATCH_LEVEL` (DPCs and default timers).
    Dispatch,
    /// Above `DISPATCH_LEVEL`: the device's interrupt level.
    Dirql,
    /// Whatever IRQL the caller was at; `PASSIVE_LEVEL` for requests from user mode, never above
    /// `DISPATCH_LEVEL`.
    CallersIrql,
}

impl IrqlRule {
    /// Whether `irql` agrees with the rule.
    #[must_use]
    pub const fn allows(self, irql: u8) -> bool {
        match self {
            Self::Passive => irql == PASSIVE_LEVEL,
            Self::AtMostDispatch | Self::CallersIrql => irql <= DISPATCH_LEVEL,
            Self::Dispatch => irql == DISPATCH_LEVEL,
            Self::Dirql => irql > DISPATCH_LEVEL,
        }
    }

    /// Short human-readable form, as the report shows it.
    #[must_use]
    pub const fn describe(self) -> &'static str {
        match self {
            Self::Passive => "PASSIVE",
            Self::AtMostDispatch => "<=DISPATCH",
            Self::Dispatch => "DISPATCH",
            Self::Dirql => "DIRQL",
            Self::CallersIrql => "caller's (<=DISPATCH)",
        }
    }
}

/// Short name of an IRQL value, as logs and reports print it.
#[must_use]
pub const fn irql_name(irql: u8) -> &'static str {
    match irql {
        PASSIVE_LEVEL => "PASSIVE",
        APC_LEVEL => "APC",
        DISPATCH_LEVEL => "DISPATCH",
        _ => "DIRQL",
    }
}

/// What Microsoft documents about one callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Documented {
    /// The process and thread context it runs in.
    pub context: ContextClass,
    /// The IRQL it is called at.
    pub irql: IrqlRule,
    /// The Microsoft page that says so.
    pub source: &'static str,
}

macro_rules! callback_kinds {
    ($( $(#[$doc:meta])* $variant:ident = $value:literal, $context:ident, $irql:ident, $source:literal; )*) => {
        /// One kind of driver callback. The discriminant is the `kind` byte of the event record,
        /// the log line and the protocol: values are stable and never reused.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum CallbackKind {
            $( $(#[$doc])* $variant = $value, )*
        }

        impl CallbackKind {
            /// Every kind, in discriminant order.
            pub const ALL: [Self; callback_kinds!(@count $($variant)*)] = [$(Self::$variant),*];

            /// The callback's name as Microsoft's documentation spells it.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self { $(Self::$variant => stringify!($variant),)* }
            }

            /// Decodes the `kind` byte.
            #[must_use]
            pub const fn from_u8(value: u8) -> Option<Self> {
                match value { $($value => Some(Self::$variant),)* _ => None }
            }

            /// Where and at what IRQL Microsoft documents the callback to run.
            #[must_use]
            pub const fn documented(self) -> Documented {
                match self {
                    $(Self::$variant => Documented {
                        context: ContextClass::$context,
                        irql: IrqlRule::$irql,
                        source: $source,
                    },)*
                }
            }
        }
    };
    (@count $($x:ident)*) => { 0 $(+ callback_kinds!(@one $x))* };
    (@one $x:ident) => { 1 };
}

callback_kinds! {
    /// `DriverEntry`: the I/O manager loads the driver in a System thread.
    DriverEntry = 0, System, Passive,
        "https://learn.microsoft.com/windows-hardware/drivers/kernel/writing-a-driverentry-routine";
    /// `EvtDriverDeviceAdd`: the Plug and Play manager adds a device, in a System thread.
    EvtDriverDeviceAdd = 1, System, Passive,
        "https://learn.microsoft.com/windows-hardware/drivers/kernel/adddevice-routines-in-function-or-filter-drivers";
    /// `EvtDevicePrepareHardware`: the Plug and Play state machine hands over the device's resources.
    EvtDevicePrepareHardware = 2, System, Passive,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_prepare_hardware";
    /// `EvtDeviceReleaseHardware`: the Plug and Play state machine takes the resources back.
    EvtDeviceReleaseHardware = 3, System, Passive,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_release_hardware";
    /// `EvtDeviceD0Entry`: the device enters the working state.
    EvtDeviceD0Entry = 4, System, Passive,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_d0_entry";
    /// `EvtDeviceD0Exit`: the device leaves the working state.
    EvtDeviceD0Exit = 5, System, Passive,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_d0_exit";
    /// `EvtDeviceFileCreate`: synchronously, in the thread that opens the device.
    EvtDeviceFileCreate = 6, Requestor, Passive,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_file_create";
    /// `EvtFileCleanup`: in the thread that closed the file object's last handle.
    EvtFileCleanup = 7, Requestor, Passive,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdffileobject/nc-wdffileobject-evt_wdf_file_cleanup";
    /// `EvtFileClose`: when the file object's last reference goes, in an arbitrary thread.
    EvtFileClose = 8, Arbitrary, Passive,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdffileobject/nc-wdffileobject-evt_wdf_file_close";
    /// `EvtIoInCallerContext`: in the thread context of the process that sent the request.
    EvtIoInCallerContext = 9, Requestor, CallersIrql,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_io_in_caller_context";
    /// `EvtIoRead`: request handlers are called in an arbitrary thread context.
    EvtIoRead = 10, Arbitrary, AtMostDispatch,
        "https://learn.microsoft.com/windows-hardware/drivers/wdf/request-handlers";
    /// `EvtIoWrite`: request handlers are called in an arbitrary thread context.
    EvtIoWrite = 11, Arbitrary, AtMostDispatch,
        "https://learn.microsoft.com/windows-hardware/drivers/wdf/request-handlers";
    /// `EvtIoDeviceControl`: request handlers are called in an arbitrary thread context.
    EvtIoDeviceControl = 12, Arbitrary, AtMostDispatch,
        "https://learn.microsoft.com/windows-hardware/drivers/wdf/request-handlers";
    /// `EvtTimerFunc`: a timer DPC, in whatever thread the CPU was running.
    EvtTimerFunc = 13, Arbitrary, Dispatch,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdftimer/nc-wdftimer-evt_wdf_timer";
    /// `EvtInterruptIsr`: at DIRQL, in whatever thread the CPU was running.
    EvtInterruptIsr = 14, Arbitrary, Dirql,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdfinterrupt/nc-wdfinterrupt-evt_wdf_interrupt_isr";
    /// `EvtInterruptDpc`: a DPC, in an arbitrary DPC context.
    EvtInterruptDpc = 15, Arbitrary, Dispatch,
        "https://learn.microsoft.com/windows-hardware/drivers/kernel/introduction-to-dpcs";
    /// `EvtDriverUnload`: the I/O manager unloads the driver, in a System thread.
    EvtDriverUnload = 16, System, Passive,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdfdriver/nc-wdfdriver-evt_wdf_driver_unload";
}

impl CallbackKind {
    /// Number of kinds.
    pub const COUNT: usize = Self::ALL.len();

    /// Looks a kind up by its documented name (`EvtIoRead`, ...).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Whether the callback is part of handling an I/O request, and so has a requestor.
    #[must_use]
    pub const fn has_requestor(self) -> bool {
        matches!(
            self,
            Self::EvtDeviceFileCreate
                | Self::EvtFileCleanup
                | Self::EvtFileClose
                | Self::EvtIoInCallerContext
                | Self::EvtIoRead
                | Self::EvtIoWrite
                | Self::EvtIoDeviceControl
        )
    }
}

impl core::fmt::Display for CallbackKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn discriminants_are_dense_and_round_trip() {
        assert_eq!(CallbackKind::COUNT, 17);
        for (index, kind) in CallbackKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, index);
            assert_eq!(CallbackKind::from_u8(kind as u8), Some(kind));
            assert_eq!(CallbackKind::from_name(kind.name()), Some(kind));
            assert!(
                kind.documented()
                    .source
                    .starts_with("https://learn.microsoft.com/")
            );
        }
        assert_eq!(CallbackKind::from_u8(17), None);
        assert_eq!(CallbackKind::from_name("EvtIoReed"), None);
    }

    #[test]
    fn specific_context_callbacks_are_the_documented_three() {
        let specific: Vec<_> = CallbackKind::ALL
            .into_iter()
            .filter(|kind| kind.documented().context == ContextClass::Requestor)
            .collect();
        assert_eq!(
            specific,
            [
                CallbackKind::EvtDeviceFileCreate,
                CallbackKind::EvtFileCleanup,
                CallbackKind::EvtIoInCallerContext
            ]
        );
    }

    #[test]
    fn irql_rules() {
        assert!(IrqlRule::Passive.allows(0) && !IrqlRule::Passive.allows(2));
        assert!(IrqlRule::Dispatch.allows(2) && !IrqlRule::Dispatch.allows(1));
        assert!(IrqlRule::Dirql.allows(5) && !IrqlRule::Dirql.allows(2));
        assert!(IrqlRule::AtMostDispatch.allows(2) && !IrqlRule::AtMostDispatch.allows(3));
        assert_eq!(irql_name(9), "DIRQL");
    }
}
