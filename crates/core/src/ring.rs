//! The lock-free event ring: many writers at any IRQL, one reader draining it.
//!
//! # Shape
//! The ring is `LANES` independent lanes of `CAP` slots each, in static storage. A writer stores
//! its event in lane `event.cpu % LANES`, so writers on different CPUs touch different cache lines
//! and never contend; writers on one CPU (a thread preempted by a DPC preempted by the ISR, or a
//! passive-level thread that migrated) share a lane safely.
//!
//! Each lane is a bounded multi-producer queue in the style of Dmitry Vyukov's: `head` is the next
//! position to claim, and each slot carries a *stamp* saying, for the slot's current lap, whether
//! it is free for the writer of position `p` or holds the event of position `p`. A writer claims a
//! position with one compare-and-swap on `head` (retried only when another writer claimed first:
//! lock-free, and never waiting for anyone), writes the payload it now owns, and publishes it with
//! a release store of the stamp. The reader consumes a ready slot and frees it for the next lap
//! with a release store. No writer ever waits on the reader or on another writer, so recording is
//! legal at any IRQL, including DIRQL.
//!
//! # When a lane is full: the newest event is dropped, and counted
//! A full lane refuses the new event and counts it in the lane's `dropped` counter. Overwriting
//! the oldest event instead would let a writer write a slot the reader may be copying, which
//! either makes the reader wait or needs a retry protocol in which a torn event can be
//! delivered; dropping keeps every delivered event whole and every writer wait-free with respect
//! to the reader. It also keeps the start of an overload (the first events of an interrupt
//! storm), which is what explains it. The app drains continuously, so drops are the exception,
//! and they are never silent: for any run,
//! `produced = recorded + dropped` and, once drained, `recorded = delivered`.
//!
//! # Order
//! Within a lane, events are delivered in position order (`Event::seq`), which is the order in
//! which writers claimed them. [`Reader::drain`] merges the lanes by `(timestamp, lane, seq)`: it
//! repeatedly takes the oldest of the lanes' next ready events. A lane with nothing ready leaves
//! the batch at that point, so an event published while a batch is being taken is delivered in a
//! later batch instead of slipping in behind newer events of this one: each batch is in timestamp
//! order whenever each lane's events are. They are, except that a record interrupted between
//! reading the clock and claiming its position (by an ISR or DPC on its CPU, or at
//! `PASSIVE_LEVEL` by a thread switch, that records too) is claimed after the interrupter's: so
//! within a lane, and across batches, timestamps can step back by as long as that interruption
//! lasted. A consumer that needs one total order sorts the run by `(timestamp, lane, seq)`.
//!
//! # Memory ordering
//! Three acquire/release pairs carry everything; every other access is relaxed.
//! - Writer publishes: the payload write, then the *release* store of the ready stamp; the reader's
//!   *acquire* load of that stamp makes the payload visible before it copies it.
//! - Reader frees: the payload copy, then the *release* store of the next lap's free stamp; the
//!   next writer's *acquire* load of that stamp orders the copy before its overwrite.
//! - Reader hand-over: [`Reader`]'s drop *releases* the reader role; the next [`EventRing::reader`]
//!   *acquires* it, and with it the previous reader's cursors.
//!
//! `head` needs no ordering of its own: the compare-and-swap only decides which writer owns a
//! position (positions are 64-bit and never reused, so there is no ABA), and the stamp, not
//! `head`, tells the reader when the payload is there. `tests/loom.rs` checks all of this: it
//! fails if any of the four stamp accesses above is weakened to relaxed. Building with
//! `--cfg ctxscope_weak_ordering` weakens the writer's publishing store, so that CI can check
//! that loom (and Miri) still catch it.

#![allow(unsafe_code)]

use crate::event::Event;

#[cfg(not(loom))]
pub mod image;
use sync::{AtomicBool, AtomicU64, Ordering, UnsafeCell};

#[cfg(not(loom))]
mod sync {
    pub use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// The same interface as loom's `UnsafeCell`, so the ring's code is the one loom checks.
    #[derive(Debug)]
    pub struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub const fn new(value: T) -> Self {
            Self(core::cell::UnsafeCell::new(value))
        }

        pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }

        /// The value, through exclusive access: no one else can touch it, so no unsafe is needed
        /// (`ring::image` reads quiescent payloads with it).
        pub fn get_mut(&mut self) -> &mut T {
            self.0.get_mut()
        }
    }
}

#[cfg(loom)]
mod sync {
    pub use loom::cell::UnsafeCell;
    pub use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
}

/// The ordering of the writer's store of the ready stamp, which publishes the payload.
#[cfg(not(ctxscope_weak_ordering))]
const PUBLISH: Ordering = Ordering::Release;
/// Deliberately too weak: a mutant for checking that loom and Miri catch it.
#[cfg(ctxscope_weak_ordering)]
const PUBLISH: Ordering = Ordering::Relaxed;
#[cfg(all(ctxscope_weak_ordering, not(any(loom, miri))))]
compile_error!("`ctxscope_weak_ordering` breaks the ring on purpose, for loom and Miri only");

/// The stamp of a slot that is free for the writer of position `pos`.
const fn free_stamp<const CAP: usize>(pos: u64) -> u64 {
    (pos / CAP as u64) * 2
}

/// The stamp of a slot that holds the event of position `pos`.
const fn ready_stamp<const CAP: usize>(pos: u64) -> u64 {
    free_stamp::<CAP>(pos) + 1
}

#[allow(clippy::cast_possible_truncation)] // `pos % CAP` is below CAP, a usize.
const fn slot_index<const CAP: usize>(pos: u64) -> usize {
    (pos % CAP as u64) as usize
}

/// One slot: a stamp and the event it guards. 72 bytes.
#[repr(C)]
struct Slot {
    /// `2 * lap` when free for the writer of that lap's position, `2 * lap + 1` when holding it.
    stamp: AtomicU64,
    event: UnsafeCell<Event>,
}

impl Slot {
    // An array-repeat initializer for `Lane::EMPTY`, never used as a shared value: each use is a
    // fresh slot, which is the point.
    #[allow(clippy::declare_interior_mutable_const)]
    #[cfg(not(loom))]
    const EMPTY: Self = Self {
        stamp: AtomicU64::new(0),
        event: UnsafeCell::new(Event::ZERO),
    };
}

/// Writer-side counters on one cache line, the reader's cursor on the next, then the slots.
#[repr(C, align(64))]
struct Lane<const CAP: usize> {
    /// Next position to claim.
    head: AtomicU64,
    /// Events refused because the lane was full.
    dropped: AtomicU64,
    _writer_line: [u8; 48],
    /// Next position to consume. Written only by the reader.
    tail: AtomicU64,
    _reader_line: [u8; 56],
    slots: [Slot; CAP],
}

impl<const CAP: usize> Lane<CAP> {
    // An array-repeat initializer for `EventRing::new`, never used as a shared value: each use is
    // a fresh lane, which is the point.
    #[allow(clippy::declare_interior_mutable_const)]
    #[cfg(not(loom))]
    const EMPTY: Self = Self {
        head: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        _writer_line: [0; 48],
        tail: AtomicU64::new(0),
        _reader_line: [0; 56],
        slots: [Slot::EMPTY; CAP],
    };

    #[cfg(loom)]
    fn new() -> Self {
        Self {
            head: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            _writer_line: [0; 48],
            tail: AtomicU64::new(0),
            _reader_line: [0; 56],
            slots: core::array::from_fn(|_| Slot {
                stamp: AtomicU64::new(0),
                event: UnsafeCell::new(Event::ZERO),
            }),
        }
    }

    /// The reader's cursor, if the event there is ready.
    fn ready(&self) -> Option<u64> {
        let pos = self.tail.load(Ordering::Relaxed);
        let slot = &self.slots[slot_index::<CAP>(pos)];
        // Acquire: pairs with the writer's release store of the ready stamp, so the payload it
        // wrote is visible to `peek`.
        (slot.stamp.load(Ordering::Acquire) == ready_stamp::<CAP>(pos)).then_some(pos)
    }

    /// The event at the reader's cursor, if it is ready, with its position.
    fn peek(&self) -> Option<(u64, Event)> {
        let pos = self.ready()?;
        let slot = &self.slots[slot_index::<CAP>(pos)];
        // SAFETY: `ready` found the stamp saying the slot holds position `pos`, published by its
        // writer's release store, which its acquire load synchronized with. Writers only write a
        // slot whose stamp is the free stamp of their position, which this slot cannot get until
        // the reader (the caller, who holds the only `Reader`) frees it; so nothing writes the
        // slot now.
        let event = slot.event.with(|event| unsafe { event.read() });
        Some((pos, event))
    }

    /// Frees the slot at the reader's cursor (which `ready` found ready) for the next lap.
    fn consume(&self, pos: u64) {
        let slot = &self.slots[slot_index::<CAP>(pos)];
        // Release: the payload read in `peek` happens before the next writer's write of the slot,
        // which acquires this stamp.
        slot.stamp
            .store(free_stamp::<CAP>(pos + CAP as u64), Ordering::Release);
        self.tail.store(pos + 1, Ordering::Relaxed);
    }
}

/// Where a recorded event went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The lane.
    pub lane: u8,
    /// The event's position in the lane (its `seq`).
    pub seq: u64,
}

/// The event was dropped because its lane was full; it has been counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("event ring lane {lane} is full; the event was dropped and counted")]
pub struct LaneFull {
    /// The lane that was full.
    pub lane: u8,
}

/// Counters summed over all lanes. Each is exact once writers are quiet; while they run, each is
/// a recent value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Events stored in the ring since it was created.
    pub recorded: u64,
    /// Events refused because their lane was full.
    pub dropped: u64,
    /// Events the reader has taken out (delivered or discarded).
    pub consumed: u64,
}

impl RingStats {
    /// Every event offered to the ring: `recorded + dropped`.
    #[must_use]
    pub const fn produced(&self) -> u64 {
        self.recorded + self.dropped
    }

    /// Events stored and not yet consumed.
    #[must_use]
    pub const fn pending(&self) -> u64 {
        self.recorded.saturating_sub(self.consumed)
    }
}

/// The event ring. See the module documentation for the design.
///
/// `LANES` must be between 1 and 256 and `CAP` a power of two, both checked at compile time.
#[repr(C)]
pub struct EventRing<const LANES: usize, const CAP: usize> {
    lanes: [Lane<CAP>; LANES],
    reader_taken: AtomicBool,
}

// SAFETY: every slot's payload is accessed only by the one party the slot's stamp designates: the
// writer that claimed the position (between its claim on `head` and its release store of the ready
// stamp) or the holder of the unique `Reader` (between its acquire of the ready stamp and its
// release store of the next free stamp). All other shared state is atomic. `Event` is plain data.
unsafe impl<const LANES: usize, const CAP: usize> Sync for EventRing<LANES, CAP> {}

impl<const LANES: usize, const CAP: usize> EventRing<LANES, CAP> {
    const VALID: () = {
        assert!(LANES >= 1 && LANES <= 256, "LANES must be 1..=256");
        assert!(CAP.is_power_of_two(), "CAP must be a power of two");
    };

    /// Total capacity in events.
    pub const CAPACITY: usize = LANES * CAP;

    /// An empty ring, usable as a `static`.
    #[cfg(not(loom))]
    #[must_use]
    pub const fn new() -> Self {
        let () = Self::VALID;
        Self {
            lanes: [Lane::EMPTY; LANES],
            reader_taken: AtomicBool::new(false),
        }
    }

    /// An empty ring (loom's atomics are not const-constructible).
    #[cfg(loom)]
    #[must_use]
    pub fn new() -> Self {
        let () = Self::VALID;
        Self {
            lanes: core::array::from_fn(|_| Lane::new()),
            reader_taken: AtomicBool::new(false),
        }
    }

    /// Stores `event` in lane `event.cpu % LANES`, setting its `lane` and `seq`.
    ///
    /// Lock-free and allocation-free: callable at any IRQL, from any number of CPUs at once.
    ///
    /// # Errors
    /// [`LaneFull`] when the lane holds `CAP` unconsumed events; the event is counted as dropped.
    #[allow(clippy::cast_possible_truncation)] // the lane index is below LANES <= 256.
    pub fn record(&self, mut event: Event) -> Result<Recorded, LaneFull> {
        let lane_index = event.cpu as usize % LANES;
        let lane = &self.lanes[lane_index];
        let mut pos = lane.head.load(Ordering::Relaxed);
        loop {
            let slot = &lane.slots[slot_index::<CAP>(pos)];
            // Acquire: pairs with the reader's release store of the free stamp, so its copy of the
            // previous lap's payload happens before our write below.
            let stamp = slot.stamp.load(Ordering::Acquire);
            let free = free_stamp::<CAP>(pos);
            match stamp.cmp(&free) {
                core::cmp::Ordering::Equal => {
                    // Relaxed: the swap only decides who owns `pos`; the stamp carries the data.
                    // Weak: a spurious failure just goes round the loop once more.
                    match lane.head.compare_exchange_weak(
                        pos,
                        pos + 1,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => {
                            event.lane = lane_index as u8;
                            event.seq = pos;
                            // SAFETY: the successful compare-and-swap made this writer the only
                            // owner of position `pos` (positions are never reused), and the
                            // stamp, free for `pos` and acquired above, shows the reader has
                            // finished with the slot's previous lap; no one else reads or writes
                            // the payload until the release store below publishes it.
                            slot.event
                                .with_mut(|slot_event| unsafe { slot_event.write(event) });
                            // Release: publishes the payload to the reader's acquire load.
                            slot.stamp.store(free + 1, PUBLISH);
                            return Ok(Recorded {
                                lane: event.lane,
                                seq: pos,
                            });
                        }
                        Err(current) => pos = current,
                    }
                }
                core::cmp::Ordering::Less => {
                    // The slot still holds, or is being given, the previous lap's event: the lane
                    // is full at `pos`. If `head` moved meanwhile, `pos` was stale; try the
                    // current head instead.
                    let current = lane.head.load(Ordering::Relaxed);
                    if current == pos {
                        lane.dropped.fetch_add(1, Ordering::Relaxed);
                        return Err(LaneFull {
                            lane: lane_index as u8,
                        });
                    }
                    pos = current;
                }
                core::cmp::Ordering::Greater => {
                    // Another writer claimed `pos` already (its stamp store, which we acquired,
                    // follows its claim, so this load sees a newer head).
                    pos = lane.head.load(Ordering::Relaxed);
                }
            }
        }
    }

    /// Takes the reader role, if no one holds it. There is one reader at a time; a second caller
    /// gets `None` at once (the driver answers "busy") rather than waiting.
    pub fn reader(&self) -> Option<Reader<'_, LANES, CAP>> {
        self.reader_taken
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Reader { ring: self })
    }

    /// The ring's counters.
    #[must_use]
    pub fn stats(&self) -> RingStats {
        self.lanes
            .iter()
            .fold(RingStats::default(), |acc, lane| RingStats {
                recorded: acc.recorded + lane.head.load(Ordering::Relaxed),
                dropped: acc.dropped + lane.dropped.load(Ordering::Relaxed),
                consumed: acc.consumed + lane.tail.load(Ordering::Relaxed),
            })
    }
}

#[cfg(not(loom))]
impl<const LANES: usize, const CAP: usize> Default for EventRing<LANES, CAP> {
    fn default() -> Self {
        Self::new()
    }
}

/// The ring's single reader. Dropping it gives the role back.
pub struct Reader<'ring, const LANES: usize, const CAP: usize> {
    ring: &'ring EventRing<LANES, CAP>,
}

impl<const LANES: usize, const CAP: usize> Reader<'_, LANES, CAP> {
    /// Moves ready events into `out`, oldest timestamp first across lanes (ties by lane, then
    /// position), and returns how many. Stops when `out` is full or no lane has a ready event.
    ///
    /// A lane found with nothing ready takes no further part in this call, so an event published
    /// during the call cannot be merged in behind newer ones already taken (see the module
    /// documentation on order); it is left for the next call.
    pub fn drain(&mut self, out: &mut [Event]) -> usize {
        let mut exhausted = [false; LANES];
        let mut taken = 0;
        while taken < out.len() {
            let mut oldest: Option<(usize, u64, Event)> = None;
            for (index, lane) in self.ring.lanes.iter().enumerate() {
                if exhausted[index] {
                    continue;
                }
                match lane.peek() {
                    None => exhausted[index] = true,
                    Some((pos, event))
                        if oldest.is_none_or(|(_, _, best)| event.timestamp < best.timestamp) =>
                    {
                        oldest = Some((index, pos, event));
                    }
                    Some(_) => {}
                }
            }
            let Some((index, pos, event)) = oldest else {
                break;
            };
            self.ring.lanes[index].consume(pos);
            out[taken] = event;
            taken += 1;
        }
        taken
    }

    /// Consumes, without copying them out, the events that are ready when it reaches each lane;
    /// returns how many.
    ///
    /// At most `CAP` per lane: everything that was ready, and never an endless loop behind
    /// writers that keep up with it.
    pub fn discard(&mut self) -> u64 {
        let mut discarded = 0;
        for lane in &self.ring.lanes {
            for _ in 0..CAP {
                let Some(pos) = lane.ready() else {
                    break;
                };
                lane.consume(pos);
                discarded += 1;
            }
        }
        discarded
    }
}

impl<const LANES: usize, const CAP: usize> Drop for Reader<'_, LANES, CAP> {
    fn drop(&mut self) {
        // Release: our consumption of slots happens before the next reader's.
        self.ring.reader_taken.store(false, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::event::ExecContext;
    use crate::kind::CallbackKind;
    use std::vec::Vec;

    fn event(cpu: u32, timestamp: u64) -> Event {
        Event::new(
            CallbackKind::EvtTimerFunc,
            ExecContext {
                pid: 0,
                tid: 0,
                irql: 2,
                cpu,
            },
            timestamp,
        )
    }

    #[test]
    fn records_and_drains_in_timestamp_order_across_lanes() {
        let ring = EventRing::<2, 4>::new();
        ring.record(event(0, 30)).unwrap();
        ring.record(event(1, 10)).unwrap();
        ring.record(event(0, 40)).unwrap();
        ring.record(event(1, 20)).unwrap();
        let mut out = [Event::ZERO; 8];
        let n = ring.reader().unwrap().drain(&mut out);
        let stamps: Vec<_> = out[..n]
            .iter()
            .map(|e| (e.timestamp, e.lane, e.seq))
            .collect();
        assert_eq!(stamps, [(10, 1, 0), (20, 1, 1), (30, 0, 0), (40, 0, 1)]);
        assert_eq!(
            ring.stats(),
            RingStats {
                recorded: 4,
                dropped: 0,
                consumed: 4
            }
        );
    }

    #[test]
    fn full_lane_drops_newest_and_counts_it_then_wraps() {
        let ring = EventRing::<1, 2>::new();
        assert_eq!(ring.record(event(0, 1)).unwrap().seq, 0);
        assert_eq!(ring.record(event(0, 2)).unwrap().seq, 1);
        assert_eq!(ring.record(event(0, 3)), Err(LaneFull { lane: 0 }));
        let mut reader = ring.reader().unwrap();
        let mut out = [Event::ZERO; 1];
        assert_eq!(reader.drain(&mut out), 1);
        assert_eq!(out[0].timestamp, 1);
        // One slot free again: the next lap's position 2 goes into slot 0.
        assert_eq!(ring.record(event(0, 4)).unwrap().seq, 2);
        let mut out = [Event::ZERO; 4];
        assert_eq!(reader.drain(&mut out), 2);
        assert_eq!((out[0].timestamp, out[1].timestamp), (2, 4));
        let stats = ring.stats();
        assert_eq!(
            stats,
            RingStats {
                recorded: 3,
                dropped: 1,
                consumed: 3
            }
        );
        assert_eq!(stats.produced(), 4);
    }

    #[test]
    fn one_reader_at_a_time() {
        let ring = EventRing::<1, 2>::new();
        let reader = ring.reader();
        assert!(reader.is_some());
        assert!(ring.reader().is_none());
        drop(reader);
        assert!(ring.reader().is_some());
    }

    #[test]
    fn discard_consumes_everything_ready() {
        let ring = EventRing::<4, 8>::new();
        for cpu in 0..10 {
            ring.record(event(cpu, u64::from(cpu))).unwrap();
        }
        assert_eq!(ring.reader().unwrap().discard(), 10);
        assert_eq!(ring.stats().pending(), 0);
    }

    #[test]
    fn usable_as_a_static() {
        static RING: EventRing<2, 4> = EventRing::new();
        RING.record(event(3, 7)).unwrap();
        assert_eq!(RING.stats().recorded, 1);
    }
}
