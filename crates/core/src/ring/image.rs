//! The ring's memory image and layout descriptor, for the `WinDbg` extension and its tests.
//!
//! The driver exports two symbols side by side:
//!
//! ```text
//! #[unsafe(no_mangle)] static CTXSCOPE_EVENT_RING: EventRing<8, 512> = EventRing::new();
//! #[unsafe(no_mangle)] static CTXSCOPE_RING_LAYOUT: RingLayout = EventRing::<8, 512>::LAYOUT;
//! ```
//!
//! `tools/windbg/ctxscope.js` finds both by symbol, checks the descriptor's magic and version,
//! and decodes the ring's bytes with nothing but the descriptor: no size or offset is written
//! twice. [`EventRing::LAYOUT`] is computed with `offset_of!` and `size_of` on the ring's own types,
//! so it cannot disagree with memory.
//!
//! [`EventRing::write_image`] produces the bytes a debugger reads at `CTXSCOPE_EVENT_RING`, for
//! tests and crash-dump fixtures (`examples/ring_image.rs` writes them for the extension's node
//! tests).
//!
//! # What the bytes are
//! All multi-byte values are little-endian (x64 and ARM64, the targets Windows drivers build for).
//! `AtomicU64` and `AtomicBool` have the in-memory representation of `u64` and `bool`
//! (documented by `core::sync::atomic`), `core::cell::UnsafeCell<T>` that of `T`, and the
//! ring's `UnsafeCell` shim is a one-field wrapper of the same size (checked below), so a slot's
//! payload is the 64-byte [`Event`] record of [`Event::to_bytes`], whose in-memory layout is its
//! wire layout.
//!
//! # Reading a slot from outside
//! Each slot's 64-bit stamp says what the slot holds; for position `p` of a lane of capacity
//! `CAP` (see [`STAMP_LAP_PARITY`]):
//! - `2 * (p / CAP)`: free for the writer of `p`;
//! - `2 * (p / CAP) + 1`: holds the event of `p`, ready and not yet consumed.
//!
//! So an odd stamp `s` in slot `i` is the ready event of position `(s - 1) / 2 * CAP + i`. An even
//! stamp `s = 2k` is free for position `p' = k * CAP + i`: if `p' < head`, a writer has claimed
//! `p'` and may be writing the payload (in flight: the bytes are not an event); otherwise, for
//! `k >= 1`, the payload is still the consumed event of `p' - CAP`, intact until a writer claims
//! `p'`. Every event also carries its own position (`seq`) and lane, which a reader checks.

use core::mem::{offset_of, size_of};

use super::{EventRing, Lane, Ordering, Slot};
use crate::event::Event;

/// `magic` of a [`RingLayout`]: the bytes `CTXR` in memory.
pub const RING_LAYOUT_MAGIC: u32 = u32::from_le_bytes(*b"CTXR");

/// `version` of a [`RingLayout`]. Bumped whenever the meaning of any descriptor field, the width of
/// a counter or stamp, or the [`Event`] record format changes.
pub const RING_LAYOUT_VERSION: u32 = 1;

/// `stamp_encoding` of a [`RingLayout`]: a slot's `u64` stamp is `2 * (p / CAP)` while the slot is
/// free for the writer of lane position `p`, and `2 * (p / CAP) + 1` once it holds that event
/// (`CAP` is [`RingLayout::lane_capacity`]). The only encoding so far.
pub const STAMP_LAP_PARITY: u32 = 1;

/// Where everything is in an [`EventRing`]'s memory: the descriptor the driver exports as
/// `CTXSCOPE_RING_LAYOUT` so that a debugger needs no hard-coded number.
///
/// `repr(C)` and made of `u32`s only, so it has no padding and [`RingLayout::to_bytes`] is its
/// memory image: [`RingLayout::SIZE`] bytes, little-endian, fields in declaration order. Counters
/// (`head`, `dropped`, `tail`) and stamps are `u64`; `reader_taken` is one byte (0 or 1).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RingLayout {
    /// [`RING_LAYOUT_MAGIC`].
    pub magic: u32,
    /// [`RING_LAYOUT_VERSION`].
    pub version: u32,
    /// Size of this descriptor in bytes ([`RingLayout::SIZE`]).
    pub descriptor_size: u32,
    /// How slot stamps encode positions: [`STAMP_LAP_PARITY`].
    pub stamp_encoding: u32,
    /// Number of lanes (`LANES`).
    pub lanes: u32,
    /// Slots per lane (`CAP`, a power of two).
    pub lane_capacity: u32,
    /// Size of the whole ring in bytes: how much to read at `CTXSCOPE_EVENT_RING`.
    pub ring_size: u32,
    /// Offset of lane 0 in the ring.
    pub lanes_offset: u32,
    /// Distance between consecutive lanes in bytes.
    pub lane_stride: u32,
    /// Offset of a lane's `head` (`u64`: next position to claim; events recorded so far).
    pub head_offset: u32,
    /// Offset of a lane's `dropped` (`u64`: events refused because the lane was full).
    pub dropped_offset: u32,
    /// Offset of a lane's `tail` (`u64`: next position to consume; events consumed so far).
    pub tail_offset: u32,
    /// Offset of a lane's slot array.
    pub slots_offset: u32,
    /// Distance between consecutive slots in bytes.
    pub slot_size: u32,
    /// Offset of a slot's stamp (`u64`).
    pub stamp_offset: u32,
    /// Offset of a slot's event record.
    pub event_offset: u32,
    /// Size of the event record ([`Event::SIZE`]).
    pub event_size: u32,
    /// Offset in the ring of `reader_taken` (one byte: 1 while a reader holds the ring).
    pub reader_taken_offset: u32,
}

/// Converts a size or offset to the descriptor's `u32`, failing the build of [`EventRing::LAYOUT`]
/// if a ring were ever too large for it.
#[allow(clippy::cast_possible_truncation)] // checked on the line above.
const fn to_u32(value: usize) -> u32 {
    assert!(
        value <= u32::MAX as usize,
        "ring too large for its layout descriptor"
    );
    value as u32
}

// The payload sits at the start of the ring's `UnsafeCell` shim: a one-field struct the size of its
// field has that field at offset 0.
const _: () = assert!(size_of::<super::sync::UnsafeCell<Event>>() == size_of::<Event>());

impl<const LANES: usize, const CAP: usize> EventRing<LANES, CAP> {
    /// The ring's layout descriptor, computed from its types.
    pub const LAYOUT: RingLayout = {
        let () = Self::VALID;
        RingLayout {
            magic: RING_LAYOUT_MAGIC,
            version: RING_LAYOUT_VERSION,
            descriptor_size: to_u32(RingLayout::SIZE),
            stamp_encoding: STAMP_LAP_PARITY,
            lanes: to_u32(LANES),
            lane_capacity: to_u32(CAP),
            ring_size: to_u32(size_of::<Self>()),
            lanes_offset: to_u32(offset_of!(Self, lanes)),
            lane_stride: to_u32(size_of::<Lane<CAP>>()),
            head_offset: to_u32(offset_of!(Lane<CAP>, head)),
            dropped_offset: to_u32(offset_of!(Lane<CAP>, dropped)),
            tail_offset: to_u32(offset_of!(Lane<CAP>, tail)),
            slots_offset: to_u32(offset_of!(Lane<CAP>, slots)),
            slot_size: to_u32(size_of::<Slot>()),
            stamp_offset: to_u32(offset_of!(Slot, stamp)),
            event_offset: to_u32(offset_of!(Slot, event)),
            event_size: to_u32(Event::SIZE),
            reader_taken_offset: to_u32(offset_of!(Self, reader_taken)),
        }
    };

    /// Size of the ring's memory image in bytes ([`RingLayout::ring_size`]).
    pub const IMAGE_SIZE: usize = size_of::<Self>();

    /// Writes the ring's bytes exactly as they lie in memory into `out[..Self::IMAGE_SIZE]`
    /// (padding as zeros) and returns [`Self::IMAGE_SIZE`].
    ///
    /// Takes `&mut self`: the image is of a quiescent ring (a test's, a simulator's, a crash-dump
    /// fixture's). Exclusive access is what makes reading every payload sound without `unsafe`;
    /// a live driver's ring is read by the debugger, not by this.
    ///
    /// # Errors
    /// [`ImageError::BufferTooSmall`] if `out` is shorter than [`Self::IMAGE_SIZE`]; nothing is
    /// written then.
    pub fn write_image(&mut self, out: &mut [u8]) -> Result<usize, ImageError> {
        let layout = Self::LAYOUT;
        let available = out.len();
        let image = out
            .get_mut(..Self::IMAGE_SIZE)
            .ok_or(ImageError::BufferTooSmall {
                needed: Self::IMAGE_SIZE,
                available,
            })?;
        image.fill(0);
        let at = |offset: u32| offset as usize;
        for (index, lane) in self.lanes.iter_mut().enumerate() {
            let base = at(layout.lanes_offset) + index * at(layout.lane_stride);
            put(
                image,
                base + at(layout.head_offset),
                &lane.head.load(Ordering::Relaxed).to_le_bytes(),
            );
            put(
                image,
                base + at(layout.dropped_offset),
                &lane.dropped.load(Ordering::Relaxed).to_le_bytes(),
            );
            put(
                image,
                base + at(layout.tail_offset),
                &lane.tail.load(Ordering::Relaxed).to_le_bytes(),
            );
            for (slot_index, slot) in lane.slots.iter_mut().enumerate() {
                let slot_base = base + at(layout.slots_offset) + slot_index * at(layout.slot_size);
                let stamp = slot.stamp.load(Ordering::Relaxed);
                put(
                    image,
                    slot_base + at(layout.stamp_offset),
                    &stamp.to_le_bytes(),
                );
                put(
                    image,
                    slot_base + at(layout.event_offset),
                    &slot.event.get_mut().to_bytes(),
                );
            }
        }
        image[at(layout.reader_taken_offset)] = u8::from(self.reader_taken.load(Ordering::Relaxed));
        Ok(Self::IMAGE_SIZE)
    }
}

fn put(image: &mut [u8], at: usize, bytes: &[u8]) {
    image[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Why a ring image could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The output buffer is shorter than the ring.
    #[error("ring image needs {needed} bytes but the buffer has {available}")]
    BufferTooSmall {
        /// The ring's size.
        needed: usize,
        /// The buffer's size.
        available: usize,
    },
}

/// Why bytes are not a layout descriptor this version understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Fewer bytes than a descriptor.
    #[error("layout descriptor needs {needed} bytes, got {available}")]
    Truncated {
        /// [`RingLayout::SIZE`].
        needed: usize,
        /// What was given.
        available: usize,
    },
    /// The magic is not `CTXR`: the bytes are not a ctxscope ring layout (wrong symbol or address).
    #[error("bad layout magic {0:#010x}; expected {RING_LAYOUT_MAGIC:#010x} (\"CTXR\")")]
    BadMagic(u32),
    /// A layout version this build does not know: use the matching tools.
    #[error("layout version {0} is not supported (this build reads version {RING_LAYOUT_VERSION})")]
    UnsupportedVersion(u32),
    /// The descriptor's fields contradict each other or the ring's formats.
    #[error("inconsistent layout descriptor: {0}")]
    Inconsistent(&'static str),
}

impl RingLayout {
    /// Size of the descriptor in bytes.
    pub const SIZE: usize = size_of::<Self>();

    /// The descriptor's fields, in memory order.
    const fn fields(&self) -> [u32; Self::SIZE / 4] {
        [
            self.magic,
            self.version,
            self.descriptor_size,
            self.stamp_encoding,
            self.lanes,
            self.lane_capacity,
            self.ring_size,
            self.lanes_offset,
            self.lane_stride,
            self.head_offset,
            self.dropped_offset,
            self.tail_offset,
            self.slots_offset,
            self.slot_size,
            self.stamp_offset,
            self.event_offset,
            self.event_size,
            self.reader_taken_offset,
        ]
    }

    /// The descriptor's memory image: its fields as little-endian `u32`s, in declaration order.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        for (chunk, field) in out.chunks_exact_mut(4).zip(self.fields()) {
            chunk.copy_from_slice(&field.to_le_bytes());
        }
        out
    }

    /// Reads a descriptor from its memory image and checks that it describes a ring this build
    /// can read: magic, version, encoding, and that every offset lies inside what contains it.
    ///
    /// # Errors
    /// See [`LayoutError`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LayoutError> {
        let bytes = bytes.get(..Self::SIZE).ok_or(LayoutError::Truncated {
            needed: Self::SIZE,
            available: bytes.len(),
        })?;
        let mut words = bytes.chunks_exact(4).map(|chunk| {
            let mut word = [0u8; 4];
            word.copy_from_slice(chunk);
            u32::from_le_bytes(word)
        });
        let mut next = || words.next().unwrap_or(0);
        let layout = Self {
            magic: next(),
            version: next(),
            descriptor_size: next(),
            stamp_encoding: next(),
            lanes: next(),
            lane_capacity: next(),
            ring_size: next(),
            lanes_offset: next(),
            lane_stride: next(),
            head_offset: next(),
            dropped_offset: next(),
            tail_offset: next(),
            slots_offset: next(),
            slot_size: next(),
            stamp_offset: next(),
            event_offset: next(),
            event_size: next(),
            reader_taken_offset: next(),
        };
        layout.validate()?;
        Ok(layout)
    }

    /// Checks the descriptor's consistency (what [`RingLayout::from_bytes`] checks).
    ///
    /// # Errors
    /// See [`LayoutError`].
    pub fn validate(&self) -> Result<(), LayoutError> {
        use LayoutError::Inconsistent;
        if self.magic != RING_LAYOUT_MAGIC {
            return Err(LayoutError::BadMagic(self.magic));
        }
        if self.version != RING_LAYOUT_VERSION {
            return Err(LayoutError::UnsupportedVersion(self.version));
        }
        if self.descriptor_size as usize != Self::SIZE {
            return Err(Inconsistent("descriptor size differs from the version's"));
        }
        if self.stamp_encoding != STAMP_LAP_PARITY {
            return Err(Inconsistent("unknown stamp encoding"));
        }
        if self.event_size as usize != Event::SIZE {
            return Err(Inconsistent("event size differs from the record format's"));
        }
        if !(1..=256).contains(&self.lanes) || !self.lane_capacity.is_power_of_two() {
            return Err(Inconsistent(
                "lanes must be 1..=256 and lane capacity a power of two",
            ));
        }
        let (ring, stride, slot) = (
            u64::from(self.ring_size),
            u64::from(self.lane_stride),
            u64::from(self.slot_size),
        );
        let inside =
            |offset: u32, width: u64, container: u64| u64::from(offset) + width <= container;
        if !inside(self.stamp_offset, 8, slot)
            || !inside(self.event_offset, Event::SIZE as u64, slot)
        {
            return Err(Inconsistent("stamp or event outside its slot"));
        }
        let slots_end = u64::from(self.slots_offset) + slot * u64::from(self.lane_capacity);
        if slots_end > stride
            || !inside(self.head_offset, 8, stride)
            || !inside(self.dropped_offset, 8, stride)
            || !inside(self.tail_offset, 8, stride)
        {
            return Err(Inconsistent(
                "a lane's counters or slots lie outside the lane",
            ));
        }
        if u64::from(self.lanes_offset) + stride * u64::from(self.lanes) > ring
            || !inside(self.reader_taken_offset, 1, ring)
        {
            return Err(Inconsistent("lanes or reader flag lie outside the ring"));
        }
        Ok(())
    }

    /// The stamp of a slot free for the writer of lane position `pos` ([`STAMP_LAP_PARITY`]).
    #[must_use]
    pub const fn free_stamp(&self, pos: u64) -> u64 {
        pos / self.lane_capacity as u64 * 2
    }

    /// The stamp of a slot holding the event of lane position `pos` ([`STAMP_LAP_PARITY`]).
    #[must_use]
    pub const fn ready_stamp(&self, pos: u64) -> u64 {
        self.free_stamp(pos) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ExecContext, Requestor};
    use crate::kind::CallbackKind;
    use crate::ring::{free_stamp, ready_stamp};
    use std::vec;
    use std::vec::Vec;

    const DRIVER: RingLayout = EventRing::<8, 512>::LAYOUT;

    fn event(kind: CallbackKind, cpu: u32, timestamp: u64) -> Event {
        let ctx = ExecContext {
            pid: 1200 + cpu,
            tid: 1300 + cpu,
            irql: 2,
            cpu,
        };
        Event::new(kind, ctx, timestamp)
            .with_ids(timestamp * 3, 0xffff_8a0f_0000_0000 | timestamp)
            .with_detail(!timestamp)
            .with_requestor(kind.has_requestor().then_some(Requestor {
                pid: 1200,
                tid: 1301,
            }))
    }

    fn u64_at(bytes: &[u8], at: usize) -> u64 {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(word)
    }

    /// What a debugger sees in one slot, decoded with the layout alone.
    #[derive(Debug, PartialEq)]
    enum SlotView {
        Ready(Event),
        Consumed(Event),
        InFlight(u64),
        Unused,
    }

    /// Lane counters and slots decoded from an image with nothing but the descriptor, the way
    /// the `WinDbg` extension does.
    fn decode(layout: &RingLayout, image: &[u8]) -> Vec<([u64; 3], Vec<SlotView>)> {
        let at = |offset: u32| offset as usize;
        let cap = u64::from(layout.lane_capacity);
        (0..at(layout.lanes))
            .map(|lane| {
                let base = at(layout.lanes_offset) + lane * at(layout.lane_stride);
                let head = u64_at(image, base + at(layout.head_offset));
                let counters = [
                    head,
                    u64_at(image, base + at(layout.dropped_offset)),
                    u64_at(image, base + at(layout.tail_offset)),
                ];
                let slots = (0..at(layout.lane_capacity))
                    .map(|index| {
                        let slot = base + at(layout.slots_offset) + index * at(layout.slot_size);
                        let stamp = u64_at(image, slot + at(layout.stamp_offset));
                        let mut record = [0u8; Event::SIZE];
                        let payload = slot + at(layout.event_offset);
                        record.copy_from_slice(&image[payload..payload + Event::SIZE]);
                        let lap_pos = stamp / 2 * cap + index as u64;
                        if stamp % 2 == 1 {
                            let event = Event::from_bytes(&record).unwrap();
                            assert_eq!((event.seq, usize::from(event.lane)), (lap_pos, lane));
                            SlotView::Ready(event)
                        } else if lap_pos < head {
                            SlotView::InFlight(lap_pos)
                        } else if stamp >= 2 {
                            let event = Event::from_bytes(&record).unwrap();
                            assert_eq!(event.seq, lap_pos - cap);
                            SlotView::Consumed(event)
                        } else {
                            SlotView::Unused
                        }
                    })
                    .collect();
                (counters, slots)
            })
            .collect()
    }

    fn image_of<const L: usize, const C: usize>(ring: &mut EventRing<L, C>) -> Vec<u8> {
        let mut image = vec![0xAA; EventRing::<L, C>::IMAGE_SIZE];
        assert_eq!(
            ring.write_image(&mut image),
            Ok(EventRing::<L, C>::IMAGE_SIZE)
        );
        image
    }

    #[test]
    fn driver_layout_matches_the_types() {
        type Ring = EventRing<8, 512>;
        assert_eq!(DRIVER.magic.to_le_bytes(), *b"CTXR");
        assert_eq!(DRIVER.version, RING_LAYOUT_VERSION);
        assert_eq!(DRIVER.descriptor_size as usize, RingLayout::SIZE);
        assert_eq!((DRIVER.lanes, DRIVER.lane_capacity), (8, 512));
        assert_eq!(DRIVER.ring_size as usize, size_of::<Ring>());
        assert_eq!(DRIVER.lanes_offset as usize, offset_of!(Ring, lanes));
        assert_eq!(DRIVER.lane_stride as usize, size_of::<Lane<512>>());
        assert_eq!(DRIVER.head_offset as usize, offset_of!(Lane<512>, head));
        assert_eq!(
            DRIVER.dropped_offset as usize,
            offset_of!(Lane<512>, dropped)
        );
        assert_eq!(DRIVER.tail_offset as usize, offset_of!(Lane<512>, tail));
        assert_eq!(DRIVER.slots_offset as usize, offset_of!(Lane<512>, slots));
        assert_eq!(DRIVER.slot_size as usize, size_of::<Slot>());
        assert_eq!(DRIVER.stamp_offset as usize, offset_of!(Slot, stamp));
        assert_eq!(DRIVER.event_offset as usize, offset_of!(Slot, event));
        assert_eq!(DRIVER.event_size as usize, size_of::<Event>());
        assert_eq!(
            DRIVER.reader_taken_offset as usize,
            offset_of!(Ring, reader_taken)
        );
        // The design's promises, which the extension's documentation repeats: counters on their
        // own cache lines, 72-byte slots, the reader flag after the lanes.
        assert_eq!((DRIVER.head_offset, DRIVER.dropped_offset), (0, 8));
        assert_eq!((DRIVER.tail_offset, DRIVER.slots_offset), (64, 128));
        assert_eq!(
            (DRIVER.slot_size, DRIVER.stamp_offset, DRIVER.event_offset),
            (72, 0, 8)
        );
        assert_eq!(DRIVER.lane_stride % 64, 0);
        assert_eq!(DRIVER.reader_taken_offset, 8 * DRIVER.lane_stride);
        assert_eq!(DRIVER.validate(), Ok(()));
    }

    #[test]
    fn event_record_in_memory_is_its_byte_encoding() {
        // `write_image` stores `Event::to_bytes`; that is the memory image only if every field sits
        // where `to_bytes` puts it.
        let offsets = [
            (offset_of!(Event, seq), 0),
            (offset_of!(Event, timestamp), 8),
            (offset_of!(Event, request_id), 16),
            (offset_of!(Event, file_id), 24),
            (offset_of!(Event, detail), 32),
            (offset_of!(Event, pid), 40),
            (offset_of!(Event, tid), 44),
            (offset_of!(Event, requestor_pid), 48),
            (offset_of!(Event, requestor_tid), 52),
            (offset_of!(Event, cpu), 56),
            (offset_of!(Event, kind), 60),
            (offset_of!(Event, irql), 61),
            (offset_of!(Event, flags), 62),
            (offset_of!(Event, lane), 63),
        ];
        for (actual, encoded) in offsets {
            assert_eq!(actual, encoded);
        }
        assert_eq!(size_of::<CallbackKind>(), 1);
    }

    #[test]
    fn small_lanes_are_padded_to_their_cache_line_alignment() {
        let layout = EventRing::<3, 2>::LAYOUT;
        assert_eq!(
            layout.lane_stride, 320,
            "128 header bytes + 2 * 72, rounded up to 64"
        );
        assert_eq!(layout.reader_taken_offset, 3 * 320);
        assert_eq!(layout.ring_size, 3 * 320 + 64);
        assert_eq!(layout.ring_size as usize, EventRing::<3, 2>::IMAGE_SIZE);
    }

    #[test]
    fn stamp_helpers_follow_the_ring() {
        for pos in [0, 1, 511, 512, 513, 5000] {
            assert_eq!(DRIVER.free_stamp(pos), free_stamp::<512>(pos));
            assert_eq!(DRIVER.ready_stamp(pos), ready_stamp::<512>(pos));
        }
    }

    #[test]
    fn layout_bytes_round_trip_and_bad_descriptors_are_refused() {
        let bytes = DRIVER.to_bytes();
        assert_eq!(&bytes[..4], b"CTXR");
        assert_eq!(RingLayout::from_bytes(&bytes), Ok(DRIVER));
        assert_eq!(
            RingLayout::from_bytes(&bytes[..10]),
            Err(LayoutError::Truncated {
                needed: RingLayout::SIZE,
                available: 10
            })
        );
        let mut bad = bytes;
        bad[0] = b'X';
        assert!(matches!(
            RingLayout::from_bytes(&bad),
            Err(LayoutError::BadMagic(_))
        ));
        let mut bad = DRIVER;
        bad.version = 2;
        assert_eq!(
            RingLayout::from_bytes(&bad.to_bytes()),
            Err(LayoutError::UnsupportedVersion(2))
        );
        let mut bad = DRIVER;
        bad.lane_capacity = 1000;
        assert!(matches!(bad.validate(), Err(LayoutError::Inconsistent(_))));
        let mut bad = DRIVER;
        bad.lane_stride -= 64;
        assert!(matches!(bad.validate(), Err(LayoutError::Inconsistent(_))));
        let mut bad = DRIVER;
        bad.reader_taken_offset = bad.ring_size;
        assert!(matches!(bad.validate(), Err(LayoutError::Inconsistent(_))));
    }

    #[test]
    fn too_small_buffer_is_refused_untouched() {
        let mut ring = EventRing::<2, 4>::new();
        let mut small = [7u8; 16];
        assert_eq!(
            ring.write_image(&mut small),
            Err(ImageError::BufferTooSmall {
                needed: EventRing::<2, 4>::IMAGE_SIZE,
                available: 16
            })
        );
        assert_eq!(small, [7u8; 16]);
    }

    #[test]
    fn empty_ring_image_is_all_zero_but_the_layout_says_so() {
        let mut ring = EventRing::<2, 4>::new();
        let image = image_of(&mut ring);
        assert!(image.iter().all(|&byte| byte == 0));
        for (counters, slots) in decode(&EventRing::<2, 4>::LAYOUT, &image) {
            assert_eq!(counters, [0, 0, 0]);
            assert!(slots.iter().all(|slot| *slot == SlotView::Unused));
        }
    }

    #[test]
    fn image_decodes_to_the_rings_own_state() {
        let mut ring = EventRing::<2, 4>::new();
        let mut recorded = Vec::new();
        let mut drained = Vec::new();
        let mut timestamp = 0;
        // Lane 0 (cpu 0) fills faster than it is drained: several laps, and drops; lane 1 (cpu 1)
        // trickles.
        for round in 0..5 {
            for _ in 0..3 {
                timestamp += 1;
                let mut e = event(
                    CallbackKind::ALL[recorded.len() % CallbackKind::COUNT],
                    0,
                    timestamp,
                );
                if let Ok(at) = ring.record(e) {
                    (e.lane, e.seq) = (at.lane, at.seq);
                    recorded.push(e);
                }
            }
            timestamp += 1;
            let mut e = event(CallbackKind::EvtIoRead, 1, timestamp);
            if let Ok(at) = ring.record(e) {
                (e.lane, e.seq) = (at.lane, at.seq);
                recorded.push(e);
            }
            let mut reader = ring.reader().unwrap();
            let mut out = [Event::ZERO; 8];
            let n = reader.drain(&mut out[..if round == 4 { 1 } else { 3 }]);
            drained.extend_from_slice(&out[..n]);
        }
        let stats = ring.stats();
        assert!(stats.dropped > 0 && stats.consumed > 0 && stats.pending() > 0);

        let image = image_of(&mut ring);
        let decoded = decode(&EventRing::<2, 4>::LAYOUT, &image);
        let head = decoded.iter().map(|(c, _)| c[0]).sum::<u64>();
        let dropped = decoded.iter().map(|(c, _)| c[1]).sum::<u64>();
        let tail = decoded.iter().map(|(c, _)| c[2]).sum::<u64>();
        assert_eq!(
            (head, dropped, tail),
            (stats.recorded, stats.dropped, stats.consumed)
        );
        assert_eq!(
            image[EventRing::<2, 4>::LAYOUT.reader_taken_offset as usize],
            0
        );

        let mut ready: Vec<Event> = Vec::new();
        let mut consumed: Vec<Event> = Vec::new();
        for (_, slots) in decoded {
            for slot in slots {
                match slot {
                    SlotView::Ready(e) => ready.push(e),
                    SlotView::Consumed(e) => consumed.push(e),
                    SlotView::InFlight(pos) => {
                        panic!("quiescent ring has position {pos} in flight")
                    }
                    SlotView::Unused => {}
                }
            }
        }
        let key = |e: &Event| (e.lane, e.seq);
        ready.sort_by_key(key);
        consumed.sort_by_key(key);
        // Ready: recorded and not drained.
        let mut expected_ready: Vec<Event> = recorded
            .iter()
            .filter(|e| !drained.contains(e))
            .copied()
            .collect();
        expected_ready.sort_by_key(key);
        assert_eq!(ready, expected_ready);
        // Consumed but intact: drained, and no later event of the lane took the slot.
        let mut expected_consumed: Vec<Event> = drained
            .iter()
            .filter(|d| {
                !recorded
                    .iter()
                    .any(|r| r.lane == d.lane && r.seq > d.seq && (r.seq - d.seq) % 4 == 0)
            })
            .copied()
            .collect();
        expected_consumed.sort_by_key(key);
        assert_eq!(consumed, expected_consumed);
        assert!(!consumed.is_empty() && !ready.is_empty());
    }

    #[test]
    fn reader_flag_is_in_the_image() {
        let mut ring = EventRing::<1, 2>::new();
        let reader = ring.reader().unwrap();
        core::mem::forget(reader);
        let image = image_of(&mut ring);
        assert_eq!(
            image[EventRing::<1, 2>::LAYOUT.reader_taken_offset as usize],
            1
        );
    }
}
