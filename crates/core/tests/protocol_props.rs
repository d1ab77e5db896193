//! Property tests of the driver-app protocol: every message survives encode then decode, and no
//! byte string makes a decoder panic or accept something it would not write itself.

mod common;
use common::event;

use ctxscope_core::event::Event;
use ctxscope_core::kind::CallbackKind;
use ctxscope_core::protocol::{
    AlignedBuf, CompletedBy, ConfigureRequest, DriverCounters, DriverVersion, EventsReplyHeader,
    GetEventsReply, GetEventsRequest, Guid, InfoReply, Ioctl, LogLevel, Mode, NeitherDemoReply,
    ProtocolError, ReadReceipt, ResetReply, TIMER_PERIOD_MS_MAX, TIMER_PERIOD_MS_MIN, TrailEntry,
    TrailSlot, encode_events_reply, events_reply_capacity,
};
use ctxscope_core::ring::RingStats;
use proptest::prelude::*;

const MAX_PROPERTY_EVENTS: usize = 40;
type Buf = AlignedBuf<{ 56 + 64 * MAX_PROPERTY_EVENTS }>;

fn mode() -> impl Strategy<Value = Mode> {
    prop::sample::select(Mode::ALL.to_vec())
}

fn log_level() -> impl Strategy<Value = LogLevel> {
    prop::sample::select(LogLevel::ALL.to_vec())
}

fn ring_stats() -> impl Strategy<Value = RingStats> {
    (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(recorded, dropped, consumed)| RingStats {
        recorded,
        dropped,
        consumed,
    })
}

prop_compose! {
    fn info()(
        version in any::<(u16, u16, u16)>(),
        mode in mode(),
        counter_frequency in 1..=u64::MAX,
        ring_lanes in 1u32..=256,
        lane_capacity_log2 in 0u32..32,
        ring in ring_stats(),
        counters in any::<[u64; 7]>(),
        timer_period_ms in TIMER_PERIOD_MS_MIN..=TIMER_PERIOD_MS_MAX,
        log_level in log_level(),
    ) -> InfoReply {
        InfoReply {
            driver_version: DriverVersion { major: version.0, minor: version.1, patch: version.2 },
            mode,
            counter_frequency,
            ring_lanes,
            lane_capacity: 1 << lane_capacity_log2,
            ring,
            counters: DriverCounters {
                interrupts: counters[0],
                spurious_interrupts: counters[1],
                timer_ticks: counters[2],
                reads_completed: counters[3],
                reads_cancelled: counters[4],
                log_lines_printed: counters[5],
                log_lines_suppressed: counters[6],
            },
            timer_period_ms,
            log_level,
        }
    }
}

fn trail_entry(kinds: Vec<CallbackKind>) -> impl Strategy<Value = TrailEntry> {
    (
        prop::sample::select(kinds),
        any::<(u8, u32, u32, u32, u64)>(),
    )
        .prop_map(|(kind, (irql, pid, tid, cpu, timestamp))| TrailEntry {
            kind,
            irql,
            present: true,
            pid,
            tid,
            cpu,
            timestamp,
        })
}

fn maybe(entry: impl Strategy<Value = TrailEntry>) -> impl Strategy<Value = TrailEntry> {
    prop::option::of(entry).prop_map(|entry| entry.unwrap_or(TrailEntry::ABSENT))
}

/// Receipts that respect the documented rules: slot kinds, completion present and matching
/// `completed_by`, and no interrupt in root mode.
fn receipt() -> impl Strategy<Value = ReadReceipt> {
    (mode(), prop::sample::select(CompletedBy::ALL.to_vec()))
        .prop_filter("root mode has no interrupt", |(mode, completed_by)| {
            !(*mode == Mode::Root && *completed_by == CompletedBy::InterruptDpc)
        })
        .prop_flat_map(|(mode, completed_by)| {
            let completion_kinds = completed_by
                .completion_kind()
                .map_or_else(|| CallbackKind::ALL.to_vec(), |kind| vec![kind]);
            let isr = if mode == Mode::Root {
                Just(TrailEntry::ABSENT).boxed()
            } else {
                maybe(trail_entry(vec![CallbackKind::EvtInterruptIsr])).boxed()
            };
            (
                any::<(u64, u32, u32)>(),
                maybe(trail_entry(vec![CallbackKind::EvtIoInCallerContext])),
                maybe(trail_entry(vec![CallbackKind::EvtIoRead])),
                isr,
                maybe(trail_entry(vec![
                    CallbackKind::EvtInterruptDpc,
                    CallbackKind::EvtTimerFunc,
                ])),
                trail_entry(completion_kinds),
            )
                .prop_map(
                    move |((request_id, requestor_pid, requestor_tid), a, b, c, d, e)| {
                        ReadReceipt {
                            request_id,
                            requestor_pid,
                            requestor_tid,
                            mode,
                            completed_by,
                            trail: [a, b, c, d, e],
                        }
                    },
                )
        })
}

/// Runs every decoder on `bytes`; none may panic, and whatever one accepts must encode back to
/// exactly `bytes` (nothing in an accepted message is ignored).
fn decode_all_canonically(bytes: &[u8]) {
    let mut out = Buf::new();
    macro_rules! check {
        ($ty:ty) => {
            if let Ok(message) = <$ty>::decode(bytes) {
                let n = message.encode(out.as_mut_bytes()).expect("re-encodes");
                assert_eq!(&out.0[..n], bytes, "{}", stringify!($ty));
            }
        };
    }
    check!(InfoReply);
    check!(GetEventsRequest);
    check!(ResetReply);
    check!(ConfigureRequest);
    check!(ReadReceipt);
    check!(NeitherDemoReply);
    if let Ok(reply) = GetEventsReply::decode(bytes) {
        assert_eq!(reply.events().len(), reply.len());
        let events: Vec<Event> = reply.events().collect();
        let n =
            encode_events_reply(&reply.header, &events, out.as_mut_bytes()).expect("re-encodes");
        assert_eq!(&out.0[..n], bytes, "GetEventsReply");
    }
}

proptest! {
    #![proptest_config(common::config(512))]

    #[test]
    fn info_round_trips(info in info()) {
        let mut buf = Buf::new();
        let n = info.encode(buf.as_mut_bytes()).unwrap();
        prop_assert_eq!(n, InfoReply::SIZE);
        prop_assert_eq!(InfoReply::decode(&buf.0[..n]), Ok(info));
    }

    #[test]
    fn small_messages_round_trip(
        cursor: u64,
        discarded: u64,
        timer_period_ms in TIMER_PERIOD_MS_MIN..=TIMER_PERIOD_MS_MAX,
        log_level in log_level(),
        demo in any::<[u32; 6]>(),
    ) {
        let mut buf = Buf::new();
        let request = GetEventsRequest { cursor };
        let n = request.encode(buf.as_mut_bytes()).unwrap();
        prop_assert_eq!(GetEventsRequest::decode(&buf.0[..n]), Ok(request));

        let reset = ResetReply { discarded };
        let n = reset.encode(buf.as_mut_bytes()).unwrap();
        prop_assert_eq!(ResetReply::decode(&buf.0[..n]), Ok(reset));

        let configure = ConfigureRequest { timer_period_ms, log_level };
        let n = configure.encode(buf.as_mut_bytes()).unwrap();
        prop_assert_eq!(ConfigureRequest::decode(&buf.0[..n]), Ok(configure));

        let demo = NeitherDemoReply {
            locked_by_pid: demo[0],
            locked_by_tid: demo[1],
            filled_by_pid: demo[2],
            filled_by_tid: demo[3],
            input_len: demo[4],
            input_checksum: demo[5],
        };
        let n = demo.encode(buf.as_mut_bytes()).unwrap();
        prop_assert_eq!(NeitherDemoReply::decode(&buf.0[..n]), Ok(demo));
    }

    #[test]
    fn configure_rejects_out_of_range_periods(
        timer_period_ms in prop_oneof![Just(0u32), (TIMER_PERIOD_MS_MAX + 1)..=u32::MAX],
        log_level in log_level(),
    ) {
        let mut buf = Buf::new();
        let configure = ConfigureRequest { timer_period_ms, log_level };
        let expected = Err(ProtocolError::OutOfRange {
            field: "timer_period_ms",
            value: u64::from(timer_period_ms),
        });
        prop_assert_eq!(configure.encode(buf.as_mut_bytes()), expected);
        // Hand-built bytes with that period are refused as well.
        let valid = ConfigureRequest { timer_period_ms: 1, log_level };
        let n = valid.encode(buf.as_mut_bytes()).unwrap();
        buf.0[8..12].copy_from_slice(&timer_period_ms.to_le_bytes());
        prop_assert_eq!(ConfigureRequest::decode(&buf.0[..n]).map(|_| ()), expected.map(|_| ()));
    }

    #[test]
    fn receipts_round_trip(receipt in receipt()) {
        let mut buf = Buf::new();
        let n = receipt.encode(buf.as_mut_bytes()).unwrap();
        prop_assert_eq!(n, ReadReceipt::SIZE);
        prop_assert_eq!(ReadReceipt::decode(&buf.0[..n]), Ok(receipt));
        for slot in TrailSlot::ALL {
            let entry = receipt.trail[slot as usize];
            prop_assert_eq!(receipt.entry(slot).copied(), entry.present.then_some(entry));
        }
    }

    #[test]
    fn receipt_refuses_small_read_buffers(receipt in receipt(), len in 0usize..ReadReceipt::SIZE) {
        let mut buf = Buf::new();
        prop_assert_eq!(
            receipt.encode(&mut buf.0[..len]),
            Err(ProtocolError::BufferTooSmall { needed: ReadReceipt::SIZE, available: len })
        );
    }

    #[test]
    fn events_replies_round_trip(
        events in prop::collection::vec(event(), 0..=MAX_PROPERTY_EVENTS),
        cursor in 0..=u64::MAX / 2,
        stats in ring_stats(),
    ) {
        let header = EventsReplyHeader {
            cursor,
            next_cursor: cursor + events.len() as u64,
            stats,
        };
        let mut buf = Buf::new();
        let n = encode_events_reply(&header, &events, buf.as_mut_bytes()).unwrap();
        prop_assert_eq!(n, GetEventsReply::FIXED_SIZE + events.len() * Event::SIZE);
        prop_assert!(events_reply_capacity(n) >= events.len());
        let reply = GetEventsReply::decode(&buf.0[..n]).unwrap();
        prop_assert_eq!(reply.header, header);
        prop_assert_eq!(reply.events().collect::<Vec<_>>(), events);
    }

    #[test]
    fn events_reply_respects_capacity(
        events in prop::collection::vec(event(), 0..=MAX_PROPERTY_EVENTS),
        out_len in 0usize..(56 + 64 * MAX_PROPERTY_EVENTS),
    ) {
        let header = EventsReplyHeader {
            cursor: 0,
            next_cursor: events.len() as u64,
            stats: RingStats::default(),
        };
        let mut buf = Buf::new();
        let result = encode_events_reply(&header, &events, &mut buf.0[..out_len]);
        // Even an empty reply needs its fixed part: capacity 0 below that size means "nothing
        // fits", not "zero events fit".
        let fits = out_len >= GetEventsReply::FIXED_SIZE
            && events.len() <= events_reply_capacity(out_len);
        if fits {
            prop_assert!(result.is_ok());
        } else {
            prop_assert_eq!(
                result,
                Err(ProtocolError::BufferTooSmall {
                    needed: 56 + 64 * events.len(),
                    available: out_len
                })
            );
        }
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..=(56 + 64 * 3)),
        offset in 0usize..8,
    ) {
        let mut buf = Buf::new();
        buf.0[offset..offset + bytes.len()].copy_from_slice(&bytes);
        let view = &buf.0[offset..offset + bytes.len()];
        decode_all_canonically(view);
        if offset != 0 && bytes.len() >= 8 {
            prop_assert_eq!(
                ResetReply::decode(view),
                Err(ProtocolError::Misaligned { misalignment: offset })
            );
        }
    }

    #[test]
    fn random_bodies_behind_valid_headers_never_panic(
        len_words in 1usize..=(56 + 64 * 3) / 8,
        body in prop::collection::vec(any::<u8>(), 56 + 64 * 3),
    ) {
        let len = len_words * 8;
        let mut buf = Buf::new();
        buf.0[..len].copy_from_slice(&body[..len]);
        buf.0[0..2].copy_from_slice(&1u16.to_le_bytes());
        buf.0[2..4].copy_from_slice(&u16::try_from(len).unwrap().to_le_bytes());
        buf.0[4..8].fill(0);
        decode_all_canonically(&buf.0[..len]);
    }

    #[test]
    fn any_single_byte_change_is_refused_or_canonical(
        receipt in receipt(),
        info in info(),
        events in prop::collection::vec(event(), 1..4),
        at in any::<prop::sample::Index>(),
        value: u8,
    ) {
        let mut buf = Buf::new();
        let n = receipt.encode(buf.as_mut_bytes()).unwrap();
        buf.0[at.index(n)] = value;
        decode_all_canonically(&buf.0[..n]);

        let n = info.encode(buf.as_mut_bytes()).unwrap();
        buf.0[at.index(n)] = value;
        decode_all_canonically(&buf.0[..n]);

        let header = EventsReplyHeader {
            cursor: 5,
            next_cursor: 5 + events.len() as u64,
            stats: RingStats::default(),
        };
        let n = encode_events_reply(&header, &events, buf.as_mut_bytes()).unwrap();
        buf.0[at.index(n)] = value;
        decode_all_canonically(&buf.0[..n]);
    }

    #[test]
    fn guids_round_trip(data1: u32, data2: u16, data3: u16, data4: [u8; 8]) {
        let guid = Guid { data1, data2, data3, data4 };
        let text = guid.to_string();
        prop_assert_eq!(text.len(), 38);
        prop_assert_eq!(Guid::parse(&text), Ok(guid));
        prop_assert_eq!(Guid::parse(&text[1..37].to_lowercase()), Ok(guid));
    }

    #[test]
    fn guid_parser_never_panics(text in ".{0,40}") {
        if let Ok(guid) = Guid::parse(&text) {
            prop_assert!(text.eq_ignore_ascii_case(&guid.to_string())
                || text.eq_ignore_ascii_case(&guid.to_string()[1..37]));
        }
    }

    #[test]
    fn only_our_codes_are_ioctls(code: u32) {
        match Ioctl::from_code(code) {
            Some(ioctl) => prop_assert_eq!(ioctl.code(), code),
            None => prop_assert!(Ioctl::ALL.iter().all(|ioctl| ioctl.code() != code)),
        }
    }
}
