//! Exhaustive interleavings of the event ring under loom's memory model.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p ctxscope-core --test loom --release`. Every
//! model has two writers recording concurrently with a reader draining, and checks, for every
//! interleaving and every value the weak memory model lets a load return:
//! - each delivered event is exactly what its writer wrote (loom's `UnsafeCell` also fails the
//!   model on any unsynchronized access to a payload);
//! - no event is delivered twice, and each carries the position `record` returned for it;
//! - after the writers join and a final drain, delivered == recorded and
//!   recorded + dropped == produced, and the ring's counters agree.
//!
//! Building with `--cfg ctxscope_weak_ordering` as well weakens the writer's publishing store to
//! `Relaxed`; these models must then fail (CI checks that they do).

#![cfg(loom)]

use ctxscope_core::event::{Event, ExecContext, Requestor};
use ctxscope_core::kind::CallbackKind;
use ctxscope_core::ring::{EventRing, LaneFull, Recorded, RingStats};
use loom::sync::Arc;
use loom::thread;
use std::collections::BTreeMap;
use std::vec::Vec;

/// The event writer `writer` records as its `index`-th, on `cpu`, with every field derived from
/// `(writer, index)` so a torn or mixed-up payload cannot pass for another.
fn event(writer: u32, index: u32, cpu: u32, timestamp: u64) -> Event {
    let tag = u64::from(writer) << 8 | u64::from(index);
    Event::new(
        CallbackKind::ALL[(tag as usize) % CallbackKind::COUNT],
        ExecContext {
            pid: 1000 + writer,
            tid: 2000 + index,
            irql: (writer + index) as u8 % 3,
            cpu,
        },
        timestamp,
    )
    .with_ids(0xA000 + tag, 0xF000 + tag)
    .with_detail(!tag)
    .with_requestor(Some(Requestor {
        pid: 3000 + writer,
        tid: 4000 + index,
    }))
    .completing(index % 2 == 1)
}

/// What one writer did: each event offered, and what `record` said.
type Outcomes = Vec<(Event, Result<Recorded, LaneFull>)>;

fn write_all<const LANES: usize, const CAP: usize>(
    ring: &EventRing<LANES, CAP>,
    events: Vec<Event>,
) -> Outcomes {
    events
        .into_iter()
        .map(|event| (event, ring.record(event)))
        .collect()
}

/// Checks every delivered event against what the writers recorded, and the accounting.
fn check<const LANES: usize, const CAP: usize>(
    ring: &EventRing<LANES, CAP>,
    writers: &[Outcomes],
    delivered: &[Event],
) {
    // What each accepted event must look like once stored: the original with lane and seq set.
    let mut expected = BTreeMap::new();
    let mut dropped = 0u64;
    for outcomes in writers {
        let mut last_seq_in_lane = BTreeMap::new();
        for (offered, result) in outcomes {
            match result {
                Ok(recorded) => {
                    assert_eq!(usize::from(recorded.lane), offered.cpu as usize % LANES);
                    let mut stored = *offered;
                    stored.lane = recorded.lane;
                    stored.seq = recorded.seq;
                    assert!(
                        expected
                            .insert((recorded.lane, recorded.seq), stored)
                            .is_none(),
                        "two records were given position {recorded:?}"
                    );
                    // One writer's events keep its order within a lane.
                    if let Some(last) = last_seq_in_lane.insert(recorded.lane, recorded.seq) {
                        assert!(
                            last < recorded.seq,
                            "writer order lost in lane {recorded:?}"
                        );
                    }
                }
                Err(full) => {
                    assert_eq!(usize::from(full.lane), offered.cpu as usize % LANES);
                    dropped += 1;
                }
            }
        }
    }
    let produced: u64 = writers.iter().map(|outcomes| outcomes.len() as u64).sum();
    let recorded = expected.len() as u64;

    let mut seen = BTreeMap::new();
    for event in delivered {
        let key = (event.lane, event.seq);
        assert_eq!(
            expected.get(&key),
            Some(event),
            "delivered event is not what was recorded"
        );
        assert!(seen.insert(key, ()).is_none(), "delivered twice: {key:?}");
    }
    // Within a lane, delivery follows position order.
    let mut last_delivered_in_lane = BTreeMap::new();
    for event in delivered {
        if let Some(last) = last_delivered_in_lane.insert(event.lane, event.seq) {
            assert!(
                last < event.seq,
                "lane {} delivered out of order",
                event.lane
            );
        }
    }
    assert_eq!(
        delivered.len() as u64,
        recorded,
        "a recorded event was lost"
    );
    assert_eq!(recorded + dropped, produced);
    let stats = ring.stats();
    assert_eq!(
        stats,
        RingStats {
            recorded,
            dropped,
            consumed: recorded
        }
    );
    assert_eq!(stats.produced(), produced);
}

/// Drains until nothing is ready.
fn drain_rest<const LANES: usize, const CAP: usize>(
    ring: &EventRing<LANES, CAP>,
    delivered: &mut Vec<Event>,
) {
    let mut reader = ring.reader().expect("the reader role was given back");
    let mut out = [Event::ZERO; 8];
    loop {
        let n = reader.drain(&mut out);
        if n == 0 {
            break;
        }
        delivered.extend_from_slice(&out[..n]);
    }
}

/// Runs `model` over every interleaving (within the preemption bound). The model returns how
/// many events its reader took while the writers ran; some executions must have taken some, or
/// the model never overlapped the reader with the writers.
fn explore(name: &str, model: impl Fn() -> u64 + Sync + Send + 'static) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        // Bounded (unless LOOM_MAX_PREEMPTIONS says otherwise): 4 explores about 300,000
        // executions in under a minute on 2 cores; 5 explores 1.2 million in about 100 s.
        builder.preemption_bound = Some(4);
    }
    let counts = std::sync::Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let counter = std::sync::Arc::clone(&counts);
    builder.check(move || {
        counter[0].fetch_add(1, Ordering::Relaxed);
        if model() > 0 {
            counter[1].fetch_add(1, Ordering::Relaxed);
        }
    });
    let [executions, overlapped] = [0, 1].map(|i| counts[i].load(Ordering::Relaxed));
    std::eprintln!(
        "{name}: {executions} executions, {overlapped} with events taken while writers ran"
    );
    assert!(overlapped > 0, "the reader never overlapped the writers");
}

/// Lets the writers run before the reader's next step. Loom 0.7's search misses the orders in
/// which a reader's load comes before a writer's store when the writer loaded the same atomic
/// in between (tokio-rs/loom#392: the reader's access is forgotten); yielding first makes the
/// writers' stores come first in the initial execution, and the search then moves the reader's
/// loads before each of them.
fn let_writers_run() {
    loom::thread::yield_now();
}

/// Two writers share the one lane of a two-slot ring, so they race for positions, fill the
/// lane (drops) and wrap it, while the reader drains and frees slots under them.
#[test]
fn two_writers_one_lane_with_concurrent_reader() {
    explore("two_writers_one_lane_with_concurrent_reader", || {
        let ring = Arc::new(EventRing::<1, 2>::new());
        let handles: Vec<_> = (0..2)
            .map(|writer| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    let events = (0..2)
                        .map(|index| event(writer, index, writer, u64::from(index)))
                        .collect();
                    write_all(&ring, events)
                })
            })
            .collect();

        let mut delivered = Vec::new();
        let concurrent = {
            let_writers_run();
            let mut reader = ring.reader().expect("no other reader");
            let mut out = [Event::ZERO; 2];
            let n = reader.drain(&mut out);
            delivered.extend_from_slice(&out[..n]);
            n as u64
        };

        let writers: Vec<_> = handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect();
        drain_rest(&ring, &mut delivered);
        check(&ring, &writers, &delivered);
        concurrent
    });
}

/// Two lanes, one writer each, with timestamps increasing per writer: besides the checks above,
/// every batch the concurrent reader takes must be in timestamp order, even when an event is
/// published into a lane the batch already found empty.
#[test]
fn two_lanes_batches_are_merged_by_timestamp() {
    explore("two_lanes_batches_are_merged_by_timestamp", || {
        let ring = Arc::new(EventRing::<2, 2>::new());
        let handles: Vec<_> = (0..2)
            .map(|writer| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    // Writer 0 on lane 0 at t = 1, 3; writer 1 on lane 1 at t = 2, 4.
                    let events = (0..2)
                        .map(|index| {
                            event(writer, index, writer, u64::from(2 * index + writer + 1))
                        })
                        .collect();
                    write_all(&ring, events)
                })
            })
            .collect();

        let mut delivered = Vec::new();
        let concurrent = {
            let_writers_run();
            let mut reader = ring.reader().expect("no other reader");
            let mut out = [Event::ZERO; 4];
            let n = reader.drain(&mut out);
            assert!(
                out[..n].is_sorted_by_key(|event| event.timestamp),
                "batch out of timestamp order: {:?}",
                out[..n].iter().map(|e| e.timestamp).collect::<Vec<_>>()
            );
            delivered.extend_from_slice(&out[..n]);
            n as u64
        };

        let writers: Vec<_> = handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect();
        drain_rest(&ring, &mut delivered);
        check(&ring, &writers, &delivered);
        concurrent
    });
}

/// Writers on both lanes of a one-slot-per-lane ring, each writer crossing lanes, while the
/// reader discards: every accepted event is consumed exactly once, drops are counted, and
/// `discard` returns.
#[test]
fn two_writers_crossing_lanes_with_concurrent_discard() {
    explore("two_writers_crossing_lanes_with_concurrent_discard", || {
        let ring = Arc::new(EventRing::<2, 1>::new());
        let handles: Vec<_> = (0..2)
            .map(|writer| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    // Writer 0 records on cpu 0 then 1, writer 1 on cpu 1 then 0.
                    let events = (0..2)
                        .map(|index| event(writer, index, (writer + index) % 2, u64::from(index)))
                        .collect();
                    write_all(&ring, events)
                })
            })
            .collect();

        let_writers_run();
        let discarded = ring.reader().expect("no other reader").discard();

        let writers: Vec<_> = handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect();
        let mut delivered = Vec::new();
        drain_rest(&ring, &mut delivered);
        let recorded = writers
            .iter()
            .flatten()
            .filter(|(_, result)| result.is_ok())
            .count() as u64;
        assert_eq!(discarded + delivered.len() as u64, recorded);
        let stats = ring.stats();
        assert_eq!(stats.consumed, recorded);
        assert_eq!(stats.produced(), 4);
        // The events not discarded are checked whole; the discarded ones were never copied.
        for event in &delivered {
            let (offered, result) = writers
                .iter()
                .flatten()
                .find(|(_, result)| {
                    result.is_ok_and(|r| (r.lane, r.seq) == (event.lane, event.seq))
                })
                .expect("delivered event was recorded");
            let recorded = result.unwrap();
            let mut stored = *offered;
            stored.lane = recorded.lane;
            stored.seq = recorded.seq;
            assert_eq!(*event, stored);
        }
        discarded
    });
}

/// The reader role moves between threads while a writer records: a reader on another thread
/// drains and gives the role back, and the main thread takes it (without joining that thread,
/// so only the role itself orders the two) and drains too. The cursors must come with the role
/// (the release/acquire pair on it), or an event is delivered twice or a slot is read while its
/// next lap is written.
#[test]
fn reader_role_hand_over_keeps_the_cursors() {
    explore("reader_role_hand_over_keeps_the_cursors", || {
        let ring = Arc::new(EventRing::<1, 1>::new());
        let writer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                let events = (0..2)
                    .map(|index| event(0, index, 0, u64::from(index)))
                    .collect();
                write_all(&ring, events)
            })
        };
        let other_reader = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                let_writers_run();
                let Some(mut reader) = ring.reader() else {
                    return Vec::new();
                };
                let mut out = [Event::ZERO; 1];
                let n = reader.drain(&mut out);
                out[..n].to_vec()
            })
        };

        let mut delivered = {
            let_writers_run();
            let mut reader = loop {
                if let Some(reader) = ring.reader() {
                    break reader;
                }
                thread::yield_now();
            };
            let mut out = [Event::ZERO; 2];
            let n = reader.drain(&mut out);
            out[..n].to_vec()
        };
        let outcomes = writer.join().unwrap();
        delivered.extend(other_reader.join().unwrap());
        let concurrent = delivered.len() as u64;
        drain_rest(&ring, &mut delivered);
        // Who held the role first varies; put the events back in position order (a duplicate
        // stays and is caught) before the common checks.
        delivered.sort_by_key(|event| (event.lane, event.seq));
        check(&ring, &[outcomes], &delivered);
        concurrent
    });
}
