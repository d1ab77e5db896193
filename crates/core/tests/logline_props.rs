//! Property tests of the log line: every event of every kind survives format then parse, in
//! every form a debugger saves it, and no string makes the parser panic.

mod common;
use common::event;

use ctxscope_core::event::Event;
use ctxscope_core::kind::CallbackKind;
use ctxscope_core::logline::{LineBuf, MAX_LINE_LEN, PREFIX, format_event, parse_line};
use proptest::prelude::*;

/// Text a debugger may put before the message: `DebugView`'s sequence number and time in its
/// several forms, `WinDbg`'s prompt, or nothing.
fn leading_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        (any::<u32>(), any::<u32>()).prop_map(|(seq, micros)| format!(
            "{seq}\t{}.{:08}\t",
            micros / 1_000_000,
            micros % 1_000_000
        )),
        (0u8..24, 0u8..60, 0u8..60, 0u16..1000)
            .prop_map(|(h, m, s, ms)| format!("17\t{h:02}:{m:02}:{s:02}.{ms:03}\t")),
        Just("0: kd> ".to_owned()),
        Just("kd> ".to_owned()),
    ]
}

fn trailing_text() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", "\n", "\r\n", " ", "\t \r\n"])
}

proptest! {
    #![proptest_config(common::config(1024))]

    #[test]
    fn format_then_parse_is_identity(
        event in event(),
        lead in leading_text(),
        trail in trailing_text(),
    ) {
        let mut buf = LineBuf::new();
        let line = format_event(&event, &mut buf);
        prop_assert!(line.len() <= MAX_LINE_LEN);
        prop_assert!(line.is_ascii());
        prop_assert!(line.starts_with(PREFIX));
        prop_assert!(line.ends_with('\n'));
        prop_assert_eq!(line.matches('\n').count(), 1);
        prop_assert_eq!(buf.as_cstr_bytes().last(), Some(&0));
        prop_assert_eq!(parse_line(buf.as_str()), Ok(Some(event)));

        let saved = format!("{lead}{}{trail}", buf.as_str().trim_end());
        prop_assert_eq!(parse_line(&saved), Ok(Some(event)));
    }

    #[test]
    fn every_kind_round_trips(event in event()) {
        for kind in CallbackKind::ALL {
            let event = Event { kind, ..event };
            prop_assert_eq!(parse_line(LineBuf::from_event(&event).as_str()), Ok(Some(event)));
        }
    }

    #[test]
    fn a_cut_line_is_an_error_not_another_event(event in event(), cut in any::<prop::sample::Index>()) {
        let buf = LineBuf::from_event(&event);
        let line = buf.as_str().trim_end();
        let kind_at = PREFIX.len() + 1;
        let cut = kind_at + cut.index(line.len() - kind_at);
        prop_assert!(parse_line(&line[..cut]).is_err(), "{:?}", &line[..cut]);
    }

    #[test]
    fn parser_never_panics(text in "\\PC{0,300}") {
        let _ = parse_line(&text);
    }

    #[test]
    fn parser_never_panics_near_our_lines(
        event in event(),
        at in any::<prop::sample::Index>(),
        replacement in "[ -~\t\r\n]{0,4}",
    ) {
        // Corrupt a real line: the result parses to some valid event or to an error.
        let buf = LineBuf::from_event(&event);
        let line = buf.as_str();
        let at = at.index(line.len());
        let corrupted = format!("{}{replacement}{}", &line[..at], &line[(at + 1).min(line.len())..]);
        if let Ok(Some(parsed)) = parse_line(&corrupted) {
            prop_assert_eq!(Event::from_bytes(&parsed.to_bytes()), Ok(parsed));
        }
    }

    #[test]
    fn lines_without_the_prefix_are_not_ours(text in "[^:]{0,200}") {
        prop_assert_eq!(parse_line(&text), Ok(None));
    }
}
