//! The event record: one per callback invocation, and the verdict drawn from it.

use crate::kind::{CallbackKind, ContextClass, SYSTEM_PID};

/// Who issued the request a callback is handling: the thread the I/O manager recorded in the IRP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Requestor {
    /// Requestor's process ID.
    pub pid: u32,
    /// Requestor's thread ID.
    pub tid: u32,
}

/// The execution context a callback observed itself in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExecContext {
    /// Current process ID (`PsGetCurrentProcessId`).
    pub pid: u32,
    /// Current thread ID (`PsGetCurrentThreadId`).
    pub tid: u32,
    /// Current IRQL (`KeGetCurrentIrql`).
    pub irql: u8,
    /// Current processor index (`KeGetCurrentProcessorNumberEx`).
    pub cpu: u32,
}

/// One callback invocation, exactly as the driver's event ring stores it, the protocol carries it
/// and the `WinDbg` extension reads it out of memory: 64 bytes, little-endian, no padding.
///
/// Process and thread IDs are `HANDLE`-sized in Windows but are small multiples of four in
/// practice; they are stored in 32 bits and the driver clamps anything larger to `u32::MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct Event {
    /// Position of the event in its ring lane (assigned by the ring; see [`crate::ring`]).
    pub seq: u64,
    /// `KeQueryPerformanceCounter` ticks when the callback started.
    pub timestamp: u64,
    /// Identifies the request being handled (0: none).
    pub request_id: u64,
    /// Identifies the file object involved (0: none).
    pub file_id: u64,
    /// Callback-specific detail: see [`Event::detail`] for what each kind stores.
    pub detail: u64,
    /// Current process ID.
    pub pid: u32,
    /// Current thread ID.
    pub tid: u32,
    /// Requestor's process ID, valid when [`Event::FLAG_REQUESTOR`] is set.
    pub requestor_pid: u32,
    /// Requestor's thread ID, valid when [`Event::FLAG_REQUESTOR`] is set.
    pub requestor_tid: u32,
    /// Current processor index.
    pub cpu: u32,
    /// Which callback ran.
    pub kind: CallbackKind,
    /// IRQL at entry.
    pub irql: u8,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// Ring lane the event was stored in (assigned by the ring).
    pub lane: u8,
}

const _: () = assert!(size_of::<Event>() == Event::SIZE);
const _: () = assert!(align_of::<Event>() == 8);

/// Why an event record could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventDecodeError {
    /// The kind byte names no callback.
    #[error("unknown callback kind {0}")]
    UnknownKind(u8),
    /// Flag bits that no version of the format defines are set.
    #[error("undefined flag bits {0:#04x}")]
    UndefinedFlags(u8),
    /// Requestor fields are set although the requestor flag is not.
    #[error("requestor fields set without the requestor flag")]
    StrayRequestor,
}

impl Event {
    /// Size of the record in bytes.
    pub const SIZE: usize = 64;
    /// The event carries a requestor.
    pub const FLAG_REQUESTOR: u8 = 1 << 0;
    /// The callback is completing its request (the event is the last of the request's trail).
    pub const FLAG_COMPLETES: u8 = 1 << 1;
    /// Every flag bit this version defines.
    pub const DEFINED_FLAGS: u8 = Self::FLAG_REQUESTOR | Self::FLAG_COMPLETES;

    /// An event of `kind` observed in `ctx` at `timestamp`, with no requestor, request, file or
    /// detail yet.
    #[must_use]
    pub const fn new(kind: CallbackKind, ctx: ExecContext, timestamp: u64) -> Self {
        Self {
            seq: 0,
            timestamp,
            request_id: 0,
            file_id: 0,
            detail: 0,
            pid: ctx.pid,
            tid: ctx.tid,
            requestor_pid: 0,
            requestor_tid: 0,
            cpu: ctx.cpu,
            kind,
            irql: ctx.irql,
            flags: 0,
            lane: 0,
        }
    }

    /// An all-zero `DriverEntry` record: the initial content of ring storage.
    pub const ZERO: Self = Self::new(
        CallbackKind::DriverEntry,
        ExecContext {
            pid: 0,
            tid: 0,
            irql: 0,
            cpu: 0,
        },
        0,
    );

    /// Sets the requestor.
    #[must_use]
    pub const fn with_requestor(mut self, requestor: Option<Requestor>) -> Self {
        if let Some(r) = requestor {
            self.requestor_pid = r.pid;
            self.requestor_tid = r.tid;
            self.flags |= Self::FLAG_REQUESTOR;
        } else {
            self.requestor_pid = 0;
            self.requestor_tid = 0;
            self.flags &= !Self::FLAG_REQUESTOR;
        }
        self
    }

    /// Sets the request and file object identifiers.
    #[must_use]
    pub const fn with_ids(mut self, request_id: u64, file_id: u64) -> Self {
        self.request_id = request_id;
        self.file_id = file_id;
        self
    }

    /// Sets the detail field.
    #[must_use]
    pub const fn with_detail(mut self, detail: u64) -> Self {
        self.detail = detail;
        self
    }

    /// Sets or clears [`Event::FLAG_COMPLETES`].
    #[must_use]
    pub const fn completing(mut self, completes: bool) -> Self {
        if completes {
            self.flags |= Self::FLAG_COMPLETES;
        } else {
            self.flags &= !Self::FLAG_COMPLETES;
        }
        self
    }

    /// The requestor, if the event has one.
    #[must_use]
    pub const fn requestor(&self) -> Option<Requestor> {
        if self.flags & Self::FLAG_REQUESTOR != 0 {
            Some(Requestor {
                pid: self.requestor_pid,
                tid: self.requestor_tid,
            })
        } else {
            None
        }
    }

    /// The context the callback ran in.
    #[must_use]
    pub const fn context(&self) -> ExecContext {
        ExecContext {
            pid: self.pid,
            tid: self.tid,
            irql: self.irql,
            cpu: self.cpu,
        }
    }

    /// Where the callback ran relative to its requestor, and whether that is what Microsoft
    /// documents.
    #[must_use]
    pub fn verdict(&self) -> Verdict {
        Verdict::of(self)
    }

    /// Encodes the record as its 64 little-endian bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        out[0..8].copy_from_slice(&self.seq.to_le_bytes());
        out[8..16].copy_from_slice(&self.timestamp.to_le_bytes());
        out[16..24].copy_from_slice(&self.request_id.to_le_bytes());
        out[24..32].copy_from_slice(&self.file_id.to_le_bytes());
        out[32..40].copy_from_slice(&self.detail.to_le_bytes());
        out[40..44].copy_from_slice(&self.pid.to_le_bytes());
        out[44..48].copy_from_slice(&self.tid.to_le_bytes());
        out[48..52].copy_from_slice(&self.requestor_pid.to_le_bytes());
        out[52..56].copy_from_slice(&self.requestor_tid.to_le_bytes());
        out[56..60].copy_from_slice(&self.cpu.to_le_bytes());
        out[60] = self.kind as u8;
        out[61] = self.irql;
        out[62] = self.flags;
        out[63] = self.lane;
        out
    }

    /// Decodes a record written by [`Event::to_bytes`], validating every field that has invalid
    /// values.
    ///
    /// # Errors
    /// An unknown kind, undefined flag bits, or requestor fields without the requestor flag.
    pub fn from_bytes(bytes: &[u8; Self::SIZE]) -> Result<Self, EventDecodeError> {
        let u64_at = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(word)
        };
        let u32_at = |at: usize| {
            let mut word = [0u8; 4];
            word.copy_from_slice(&bytes[at..at + 4]);
            u32::from_le_bytes(word)
        };
        let kind =
            CallbackKind::from_u8(bytes[60]).ok_or(EventDecodeError::UnknownKind(bytes[60]))?;
        let flags = bytes[62];
        if flags & !Self::DEFINED_FLAGS != 0 {
            return Err(EventDecodeError::UndefinedFlags(
                flags & !Self::DEFINED_FLAGS,
            ));
        }
        let event = Self {
            seq: u64_at(0),
            timestamp: u64_at(8),
            request_id: u64_at(16),
            file_id: u64_at(24),
            detail: u64_at(32),
            pid: u32_at(40),
            tid: u32_at(44),
            requestor_pid: u32_at(48),
            requestor_tid: u32_at(52),
            cpu: u32_at(56),
            kind,
            irql: bytes[61],
            flags,
            lane: bytes[63],
        };
        if flags & Self::FLAG_REQUESTOR == 0
            && (event.requestor_pid != 0 || event.requestor_tid != 0)
        {
            return Err(EventDecodeError::StrayRequestor);
        }
        Ok(event)
    }
}

/// Where a callback ran relative to the thread that issued its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Placement {
    /// In the requestor's own thread.
    RequestorThread,
    /// In another thread (possibly of the requestor's process).
    OtherThread,
    /// The callback has no requestor (hardware, timer and Plug and Play callbacks).
    NoRequestor,
}

impl Placement {
    /// Stable lower-case name used in exports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::RequestorThread => "requestor",
            Self::OtherThread => "other",
            Self::NoRequestor => "none",
        }
    }
}

/// The verdict on one event: where it ran, and whether that agrees with the documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Verdict {
    /// Where the callback ran relative to its requestor.
    pub placement: Placement,
    /// The documented context class is respected: a "specific" (requestor) callback ran in the
    /// requestor's thread, a System-thread callback ran in the System process. Arbitrary-context
    /// callbacks are consistent wherever they ran.
    pub context_ok: bool,
    /// The observed IRQL is one the documentation allows.
    pub irql_ok: bool,
}

impl Verdict {
    /// Judges one event.
    #[must_use]
    pub fn of(event: &Event) -> Self {
        let placement = match event.requestor() {
            None => Placement::NoRequestor,
            Some(r) if r.pid == event.pid && r.tid == event.tid => Placement::RequestorThread,
            Some(_) => Placement::OtherThread,
        };
        let documented = event.kind.documented();
        let context_ok = match documented.context {
            ContextClass::Requestor => placement == Placement::RequestorThread,
            ContextClass::Arbitrary => true,
            ContextClass::System => event.pid == SYSTEM_PID,
        };
        Self {
            placement,
            context_ok,
            irql_ok: documented.irql.allows(event.irql),
        }
    }

    /// Neither the context nor the IRQL contradicts the documentation.
    #[must_use]
    pub const fn consistent(self) -> bool {
        self.context_ok && self.irql_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::{DISPATCH_LEVEL, PASSIVE_LEVEL};

    fn ctx(pid: u32, tid: u32, irql: u8) -> ExecContext {
        ExecContext {
            pid,
            tid,
            irql,
            cpu: 1,
        }
    }

    #[test]
    fn specific_callback_outside_requestor_thread_is_a_violation() {
        let requestor = Some(Requestor {
            pid: 1200,
            tid: 1204,
        });
        let good = Event::new(
            CallbackKind::EvtIoInCallerContext,
            ctx(1200, 1204, PASSIVE_LEVEL),
            1,
        )
        .with_requestor(requestor);
        assert_eq!(good.verdict().placement, Placement::RequestorThread);
        assert!(good.verdict().consistent());

        let bad = Event::new(
            CallbackKind::EvtIoInCallerContext,
            ctx(1200, 1300, PASSIVE_LEVEL),
            1,
        )
        .with_requestor(requestor);
        assert_eq!(bad.verdict().placement, Placement::OtherThread);
        assert!(!bad.verdict().context_ok);

        let missing = Event::new(
            CallbackKind::EvtFileCleanup,
            ctx(1200, 1204, PASSIVE_LEVEL),
            1,
        );
        assert_eq!(missing.verdict().placement, Placement::NoRequestor);
        assert!(
            !missing.verdict().consistent(),
            "a specific callback without requestor proves nothing"
        );
    }

    #[test]
    fn arbitrary_callback_is_consistent_anywhere_but_irql_is_checked() {
        let read = Event::new(CallbackKind::EvtIoRead, ctx(4, 88, DISPATCH_LEVEL), 1)
            .with_requestor(Some(Requestor {
                pid: 1200,
                tid: 1204,
            }));
        assert_eq!(read.verdict().placement, Placement::OtherThread);
        assert!(read.verdict().consistent());

        let isr_at_dispatch =
            Event::new(CallbackKind::EvtInterruptIsr, ctx(0, 0, DISPATCH_LEVEL), 1);
        assert!(!isr_at_dispatch.verdict().irql_ok);
        assert!(!isr_at_dispatch.verdict().consistent());
    }

    #[test]
    fn system_callbacks_must_run_in_the_system_process() {
        let add = Event::new(CallbackKind::EvtDriverDeviceAdd, ctx(SYSTEM_PID, 72, 0), 1);
        assert!(add.verdict().consistent());
        let add_elsewhere = Event::new(CallbackKind::EvtDriverDeviceAdd, ctx(900, 72, 0), 1);
        assert!(!add_elsewhere.verdict().consistent());
    }

    #[test]
    fn bytes_round_trip_and_validate() {
        let event = Event::new(
            CallbackKind::EvtInterruptDpc,
            ctx(4, 120, 2),
            0x1122_3344_5566_7788,
        )
        .with_ids(7, 9)
        .with_detail(0xdead_beef)
        .with_requestor(Some(Requestor { pid: 3, tid: 5 }))
        .completing(true);
        assert_eq!(Event::from_bytes(&event.to_bytes()), Ok(event));

        let mut bytes = event.to_bytes();
        bytes[60] = 99;
        assert_eq!(
            Event::from_bytes(&bytes),
            Err(EventDecodeError::UnknownKind(99))
        );
        let mut bytes = event.to_bytes();
        bytes[62] = 0x80 | Event::FLAG_REQUESTOR;
        assert_eq!(
            Event::from_bytes(&bytes),
            Err(EventDecodeError::UndefinedFlags(0x80))
        );
        let mut bytes = event.with_requestor(None).to_bytes();
        bytes[48] = 1;
        assert_eq!(
            Event::from_bytes(&bytes),
            Err(EventDecodeError::StrayRequestor)
        );
    }

    #[test]
    fn in_memory_layout_is_the_wire_layout() {
        assert_eq!(core::mem::offset_of!(Event, seq), 0);
        assert_eq!(core::mem::offset_of!(Event, detail), 32);
        assert_eq!(core::mem::offset_of!(Event, pid), 40);
        assert_eq!(core::mem::offset_of!(Event, cpu), 56);
        assert_eq!(core::mem::offset_of!(Event, kind), 60);
        assert_eq!(core::mem::offset_of!(Event, lane), 63);
    }
}
