//! Every protocol decoder on arbitrary bytes. The first byte picks the decoder (low three bits)
//! and whether the message sits 8-byte aligned or misaligned (next three bits, the offset); the
//! rest is the message. Nothing may panic, and whatever a decoder accepts must encode back to
//! exactly the same bytes: an accepted message has no ignored or unchecked byte.

#![no_main]

use std::cell::RefCell;

use ctxscope_core::event::Event;
use ctxscope_core::protocol::{
    AlignedBuf, ConfigureRequest, GetEventsReply, GetEventsRequest, InfoReply, NeitherDemoReply,
    ReadReceipt, ResetReply, encode_events_reply,
};
use libfuzzer_sys::fuzz_target;

/// Room for the largest message (64 KiB) at any offset.
type Buf = AlignedBuf<{ (1 << 16) + 8 }>;

thread_local! {
    static INPUT: RefCell<Box<Buf>> = RefCell::new(Box::new(Buf::new()));
    static OUTPUT: RefCell<Box<Buf>> = RefCell::new(Box::new(Buf::new()));
}

fn check(bytes: &[u8], out: &mut [u8], selector: u8) {
    macro_rules! canonical {
        ($ty:ty) => {
            if let Ok(message) = <$ty>::decode(bytes) {
                let n = message.encode(out).expect("an accepted message re-encodes");
                assert_eq!(&out[..n], bytes, "{} is not canonical", stringify!($ty));
            }
        };
    }
    match selector & 7 {
        0 => canonical!(InfoReply),
        1 => canonical!(GetEventsRequest),
        2 => canonical!(ResetReply),
        3 => canonical!(ConfigureRequest),
        4 => canonical!(ReadReceipt),
        5 => canonical!(NeitherDemoReply),
        _ => {
            if let Ok(reply) = GetEventsReply::decode(bytes) {
                let events: Vec<Event> = reply.events().collect();
                assert_eq!(events.len(), reply.len());
                let n = encode_events_reply(&reply.header, &events, out)
                    .expect("an accepted reply re-encodes");
                assert_eq!(&out[..n], bytes, "GetEventsReply is not canonical");
                let again = reply.encode(out).expect("an accepted reply re-encodes");
                assert_eq!(
                    &out[..again],
                    bytes,
                    "GetEventsReply::encode is not canonical"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    if message.len() > 1 << 16 {
        return;
    }
    let offset = usize::from((selector >> 3) & 7);
    INPUT.with_borrow_mut(|input| {
        OUTPUT.with_borrow_mut(|output| {
            let bytes = &mut input.0[offset..offset + message.len()];
            bytes.copy_from_slice(message);
            check(bytes, output.as_mut_bytes(), selector);
        });
    });
});
