//! The log-line parser on arbitrary text. Nothing may panic, and an accepted line must describe
//! an event that formats to a line parsing back to the same event.

#![no_main]

use ctxscope_core::event::Event;
use ctxscope_core::logline::{LineBuf, parse_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in std::iter::once(text).chain(text.lines()) {
        if let Ok(Some(event)) = parse_line(line) {
            assert_eq!(Event::from_bytes(&event.to_bytes()), Ok(event));
            let formatted = LineBuf::from_event(&event);
            assert_eq!(parse_line(formatted.as_str()), Ok(Some(event)));
        }
    }
});
