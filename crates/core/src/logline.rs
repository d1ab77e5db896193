//! The log line: one ASCII line per event, as the driver prints it with `DbgPrintEx` and as
//! `DebugView` and `WinDbg` show it, and the parser that turns such lines back into events.
//!
//! # The line (stable)
//! ```text
//! ctxscope: EvtIoRead seq=12 lane=1 ts=123456789 cpu=1 irql=2 pid=4 tid=120 rpid=1200 rtid=1204 req=7 file=9 detail=0x10 flags=0x01
//! ```
//! - the prefix [`PREFIX`] and one space, then the callback's name ([`CallbackKind::name`]);
//! - then every field of [`Event`], one space before each, as `key=value`, always all of them and
//!   always in this order: `seq lane ts cpu irql pid tid rpid rtid req file detail flags`
//!   (see [`Field`]);
//! - numbers in decimal without leading zeros, except `detail` (`0x` and lower-case hex without
//!   leading zeros) and `flags` (`0x` and exactly two lower-case hex digits: being last and of
//!   fixed width, a line cut anywhere is detected);
//! - ended by `\n`, because `DbgPrintEx` adds no line break of its own, and at most
//!   [`MAX_LINE_LEN`] bytes with it, well under `DbgPrint`'s 512 bytes per call.
//!
//! The driver calls `DbgPrintEx(DPFLTR_IHVDRIVER_ID, level, "%s", line)` with
//! [`LineBuf::as_cstr_bytes`]; passing the line as the format string would make any `%` in it a
//! conversion. Formatting uses no allocation, no floating point and no Unicode, so it is legal at
//! any IRQL up to DIRQL.
//!
//! Lines the driver prints that are not events start with [`NOTE_PREFIX`]; the parser ignores
//! them like any other driver's lines.
//!
//! # Parsing
//! [`parse_line`] finds [`PREFIX`] anywhere in the line, at a word boundary, so it accepts what
//! `DebugView` saves (`<seq>\t<time>\t<message>`, CRLF, whatever the time format), what `WinDbg`
//! prints (with or without `kd>` or other leading text), and trailing whitespace. On the field
//! side it is strict: a line that carries the prefix but is not exactly a formatted event is an
//! error naming the field, never a silently different event.

use core::fmt;

use crate::event::{Event, EventDecodeError};
use crate::kind::CallbackKind;

/// What every event line starts with.
pub const PREFIX: &str = "ctxscope:";

/// What the driver's other lines (diagnostics that are not events) start with; the parser
/// ignores them.
pub const NOTE_PREFIX: &str = "ctxscope-note:";

/// A field of the line, in line order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// The callback's name, right after the prefix.
    Kind,
    /// `seq`: [`Event::seq`].
    Seq,
    /// `lane`: [`Event::lane`].
    Lane,
    /// `ts`: [`Event::timestamp`].
    Ts,
    /// `cpu`: [`Event::cpu`].
    Cpu,
    /// `irql`: [`Event::irql`].
    Irql,
    /// `pid`: [`Event::pid`].
    Pid,
    /// `tid`: [`Event::tid`].
    Tid,
    /// `rpid`: [`Event::requestor_pid`].
    Rpid,
    /// `rtid`: [`Event::requestor_tid`].
    Rtid,
    /// `req`: [`Event::request_id`].
    Req,
    /// `file`: [`Event::file_id`].
    File,
    /// `detail`: [`Event::detail`], hex.
    Detail,
    /// `flags`: [`Event::flags`], two hex digits.
    Flags,
}

impl Field {
    /// Every field, in line order.
    pub const ALL: [Self; 14] = [
        Self::Kind,
        Self::Seq,
        Self::Lane,
        Self::Ts,
        Self::Cpu,
        Self::Irql,
        Self::Pid,
        Self::Tid,
        Self::Rpid,
        Self::Rtid,
        Self::Req,
        Self::File,
        Self::Detail,
        Self::Flags,
    ];

    /// The key as the line spells it (`kind` for the unkeyed callback name).
    #[must_use]
    pub const fn key(self) -> &'static str {
        match self {
            Self::Kind => "kind",
            Self::Seq => "seq",
            Self::Lane => "lane",
            Self::Ts => "ts",
            Self::Cpu => "cpu",
            Self::Irql => "irql",
            Self::Pid => "pid",
            Self::Tid => "tid",
            Self::Rpid => "rpid",
            Self::Rtid => "rtid",
            Self::Req => "req",
            Self::File => "file",
            Self::Detail => "detail",
            Self::Flags => "flags",
        }
    }

    /// The keyed field spelled `key`.
    #[must_use]
    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL[1..]
            .iter()
            .copied()
            .find(|field| field.key() == key)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Why a line that carries [`PREFIX`] is not an event line. The message names the field, so a
/// caller can print `line 17: field rtid: not a number`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line ends before this field: it was cut short.
    #[error("field {field}: missing (the line was cut short)")]
    Missing {
        /// The first missing field.
        field: Field,
    },
    /// The callback name is not one of [`CallbackKind`]'s.
    #[error("field kind: unknown callback name")]
    UnknownKind,
    /// Where `field` belongs there is a word that is not `key=value`.
    #[error("field {field}: expected {key}=value", key = field.key())]
    NotKeyValue {
        /// The field expected there.
        field: Field,
    },
    /// Where `expected` belongs there is a key no version of the line has.
    #[error("field {expected}: unknown key in its place")]
    UnknownKey {
        /// The field expected there.
        expected: Field,
    },
    /// A key that already appeared appears again.
    #[error("field {field}: duplicated")]
    Duplicated {
        /// The repeated field.
        field: Field,
    },
    /// A key appears before its turn.
    #[error("field {found}: out of order, expected {expected} first")]
    OutOfOrder {
        /// The field found.
        found: Field,
        /// The field expected there.
        expected: Field,
    },
    /// The value is not a number.
    #[error("field {field}: not a number")]
    NotANumber {
        /// The field.
        field: Field,
    },
    /// The value is a number, but not in the form the line uses.
    #[error("field {field}: expected {form}")]
    WrongForm {
        /// The field.
        field: Field,
        /// The form expected.
        form: &'static str,
    },
    /// The number does not fit the field.
    #[error("field {field}: out of range")]
    OutOfRange {
        /// The field.
        field: Field,
    },
    /// Something follows the last field.
    #[error("text after the last field (two lines run together?)")]
    TrailingText,
    /// Every field parsed, but the event they make is not valid.
    #[error("invalid event: {source}")]
    InvalidEvent {
        /// What is wrong with it.
        source: EventDecodeError,
    },
}

impl LineError {
    /// The field at fault, if one is.
    #[must_use]
    pub const fn field(&self) -> Option<Field> {
        match *self {
            Self::Missing { field }
            | Self::NotKeyValue { field }
            | Self::Duplicated { field }
            | Self::NotANumber { field }
            | Self::WrongForm { field, .. }
            | Self::OutOfRange { field } => Some(field),
            Self::OutOfOrder { found, .. } => Some(found),
            Self::UnknownKey { expected } => Some(expected),
            Self::UnknownKind => Some(Field::Kind),
            Self::TrailingText | Self::InvalidEvent { .. } => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------

const fn longest_kind_name() -> usize {
    let mut longest = 0;
    let mut index = 0;
    while index < CallbackKind::COUNT {
        let len = CallbackKind::ALL[index].name().len();
        if len > longest {
            longest = len;
        }
        index += 1;
    }
    longest
}

/// The longest line [`format_event`] writes, `\n` included, NUL excluded.
pub const MAX_LINE_LEN: usize = PREFIX.len()
    + 1
    + longest_kind_name()
    + " seq=".len()
    + 20
    + " lane=".len()
    + 3
    + " ts=".len()
    + 20
    + " cpu=".len()
    + 10
    + " irql=".len()
    + 3
    + " pid=".len()
    + 10
    + " tid=".len()
    + 10
    + " rpid=".len()
    + 10
    + " rtid=".len()
    + 10
    + " req=".len()
    + 20
    + " file=".len()
    + 20
    + " detail=0x".len()
    + 16
    + " flags=0x".len()
    + 2
    + 1;

/// A formatted line in a fixed buffer, NUL-terminated for C. 288 bytes: small enough for a
/// stack at DIRQL, large enough for [`MAX_LINE_LEN`] and the NUL.
#[derive(Clone, Copy)]
pub struct LineBuf {
    bytes: [u8; Self::CAPACITY],
    len: usize,
}

const _: () = assert!(MAX_LINE_LEN < LineBuf::CAPACITY);
const _: () = assert!(
    LineBuf::CAPACITY <= 512,
    "DbgPrint prints at most 512 bytes per call"
);

impl LineBuf {
    /// Size of the buffer, NUL included.
    pub const CAPACITY: usize = 288;

    /// An empty line.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            bytes: [0; Self::CAPACITY],
            len: 0,
        }
    }

    /// The line formatted from `event`.
    #[must_use]
    pub fn from_event(event: &Event) -> Self {
        let mut buf = Self::new();
        format_event(event, &mut buf);
        buf
    }

    /// The line, `\n` included.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written, so this never fails; the fallback keeps it panic-free.
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The line's bytes, `\n` included, without the NUL.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }

    /// The line's bytes with the terminating NUL, for `DbgPrintEx(..., "%s", ptr)`.
    #[must_use]
    pub fn as_cstr_bytes(&self) -> &[u8] {
        self.bytes.get(..=self.len).unwrap_or(&[])
    }

    /// Length of the line, `\n` included, NUL excluded.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been formatted.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties the line.
    pub fn clear(&mut self) {
        self.len = 0;
        self.bytes[0] = 0;
    }

    /// Appends ASCII bytes, keeping the NUL after them. Never needed, but a line that would
    /// overflow is cut rather than overrunning the buffer.
    fn push(&mut self, text: &[u8]) {
        let room = Self::CAPACITY - 1 - self.len;
        let take = text.len().min(room);
        if let (Some(dst), Some(src)) = (
            self.bytes.get_mut(self.len..self.len + take),
            text.get(..take),
        ) {
            dst.copy_from_slice(src);
            self.len += take;
        }
        if let Some(nul) = self.bytes.get_mut(self.len) {
            *nul = 0;
        }
    }

    fn push_decimal(&mut self, mut value: u64) {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            #[allow(clippy::cast_possible_truncation)] // a single digit
            {
                digits[start] = b'0' + (value % 10) as u8;
            }
            value /= 10;
            if value == 0 {
                break;
            }
        }
        self.push(&digits[start..]);
    }

    fn push_hex(&mut self, value: u64, min_digits: usize) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut digits = [0u8; 16];
        let mut start = digits.len();
        let mut rest = value;
        while rest != 0 || digits.len() - start < min_digits.max(1) {
            start -= 1;
            #[allow(clippy::cast_possible_truncation)] // a nibble
            {
                digits[start] = HEX[(rest & 0xF) as usize];
            }
            rest >>= 4;
        }
        self.push(b"0x");
        self.push(&digits[start..]);
    }

    fn push_field(&mut self, field: Field, value: u64) {
        self.push(b" ");
        self.push(field.key().as_bytes());
        self.push(b"=");
        match field {
            Field::Detail => self.push_hex(value, 1),
            Field::Flags => self.push_hex(value, 2),
            _ => self.push_decimal(value),
        }
    }
}

impl Default for LineBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LineBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LineBuf").field(&self.as_str()).finish()
    }
}

/// The value of keyed `field` in `event`.
fn field_value(event: &Event, field: Field) -> u64 {
    match field {
        Field::Kind => u64::from(event.kind as u8),
        Field::Seq => event.seq,
        Field::Lane => u64::from(event.lane),
        Field::Ts => event.timestamp,
        Field::Cpu => u64::from(event.cpu),
        Field::Irql => u64::from(event.irql),
        Field::Pid => u64::from(event.pid),
        Field::Tid => u64::from(event.tid),
        Field::Rpid => u64::from(event.requestor_pid),
        Field::Rtid => u64::from(event.requestor_tid),
        Field::Req => event.request_id,
        Field::File => event.file_id,
        Field::Detail => event.detail,
        Field::Flags => u64::from(event.flags),
    }
}

/// Formats a diagnostic that is not an event into `buf` (replacing what it held) and returns the
/// line: `ctxscope-note: <what> status=0x<NTSTATUS>\n`, the status as eight hex digits. `what`
/// should be ASCII; other bytes are replaced by `?` so the line stays printable at any IRQL, and a
/// `what` too long for the buffer is cut so that the status and the line break always remain.
pub fn format_note<'b>(what: &str, status: i32, buf: &'b mut LineBuf) -> &'b str {
    const STATUS_SUFFIX: usize = " status=0x".len() + 8 + "\n".len();
    buf.clear();
    buf.push(NOTE_PREFIX.as_bytes());
    buf.push(b" ");
    let room = LineBuf::CAPACITY - 1 - buf.len() - STATUS_SUFFIX;
    for byte in what.bytes().take(room) {
        let printable = if byte.is_ascii_graphic() || byte == b' ' {
            byte
        } else {
            b'?'
        };
        buf.push(&[printable]);
    }
    buf.push(b" status=");
    buf.push_hex(u64::from(status.cast_unsigned()), 8);
    buf.push(b"\n");
    buf.as_str()
}

/// Formats `event` into `buf` (replacing what it held) and returns the line, `\n` included.
pub fn format_event<'b>(event: &Event, buf: &'b mut LineBuf) -> &'b str {
    buf.clear();
    buf.push(PREFIX.as_bytes());
    buf.push(b" ");
    buf.push(event.kind.name().as_bytes());
    for field in &Field::ALL[1..] {
        buf.push_field(*field, field_value(event, *field));
    }
    buf.push(b"\n");
    buf.as_str()
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// Where the event part of `line` starts: the first [`PREFIX`] not preceded by a letter, digit
/// or `_` (so `notctxscope:` is someone else's).
fn find_prefix(line: &str) -> Option<usize> {
    line.match_indices(PREFIX).map(|(at, _)| at).find(|&at| {
        at == 0
            || line
                .as_bytes()
                .get(at - 1)
                .is_none_or(|&before| !(before.is_ascii_alphanumeric() || before == b'_'))
    })
}

fn parse_decimal(field: Field, text: &str) -> Result<u64, LineError> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(LineError::NotANumber { field });
    }
    text.bytes().try_fold(0u64, |acc, digit| {
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(u64::from(digit - b'0')))
            .ok_or(LineError::OutOfRange { field })
    })
}

fn parse_hex(field: Field, text: &str, exact_digits: Option<usize>) -> Result<u64, LineError> {
    let form = if exact_digits.is_some() {
        "0x and two hex digits"
    } else {
        "0x and hex digits"
    };
    let digits = text
        .strip_prefix("0x")
        .ok_or(LineError::WrongForm { field, form })?;
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(LineError::NotANumber { field });
    }
    if exact_digits.is_some_and(|exact| digits.len() != exact) {
        return Err(LineError::WrongForm { field, form });
    }
    digits.bytes().try_fold(0u64, |acc, digit| {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            b'A'..=b'F' => digit - b'A' + 10,
            // Unreachable: every byte was checked to be a hex digit above.
            _ => return Err(LineError::NotANumber { field }),
        };
        if acc >> 60 != 0 {
            return Err(LineError::OutOfRange { field });
        }
        Ok((acc << 4) | u64::from(nibble))
    })
}

fn narrow<T: TryFrom<u64>>(field: Field, value: u64) -> Result<T, LineError> {
    T::try_from(value).map_err(|_| LineError::OutOfRange { field })
}

/// Parses one line of a debugger log.
///
/// # Errors
/// `Ok(None)`: the line is not one of ctxscope's events (another driver's line, a
/// [`NOTE_PREFIX`] line, an empty line). `Ok(Some(event))`: it is. `Err`: it carries [`PREFIX`]
/// but is malformed or cut short; the [`LineError`] names the field.
pub fn parse_line(line: &str) -> Result<Option<Event>, LineError> {
    let Some(start) = find_prefix(line) else {
        return Ok(None);
    };
    let mut words = line
        .get(start + PREFIX.len()..)
        .unwrap_or("")
        .split_ascii_whitespace();
    let kind_name = words
        .next()
        .ok_or(LineError::Missing { field: Field::Kind })?;
    let kind = CallbackKind::from_name(kind_name).ok_or(LineError::UnknownKind)?;

    let mut values = [0u64; Field::ALL.len()];
    for (index, &field) in Field::ALL.iter().enumerate().skip(1) {
        let word = words.next().ok_or(LineError::Missing { field })?;
        let (key, value) = word
            .split_once('=')
            .ok_or(LineError::NotKeyValue { field })?;
        if key != field.key() {
            return Err(match Field::from_key(key) {
                Some(found) if found < field => LineError::Duplicated { field: found },
                Some(found) => LineError::OutOfOrder {
                    found,
                    expected: field,
                },
                None => LineError::UnknownKey { expected: field },
            });
        }
        values[index] = match field {
            Field::Detail => parse_hex(field, value, None)?,
            Field::Flags => parse_hex(field, value, Some(2))?,
            _ => parse_decimal(field, value)?,
        };
    }
    if words.next().is_some() {
        return Err(LineError::TrailingText);
    }

    let value = |field: Field| values[field as usize];
    let event = Event {
        seq: value(Field::Seq),
        timestamp: value(Field::Ts),
        request_id: value(Field::Req),
        file_id: value(Field::File),
        detail: value(Field::Detail),
        pid: narrow(Field::Pid, value(Field::Pid))?,
        tid: narrow(Field::Tid, value(Field::Tid))?,
        requestor_pid: narrow(Field::Rpid, value(Field::Rpid))?,
        requestor_tid: narrow(Field::Rtid, value(Field::Rtid))?,
        cpu: narrow(Field::Cpu, value(Field::Cpu))?,
        kind,
        irql: narrow(Field::Irql, value(Field::Irql))?,
        flags: narrow(Field::Flags, value(Field::Flags))?,
        lane: narrow(Field::Lane, value(Field::Lane))?,
    };
    // The same checks as a record read from the ring or the protocol.
    Event::from_bytes(&event.to_bytes())
        .map(Some)
        .map_err(|source| LineError::InvalidEvent { source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ExecContext, Requestor};
    use std::borrow::ToOwned;
    use std::format;

    fn sample() -> Event {
        let mut event = Event::new(
            CallbackKind::EvtIoRead,
            ExecContext {
                pid: 4,
                tid: 120,
                irql: 2,
                cpu: 1,
            },
            123_456_789,
        )
        .with_requestor(Some(Requestor {
            pid: 1200,
            tid: 1204,
        }))
        .with_ids(7, 9)
        .with_detail(0x10);
        event.seq = 12;
        event.lane = 1;
        event
    }

    const SAMPLE: &str = "ctxscope: EvtIoRead seq=12 lane=1 ts=123456789 cpu=1 irql=2 pid=4 tid=120 rpid=1200 rtid=1204 req=7 file=9 detail=0x10 flags=0x01";

    #[test]
    fn formats_the_documented_line() {
        let mut buf = LineBuf::new();
        let line = format_event(&sample(), &mut buf);
        assert_eq!(line, format!("{SAMPLE}\n"));
        let cstr = buf.as_cstr_bytes();
        assert_eq!(cstr.len(), SAMPLE.len() + 2);
        assert_eq!(cstr.last(), Some(&0));
        assert!(!cstr[..cstr.len() - 1].contains(&0));
        assert!(buf.as_bytes().is_ascii());
        // Reformatting replaces the previous line.
        let other = Event::ZERO;
        assert_eq!(
            format_event(&other, &mut buf),
            "ctxscope: DriverEntry seq=0 lane=0 ts=0 cpu=0 irql=0 pid=0 tid=0 rpid=0 rtid=0 req=0 file=0 detail=0x0 flags=0x00\n"
        );
        assert_eq!(buf.as_cstr_bytes().last(), Some(&0));
    }

    #[test]
    fn the_longest_line_fits() {
        let event = Event {
            seq: u64::MAX,
            timestamp: u64::MAX,
            request_id: u64::MAX,
            file_id: u64::MAX,
            detail: u64::MAX,
            pid: u32::MAX,
            tid: u32::MAX,
            requestor_pid: u32::MAX,
            requestor_tid: u32::MAX,
            cpu: u32::MAX,
            kind: CallbackKind::EvtDevicePrepareHardware,
            irql: u8::MAX,
            flags: Event::DEFINED_FLAGS,
            lane: u8::MAX,
        };
        let buf = LineBuf::from_event(&event);
        assert_eq!(buf.len(), MAX_LINE_LEN);
        assert!(buf.as_str().ends_with("flags=0x03\n"));
        assert_eq!(parse_line(buf.as_str()), Ok(Some(event)));
    }

    #[test]
    fn parses_every_form_a_debugger_saves() {
        let forms = [
            SAMPLE.to_owned(),
            format!("{SAMPLE}\n"),
            format!("{SAMPLE}\r\n"),
            format!("{SAMPLE}  \t \r\n"),
            // DebugView, elapsed seconds.
            format!("17\t0.00012345\t{SAMPLE}\r\n"),
            // DebugView, clock time, and a 12-hour locale form.
            format!("18\t12:34:56.789\t{SAMPLE}\r\n"),
            format!("19\t1:34:56 PM\t{SAMPLE}\r\n"),
            // WinDbg.
            format!("kd> {SAMPLE}"),
            format!("0: kd> {SAMPLE}\n"),
            format!("[ 2.5] some leading text: {SAMPLE}"),
        ];
        for form in forms {
            assert_eq!(parse_line(&form), Ok(Some(sample())), "{form:?}");
        }
    }

    #[test]
    fn other_lines_are_not_ours() {
        for line in [
            "",
            "\r\n",
            "Break instruction exception - code 80000003 (first chance)",
            "17\t0.001\tnvlddmkm: something happened",
            "notctxscope: EvtIoRead seq=1",
            "ctxscope-note: driver loaded in root mode",
            "ctxscope EvtIoRead",
        ] {
            assert_eq!(parse_line(line), Ok(None), "{line:?}");
        }
    }

    fn with(from: &str, to: &str) -> std::string::String {
        assert!(SAMPLE.contains(from));
        SAMPLE.replacen(from, to, 1)
    }

    #[test]
    fn malformed_lines_name_the_field() {
        let err = parse_line(&with("rtid=1204", "rtid=12x4")).unwrap_err();
        assert_eq!(err, LineError::NotANumber { field: Field::Rtid });
        assert_eq!(
            format!("line 17: {err}"),
            "line 17: field rtid: not a number"
        );
        assert_eq!(err.field(), Some(Field::Rtid));

        let cases = [
            (with("EvtIoRead", "EvtIoReed"), LineError::UnknownKind),
            (
                with(" seq=12", " seq=12 seq=12"),
                LineError::Duplicated { field: Field::Seq },
            ),
            (
                with("lane=1 ts=123456789", "ts=123456789 lane=1"),
                LineError::OutOfOrder {
                    found: Field::Ts,
                    expected: Field::Lane,
                },
            ),
            (
                with("cpu=1", "core=1"),
                LineError::UnknownKey {
                    expected: Field::Cpu,
                },
            ),
            (
                with("irql=2", "irql"),
                LineError::NotKeyValue { field: Field::Irql },
            ),
            (
                with("pid=4", "pid="),
                LineError::NotANumber { field: Field::Pid },
            ),
            (
                with("pid=4", "pid=+4"),
                LineError::NotANumber { field: Field::Pid },
            ),
            (
                with("lane=1", "lane=256"),
                LineError::OutOfRange { field: Field::Lane },
            ),
            (
                with("ts=123456789", "ts=18446744073709551616"),
                LineError::OutOfRange { field: Field::Ts },
            ),
            (
                with("detail=0x10", "detail=16"),
                LineError::WrongForm {
                    field: Field::Detail,
                    form: "0x and hex digits",
                },
            ),
            (
                with("detail=0x10", "detail=0x10000000000000000"),
                LineError::OutOfRange {
                    field: Field::Detail,
                },
            ),
            (
                with("flags=0x01", "flags=0x1"),
                LineError::WrongForm {
                    field: Field::Flags,
                    form: "0x and two hex digits",
                },
            ),
            (
                with("flags=0x01", "flags=0x01 flags=0x01"),
                LineError::TrailingText,
            ),
            (
                with("flags=0x01", "flags=0x81"),
                LineError::InvalidEvent {
                    source: EventDecodeError::UndefinedFlags(0x80),
                },
            ),
            (
                with("flags=0x01", "flags=0x00"),
                LineError::InvalidEvent {
                    source: EventDecodeError::StrayRequestor,
                },
            ),
            (
                "ctxscope:".to_owned(),
                LineError::Missing { field: Field::Kind },
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_line(&line), Err(expected), "{line:?}");
        }
    }

    #[test]
    fn a_line_cut_anywhere_is_an_error() {
        let full = format!("{SAMPLE}\r\n");
        let start = SAMPLE.find("EvtIoRead").unwrap();
        for cut in start..SAMPLE.len() {
            let line = &full[..cut];
            assert!(parse_line(line).is_err(), "{line:?} parsed");
        }
        assert_eq!(
            parse_line(&SAMPLE[..SAMPLE.find(" req=").unwrap()]),
            Err(LineError::Missing { field: Field::Req })
        );
    }

    #[test]
    fn notes_are_not_events() {
        let mut buf = LineBuf::new();
        let note = format_note(
            "EvtIoRead: buffer too small",
            crate::protocol::ntstatus::STATUS_BUFFER_TOO_SMALL,
            &mut buf,
        );
        assert_eq!(
            note,
            "ctxscope-note: EvtIoRead: buffer too small status=0xc0000023\n"
        );
        assert_eq!(parse_line(note), Ok(None));
        assert_eq!(buf.as_cstr_bytes().last(), Some(&0));

        assert_eq!(
            format_note("caf\u{e9}\n", 0, &mut buf),
            "ctxscope-note: caf??? status=0x00000000\n"
        );
        let long = "x".repeat(1000);
        let note = format_note(&long, -1, &mut buf);
        assert_eq!(note.len(), LineBuf::CAPACITY - 1);
        assert!(note.ends_with(" status=0xffffffff\n"));
        assert_eq!(buf.as_cstr_bytes().last(), Some(&0));
    }

    #[test]
    fn fields_are_the_event_fields_in_order() {
        assert_eq!(Field::ALL.len(), 14);
        for (index, field) in Field::ALL.into_iter().enumerate() {
            assert_eq!(field as usize, index);
            if field != Field::Kind {
                assert_eq!(Field::from_key(field.key()), Some(field));
            }
        }
        assert_eq!(Field::from_key("kind"), None);
    }
}
