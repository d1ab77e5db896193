//! The protocol between the driver and `ctxctl`: the device interface, the I/O control codes, and
//! the byte layout of every message they exchange.
//!
//! # Messages
//! Every message starts with a [`Header`] of 8 bytes: `version: u16` ([`PROTOCOL_VERSION`]),
//! `size: u16` (total bytes of the message, header included) and `reserved: u32` (zero). All
//! integers are little-endian, every layout is fixed, every message size is a multiple of 8, and
//! every field sits at an offset that is a multiple of its size, so a message can be read in
//! place from a buffer that starts on an 8-byte boundary.
//!
//! | I/O control / request | input | output |
//! |---|---|---|
//! | [`Ioctl::GetInfo`] | none | [`InfoReply`] |
//! | [`Ioctl::GetEvents`] | [`GetEventsRequest`] | [`GetEventsReply`]: fixed part, then `count` events |
//! | [`Ioctl::Reset`] | none | [`ResetReply`] |
//! | [`Ioctl::Configure`] | [`ConfigureRequest`] | none |
//! | [`Ioctl::NeitherDemo`] | any bytes | [`NeitherDemoReply`] |
//! | `ReadFile` | none | [`ReadReceipt`] |
//!
//! # Validation
//! Decoding validates everything, in this order: the buffer holds a header, starts on an 8-byte
//! boundary, carries [`PROTOCOL_VERSION`] (checked before anything else so that a driver and an
//! app from different builds get a version error, not a size error), a zero reserved word, the
//! message's size, exactly that many bytes, then every field. Encoding applies the same field
//! validation first, so whatever encodes also decodes to an equal value. Every failure is a
//! [`ProtocolError`], which says which NTSTATUS the driver completes the request with and what
//! the user should do.
//!
//! No allocation, no `unsafe`, no panics on any input: the driver calls this at `DISPATCH_LEVEL`.

use core::fmt;
use core::str::FromStr;

use crate::event::{Event, EventDecodeError};
use crate::kind::CallbackKind;
use crate::ring::RingStats;

/// The NTSTATUS values the driver completes requests with (ntstatus.h).
pub mod ntstatus {
    // NTSTATUS is a LONG: error and warning values are negative when read as i32.

    /// `STATUS_SUCCESS`.
    pub const STATUS_SUCCESS: i32 = 0;
    /// `STATUS_DATATYPE_MISALIGNMENT` (a warning: 0x80000002).
    pub const STATUS_DATATYPE_MISALIGNMENT: i32 = 0x8000_0002_u32.cast_signed();
    /// `STATUS_INVALID_PARAMETER`.
    pub const STATUS_INVALID_PARAMETER: i32 = 0xC000_000D_u32.cast_signed();
    /// `STATUS_INVALID_DEVICE_REQUEST`.
    pub const STATUS_INVALID_DEVICE_REQUEST: i32 = 0xC000_0010_u32.cast_signed();
    /// `STATUS_BUFFER_TOO_SMALL`.
    pub const STATUS_BUFFER_TOO_SMALL: i32 = 0xC000_0023_u32.cast_signed();
    /// `STATUS_REVISION_MISMATCH`.
    pub const STATUS_REVISION_MISMATCH: i32 = 0xC000_0059_u32.cast_signed();
}

/// Version of the message layouts. Bumped on any change to any layout or meaning; there is no
/// negotiation: the driver and `ctxctl` must come from the same build.
pub const PROTOCOL_VERSION: u16 = 1;

// ---------------------------------------------------------------------------------------------
// GUID
// ---------------------------------------------------------------------------------------------

/// A GUID with Windows' field layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid {
    /// First 8 hex digits.
    pub data1: u32,
    /// Next 4.
    pub data2: u16,
    /// Next 4.
    pub data3: u16,
    /// Last 16, as bytes (the first two form the fourth group of the string form).
    pub data4: [u8; 8],
}

/// The device interface class the driver registers (`WdfDeviceCreateDeviceInterface`) and the app
/// opens (`CM_Get_Device_Interface_List`): `{4BF19E48-DB6B-4FB9-9FB5-BFF5BB39E598}`.
pub const DEVICE_INTERFACE_GUID: Guid = Guid {
    data1: 0x4BF1_9E48,
    data2: 0xDB6B,
    data3: 0x4FB9,
    data4: [0x9F, 0xB5, 0xBF, 0xF5, 0xBB, 0x39, 0xE5, 0x98],
};

/// Why a string is not a GUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuidError {
    /// Neither 36 characters (bare) nor 38 (in braces).
    #[error(
        "a GUID has 36 characters, or 38 in braces, not {len}; write it as {{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}}"
    )]
    Length {
        /// Length found, in bytes.
        len: usize,
    },
    /// 38 characters, but not enclosed in `{` and `}`.
    #[error("a 38-character GUID must be enclosed in braces {{...}}")]
    Braces,
    /// A hyphen is missing where one belongs (position counted in the bare form).
    #[error("expected '-' at position {at} of the GUID")]
    Hyphen {
        /// Position in the bare 36-character form.
        at: usize,
    },
    /// A character that is not a hex digit (position counted in the bare form).
    #[error("expected a hex digit at position {at} of the GUID")]
    HexDigit {
        /// Position in the bare 36-character form.
        at: usize,
    },
}

impl Guid {
    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, with or without braces, hex digits in either
    /// case.
    ///
    /// # Errors
    /// [`GuidError`] says what is wrong and where.
    #[allow(clippy::cast_possible_truncation)] // each field is cut from its bits of the 128
    pub fn parse(text: &str) -> Result<Self, GuidError> {
        let bytes = text.as_bytes();
        let bare = match bytes.len() {
            36 => bytes,
            38 => match (bytes.first(), bytes.last()) {
                (Some(b'{'), Some(b'}')) => &bytes[1..37],
                _ => return Err(GuidError::Braces),
            },
            len => return Err(GuidError::Length { len }),
        };
        let mut value: u128 = 0;
        for (at, &byte) in bare.iter().enumerate() {
            if matches!(at, 8 | 13 | 18 | 23) {
                if byte != b'-' {
                    return Err(GuidError::Hyphen { at });
                }
                continue;
            }
            let digit = hex_digit(byte).ok_or(GuidError::HexDigit { at })?;
            value = (value << 4) | u128::from(digit);
        }
        let [d4_0, d4_1, d4_2, d4_3, d4_4, d4_5, d4_6, d4_7] = (value as u64).to_be_bytes();
        Ok(Self {
            data1: (value >> 96) as u32,
            data2: (value >> 80) as u16,
            data3: (value >> 64) as u16,
            data4: [d4_0, d4_1, d4_2, d4_3, d4_4, d4_5, d4_6, d4_7],
        })
    }
}

impl FromStr for Guid {
    type Err = GuidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for Guid {
    /// `{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}`, upper case, as `StringFromGUID2` writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.data4;
        write!(
            f,
            "{{{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}}}",
            self.data1, self.data2, self.data3, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
        )
    }
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// I/O control codes
// ---------------------------------------------------------------------------------------------

/// `FILE_DEVICE_UNKNOWN`: the device type of devices that fit no predefined type.
pub const FILE_DEVICE_UNKNOWN: u32 = 0x22;

/// First function code available to vendors; below 0x800 is Microsoft's.
pub const VENDOR_FUNCTION_BASE: u32 = 0x800;

/// How the I/O manager passes an I/O control's buffers (the `TransferType` of `CTL_CODE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Method {
    /// `METHOD_BUFFERED`: the I/O manager copies through one system buffer.
    Buffered = 0,
    /// `METHOD_IN_DIRECT`: the output buffer is described by an MDL, probed for reading.
    InDirect = 1,
    /// `METHOD_OUT_DIRECT`: the output buffer is described by an MDL, probed for writing.
    OutDirect = 2,
    /// `METHOD_NEITHER`: the driver gets raw user-mode pointers and must probe and lock them in
    /// the requestor's context itself.
    Neither = 3,
}

impl Method {
    /// The `METHOD_*` name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Buffered => "METHOD_BUFFERED",
            Self::InDirect => "METHOD_IN_DIRECT",
            Self::OutDirect => "METHOD_OUT_DIRECT",
            Self::Neither => "METHOD_NEITHER",
        }
    }

    /// Decodes the two low bits of a control code.
    #[must_use]
    pub const fn from_bits(bits: u32) -> Self {
        match bits & 3 {
            0 => Self::Buffered,
            1 => Self::InDirect,
            2 => Self::OutDirect,
            _ => Self::Neither,
        }
    }
}

/// The access a caller's handle must have been opened with for the I/O manager to deliver an
/// I/O control (the `RequiredAccess` of `CTL_CODE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Access {
    /// `FILE_ANY_ACCESS`.
    Any = 0,
    /// `FILE_READ_ACCESS`.
    Read = 1,
    /// `FILE_WRITE_ACCESS`.
    Write = 2,
    /// `FILE_READ_ACCESS | FILE_WRITE_ACCESS`.
    ReadWrite = 3,
}

impl Access {
    /// The `FILE_*_ACCESS` expression.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Any => "FILE_ANY_ACCESS",
            Self::Read => "FILE_READ_ACCESS",
            Self::Write => "FILE_WRITE_ACCESS",
            Self::ReadWrite => "FILE_READ_ACCESS | FILE_WRITE_ACCESS",
        }
    }

    /// Decodes the two access bits of a control code (already shifted down).
    #[must_use]
    pub const fn from_bits(bits: u32) -> Self {
        match bits & 3 {
            0 => Self::Any,
            1 => Self::Read,
            2 => Self::Write,
            _ => Self::ReadWrite,
        }
    }
}

/// `CTL_CODE(DeviceType, Function, Method, Access)` from devioctl.h, with the same arithmetic:
/// `(DeviceType << 16) | (Access << 14) | (Function << 2) | Method`. Like the macro it does not
/// mask: `function` must be below 0x1000 and `device_type` below 0x10000.
#[must_use]
pub const fn ctl_code(device_type: u32, function: u32, method: Method, access: Access) -> u32 {
    (device_type << 16) | ((access as u32) << 14) | (function << 2) | method as u32
}

/// The driver's I/O controls. All are `FILE_DEVICE_UNKNOWN` with vendor function codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ioctl {
    /// Function 0x800, `METHOD_BUFFERED`, `FILE_READ_ACCESS`: returns an [`InfoReply`]. Read
    /// access because it only reports state.
    GetInfo,
    /// Function 0x801, `METHOD_BUFFERED`, `FILE_READ_ACCESS`: takes a [`GetEventsRequest`],
    /// returns a [`GetEventsReply`]. Read access: draining the ring is reading the device, as
    /// `ReadFile` is, even though it consumes what it reads.
    GetEvents,
    /// Function 0x802, `METHOD_BUFFERED`, `FILE_READ_ACCESS | FILE_WRITE_ACCESS`: discards every
    /// pending event, returns a [`ResetReply`]. Write access too, because it destroys data other
    /// readers have not seen.
    Reset,
    /// Function 0x803, `METHOD_BUFFERED`, `FILE_READ_ACCESS | FILE_WRITE_ACCESS`: takes a
    /// [`ConfigureRequest`]. Write access too, because it changes the driver's behaviour for every
    /// client.
    Configure,
    /// Function 0x804, `METHOD_NEITHER`, `FILE_READ_ACCESS | FILE_WRITE_ACCESS`: exists only to
    /// demonstrate `METHOD_NEITHER`, whose user buffers the driver probes and locks in
    /// `EvtIoInCallerContext`. Returns a [`NeitherDemoReply`]. Read and write access because the
    /// driver reads the caller's input buffer and writes its output buffer directly.
    NeitherDemo,
}

impl Ioctl {
    /// Every I/O control, in function-code order.
    pub const ALL: [Self; 5] = [
        Self::GetInfo,
        Self::GetEvents,
        Self::Reset,
        Self::Configure,
        Self::NeitherDemo,
    ];

    /// The function code (0x800 and up).
    #[must_use]
    pub const fn function(self) -> u32 {
        match self {
            Self::GetInfo => VENDOR_FUNCTION_BASE,
            Self::GetEvents => VENDOR_FUNCTION_BASE + 1,
            Self::Reset => VENDOR_FUNCTION_BASE + 2,
            Self::Configure => VENDOR_FUNCTION_BASE + 3,
            Self::NeitherDemo => VENDOR_FUNCTION_BASE + 4,
        }
    }

    /// The buffer method.
    #[must_use]
    pub const fn method(self) -> Method {
        match self {
            Self::NeitherDemo => Method::Neither,
            _ => Method::Buffered,
        }
    }

    /// The access the caller's handle needs; see each variant for why.
    #[must_use]
    pub const fn required_access(self) -> Access {
        match self {
            Self::GetInfo | Self::GetEvents => Access::Read,
            Self::Reset | Self::Configure | Self::NeitherDemo => Access::ReadWrite,
        }
    }

    /// The control code, as `CTL_CODE(FILE_DEVICE_UNKNOWN, function, method, access)`.
    #[must_use]
    pub const fn code(self) -> u32 {
        ctl_code(
            FILE_DEVICE_UNKNOWN,
            self.function(),
            self.method(),
            self.required_access(),
        )
    }

    /// The I/O control with this code, if any.
    #[must_use]
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|ioctl| ioctl.code() == code)
    }

    /// Stable name, as `IOCTL_CTXSCOPE_*`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::GetInfo => "IOCTL_CTXSCOPE_GET_INFO",
            Self::GetEvents => "IOCTL_CTXSCOPE_GET_EVENTS",
            Self::Reset => "IOCTL_CTXSCOPE_RESET",
            Self::Configure => "IOCTL_CTXSCOPE_CONFIGURE",
            Self::NeitherDemo => "IOCTL_CTXSCOPE_NEITHER_DEMO",
        }
    }

    /// The exact input length the control takes, or `None` if any length is accepted
    /// ([`Ioctl::NeitherDemo`] checksums whatever it gets).
    #[must_use]
    pub const fn input_size(self) -> Option<usize> {
        match self {
            Self::GetInfo | Self::Reset => Some(0),
            Self::GetEvents => Some(GetEventsRequest::SIZE),
            Self::Configure => Some(ConfigureRequest::SIZE),
            Self::NeitherDemo => None,
        }
    }

    /// The smallest output buffer the control can succeed with ([`Ioctl::GetEvents`]: room for
    /// the fixed part and one event).
    #[must_use]
    pub const fn min_output_size(self) -> usize {
        match self {
            Self::GetInfo => InfoReply::SIZE,
            Self::GetEvents => GetEventsReply::FIXED_SIZE + Event::SIZE,
            Self::Reset => ResetReply::SIZE,
            Self::Configure => 0,
            Self::NeitherDemo => NeitherDemoReply::SIZE,
        }
    }
}

impl TryFrom<u32> for Ioctl {
    type Error = ProtocolError;

    fn try_from(code: u32) -> Result<Self, Self::Error> {
        Self::from_code(code).ok_or(ProtocolError::UnknownIoctl { code })
    }
}

impl fmt::Display for Ioctl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a message could not be encoded or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The bytes end before the message does.
    #[error("message truncated: {needed} bytes needed, {available} present")]
    Truncated {
        /// Bytes the message needs.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// The output buffer cannot hold the message.
    #[error("buffer too small: {needed} bytes needed, {available} provided")]
    BufferTooSmall {
        /// Bytes the message needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// The buffer does not start on an 8-byte boundary. System buffers
    /// (`METHOD_BUFFERED`, `Irp->AssociatedIrp.SystemBuffer`) always do; so do the app's
    /// [`AlignedBuf`]s.
    #[error("buffer address is {misalignment} bytes past an 8-byte boundary")]
    Misaligned {
        /// The buffer's address modulo 8.
        misalignment: usize,
    },
    /// The header carries a protocol version this build does not speak.
    #[error("protocol version {found}, this build speaks version {PROTOCOL_VERSION}")]
    UnsupportedVersion {
        /// The version found.
        found: u16,
    },
    /// The header's size is not this message's size.
    #[error("header says {declared} bytes, this message is {expected} bytes")]
    SizeMismatch {
        /// Size in the header.
        declared: usize,
        /// Size the message has.
        expected: usize,
    },
    /// More bytes than the header's size.
    #[error("{actual} bytes given for a message of {declared} bytes")]
    TrailingBytes {
        /// Size in the header.
        declared: usize,
        /// Bytes given.
        actual: usize,
    },
    /// A reserved field is not zero.
    #[error("reserved field at byte {offset} is not zero")]
    ReservedNotZero {
        /// Offset of the field in the message.
        offset: usize,
    },
    /// An enumerated field holds a value with no meaning.
    #[error("field {field}: unknown value {value}")]
    UnknownValue {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// A numeric field is outside its allowed range.
    #[error("field {field}: value {value} is out of range")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// Fields contradict each other.
    #[error("inconsistent message: {what}")]
    Inconsistent {
        /// What contradicts what.
        what: &'static str,
    },
    /// An embedded event record is invalid.
    #[error("event {index}: {source}")]
    InvalidEvent {
        /// Index of the event in the message.
        index: usize,
        /// What is wrong with it.
        source: EventDecodeError,
    },
    /// More events than one reply can carry ([`GetEventsReply::MAX_EVENTS`]).
    #[error("{count} events, one reply carries at most {max}")]
    TooManyEvents {
        /// Events offered.
        count: usize,
        /// The maximum.
        max: usize,
    },
    /// The I/O control code is not one of the driver's.
    #[error("unknown I/O control code {code:#010x}")]
    UnknownIoctl {
        /// The code.
        code: u32,
    },
}

impl ProtocolError {
    /// The NTSTATUS the driver completes the request with.
    #[must_use]
    pub const fn ntstatus(&self) -> i32 {
        match self {
            Self::Truncated { .. } | Self::BufferTooSmall { .. } => {
                ntstatus::STATUS_BUFFER_TOO_SMALL
            }
            Self::Misaligned { .. } => ntstatus::STATUS_DATATYPE_MISALIGNMENT,
            Self::UnsupportedVersion { .. } => ntstatus::STATUS_REVISION_MISMATCH,
            Self::UnknownIoctl { .. } => ntstatus::STATUS_INVALID_DEVICE_REQUEST,
            Self::SizeMismatch { .. }
            | Self::TrailingBytes { .. }
            | Self::ReservedNotZero { .. }
            | Self::UnknownValue { .. }
            | Self::OutOfRange { .. }
            | Self::Inconsistent { .. }
            | Self::InvalidEvent { .. }
            | Self::TooManyEvents { .. } => ntstatus::STATUS_INVALID_PARAMETER,
        }
    }

    /// What the user should do about it.
    #[must_use]
    pub const fn hint(&self) -> &'static str {
        match self {
            Self::Truncated { .. } => {
                "the message was cut short; pass the whole buffer and the byte count the call returned"
            }
            Self::BufferTooSmall { .. } => {
                "pass a larger buffer (at least the size named in the error)"
            }
            Self::Misaligned { .. } => {
                "pass a buffer that starts on an 8-byte boundary (ctxscope_core::protocol::AlignedBuf)"
            }
            Self::UnsupportedVersion { .. } | Self::SizeMismatch { .. } => {
                "the driver and ctxctl come from different builds; reinstall the driver from the same build as ctxctl"
            }
            Self::TrailingBytes { .. } => {
                "pass exactly the message's bytes: the length the call returned, not the buffer's size"
            }
            Self::ReservedNotZero { .. }
            | Self::UnknownValue { .. }
            | Self::Inconsistent { .. } => {
                "the message is corrupt or from a different build; reinstall the driver from the same build as ctxctl"
            }
            Self::OutOfRange { .. } => {
                "use a value in the documented range (timer period 1..=60000 ms, log level 0..=3)"
            }
            Self::InvalidEvent { .. } => {
                "an event record is corrupt; report this as a bug with the driver's log"
            }
            Self::TooManyEvents { .. } => "send the events in several replies",
            Self::UnknownIoctl { .. } => {
                "use the I/O control codes of ctxscope_core::protocol::Ioctl from the same build as the driver"
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Aligned buffers and byte access
// ---------------------------------------------------------------------------------------------

/// A byte buffer that starts on an 8-byte boundary, for the app's input and output buffers (and
/// tests): decoders refuse misaligned buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(8))]
pub struct AlignedBuf<const N: usize>(pub [u8; N]);

impl<const N: usize> AlignedBuf<N> {
    /// A zeroed buffer.
    #[must_use]
    pub const fn new() -> Self {
        Self([0; N])
    }

    /// The bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, writable.
    pub const fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl<const N: usize> Default for AlignedBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes fields in order into a buffer already checked to be large enough.
struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, value: &[u8]) {
        // The caller checked the length; `get_mut` keeps this panic-free regardless.
        if let Some(dst) = self.out.get_mut(self.at..self.at + value.len()) {
            dst.copy_from_slice(value);
        }
        self.at += value.len();
    }
    fn u8(&mut self, value: u8) {
        self.bytes(&[value]);
    }
    fn u16(&mut self, value: u16) {
        self.bytes(&value.to_le_bytes());
    }
    fn u32(&mut self, value: u32) {
        self.bytes(&value.to_le_bytes());
    }
    fn u64(&mut self, value: u64) {
        self.bytes(&value.to_le_bytes());
    }
}

/// Reads fields in order.
struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let end = self.at + N;
        let mut word = [0u8; N];
        word.copy_from_slice(
            self.bytes
                .get(self.at..end)
                .ok_or(ProtocolError::Truncated {
                    needed: end,
                    available: self.bytes.len(),
                })?,
        );
        self.at = end;
        Ok(word)
    }
    fn slice(&mut self, len: usize) -> Result<&'a [u8], ProtocolError> {
        let end = self.at + len;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or(ProtocolError::Truncated {
                needed: end,
                available: self.bytes.len(),
            })?;
        self.at = end;
        Ok(slice)
    }
    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, ProtocolError> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, ProtocolError> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, ProtocolError> {
        self.take().map(u64::from_le_bytes)
    }
    /// Reads `N` reserved bytes and insists they are zero.
    fn reserved<const N: usize>(&mut self) -> Result<(), ProtocolError> {
        let offset = self.at;
        if self.take::<N>()? == [0; N] {
            Ok(())
        } else {
            Err(ProtocolError::ReservedNotZero { offset })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------------------------

/// The 8 bytes every message starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// [`PROTOCOL_VERSION`].
    pub version: u16,
    /// Total bytes of the message, header included.
    pub size: u16,
    /// Zero.
    pub reserved: u32,
}

impl Header {
    /// Size in bytes.
    pub const SIZE: usize = 8;

    /// Reads and validates the header at the start of `bytes`: long enough, 8-byte aligned,
    /// [`PROTOCOL_VERSION`], reserved word zero. The size is returned, not checked.
    ///
    /// # Errors
    /// [`ProtocolError::Truncated`], [`ProtocolError::Misaligned`],
    /// [`ProtocolError::UnsupportedVersion`], [`ProtocolError::ReservedNotZero`].
    pub fn peek(bytes: &[u8]) -> Result<Self, ProtocolError> {
        if bytes.len() < Self::SIZE {
            return Err(ProtocolError::Truncated {
                needed: Self::SIZE,
                available: bytes.len(),
            });
        }
        let misalignment = bytes.as_ptr() as usize % 8;
        if misalignment != 0 {
            return Err(ProtocolError::Misaligned { misalignment });
        }
        let mut fields = Fields { bytes, at: 0 };
        let version = fields.u16()?;
        if version != PROTOCOL_VERSION {
            return Err(ProtocolError::UnsupportedVersion { found: version });
        }
        let size = fields.u16()?;
        fields.reserved::<4>()?;
        Ok(Self {
            version,
            size,
            reserved: 0,
        })
    }
}

/// Checks `out` can hold `size` bytes and writes the header.
fn begin(out: &mut [u8], size: usize) -> Result<Writer<'_>, ProtocolError> {
    if out.len() < size {
        return Err(ProtocolError::BufferTooSmall {
            needed: size,
            available: out.len(),
        });
    }
    let declared = u16::try_from(size).map_err(|_| ProtocolError::OutOfRange {
        field: "size",
        value: size as u64,
    })?;
    let mut writer = Writer { out, at: 0 };
    writer.u16(PROTOCOL_VERSION);
    writer.u16(declared);
    writer.u32(0);
    Ok(writer)
}

/// Validates the header and length of a message whose size is `expected` and returns a reader
/// positioned after the header.
fn open(bytes: &[u8], expected: usize) -> Result<Fields<'_>, ProtocolError> {
    let header = Header::peek(bytes)?;
    let declared = usize::from(header.size);
    if declared != expected {
        return Err(ProtocolError::SizeMismatch { declared, expected });
    }
    check_length(bytes, declared)?;
    Ok(Fields {
        bytes,
        at: Header::SIZE,
    })
}

fn check_length(bytes: &[u8], declared: usize) -> Result<(), ProtocolError> {
    if bytes.len() < declared {
        return Err(ProtocolError::Truncated {
            needed: declared,
            available: bytes.len(),
        });
    }
    if bytes.len() > declared {
        return Err(ProtocolError::TrailingBytes {
            declared,
            actual: bytes.len(),
        });
    }
    Ok(())
}

/// The fixed-size messages' shared machinery.
trait Fixed: Sized {
    const SIZE: usize;
    /// Field checks shared by encode and decode.
    fn validate(&self) -> Result<(), ProtocolError>;
    /// Writes everything after the header.
    fn put(&self, w: &mut Writer<'_>);
    /// Reads everything after the header (enums checked, ranges left to `validate`).
    fn get(r: &mut Fields<'_>) -> Result<Self, ProtocolError>;
}

fn encode_fixed<M: Fixed>(message: &M, out: &mut [u8]) -> Result<usize, ProtocolError> {
    message.validate()?;
    let mut writer = begin(out, M::SIZE)?;
    message.put(&mut writer);
    Ok(M::SIZE)
}

fn decode_fixed<M: Fixed>(bytes: &[u8]) -> Result<M, ProtocolError> {
    let mut fields = open(bytes, M::SIZE)?;
    let message = M::get(&mut fields)?;
    message.validate()?;
    Ok(message)
}

macro_rules! fixed_message_api {
    ($ty:ty) => {
        impl $ty {
            /// Size of the message in bytes, header included.
            pub const SIZE: usize = <Self as Fixed>::SIZE;

            /// Writes the message at the start of `out` and returns its size.
            ///
            /// # Errors
            /// [`ProtocolError::BufferTooSmall`] if `out` is shorter than [`Self::SIZE`]; a
            /// field error if a field holds a value decoding would refuse.
            pub fn encode(&self, out: &mut [u8]) -> Result<usize, ProtocolError> {
                encode_fixed(self, out)
            }

            /// Reads and validates a message that is exactly `bytes`.
            ///
            /// # Errors
            /// Any [`ProtocolError`] describing what is wrong with the bytes.
            pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
                decode_fixed(bytes)
            }
        }
        const _: () = assert!(<$ty as Fixed>::SIZE % 8 == 0);
    };
}

fn enum_u8<T>(
    field: &'static str,
    value: u8,
    from: fn(u8) -> Option<T>,
) -> Result<T, ProtocolError> {
    from(value).ok_or(ProtocolError::UnknownValue {
        field,
        value: u64::from(value),
    })
}

// ---------------------------------------------------------------------------------------------
// Enumerations carried in messages
// ---------------------------------------------------------------------------------------------

/// How the driver is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Mode {
    /// The device has not finished starting: no hardware resources yet.
    Starting = 0,
    /// Bound to QEMU's `edu` PCI device: real interrupts.
    Edu = 1,
    /// Root-enumerated: no interrupt resource, so the ISR never runs; the timer drives
    /// completions.
    Root = 2,
}

impl Mode {
    /// Every mode.
    pub const ALL: [Self; 3] = [Self::Starting, Self::Edu, Self::Root];

    /// Stable name: `starting`, `edu`, `root`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Edu => "edu",
            Self::Root => "root",
        }
    }

    /// Decodes the wire byte.
    #[must_use]
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::Starting),
            1 => Some(Self::Edu),
            2 => Some(Self::Root),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which lines the driver prints with `DbgPrintEx`. Events are recorded in the ring whatever the
/// level; the level only governs the debugger output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum LogLevel {
    /// Nothing.
    Off = 0,
    /// Errors only.
    Errors = 1,
    /// Errors, and one line per `PnP`, power and file-object event.
    Lifecycle = 2,
    /// Errors, and one line per event.
    Every = 3,
}

impl LogLevel {
    /// Every level, in increasing verbosity.
    pub const ALL: [Self; 4] = [Self::Off, Self::Errors, Self::Lifecycle, Self::Every];

    /// Stable name: `off`, `errors`, `lifecycle`, `every`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Errors => "errors",
            Self::Lifecycle => "lifecycle",
            Self::Every => "every",
        }
    }

    /// Decodes the wire byte.
    #[must_use]
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::Off),
            1 => Some(Self::Errors),
            2 => Some(Self::Lifecycle),
            3 => Some(Self::Every),
            _ => None,
        }
    }

    /// Parses [`LogLevel::name`].
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|level| level.name() == name)
    }

    /// Whether an event of `kind` gets a log line at this level.
    #[must_use]
    pub const fn logs_event(self, kind: CallbackKind) -> bool {
        match self {
            Self::Off | Self::Errors => false,
            Self::Lifecycle => is_lifecycle(kind),
            Self::Every => true,
        }
    }

    /// Whether errors get a log line at this level.
    #[must_use]
    pub const fn logs_errors(self) -> bool {
        !matches!(self, Self::Off)
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `PnP`, power, driver and file-object callbacks: the ones [`LogLevel::Lifecycle`] logs.
const fn is_lifecycle(kind: CallbackKind) -> bool {
    matches!(
        kind,
        CallbackKind::DriverEntry
            | CallbackKind::EvtDriverDeviceAdd
            | CallbackKind::EvtDevicePrepareHardware
            | CallbackKind::EvtDeviceReleaseHardware
            | CallbackKind::EvtDeviceD0Entry
            | CallbackKind::EvtDeviceD0Exit
            | CallbackKind::EvtDeviceFileCreate
            | CallbackKind::EvtFileCleanup
            | CallbackKind::EvtFileClose
            | CallbackKind::EvtDriverUnload
    )
}

// ---------------------------------------------------------------------------------------------
// GetInfo
// ---------------------------------------------------------------------------------------------

/// The driver's version (its `Cargo.toml` version).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DriverVersion {
    /// Major.
    pub major: u16,
    /// Minor.
    pub minor: u16,
    /// Patch.
    pub patch: u16,
}

impl fmt::Display for DriverVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The driver's counters since it loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DriverCounters {
    /// `EvtInterruptIsr` calls.
    pub interrupts: u64,
    /// ISR calls that found the interrupt was not the device's (returned `FALSE`).
    pub spurious_interrupts: u64,
    /// `EvtTimerFunc` calls.
    pub timer_ticks: u64,
    /// Reads completed with a receipt.
    pub reads_completed: u64,
    /// Reads cancelled.
    pub reads_cancelled: u64,
    /// Log lines printed.
    pub log_lines_printed: u64,
    /// Log lines not printed because of the log level.
    pub log_lines_suppressed: u64,
}

/// Shortest timer period accepted, in milliseconds.
pub const TIMER_PERIOD_MS_MIN: u32 = 1;
/// Longest timer period accepted, in milliseconds.
pub const TIMER_PERIOD_MS_MAX: u32 = 60_000;

fn validate_timer_period(timer_period_ms: u32) -> Result<(), ProtocolError> {
    if (TIMER_PERIOD_MS_MIN..=TIMER_PERIOD_MS_MAX).contains(&timer_period_ms) {
        Ok(())
    } else {
        Err(ProtocolError::OutOfRange {
            field: "timer_period_ms",
            value: u64::from(timer_period_ms),
        })
    }
}

/// Output of [`Ioctl::GetInfo`]: 120 bytes.
///
/// The protocol version is the header's (every message carries it; a mismatch fails decoding
/// with [`ProtocolError::UnsupportedVersion`], which names the driver's version).
///
/// | offset | field |
/// |---|---|
/// | 0 | header |
/// | 8 | driver version: major u16, minor u16, patch u16, reserved u16 |
/// | 16 | mode u8, log level u8, reserved u16, timer period ms u32 |
/// | 24 | counter frequency u64 |
/// | 32 | ring lanes u32, lane capacity u32 |
/// | 40 | recorded, dropped, consumed u64 |
/// | 64 | interrupts, spurious, timer ticks, reads completed, reads cancelled, lines printed, lines suppressed u64 |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfoReply {
    /// The driver's version.
    pub driver_version: DriverVersion,
    /// How the driver is running.
    pub mode: Mode,
    /// `KeQueryPerformanceCounter` frequency, ticks per second (never 0).
    pub counter_frequency: u64,
    /// Lanes of the event ring (1..=256).
    pub ring_lanes: u32,
    /// Slots per lane (a power of two).
    pub lane_capacity: u32,
    /// The ring's counters.
    pub ring: RingStats,
    /// The driver's counters.
    pub counters: DriverCounters,
    /// The timer period in force, ms.
    pub timer_period_ms: u32,
    /// The log level in force.
    pub log_level: LogLevel,
}

impl InfoReply {
    /// The configuration in force, as a [`ConfigureRequest`] would set it.
    #[must_use]
    pub const fn config(&self) -> ConfigureRequest {
        ConfigureRequest {
            timer_period_ms: self.timer_period_ms,
            log_level: self.log_level,
        }
    }
}

impl Fixed for InfoReply {
    const SIZE: usize = 120;

    fn validate(&self) -> Result<(), ProtocolError> {
        if self.counter_frequency == 0 {
            return Err(ProtocolError::OutOfRange {
                field: "counter_frequency",
                value: 0,
            });
        }
        if !(1..=256).contains(&self.ring_lanes) {
            return Err(ProtocolError::OutOfRange {
                field: "ring_lanes",
                value: u64::from(self.ring_lanes),
            });
        }
        if !self.lane_capacity.is_power_of_two() {
            return Err(ProtocolError::OutOfRange {
                field: "lane_capacity",
                value: u64::from(self.lane_capacity),
            });
        }
        validate_timer_period(self.timer_period_ms)
    }

    fn put(&self, w: &mut Writer<'_>) {
        w.u16(self.driver_version.major);
        w.u16(self.driver_version.minor);
        w.u16(self.driver_version.patch);
        w.u16(0);
        w.u8(self.mode as u8);
        w.u8(self.log_level as u8);
        w.u16(0);
        w.u32(self.timer_period_ms);
        w.u64(self.counter_frequency);
        w.u32(self.ring_lanes);
        w.u32(self.lane_capacity);
        w.u64(self.ring.recorded);
        w.u64(self.ring.dropped);
        w.u64(self.ring.consumed);
        let c = &self.counters;
        for value in [
            c.interrupts,
            c.spurious_interrupts,
            c.timer_ticks,
            c.reads_completed,
            c.reads_cancelled,
            c.log_lines_printed,
            c.log_lines_suppressed,
        ] {
            w.u64(value);
        }
    }

    fn get(r: &mut Fields<'_>) -> Result<Self, ProtocolError> {
        let driver_version = DriverVersion {
            major: r.u16()?,
            minor: r.u16()?,
            patch: r.u16()?,
        };
        r.reserved::<2>()?;
        let mode = enum_u8("mode", r.u8()?, Mode::from_u8)?;
        let log_level = enum_u8("log_level", r.u8()?, LogLevel::from_u8)?;
        r.reserved::<2>()?;
        let timer_period_ms = r.u32()?;
        let counter_frequency = r.u64()?;
        let ring_lanes = r.u32()?;
        let lane_capacity = r.u32()?;
        let ring = RingStats {
            recorded: r.u64()?,
            dropped: r.u64()?,
            consumed: r.u64()?,
        };
        let counters = DriverCounters {
            interrupts: r.u64()?,
            spurious_interrupts: r.u64()?,
            timer_ticks: r.u64()?,
            reads_completed: r.u64()?,
            reads_cancelled: r.u64()?,
            log_lines_printed: r.u64()?,
            log_lines_suppressed: r.u64()?,
        };
        Ok(Self {
            driver_version,
            mode,
            counter_frequency,
            ring_lanes,
            lane_capacity,
            ring,
            counters,
            timer_period_ms,
            log_level,
        })
    }
}
fixed_message_api!(InfoReply);

// ---------------------------------------------------------------------------------------------
// GetEvents
// ---------------------------------------------------------------------------------------------

/// Input of [`Ioctl::GetEvents`]: 16 bytes (header, `cursor: u64`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GetEventsRequest {
    /// How many events the app has received so far: the `next_cursor` of its previous reply, or
    /// 0 the first time.
    pub cursor: u64,
}

impl Fixed for GetEventsRequest {
    const SIZE: usize = 16;

    fn validate(&self) -> Result<(), ProtocolError> {
        Ok(())
    }

    fn put(&self, w: &mut Writer<'_>) {
        w.u64(self.cursor);
    }

    fn get(r: &mut Fields<'_>) -> Result<Self, ProtocolError> {
        Ok(Self { cursor: r.u64()? })
    }
}
fixed_message_api!(GetEventsRequest);

/// The fixed part of a [`GetEventsReply`].
///
/// The cursor counts the events the ring's single reader has consumed since the driver loaded
/// (delivered or discarded by [`Ioctl::Reset`]). The driver answers with its own cursor before the
/// batch and after it; if the app's cursor differs, events went elsewhere and
/// [`EventsReplyHeader::check_cursor`] says how many.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventsReplyHeader {
    /// The driver's cursor when it answered, before taking this batch.
    pub cursor: u64,
    /// The driver's cursor after this batch: `cursor + count`. The app's next request sends it.
    pub next_cursor: u64,
    /// The ring's counters after taking the batch.
    pub stats: RingStats,
}

/// How the driver's cursor compares with the app's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CursorCheck {
    /// The reply continues exactly where the app's previous one ended.
    InStep,
    /// `missed` events were consumed by someone else (another reader, or a reset) since the app's
    /// previous reply.
    Skipped {
        /// Events the app never saw.
        missed: u64,
    },
    /// The driver's cursor is behind the app's: the driver was reloaded (its counters restart at
    /// 0) or the app sent a cursor from another session.
    Restarted {
        /// The app's cursor.
        app: u64,
        /// The driver's.
        driver: u64,
    },
}

impl EventsReplyHeader {
    /// Compares the driver's cursor with the one the app sent.
    #[must_use]
    pub const fn check_cursor(&self, app_cursor: u64) -> CursorCheck {
        if self.cursor == app_cursor {
            CursorCheck::InStep
        } else if self.cursor > app_cursor {
            CursorCheck::Skipped {
                missed: self.cursor - app_cursor,
            }
        } else {
            CursorCheck::Restarted {
                app: app_cursor,
                driver: self.cursor,
            }
        }
    }
}

/// Output of [`Ioctl::GetEvents`], decoded in place: the fixed part and the validated event
/// records that follow it.
///
/// | offset | field |
/// |---|---|
/// | 0 | header |
/// | 8 | count u32, reserved u32 |
/// | 16 | cursor u64, next cursor u64 |
/// | 32 | recorded, dropped, consumed u64 |
/// | 56 | `count` events of 64 bytes ([`Event::to_bytes`]) |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GetEventsReply<'a> {
    /// The fixed part.
    pub header: EventsReplyHeader,
    /// `count` validated 64-byte records.
    records: &'a [u8],
}

impl<'a> GetEventsReply<'a> {
    /// Size of the fixed part, header included.
    pub const FIXED_SIZE: usize = 56;
    /// Most events one reply carries: the header's `size` is 16 bits.
    pub const MAX_EVENTS: usize = (0xFFF8 - Self::FIXED_SIZE) / Event::SIZE;

    /// Reads and validates a reply that is exactly `bytes`, every event included.
    ///
    /// # Errors
    /// Any [`ProtocolError`] describing what is wrong, [`ProtocolError::InvalidEvent`] naming the
    /// first bad record.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, ProtocolError> {
        let header = Header::peek(bytes)?;
        let declared = usize::from(header.size);
        if declared < Self::FIXED_SIZE {
            return Err(ProtocolError::SizeMismatch {
                declared,
                expected: Self::FIXED_SIZE,
            });
        }
        let mut fields = Fields {
            bytes,
            at: Header::SIZE,
        };
        let count = fields.u32()? as usize;
        if count > Self::MAX_EVENTS {
            return Err(ProtocolError::TooManyEvents {
                count,
                max: Self::MAX_EVENTS,
            });
        }
        let expected = Self::FIXED_SIZE + count * Event::SIZE;
        if declared != expected {
            return Err(ProtocolError::SizeMismatch { declared, expected });
        }
        check_length(bytes, declared)?;
        fields.reserved::<4>()?;
        let reply_header = EventsReplyHeader {
            cursor: fields.u64()?,
            next_cursor: fields.u64()?,
            stats: RingStats {
                recorded: fields.u64()?,
                dropped: fields.u64()?,
                consumed: fields.u64()?,
            },
        };
        validate_cursors(&reply_header, count)?;
        let records = fields.slice(count * Event::SIZE)?;
        for (index, record) in records.chunks_exact(Event::SIZE).enumerate() {
            decode_record(record)
                .map_err(|source| ProtocolError::InvalidEvent { index, source })?;
        }
        Ok(Self {
            header: reply_header,
            records,
        })
    }

    /// Number of events.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.records.len() / Event::SIZE
    }

    /// Whether the reply carries no event.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The events, in the order the driver drained them.
    #[must_use]
    pub fn events(&self) -> EventIter<'a> {
        EventIter {
            records: self.records.chunks_exact(Event::SIZE),
        }
    }

    /// Writes the reply again (as [`encode_events_reply`] did) at the start of `out`.
    ///
    /// # Errors
    /// [`ProtocolError::BufferTooSmall`] if `out` is too short.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, ProtocolError> {
        let size = Self::FIXED_SIZE + self.records.len();
        let mut writer = begin(out, size)?;
        #[allow(clippy::cast_possible_truncation)] // at most MAX_EVENTS, checked by `decode`
        put_events_fixed(&mut writer, &self.header, self.len() as u32);
        writer.bytes(self.records);
        Ok(size)
    }
}

fn decode_record(record: &[u8]) -> Result<Event, EventDecodeError> {
    let mut bytes = [0u8; Event::SIZE];
    bytes.copy_from_slice(record);
    Event::from_bytes(&bytes)
}

fn validate_cursors(header: &EventsReplyHeader, count: usize) -> Result<(), ProtocolError> {
    if header.cursor.checked_add(count as u64) == Some(header.next_cursor) {
        Ok(())
    } else {
        Err(ProtocolError::Inconsistent {
            what: "next_cursor is not cursor + count",
        })
    }
}

fn put_events_fixed(w: &mut Writer<'_>, header: &EventsReplyHeader, count: u32) {
    w.u32(count);
    w.u32(0);
    w.u64(header.cursor);
    w.u64(header.next_cursor);
    w.u64(header.stats.recorded);
    w.u64(header.stats.dropped);
    w.u64(header.stats.consumed);
}

/// The events of a [`GetEventsReply`].
#[derive(Clone, Debug)]
pub struct EventIter<'a> {
    records: core::slice::ChunksExact<'a, u8>,
}

impl Iterator for EventIter<'_> {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        // Every record was validated by `GetEventsReply::decode`, and the borrowed bytes cannot
        // have changed since, so decoding cannot fail here.
        self.records
            .next()
            .and_then(|record| decode_record(record).ok())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.records.size_hint()
    }
}

impl ExactSizeIterator for EventIter<'_> {}

/// How many events a [`GetEventsReply`] written into `out_len` bytes can carry.
#[must_use]
pub const fn events_reply_capacity(out_len: usize) -> usize {
    if out_len < GetEventsReply::FIXED_SIZE {
        return 0;
    }
    let fit = (out_len - GetEventsReply::FIXED_SIZE) / Event::SIZE;
    if fit < GetEventsReply::MAX_EVENTS {
        fit
    } else {
        GetEventsReply::MAX_EVENTS
    }
}

/// Writes a [`GetEventsReply`] carrying `events` at the start of `out`; returns its size (the
/// request's `Information`).
///
/// # Errors
/// [`ProtocolError::TooManyEvents`] beyond [`GetEventsReply::MAX_EVENTS`],
/// [`ProtocolError::BufferTooSmall`] if `out` cannot hold them (see [`events_reply_capacity`]),
/// [`ProtocolError::Inconsistent`] if `next_cursor` is not `cursor + events.len()`,
/// [`ProtocolError::InvalidEvent`] for an event decoding would refuse.
pub fn encode_events_reply(
    header: &EventsReplyHeader,
    events: &[Event],
    out: &mut [u8],
) -> Result<usize, ProtocolError> {
    let count = events.len();
    if count > GetEventsReply::MAX_EVENTS {
        return Err(ProtocolError::TooManyEvents {
            count,
            max: GetEventsReply::MAX_EVENTS,
        });
    }
    validate_cursors(header, count)?;
    for (index, event) in events.iter().enumerate() {
        Event::from_bytes(&event.to_bytes())
            .map_err(|source| ProtocolError::InvalidEvent { index, source })?;
    }
    let size = GetEventsReply::FIXED_SIZE + count * Event::SIZE;
    let mut writer = begin(out, size)?;
    #[allow(clippy::cast_possible_truncation)] // count <= MAX_EVENTS
    put_events_fixed(&mut writer, header, count as u32);
    for event in events {
        writer.bytes(&event.to_bytes());
    }
    Ok(size)
}

/// Writes the fixed part of a [`GetEventsReply`] whose `count` events are already in place at
/// `out[GetEventsReply::FIXED_SIZE..]` (the driver drains the ring straight into the output buffer,
/// a few events at a time, rather than gathering them on its small kernel stack); returns the
/// reply's size (the request's `Information`).
///
/// # Errors
/// As [`encode_events_reply`]: [`ProtocolError::TooManyEvents`],
/// [`ProtocolError::BufferTooSmall`], [`ProtocolError::Inconsistent`] cursors.
pub fn encode_events_reply_fixed(
    header: &EventsReplyHeader,
    count: usize,
    out: &mut [u8],
) -> Result<usize, ProtocolError> {
    if count > GetEventsReply::MAX_EVENTS {
        return Err(ProtocolError::TooManyEvents {
            count,
            max: GetEventsReply::MAX_EVENTS,
        });
    }
    validate_cursors(header, count)?;
    let size = GetEventsReply::FIXED_SIZE + count * Event::SIZE;
    let mut writer = begin(out, size)?;
    #[allow(clippy::cast_possible_truncation)] // count <= MAX_EVENTS
    put_events_fixed(&mut writer, header, count as u32);
    Ok(size)
}

// ---------------------------------------------------------------------------------------------
// Reset
// ---------------------------------------------------------------------------------------------

/// Output of [`Ioctl::Reset`]: 16 bytes (header, `discarded: u64`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResetReply {
    /// Pending events discarded. They count as consumed: the driver's cursor moved by this much.
    pub discarded: u64,
}

impl Fixed for ResetReply {
    const SIZE: usize = 16;

    fn validate(&self) -> Result<(), ProtocolError> {
        Ok(())
    }

    fn put(&self, w: &mut Writer<'_>) {
        w.u64(self.discarded);
    }

    fn get(r: &mut Fields<'_>) -> Result<Self, ProtocolError> {
        Ok(Self {
            discarded: r.u64()?,
        })
    }
}
fixed_message_api!(ResetReply);

// ---------------------------------------------------------------------------------------------
// Configure
// ---------------------------------------------------------------------------------------------

/// Input of [`Ioctl::Configure`]: 16 bytes (header, `timer_period_ms: u32`, `log_level: u8`,
/// 3 reserved bytes).
///
/// Both fields are always applied; there is no "leave unchanged" value, so a request means the
/// same thing whatever the driver's state. To change one setting, read the other from
/// [`InfoReply::config`] first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConfigureRequest {
    /// Period of the WDF timer, [`TIMER_PERIOD_MS_MIN`]..=[`TIMER_PERIOD_MS_MAX`] ms.
    pub timer_period_ms: u32,
    /// Which lines the driver prints.
    pub log_level: LogLevel,
}

impl Fixed for ConfigureRequest {
    const SIZE: usize = 16;

    fn validate(&self) -> Result<(), ProtocolError> {
        validate_timer_period(self.timer_period_ms)
    }

    fn put(&self, w: &mut Writer<'_>) {
        w.u32(self.timer_period_ms);
        w.u8(self.log_level as u8);
        w.bytes(&[0; 3]);
    }

    fn get(r: &mut Fields<'_>) -> Result<Self, ProtocolError> {
        let timer_period_ms = r.u32()?;
        let log_level = enum_u8("log_level", r.u8()?, LogLevel::from_u8)?;
        r.reserved::<3>()?;
        Ok(Self {
            timer_period_ms,
            log_level,
        })
    }
}
fixed_message_api!(ConfigureRequest);

// ---------------------------------------------------------------------------------------------
// ReadFile receipt
// ---------------------------------------------------------------------------------------------

/// What completed a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CompletedBy {
    /// `EvtInterruptDpc`, queued by the ISR after the device interrupted (edu mode).
    InterruptDpc = 0,
    /// `EvtTimerFunc`, the WDF timer's DPC (root mode, or no interrupt came).
    TimerDpc = 1,
    /// The request was cancelled; the completion entry is the context that completed it.
    Cancelled = 2,
    /// `EvtIoRead` itself, without waiting.
    ReadHandler = 3,
}

impl CompletedBy {
    /// Every value.
    pub const ALL: [Self; 4] = [
        Self::InterruptDpc,
        Self::TimerDpc,
        Self::Cancelled,
        Self::ReadHandler,
    ];

    /// Stable name: `interrupt-dpc`, `timer-dpc`, `cancelled`, `read-handler`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::InterruptDpc => "interrupt-dpc",
            Self::TimerDpc => "timer-dpc",
            Self::Cancelled => "cancelled",
            Self::ReadHandler => "read-handler",
        }
    }

    /// Decodes the wire byte.
    #[must_use]
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::InterruptDpc),
            1 => Some(Self::TimerDpc),
            2 => Some(Self::Cancelled),
            3 => Some(Self::ReadHandler),
            _ => None,
        }
    }

    /// The callback kind that must appear in the completion entry, if fixed.
    #[must_use]
    pub const fn completion_kind(self) -> Option<CallbackKind> {
        match self {
            Self::InterruptDpc => Some(CallbackKind::EvtInterruptDpc),
            Self::TimerDpc => Some(CallbackKind::EvtTimerFunc),
            Self::ReadHandler => Some(CallbackKind::EvtIoRead),
            Self::Cancelled => None,
        }
    }
}

/// The positions of a read's trail in a [`ReadReceipt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrailSlot {
    /// `EvtIoInCallerContext`.
    InCallerContext = 0,
    /// `EvtIoRead`.
    IoRead = 1,
    /// `EvtInterruptIsr` (absent in root mode).
    Isr = 2,
    /// The deferred step: `EvtInterruptDpc` or `EvtTimerFunc`.
    Deferred = 3,
    /// The callback that completed the request.
    Completion = 4,
}

impl TrailSlot {
    /// Every slot, in trail order.
    pub const ALL: [Self; 5] = [
        Self::InCallerContext,
        Self::IoRead,
        Self::Isr,
        Self::Deferred,
        Self::Completion,
    ];

    /// Stable name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::InCallerContext => "in-caller-context",
            Self::IoRead => "io-read",
            Self::Isr => "isr",
            Self::Deferred => "deferred",
            Self::Completion => "completion",
        }
    }

    /// Whether an entry of `kind` may stand in this slot.
    #[must_use]
    pub const fn allows(self, kind: CallbackKind) -> bool {
        match self {
            Self::InCallerContext => matches!(kind, CallbackKind::EvtIoInCallerContext),
            Self::IoRead => matches!(kind, CallbackKind::EvtIoRead),
            Self::Isr => matches!(kind, CallbackKind::EvtInterruptIsr),
            Self::Deferred => matches!(
                kind,
                CallbackKind::EvtInterruptDpc | CallbackKind::EvtTimerFunc
            ),
            Self::Completion => true,
        }
    }
}

/// One step of a read's trail: where a callback ran. 24 bytes on the wire: kind u8, irql u8,
/// present u8 (0 or 1), reserved u8, pid u32, tid u32, cpu u32, timestamp u64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TrailEntry {
    /// Which callback.
    pub kind: CallbackKind,
    /// IRQL at entry.
    pub irql: u8,
    /// Whether the step happened. An absent entry is [`TrailEntry::ABSENT`], all zero.
    pub present: bool,
    /// Current process ID.
    pub pid: u32,
    /// Current thread ID.
    pub tid: u32,
    /// Current processor.
    pub cpu: u32,
    /// `KeQueryPerformanceCounter` ticks.
    pub timestamp: u64,
}

impl TrailEntry {
    /// Size on the wire.
    pub const SIZE: usize = 24;

    /// A step that did not happen.
    pub const ABSENT: Self = Self {
        kind: CallbackKind::DriverEntry,
        irql: 0,
        present: false,
        pid: 0,
        tid: 0,
        cpu: 0,
        timestamp: 0,
    };

    /// The step an event records.
    #[must_use]
    pub const fn from_event(event: &Event) -> Self {
        Self {
            kind: event.kind,
            irql: event.irql,
            present: true,
            pid: event.pid,
            tid: event.tid,
            cpu: event.cpu,
            timestamp: event.timestamp,
        }
    }
}

/// What a `ReadFile` on the device returns in its buffer: who asked, how the driver was running,
/// what completed the read, and the trail of that very request. 152 bytes.
///
/// | offset | field |
/// |---|---|
/// | 0 | header |
/// | 8 | request id u64 |
/// | 16 | requestor pid u32, requestor tid u32 |
/// | 24 | mode u8, completed by u8, 6 reserved bytes |
/// | 32 | 5 [`TrailEntry`]s in [`TrailSlot`] order |
///
/// A read buffer shorter than [`ReadReceipt::SIZE`] makes [`ReadReceipt::encode`] fail with
/// [`ProtocolError::BufferTooSmall`]; the driver completes the read with
/// `STATUS_BUFFER_TOO_SMALL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadReceipt {
    /// The driver's identifier of the request (the `request_id` of its events).
    pub request_id: u64,
    /// Requestor's process ID.
    pub requestor_pid: u32,
    /// Requestor's thread ID.
    pub requestor_tid: u32,
    /// How the driver was running.
    pub mode: Mode,
    /// What completed the read.
    pub completed_by: CompletedBy,
    /// The trail, indexed by [`TrailSlot`].
    pub trail: [TrailEntry; 5],
}

impl ReadReceipt {
    /// The entry of `slot`, if the step happened.
    #[must_use]
    pub const fn entry(&self, slot: TrailSlot) -> Option<&TrailEntry> {
        let entry = &self.trail[slot as usize];
        if entry.present { Some(entry) } else { None }
    }
}

impl Fixed for ReadReceipt {
    const SIZE: usize = 32 + 5 * TrailEntry::SIZE;

    fn validate(&self) -> Result<(), ProtocolError> {
        for (slot, entry) in TrailSlot::ALL.into_iter().zip(&self.trail) {
            if !entry.present {
                if *entry != TrailEntry::ABSENT {
                    return Err(ProtocolError::Inconsistent {
                        what: "an absent trail entry has non-zero fields",
                    });
                }
            } else if !slot.allows(entry.kind) {
                return Err(ProtocolError::Inconsistent {
                    what: "a trail entry's callback kind does not belong in its slot",
                });
            }
        }
        let completion = &self.trail[TrailSlot::Completion as usize];
        if !completion.present {
            return Err(ProtocolError::Inconsistent {
                what: "the completion entry is absent",
            });
        }
        if let Some(kind) = self.completed_by.completion_kind()
            && completion.kind != kind
        {
            return Err(ProtocolError::Inconsistent {
                what: "the completion entry's callback does not match completed_by",
            });
        }
        if matches!(self.mode, Mode::Root)
            && (self.trail[TrailSlot::Isr as usize].present
                || matches!(self.completed_by, CompletedBy::InterruptDpc))
        {
            return Err(ProtocolError::Inconsistent {
                what: "an interrupt in root mode, where the ISR never runs",
            });
        }
        Ok(())
    }

    fn put(&self, w: &mut Writer<'_>) {
        w.u64(self.request_id);
        w.u32(self.requestor_pid);
        w.u32(self.requestor_tid);
        w.u8(self.mode as u8);
        w.u8(self.completed_by as u8);
        w.bytes(&[0; 6]);
        for entry in &self.trail {
            w.u8(entry.kind as u8);
            w.u8(entry.irql);
            w.u8(u8::from(entry.present));
            w.u8(0);
            w.u32(entry.pid);
            w.u32(entry.tid);
            w.u32(entry.cpu);
            w.u64(entry.timestamp);
        }
    }

    fn get(r: &mut Fields<'_>) -> Result<Self, ProtocolError> {
        let mut receipt = Self {
            request_id: r.u64()?,
            requestor_pid: r.u32()?,
            requestor_tid: r.u32()?,
            mode: enum_u8("mode", r.u8()?, Mode::from_u8)?,
            completed_by: enum_u8("completed_by", r.u8()?, CompletedBy::from_u8)?,
            trail: [TrailEntry::ABSENT; 5],
        };
        r.reserved::<6>()?;
        for entry in &mut receipt.trail {
            let kind = enum_u8("trail.kind", r.u8()?, CallbackKind::from_u8)?;
            let irql = r.u8()?;
            let present = match r.u8()? {
                0 => false,
                1 => true,
                other => {
                    return Err(ProtocolError::UnknownValue {
                        field: "trail.present",
                        value: u64::from(other),
                    });
                }
            };
            r.reserved::<1>()?;
            *entry = TrailEntry {
                kind,
                irql,
                present,
                pid: r.u32()?,
                tid: r.u32()?,
                cpu: r.u32()?,
                timestamp: r.u64()?,
            };
        }
        Ok(receipt)
    }
}
fixed_message_api!(ReadReceipt);

// ---------------------------------------------------------------------------------------------
// METHOD_NEITHER demo
// ---------------------------------------------------------------------------------------------

/// The checksum [`NeitherDemoReply::input_checksum`] carries: 32-bit FNV-1a over the bytes.
#[must_use]
pub fn checksum(bytes: &[u8]) -> u32 {
    checksum_of(bytes.iter().copied())
}

/// [`checksum`] over bytes read one at a time (the driver reads locked user memory byte by byte).
#[must_use]
pub fn checksum_of(bytes: impl IntoIterator<Item = u8>) -> u32 {
    bytes.into_iter().fold(0x811C_9DC5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// What [`Ioctl::NeitherDemo`] writes into the caller's locked output buffer: 32 bytes (header,
/// then six u32 in field order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NeitherDemoReply {
    /// Process of the `EvtIoInCallerContext` that probed and locked the buffers.
    pub locked_by_pid: u32,
    /// Thread of the `EvtIoInCallerContext` that probed and locked the buffers.
    pub locked_by_tid: u32,
    /// Process of the `EvtIoDeviceControl` that filled the output buffer.
    pub filled_by_pid: u32,
    /// Thread of the `EvtIoDeviceControl` that filled the output buffer.
    pub filled_by_tid: u32,
    /// Length of the input buffer, bytes.
    pub input_len: u32,
    /// [`checksum`] of the input buffer's bytes.
    pub input_checksum: u32,
}

impl Fixed for NeitherDemoReply {
    const SIZE: usize = 32;

    fn validate(&self) -> Result<(), ProtocolError> {
        Ok(())
    }

    fn put(&self, w: &mut Writer<'_>) {
        w.u32(self.locked_by_pid);
        w.u32(self.locked_by_tid);
        w.u32(self.filled_by_pid);
        w.u32(self.filled_by_tid);
        w.u32(self.input_len);
        w.u32(self.input_checksum);
    }

    fn get(r: &mut Fields<'_>) -> Result<Self, ProtocolError> {
        Ok(Self {
            locked_by_pid: r.u32()?,
            locked_by_tid: r.u32()?,
            filled_by_pid: r.u32()?,
            filled_by_tid: r.u32()?,
            input_len: r.u32()?,
            input_checksum: r.u32()?,
        })
    }
}
fixed_message_api!(NeitherDemoReply);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ExecContext, Requestor};

    fn event(kind: CallbackKind, n: u32) -> Event {
        Event::new(
            kind,
            ExecContext {
                pid: 4,
                tid: 100 + n,
                irql: 2,
                cpu: n % 4,
            },
            1_000 + u64::from(n),
        )
        .with_ids(u64::from(n), 9)
        .with_requestor(Some(Requestor {
            pid: 1200,
            tid: 1204,
        }))
    }

    fn info() -> InfoReply {
        InfoReply {
            driver_version: DriverVersion {
                major: 0,
                minor: 1,
                patch: 2,
            },
            mode: Mode::Edu,
            counter_frequency: 10_000_000,
            ring_lanes: 8,
            lane_capacity: 1024,
            ring: RingStats {
                recorded: 10,
                dropped: 1,
                consumed: 7,
            },
            counters: DriverCounters {
                interrupts: 5,
                spurious_interrupts: 1,
                timer_ticks: 100,
                reads_completed: 4,
                reads_cancelled: 1,
                log_lines_printed: 30,
                log_lines_suppressed: 3,
            },
            timer_period_ms: 250,
            log_level: LogLevel::Lifecycle,
        }
    }

    fn receipt() -> ReadReceipt {
        let entry = |kind, tid| TrailEntry {
            kind,
            irql: 2,
            present: true,
            pid: 4,
            tid,
            cpu: 1,
            timestamp: u64::from(tid) * 10,
        };
        ReadReceipt {
            request_id: 77,
            requestor_pid: 1200,
            requestor_tid: 1204,
            mode: Mode::Edu,
            completed_by: CompletedBy::InterruptDpc,
            trail: [
                TrailEntry {
                    irql: 0,
                    pid: 1200,
                    ..entry(CallbackKind::EvtIoInCallerContext, 1204)
                },
                entry(CallbackKind::EvtIoRead, 1204),
                TrailEntry {
                    irql: 9,
                    ..entry(CallbackKind::EvtInterruptIsr, 0)
                },
                entry(CallbackKind::EvtInterruptDpc, 0),
                entry(CallbackKind::EvtInterruptDpc, 0),
            ],
        }
    }

    #[test]
    fn control_codes_are_ctl_code() {
        // CTL_CODE(0x22, 0x800, METHOD_BUFFERED, FILE_READ_ACCESS), worked by hand:
        // 0x22 << 16 = 0x220000, 1 << 14 = 0x4000, 0x800 << 2 = 0x2000, method 0.
        assert_eq!(Ioctl::GetInfo.code(), 0x0022_6000);
        assert_eq!(Ioctl::GetEvents.code(), 0x0022_6004);
        // READ|WRITE: 3 << 14 = 0xC000; 0x802 << 2 = 0x2008.
        assert_eq!(Ioctl::Reset.code(), 0x0022_E008);
        assert_eq!(Ioctl::Configure.code(), 0x0022_E00C);
        // 0x804 << 2 = 0x2010, METHOD_NEITHER = 3.
        assert_eq!(Ioctl::NeitherDemo.code(), 0x0022_E013);
        // Two of Windows' own codes: IOCTL_DISK_GET_DRIVE_GEOMETRY, IOCTL_STORAGE_QUERY_PROPERTY.
        assert_eq!(ctl_code(7, 0, Method::Buffered, Access::Any), 0x0007_0000);
        assert_eq!(
            ctl_code(0x2D, 0x500, Method::Buffered, Access::Any),
            0x002D_1400
        );
        for ioctl in Ioctl::ALL {
            assert_eq!(Ioctl::from_code(ioctl.code()), Some(ioctl));
            assert_eq!(Ioctl::try_from(ioctl.code()), Ok(ioctl));
            assert_eq!(Method::from_bits(ioctl.code()), ioctl.method());
            assert_eq!(
                Access::from_bits(ioctl.code() >> 14),
                ioctl.required_access()
            );
            assert!(ioctl.name().starts_with("IOCTL_CTXSCOPE_"));
        }
        assert_eq!(Ioctl::from_code(0x0022_6008), None);
        let unknown = Ioctl::try_from(0x0022_6008).unwrap_err();
        assert_eq!(unknown.ntstatus(), ntstatus::STATUS_INVALID_DEVICE_REQUEST);
    }

    #[test]
    fn ntstatus_values_are_the_documented_ones() {
        assert_eq!(
            ntstatus::STATUS_BUFFER_TOO_SMALL.cast_unsigned(),
            0xC000_0023
        );
        assert_eq!(
            ntstatus::STATUS_INVALID_PARAMETER.cast_unsigned(),
            0xC000_000D
        );
        assert_eq!(
            ntstatus::STATUS_REVISION_MISMATCH.cast_unsigned(),
            0xC000_0059
        );
        assert_eq!(
            ntstatus::STATUS_DATATYPE_MISALIGNMENT.cast_unsigned(),
            0x8000_0002
        );
        assert_eq!(
            ntstatus::STATUS_INVALID_DEVICE_REQUEST.cast_unsigned(),
            0xC000_0010
        );
    }

    #[test]
    fn guid_formats_and_parses() {
        use std::string::ToString;
        let text = DEVICE_INTERFACE_GUID.to_string();
        assert_eq!(text, "{4BF19E48-DB6B-4FB9-9FB5-BFF5BB39E598}");
        assert_eq!(Guid::parse(&text), Ok(DEVICE_INTERFACE_GUID));
        assert_eq!(
            "4bf19e48-db6b-4fb9-9fb5-bff5bb39e598".parse(),
            Ok(DEVICE_INTERFACE_GUID)
        );
        assert_eq!(Guid::parse(""), Err(GuidError::Length { len: 0 }));
        assert_eq!(
            Guid::parse("(4BF19E48-DB6B-4FB9-9FB5-BFF5BB39E598)"),
            Err(GuidError::Braces)
        );
        assert_eq!(
            Guid::parse("4BF19E48+DB6B-4FB9-9FB5-BFF5BB39E598"),
            Err(GuidError::Hyphen { at: 8 })
        );
        assert_eq!(
            Guid::parse("4BF19E48-DB6B-4FB9-9FB5-BFF5BB39E59G"),
            Err(GuidError::HexDigit { at: 35 })
        );
        // Multi-byte characters never panic: they are counted in bytes and are not hex digits.
        assert!(Guid::parse("{4BF19E48-DB6B-4FB9-9FB5-BFF5BB39E5é}").is_err());
    }

    #[test]
    fn configure_request_layout_is_exact() {
        let request = ConfigureRequest {
            timer_period_ms: 0x0102_0304,
            log_level: LogLevel::Every,
        };
        let mut buf = AlignedBuf::<16>::new();
        // 0x01020304 is out of range: encoding refuses it.
        assert_eq!(
            request.encode(buf.as_mut_bytes()),
            Err(ProtocolError::OutOfRange {
                field: "timer_period_ms",
                value: 0x0102_0304
            })
        );
        let request = ConfigureRequest {
            timer_period_ms: 60_000,
            log_level: LogLevel::Every,
        };
        assert_eq!(request.encode(buf.as_mut_bytes()), Ok(16));
        assert_eq!(
            buf.0,
            [1, 0, 16, 0, 0, 0, 0, 0, 0x60, 0xEA, 0, 0, 3, 0, 0, 0]
        );
        assert_eq!(ConfigureRequest::decode(buf.as_bytes()), Ok(request));
    }

    #[test]
    fn fixed_messages_round_trip() {
        let mut buf = AlignedBuf::<256>::new();
        let n = info().encode(buf.as_mut_bytes()).unwrap();
        assert_eq!(n, InfoReply::SIZE);
        assert_eq!(InfoReply::decode(&buf.0[..n]), Ok(info()));

        let request = GetEventsRequest { cursor: u64::MAX };
        let n = request.encode(buf.as_mut_bytes()).unwrap();
        assert_eq!(GetEventsRequest::decode(&buf.0[..n]), Ok(request));

        let reset = ResetReply { discarded: 12 };
        let n = reset.encode(buf.as_mut_bytes()).unwrap();
        assert_eq!(ResetReply::decode(&buf.0[..n]), Ok(reset));

        let n = receipt().encode(buf.as_mut_bytes()).unwrap();
        assert_eq!(n, 152);
        assert_eq!(ReadReceipt::decode(&buf.0[..n]), Ok(receipt()));

        let demo = NeitherDemoReply {
            locked_by_pid: 1200,
            locked_by_tid: 1204,
            filled_by_pid: 4,
            filled_by_tid: 88,
            input_len: 5,
            input_checksum: checksum(b"hello"),
        };
        let n = demo.encode(buf.as_mut_bytes()).unwrap();
        assert_eq!(NeitherDemoReply::decode(&buf.0[..n]), Ok(demo));
    }

    #[test]
    fn checksum_is_fnv1a() {
        // Published FNV-1a 32-bit test vectors.
        assert_eq!(checksum(b""), 0x811C_9DC5);
        assert_eq!(checksum(b"a"), 0xE40C_292C);
        assert_eq!(checksum(b"foobar"), 0xBF9C_F968);
    }

    #[test]
    fn header_errors_come_in_order() {
        let mut buf = AlignedBuf::<32>::new();
        let n = ResetReply { discarded: 1 }
            .encode(buf.as_mut_bytes())
            .unwrap();
        assert_eq!(
            ResetReply::decode(&buf.0[..7]),
            Err(ProtocolError::Truncated {
                needed: 8,
                available: 7
            })
        );
        assert_eq!(
            ResetReply::decode(&buf.0[..n - 1]),
            Err(ProtocolError::Truncated {
                needed: 16,
                available: 15
            })
        );
        assert_eq!(
            ResetReply::decode(&buf.0[..n + 8]),
            Err(ProtocolError::TrailingBytes {
                declared: 16,
                actual: 24
            })
        );
        assert_eq!(
            GetEventsRequest::decode(&buf.0[..n]),
            Ok(GetEventsRequest { cursor: 1 }),
            "same size, same layout: the ioctl, not the bytes, says which message it is"
        );
        assert_eq!(
            InfoReply::decode(&buf.0[..n]),
            Err(ProtocolError::SizeMismatch {
                declared: 16,
                expected: 120
            })
        );

        let mut shifted = AlignedBuf::<40>::new();
        shifted.0[1..=n].copy_from_slice(&buf.0[..n]);
        let err = ResetReply::decode(&shifted.0[1..=n]).unwrap_err();
        assert_eq!(err, ProtocolError::Misaligned { misalignment: 1 });
        assert_eq!(err.ntstatus(), ntstatus::STATUS_DATATYPE_MISALIGNMENT);

        let mut bad = buf;
        bad.0[0] = 2;
        let err = ResetReply::decode(&bad.0[..n]).unwrap_err();
        assert_eq!(err, ProtocolError::UnsupportedVersion { found: 2 });
        assert_eq!(err.ntstatus(), ntstatus::STATUS_REVISION_MISMATCH);
        assert!(err.hint().contains("same build"));

        let mut bad = buf;
        bad.0[6] = 1;
        assert_eq!(
            ResetReply::decode(&bad.0[..n]),
            Err(ProtocolError::ReservedNotZero { offset: 4 })
        );
    }

    #[test]
    fn field_errors() {
        let mut buf = AlignedBuf::<160>::new();
        let n = info().encode(buf.as_mut_bytes()).unwrap();
        let mut bad = buf;
        bad.0[16] = 3;
        assert_eq!(
            InfoReply::decode(&bad.0[..n]),
            Err(ProtocolError::UnknownValue {
                field: "mode",
                value: 3
            })
        );
        let mut bad = buf;
        bad.0[17] = 4;
        assert_eq!(
            InfoReply::decode(&bad.0[..n]),
            Err(ProtocolError::UnknownValue {
                field: "log_level",
                value: 4
            })
        );
        let mut bad = buf;
        bad.0[20..24].copy_from_slice(&0u32.to_le_bytes());
        let err = InfoReply::decode(&bad.0[..n]).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::OutOfRange {
                field: "timer_period_ms",
                value: 0
            }
        );
        assert_eq!(err.ntstatus(), ntstatus::STATUS_INVALID_PARAMETER);
        let mut bad = buf;
        bad.0[18] = 1;
        assert_eq!(
            InfoReply::decode(&bad.0[..n]),
            Err(ProtocolError::ReservedNotZero { offset: 18 })
        );

        let n = receipt().encode(buf.as_mut_bytes()).unwrap();
        let mut bad = buf;
        bad.0[32 + 2] = 2; // present byte of the first entry
        assert_eq!(
            ReadReceipt::decode(&bad.0[..n]),
            Err(ProtocolError::UnknownValue {
                field: "trail.present",
                value: 2
            })
        );
        let mut bad = buf;
        bad.0[32] = CallbackKind::EvtIoWrite as u8; // in-caller-context slot
        assert!(matches!(
            ReadReceipt::decode(&bad.0[..n]),
            Err(ProtocolError::Inconsistent { .. })
        ));
        let mut bad = buf;
        bad.0[24] = Mode::Root as u8;
        assert!(matches!(
            ReadReceipt::decode(&bad.0[..n]),
            Err(ProtocolError::Inconsistent { .. })
        ));
    }

    #[test]
    fn receipt_needs_a_big_enough_read_buffer() {
        let mut small = [0u8; 64];
        let err = receipt().encode(&mut small).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::BufferTooSmall {
                needed: 152,
                available: 64
            }
        );
        assert_eq!(err.ntstatus(), ntstatus::STATUS_BUFFER_TOO_SMALL);
    }

    #[test]
    fn root_mode_receipt_has_no_isr() {
        let mut root = receipt();
        root.mode = Mode::Root;
        root.completed_by = CompletedBy::TimerDpc;
        root.trail[TrailSlot::Isr as usize] = TrailEntry::ABSENT;
        root.trail[TrailSlot::Deferred as usize].kind = CallbackKind::EvtTimerFunc;
        root.trail[TrailSlot::Completion as usize].kind = CallbackKind::EvtTimerFunc;
        let mut buf = AlignedBuf::<152>::new();
        root.encode(buf.as_mut_bytes()).unwrap();
        let decoded = ReadReceipt::decode(buf.as_bytes()).unwrap();
        assert_eq!(decoded, root);
        assert_eq!(decoded.entry(TrailSlot::Isr), None);
        assert_eq!(
            decoded.entry(TrailSlot::Completion).map(|entry| entry.kind),
            Some(CallbackKind::EvtTimerFunc)
        );
    }

    #[test]
    fn events_reply_round_trips_and_validates() {
        let events = [
            event(CallbackKind::EvtIoRead, 1),
            event(CallbackKind::EvtIoInCallerContext, 2),
            event(CallbackKind::EvtIoWrite, 3),
        ];
        let header = EventsReplyHeader {
            cursor: 10,
            next_cursor: 13,
            stats: RingStats {
                recorded: 20,
                dropped: 0,
                consumed: 13,
            },
        };
        let mut buf = AlignedBuf::<512>::new();
        let n = encode_events_reply(&header, &events, buf.as_mut_bytes()).unwrap();
        assert_eq!(n, 56 + 3 * 64);
        let reply = GetEventsReply::decode(&buf.0[..n]).unwrap();
        assert_eq!(reply.header, header);
        assert_eq!(reply.len(), 3);
        assert!(reply.events().eq(events));
        assert_eq!(reply.header.check_cursor(10), CursorCheck::InStep);
        assert_eq!(
            reply.header.check_cursor(7),
            CursorCheck::Skipped { missed: 3 }
        );
        assert_eq!(
            reply.header.check_cursor(11),
            CursorCheck::Restarted {
                app: 11,
                driver: 10
            }
        );
        let mut again = AlignedBuf::<512>::new();
        assert_eq!(reply.encode(again.as_mut_bytes()), Ok(n));
        assert_eq!(again.0[..n], buf.0[..n]);

        // A bad kind byte in the second record.
        let mut bad = buf;
        bad.0[56 + 64 + 60] = 200;
        assert_eq!(
            GetEventsReply::decode(&bad.0[..n]),
            Err(ProtocolError::InvalidEvent {
                index: 1,
                source: EventDecodeError::UnknownKind(200)
            })
        );
        // next_cursor must be cursor + count.
        let skewed = EventsReplyHeader {
            next_cursor: 14,
            ..header
        };
        assert!(matches!(
            encode_events_reply(&skewed, &events, buf.as_mut_bytes()),
            Err(ProtocolError::Inconsistent { .. })
        ));
        // Count and size must agree.
        let mut bad = buf;
        bad.0[8] = 2;
        assert_eq!(
            GetEventsReply::decode(&bad.0[..n]),
            Err(ProtocolError::SizeMismatch {
                declared: n,
                expected: 56 + 2 * 64
            })
        );
        // Too small a buffer.
        assert_eq!(
            encode_events_reply(&header, &events, &mut buf.0[..200]),
            Err(ProtocolError::BufferTooSmall {
                needed: 248,
                available: 200
            })
        );
    }

    #[test]
    fn events_reply_fixed_part_around_events_already_in_place() {
        let events = [
            event(CallbackKind::EvtTimerFunc, 1),
            event(CallbackKind::EvtIoRead, 2),
        ];
        let header = EventsReplyHeader {
            cursor: 4,
            next_cursor: 6,
            stats: RingStats::default(),
        };
        let mut expected = AlignedBuf::<256>::new();
        let n = encode_events_reply(&header, &events, expected.as_mut_bytes()).unwrap();

        let mut buf = AlignedBuf::<256>::new();
        for (index, event) in events.iter().enumerate() {
            let at = GetEventsReply::FIXED_SIZE + index * Event::SIZE;
            buf.0[at..at + Event::SIZE].copy_from_slice(&event.to_bytes());
        }
        assert_eq!(
            encode_events_reply_fixed(&header, 2, buf.as_mut_bytes()),
            Ok(n)
        );
        assert_eq!(buf.0[..n], expected.0[..n]);
        assert!(
            GetEventsReply::decode(&buf.0[..n])
                .unwrap()
                .events()
                .eq(events)
        );

        assert!(matches!(
            encode_events_reply_fixed(&header, 3, buf.as_mut_bytes()),
            Err(ProtocolError::Inconsistent { .. })
        ));
        assert_eq!(
            encode_events_reply_fixed(&header, 2, &mut buf.0[..100]),
            Err(ProtocolError::BufferTooSmall {
                needed: 184,
                available: 100
            })
        );
    }

    #[test]
    fn events_reply_capacity_counts_whole_events() {
        assert_eq!(events_reply_capacity(0), 0);
        assert_eq!(events_reply_capacity(55), 0);
        assert_eq!(events_reply_capacity(56), 0);
        assert_eq!(events_reply_capacity(56 + 63), 0);
        assert_eq!(events_reply_capacity(56 + 64), 1);
        assert_eq!(events_reply_capacity(4096), (4096 - 56) / 64);
        assert_eq!(events_reply_capacity(1 << 20), GetEventsReply::MAX_EVENTS);
        assert_eq!(GetEventsReply::MAX_EVENTS, 1023);
        const { assert!(GetEventsReply::FIXED_SIZE + GetEventsReply::MAX_EVENTS * 64 <= 0xFFFF) };
    }

    #[test]
    fn the_largest_reply_encodes_and_decodes() {
        let events = std::vec![event(CallbackKind::EvtTimerFunc, 5); GetEventsReply::MAX_EVENTS];
        let header = EventsReplyHeader {
            cursor: 0,
            next_cursor: GetEventsReply::MAX_EVENTS as u64,
            stats: RingStats::default(),
        };
        let mut buf = std::boxed::Box::new(AlignedBuf::<0x1_0000>::new());
        let n = encode_events_reply(&header, &events, buf.as_mut_bytes()).unwrap();
        assert_eq!(n, 0xFFF8);
        assert_eq!(GetEventsReply::decode(&buf.0[..n]).unwrap().len(), 1023);
        let too_many =
            std::vec![event(CallbackKind::EvtTimerFunc, 5); GetEventsReply::MAX_EVENTS + 1];
        assert_eq!(
            encode_events_reply(&header, &too_many, buf.as_mut_bytes()),
            Err(ProtocolError::TooManyEvents {
                count: 1024,
                max: 1023
            })
        );
    }

    #[test]
    fn log_levels() {
        assert!(!LogLevel::Off.logs_errors());
        assert!(LogLevel::Errors.logs_errors());
        assert!(!LogLevel::Errors.logs_event(CallbackKind::EvtFileCleanup));
        assert!(LogLevel::Lifecycle.logs_event(CallbackKind::EvtFileCleanup));
        assert!(!LogLevel::Lifecycle.logs_event(CallbackKind::EvtInterruptIsr));
        assert!(LogLevel::Every.logs_event(CallbackKind::EvtInterruptIsr));
        for level in LogLevel::ALL {
            assert_eq!(LogLevel::from_u8(level as u8), Some(level));
            assert_eq!(LogLevel::from_name(level.name()), Some(level));
        }
        assert_eq!(LogLevel::from_u8(4), None);
        for mode in Mode::ALL {
            assert_eq!(Mode::from_u8(mode as u8), Some(mode));
        }
        assert_eq!(Mode::ALL.map(Mode::name), ["starting", "edu", "root"]);
    }

    #[test]
    fn every_error_has_a_status_and_a_hint() {
        let errors = [
            ProtocolError::Truncated {
                needed: 1,
                available: 0,
            },
            ProtocolError::BufferTooSmall {
                needed: 1,
                available: 0,
            },
            ProtocolError::Misaligned { misalignment: 4 },
            ProtocolError::UnsupportedVersion { found: 9 },
            ProtocolError::SizeMismatch {
                declared: 1,
                expected: 2,
            },
            ProtocolError::TrailingBytes {
                declared: 1,
                actual: 2,
            },
            ProtocolError::ReservedNotZero { offset: 4 },
            ProtocolError::UnknownValue {
                field: "mode",
                value: 9,
            },
            ProtocolError::OutOfRange {
                field: "timer_period_ms",
                value: 0,
            },
            ProtocolError::Inconsistent { what: "x" },
            ProtocolError::InvalidEvent {
                index: 0,
                source: EventDecodeError::StrayRequestor,
            },
            ProtocolError::TooManyEvents { count: 2, max: 1 },
            ProtocolError::UnknownIoctl { code: 0 },
        ];
        for error in errors {
            assert!(error.ntstatus() < 0 || error.ntstatus().cast_unsigned() == 0x8000_0002);
            assert!(error.hint().len() > 20, "{error:?}");
        }
    }
}
