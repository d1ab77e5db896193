//! Reading a saved run back for `ctxctl report`: a JSON export, a `DebugView` saved log, a `WinDbg`
//! log, or a file of bare driver lines. The format is detected from the content, not the name.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use ctxscope_core::logline::{LineError, parse_line};

use crate::export;
use crate::model::{Meta, Names, Origin, Run, Source};

/// A malformed ctxscope line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineIssue {
    /// 1-based line number in the file.
    pub line: usize,
    /// What is wrong (names the field).
    pub error: LineError,
}

impl std::fmt::Display for LineIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.error)
    }
}

/// A run read from a file, and what was wrong with the file.
#[derive(Debug)]
pub struct Loaded {
    /// The run.
    pub run: Run,
    /// Malformed ctxscope lines (logs only).
    pub issues: Vec<LineIssue>,
}

/// Decodes a file's bytes to text: UTF-8 (with or without BOM), UTF-16 with a BOM (`WinDbg`'s
/// `.logopen /u`), or anything else byte by byte (`DebugView` saves in the ANSI code page; the
/// driver's lines are ASCII).
#[must_use]
pub fn decode_text(bytes: &[u8]) -> String {
    let utf16 = |le: bool| {
        let units: Vec<u16> = bytes[2..]
            .chunks_exact(2)
            .map(|pair| {
                if le {
                    u16::from_le_bytes([pair[0], pair[1]])
                } else {
                    u16::from_be_bytes([pair[0], pair[1]])
                }
            })
            .collect();
        String::from_utf16_lossy(&units)
    };
    match bytes {
        [0xFF, 0xFE, ..] => utf16(true),
        [0xFE, 0xFF, ..] => utf16(false),
        [0xEF, 0xBB, 0xBF, rest @ ..] => String::from_utf8_lossy(rest).into_owned(),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Reads `path`.
///
/// # Errors
/// The file cannot be read, is empty, is a corrupt JSON export, or holds no usable ctxscope line.
pub fn load(path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = decode_text(&bytes);
    load_text(&text).with_context(|| format!("{}", path.display()))
}

/// Reads a file's text.
///
/// # Errors
/// As [`load`].
pub fn load_text(text: &str) -> Result<Loaded> {
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        bail!(
            "the file is empty; pass a JSON export (`--format json`) or a DebugView/WinDbg log of the driver's lines"
        );
    }
    if trimmed.starts_with('{') {
        return Ok(Loaded {
            run: export::from_json(text)?,
            issues: Vec::new(),
        });
    }
    load_log(text)
}

/// Whether `line` looks like a `DebugView` saved-log line: `<seq>\t<time>\t<message>`.
fn is_debugview(line: &str) -> bool {
    let mut parts = line.splitn(3, '\t');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(seq), Some(_), Some(_)) if !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit())
    )
}

/// Whether `line` is one `WinDbg` writes: a prompt (`kd>`, `0: kd>`), or its banner.
fn is_windbg(line: &str) -> bool {
    line.contains("kd> ")
        || line.starts_with("Opened log file")
        || line.starts_with("Microsoft (R) Windows Debugger")
        || line.starts_with("Closing open log file")
}

fn load_log(text: &str) -> Result<Loaded> {
    let mut events = Vec::new();
    let mut issues = Vec::new();
    let mut skipped = 0u64;
    let mut debugview = 0usize;
    let mut windbg = 0usize;
    let mut total = 0usize;
    for (index, line) in text.lines().enumerate() {
        total += 1;
        debugview += usize::from(is_debugview(line));
        windbg += usize::from(is_windbg(line));
        match parse_line(line) {
            Ok(Some(event)) => events.push(event),
            Ok(None) => skipped += u64::from(!line.trim().is_empty()),
            Err(error) => issues.push(LineIssue {
                line: index + 1,
                error,
            }),
        }
    }
    if events.is_empty() {
        let mut message = format!(
            "no usable ctxscope event line among {total} lines ({skipped} other lines, {} malformed ctxscope lines)",
            issues.len()
        );
        if let Some(first) = issues.first() {
            let _ = write!(message, "; first malformed: {first}");
        }
        message.push_str(
            "; expected lines like `ctxscope: EvtIoRead seq=.. lane=.. ts=..`: is the Debug Print Filter (IHVDRIVER) set, and was Capture Kernel on?",
        );
        bail!(message);
    }
    let origin = if windbg > 0 {
        Origin::WindbgLog
    } else if debugview > 0 {
        Origin::DebugviewLog
    } else {
        Origin::PlainLog
    };
    let mut meta = Meta::new(Source::Log, origin);
    meta.mode = Run::infer_mode(&events);
    meta.skipped_lines = skipped;
    meta.malformed_lines = issues.len() as u64;
    Ok(Loaded {
        run: Run {
            meta,
            events,
            names: Names::default(),
        },
        issues,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctxscope_core::logline::Field;

    const READ: &str = "ctxscope: EvtIoRead seq=12 lane=1 ts=123456789 cpu=1 irql=2 pid=4 tid=120 rpid=1200 rtid=1204 req=7 file=9 detail=0x10 flags=0x01";
    const ISR: &str = "ctxscope: EvtInterruptIsr seq=13 lane=1 ts=123456999 cpu=1 irql=9 pid=0 tid=0 rpid=0 rtid=0 req=0 file=0 detail=0x1 flags=0x00";

    #[test]
    fn debugview_log_with_crlf_elapsed_and_clock_times() {
        let log = format!(
            "00000001\t0.00000000\tnvlddmkm: something else\r\n\
             00000002\t0.00012345\t{READ}\r\n\
             3\t12:34:56.789\t{ISR}\r\n\
             4\t1:34:56 PM\tctxscope-note: edu liveness check failed status=0xc0000182\r\n"
        );
        let loaded = load_text(&log).unwrap();
        assert!(loaded.issues.is_empty());
        assert_eq!(loaded.run.events.len(), 2);
        assert_eq!(loaded.run.meta.origin, Origin::DebugviewLog);
        assert_eq!(loaded.run.meta.source, Source::Log);
        assert_eq!(loaded.run.meta.skipped_lines, 2);
        assert_eq!(loaded.run.meta.mode.as_deref(), Some("edu"));
        assert_eq!(loaded.run.events[0].requestor_tid, 1204);
    }

    #[test]
    fn cut_lines_are_reported_with_line_number_and_field() {
        let cut = &READ[..READ.find(" req=").unwrap()];
        let log = format!(
            "1\t0.1\t{READ}\r\n2\t0.2\t{cut}\r\n3\t0.2\t req=7 file=9 detail=0x10 flags=0x01\r\n4\t0.3\t{}\r\n",
            READ.replace("rtid=1204", "rtid=12x4")
        );
        let loaded = load_text(&log).unwrap();
        assert_eq!(loaded.run.events.len(), 1);
        assert_eq!(
            loaded.issues,
            [
                LineIssue {
                    line: 2,
                    error: LineError::Missing { field: Field::Req }
                },
                LineIssue {
                    line: 4,
                    error: LineError::NotANumber { field: Field::Rtid }
                },
            ]
        );
        assert_eq!(
            loaded.issues[1].to_string(),
            "line 4: field rtid: not a number"
        );
        assert_eq!(loaded.run.meta.malformed_lines, 2);
        // The continuation of the cut line is someone else's as far as the parser can tell.
        assert_eq!(loaded.run.meta.skipped_lines, 1);
    }

    #[test]
    fn windbg_log_is_detected() {
        let log = format!(
            "Opened log file 'c:\\dbg.log'\n0: kd> g\n{READ}\nBreak instruction exception - code 80000003\n0: kd> {ISR}\n"
        );
        let loaded = load_text(&log).unwrap();
        assert_eq!(loaded.run.meta.origin, Origin::WindbgLog);
        assert_eq!(loaded.run.events.len(), 2);
    }

    #[test]
    fn nothing_usable_is_an_error() {
        let err = load_text("hello\nworld\n").unwrap_err().to_string();
        assert!(
            err.contains("no usable ctxscope event line among 2 lines"),
            "{err}"
        );
        let err = load_text(&format!("{}\n", &READ[..40]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("first malformed: line 1: field"), "{err}");
        assert!(load_text("  \n").unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn utf16_and_bom_files_decode() {
        let mut bytes = vec![0xFF, 0xFE];
        for unit in format!("{READ}\r\n").encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        let loaded = load_text(&decode_text(&bytes)).unwrap();
        assert_eq!(loaded.run.events.len(), 1);
        let mut bytes = vec![0xEF, 0xBB, 0xBF];
        bytes.extend_from_slice(READ.as_bytes());
        assert_eq!(decode_text(&bytes), READ);
        // ANSI bytes that are not UTF-8 do not stop the driver's ASCII lines from parsing.
        let mut bytes = b"1\t0.1\tcaf\xe9\r\n".to_vec();
        bytes.extend_from_slice(READ.as_bytes());
        assert_eq!(load_text(&decode_text(&bytes)).unwrap().run.events.len(), 1);
    }
}
