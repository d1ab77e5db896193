//! The event ring against a model, and under real threads.
//!
//! - Model-based: random sequences of records (random CPUs and timestamps), drains of random
//!   sizes, discards and reader hand-overs, run against a `VecDeque` per lane with the same
//!   capacity: the same events come out in the same order, the same events are dropped, and the
//!   counters agree after every step, over many laps of every lane.
//! - Threaded: several writers on shared and distinct lanes with one reader draining all along:
//!   exact accounting, each writer's order kept within its lane, no torn event.

mod common;

use ctxscope_core::event::{Event, ExecContext, Requestor};
use ctxscope_core::kind::CallbackKind;
use ctxscope_core::ring::{EventRing, LaneFull, Recorded, RingStats};
use proptest::prelude::*;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

/// An event whose every field is derived from `tag`, so a torn or misplaced one is recognizable.
fn tagged(tag: u64, cpu: u32, timestamp: u64) -> Event {
    #[allow(clippy::cast_possible_truncation)] // deliberately keeps the low bits of the tag
    let low = tag as u32;
    Event::new(
        CallbackKind::ALL[usize::try_from(tag).unwrap() % CallbackKind::COUNT],
        ExecContext {
            pid: low,
            tid: !low,
            irql: (tag % 16) as u8,
            cpu,
        },
        timestamp,
    )
    .with_ids(tag.rotate_left(13), tag ^ 0x5555_5555_5555_5555)
    .with_detail(!tag)
    .with_requestor(Some(Requestor {
        pid: low.rotate_left(7),
        tid: low.wrapping_mul(31),
    }))
    .completing(tag % 2 == 1)
}

/// The tag `tagged` derived the event from, if every field agrees with it.
fn tag_of(event: &Event) -> Option<u64> {
    let tag = event.detail ^ u64::MAX;
    let mut expected = tagged(tag, event.cpu, event.timestamp);
    expected.lane = event.lane;
    expected.seq = event.seq;
    (expected == *event).then_some(tag)
}

#[derive(Clone, Debug)]
enum Op {
    Record {
        cpu: u32,
        timestamp: u64,
    },
    Drain {
        room: usize,
    },
    Discard,
    /// Drop the reader and take the role again (the hand-over must keep the cursors).
    NewReader,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u32..8, 0u64..64).prop_map(|(cpu, timestamp)| Op::Record { cpu, timestamp }),
        2 => (0usize..12).prop_map(|room| Op::Drain { room }),
        1 => Just(Op::Discard),
        1 => Just(Op::NewReader),
    ]
}

/// The reference: one bounded FIFO per lane, drop-newest, and the counters.
struct Model<const LANES: usize, const CAP: usize> {
    lanes: [VecDeque<Event>; LANES],
    next_seq: [u64; LANES],
    dropped: u64,
    consumed: u64,
}

impl<const LANES: usize, const CAP: usize> Model<LANES, CAP> {
    fn new() -> Self {
        Self {
            lanes: core::array::from_fn(|_| VecDeque::new()),
            next_seq: [0; LANES],
            dropped: 0,
            consumed: 0,
        }
    }

    fn record(&mut self, mut event: Event) -> Result<Recorded, LaneFull> {
        let lane = event.cpu as usize % LANES;
        let lane_byte = u8::try_from(lane).unwrap();
        if self.lanes[lane].len() == CAP {
            self.dropped += 1;
            return Err(LaneFull { lane: lane_byte });
        }
        event.lane = lane_byte;
        event.seq = self.next_seq[lane];
        self.next_seq[lane] += 1;
        self.lanes[lane].push_back(event);
        Ok(Recorded {
            lane: event.lane,
            seq: event.seq,
        })
    }

    /// The oldest front event by `(timestamp, lane)`, repeatedly, up to `room`.
    fn drain(&mut self, room: usize) -> Vec<Event> {
        let mut out = Vec::new();
        while out.len() < room {
            let Some(lane) = (0..LANES)
                .filter_map(|lane| self.lanes[lane].front().map(|e| (e.timestamp, lane)))
                .min()
                .map(|(_, lane)| lane)
            else {
                break;
            };
            out.push(self.lanes[lane].pop_front().unwrap());
        }
        self.consumed += out.len() as u64;
        out
    }

    fn discard(&mut self) -> u64 {
        let n: usize = self.lanes.iter().map(VecDeque::len).sum();
        self.lanes.iter_mut().for_each(VecDeque::clear);
        self.consumed += n as u64;
        n as u64
    }

    fn stats(&self) -> RingStats {
        RingStats {
            recorded: self.next_seq.iter().sum(),
            dropped: self.dropped,
            consumed: self.consumed,
        }
    }
}

fn run_against_model<const LANES: usize, const CAP: usize>(ops: &[Op]) {
    let ring = EventRing::<LANES, CAP>::new();
    let mut model = Model::<LANES, CAP>::new();
    let mut reader = ring.reader().expect("a fresh ring has no reader");
    for (index, op) in ops.iter().enumerate() {
        match *op {
            Op::Record { cpu, timestamp } => {
                let event = tagged(index as u64, cpu, timestamp);
                assert_eq!(
                    ring.record(event),
                    model.record(event),
                    "step {index}: {op:?}"
                );
            }
            Op::Drain { room } => {
                let mut out = vec![Event::ZERO; room];
                let n = reader.drain(&mut out);
                assert_eq!(out[..n], model.drain(room), "step {index}: {op:?}");
            }
            Op::Discard => assert_eq!(reader.discard(), model.discard(), "step {index}"),
            Op::NewReader => {
                drop(reader);
                reader = ring.reader().expect("the role was given back");
                assert!(ring.reader().is_none(), "two readers at once");
            }
        }
        assert_eq!(ring.stats(), model.stats(), "step {index}: {op:?}");
    }
    // Whatever is left comes out too, and then the books balance.
    let mut out = vec![Event::ZERO; LANES * CAP];
    let n = reader.drain(&mut out);
    assert_eq!(out[..n], model.drain(LANES * CAP));
    let stats = ring.stats();
    assert_eq!(stats, model.stats());
    assert_eq!(stats.pending(), 0);
    assert_eq!(
        stats.produced(),
        ops.iter()
            .filter(|op| matches!(op, Op::Record { .. }))
            .count() as u64
    );
}

fn ops(max: usize) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 0..max)
}

proptest! {
    #![proptest_config(common::config(256))]

    /// Three lanes of four: drops are frequent, and each lane wraps many times.
    #[test]
    fn three_lanes_of_four_behave_like_the_model(ops in ops(if cfg!(miri) { 60 } else { 600 })) {
        run_against_model::<3, 4>(&ops);
    }

    /// The smallest ring: one lane, one slot, a new lap at every event.
    #[test]
    fn one_slot_ring_behaves_like_the_model(ops in ops(if cfg!(miri) { 30 } else { 300 })) {
        run_against_model::<1, 1>(&ops);
    }

    /// More lanes than the CPUs generated use some of them, more than one CPU per lane others.
    #[test]
    fn five_lanes_of_two_behave_like_the_model(ops in ops(if cfg!(miri) { 40 } else { 400 })) {
        run_against_model::<5, 2>(&ops);
    }
}

/// A long single-threaded run that laps a lane thousands of times, with drains interleaved at
/// a fixed rhythm, so the stamps of late laps are exercised, not only the first few.
#[test]
fn many_laps_keep_order_and_counts() {
    let laps: u64 = if cfg!(miri) { 50 } else { 5_000 };
    let ring = EventRing::<2, 4>::new();
    let mut model = Model::<2, 4>::new();
    let mut reader = ring.reader().unwrap();
    for i in 0..laps * 4 * 2 {
        // Two records per lane per step, drained every third step: lanes fill and drop too.
        #[allow(clippy::cast_possible_truncation)]
        let cpu = (i % 2) as u32;
        let event = tagged(i, cpu, i);
        assert_eq!(ring.record(event), model.record(event));
        if i % 3 == 2 {
            let mut out = [Event::ZERO; 3];
            let n = reader.drain(&mut out);
            assert_eq!(out[..n], model.drain(3));
        }
    }
    assert_eq!(ring.stats(), model.stats());
    assert!(ring.stats().recorded > laps * 4, "the lanes did not lap");
}

/// What one writer thread does: record `count` events on `cpu`, tagged with its identity.
const WRITER_SHIFT: u32 = 32;

fn writer_tag(writer: u64, index: u64) -> u64 {
    writer << WRITER_SHIFT | index
}

/// Several writers on shared and distinct lanes, one reader draining concurrently.
#[test]
fn threaded_writers_and_a_draining_reader_account_for_everything() {
    // Writers 0 and 1 share lane 0 (CPUs 0 and 3); writer 2 has lane 1; writers 3 and 4 share
    // lane 2 (CPUs 2 and 5).
    const CPUS: [u32; 5] = [0, 3, 1, 2, 5];
    let per_writer: u64 = if cfg!(miri) { 40 } else { 20_000 };
    let ring = EventRing::<3, 8>::new();
    let writers_done = AtomicBool::new(false);

    let (outcomes, delivered) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut reader = ring.reader().expect("the only reader");
            let mut delivered = Vec::new();
            let mut out = [Event::ZERO; 16];
            loop {
                // Read the flag before draining: events recorded before it was set are
                // all ready by then, so the drain after it sees the last of them.
                let done = writers_done.load(Ordering::Acquire);
                let n = reader.drain(&mut out);
                delivered.extend_from_slice(&out[..n]);
                if n == 0 {
                    if done {
                        break;
                    }
                    std::thread::yield_now();
                }
            }
            delivered
        });
        let writers: Vec<_> = CPUS
            .iter()
            .enumerate()
            .map(|(writer, &cpu)| {
                let ring = &ring;
                scope.spawn(move || {
                    (0..per_writer)
                        .map(|index| {
                            let event = tagged(writer_tag(writer as u64, index), cpu, index);
                            ring.record(event)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let outcomes: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        writers_done.store(true, Ordering::Release);
        (outcomes, reader.join().unwrap())
    });

    let produced = per_writer * CPUS.len() as u64;
    let recorded = outcomes.iter().flatten().filter(|r| r.is_ok()).count() as u64;
    let dropped = outcomes.iter().flatten().filter(|r| r.is_err()).count() as u64;
    assert_eq!(recorded + dropped, produced);
    assert_eq!(
        delivered.len() as u64,
        recorded,
        "produced = delivered + dropped"
    );
    assert_eq!(
        ring.stats(),
        RingStats {
            recorded,
            dropped,
            consumed: recorded
        }
    );

    // Every delivered event is whole, in the lane of its CPU, at the position `record` gave it,
    // delivered once; each lane comes out in position order, and so each writer's events in
    // the order it recorded them.
    let mut last_seq: [Option<u64>; 3] = [None; 3];
    let mut last_index: [Option<u64>; CPUS.len()] = [None; CPUS.len()];
    for event in &delivered {
        let tag = tag_of(event).unwrap_or_else(|| panic!("torn event {event:?}"));
        let writer = usize::try_from(tag >> WRITER_SHIFT).unwrap();
        let index = tag & u64::from(u32::MAX);
        assert_eq!(event.cpu, CPUS[writer]);
        assert_eq!(usize::from(event.lane), CPUS[writer] as usize % 3);
        assert_eq!(
            outcomes[writer][usize::try_from(index).unwrap()],
            Ok(Recorded {
                lane: event.lane,
                seq: event.seq
            })
        );
        let lane = usize::from(event.lane);
        assert!(
            last_seq[lane].is_none_or(|last| last < event.seq),
            "lane out of order"
        );
        last_seq[lane] = Some(event.seq);
        assert!(
            last_index[writer].is_none_or(|last| last < index),
            "writer {writer} out of order"
        );
        last_index[writer] = Some(index);
    }
}
