//! Writes memory images of event rings, and what a debugger must decode from each, for the `WinDbg`
//! extension's tests (`tools/windbg/test`).
//!
//! ```text
//! cargo run -p ctxscope-core --example ring_image -- OUT_DIR
//! ```
//!
//! For every fixture `<name>`, `OUT_DIR` receives `<name>.layout.bin` (the `RingLayout`
//! descriptor's bytes, as the driver exports them in `CTXSCOPE_RING_LAYOUT`), `<name>.ring.bin`
//! (the ring's bytes, as they lie at `CTXSCOPE_EVENT_RING`) and `<name>.expected.json`; plus
//! `kinds.json`, the callback table of `CallbackKind::ALL`, against which the extension's own
//! table is checked.
//!
//! The images come from the core's own encoder (`EventRing::write_image`). The expectations come
//! from the other side: what each fixture recorded, what the ring refused, and what the reader
//! drained, so the extension is checked against what happened, not against a second decoder.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ctxscope_core::kind::irql_name;
use ctxscope_core::logline::LineBuf;
use ctxscope_core::ring::image::RingLayout;
use ctxscope_core::{
    CallbackKind, Event, EventRing, ExecContext, LaneFull, Placement, Requestor, Verdict,
};

/// Largest integer a JavaScript number holds exactly: larger 64-bit values are written (and
/// decoded by the extension) as decimal strings.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A ring being put into a known state, with a record of everything done to it.
struct Fixture<const LANES: usize, const CAP: usize> {
    name: &'static str,
    description: &'static str,
    ring: Box<EventRing<LANES, CAP>>,
    /// Every event the ring accepted, with the lane and position it assigned.
    recorded: Vec<Event>,
    /// Events refused because their lane was full, per lane.
    dropped: [u64; LANES],
    /// Every event the reader took out, in the order it took them.
    drained: Vec<Event>,
    /// Set when the fixture leaves the reader role taken (a dump taken while the app drained).
    reader_held: bool,
}

impl<const LANES: usize, const CAP: usize> Fixture<LANES, CAP> {
    fn new(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            description,
            ring: Box::new(EventRing::new()),
            recorded: Vec::new(),
            dropped: [0; LANES],
            drained: Vec::new(),
            reader_held: false,
        }
    }

    fn record(&mut self, mut event: Event) {
        match self.ring.record(event) {
            Ok(at) => {
                (event.lane, event.seq) = (at.lane, at.seq);
                self.recorded.push(event);
            }
            Err(LaneFull { lane }) => self.dropped[usize::from(lane)] += 1,
        }
    }

    /// Drains up to `count` events, as the app does.
    fn drain(&mut self, count: usize) {
        let mut reader = self
            .ring
            .reader()
            .expect("fixtures never hold the reader while draining");
        let mut out = vec![Event::ZERO; count];
        let taken = reader.drain(&mut out);
        self.drained.extend_from_slice(&out[..taken]);
    }

    /// Leaves the reader role taken for good, as a crash mid-drain would.
    fn hold_reader(&mut self) {
        std::mem::forget(self.ring.reader().expect("the reader is free"));
        self.reader_held = true;
    }

    fn write(mut self, dir: &Path) -> Result<(), String> {
        let layout = EventRing::<LANES, CAP>::LAYOUT;
        let mut image = vec![0u8; EventRing::<LANES, CAP>::IMAGE_SIZE];
        self.ring
            .write_image(&mut image)
            .map_err(|error| format!("{}: {error}", self.name))?;
        let expected = self.expected(&layout);
        write_file(
            &dir.join(format!("{}.layout.bin", self.name)),
            &layout.to_bytes(),
        )?;
        write_file(&dir.join(format!("{}.ring.bin", self.name)), &image)?;
        write_file(
            &dir.join(format!("{}.expected.json", self.name)),
            expected.as_bytes(),
        )
    }

    /// What the extension must find in the image, from the fixture's own record.
    fn expected(&self, layout: &RingLayout) -> String {
        let key = |event: &Event| (event.lane, event.seq);
        let drained: BTreeSet<_> = self.drained.iter().map(key).collect();
        let mut ready: Vec<Event> = self
            .recorded
            .iter()
            .filter(|event| !drained.contains(&key(event)))
            .copied()
            .collect();
        ready.sort_by_key(key);
        // A consumed event's payload stays until a writer claims its slot for a later lap.
        let cap = CAP as u64;
        let mut consumed: Vec<Event> = self
            .drained
            .iter()
            .filter(|old| {
                !self.recorded.iter().any(|new| {
                    new.lane == old.lane && new.seq > old.seq && (new.seq - old.seq) % cap == 0
                })
            })
            .copied()
            .collect();
        consumed.sort_by_key(key);

        let mut lanes = Vec::new();
        for lane in 0..LANES {
            let in_lane = |event: &&Event| usize::from(event.lane) == lane;
            let head = self.recorded.iter().filter(in_lane).count() as u64;
            let tail = self.drained.iter().filter(in_lane).count() as u64;
            lanes.push(format!(
                "{{\"lane\": {lane}, \"head\": {}, \"dropped\": {}, \"tail\": {}, \"pending\": {}, \
                 \"ready\": {}, \"consumedIntact\": {}, \"inFlight\": 0}}",
                number(head),
                number(self.dropped[lane]),
                number(tail),
                number(head - tail),
                ready.iter().filter(in_lane).count(),
                consumed.iter().filter(in_lane).count(),
            ));
        }
        let stats = self.ring.stats();
        let dropped: u64 = self.dropped.iter().sum();
        assert_eq!(
            (stats.recorded, stats.dropped, stats.consumed),
            (
                self.recorded.len() as u64,
                dropped,
                self.drained.len() as u64
            ),
            "{}: the fixture's record disagrees with the ring's counters",
            self.name
        );

        let mut all = ready.clone();
        all.extend_from_slice(&consumed);
        all.sort_by_key(key);
        let events = |list: &[Event], state: &str| {
            list.iter()
                .map(|event| event_json(event, state))
                .collect::<Vec<_>>()
                .join(",\n    ")
        };
        format!(
            "{{\n  \"name\": {},\n  \"description\": {},\n  \"layout\": {},\n  \"stats\": {{\n    \
             \"lanes\": [\n      {}\n    ],\n    \"totals\": {{\"recorded\": {}, \"dropped\": {}, \
             \"consumed\": {}, \"pending\": {}, \"produced\": {}}},\n    \"readerActive\": {}\n  \
             }},\n  \"events\": [\n    {}\n  ],\n  \"consumed\": [\n    {}\n  ],\n  \
             \"summary\": {},\n  \"summaryAll\": {}\n}}\n",
            string(self.name),
            string(self.description),
            layout_json(layout),
            lanes.join(",\n      "),
            number(stats.recorded),
            number(stats.dropped),
            number(stats.consumed),
            number(stats.pending()),
            number(stats.produced()),
            self.reader_held,
            events(&ready, "ready"),
            events(&consumed, "consumed"),
            summary_json(&ready),
            summary_json(&all),
        )
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|error| format!("cannot write {}: {error}", path.display()))
}

/// A `u64` as JSON: a number when JavaScript holds it exactly, else a decimal string.
fn number(value: u64) -> String {
    if value <= MAX_SAFE_INTEGER {
        value.to_string()
    } else {
        format!("\"{value}\"")
    }
}

/// A JSON string literal.
fn string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn layout_json(layout: &RingLayout) -> String {
    let fields = [
        ("magic", layout.magic),
        ("version", layout.version),
        ("descriptorSize", layout.descriptor_size),
        ("stampEncoding", layout.stamp_encoding),
        ("lanes", layout.lanes),
        ("laneCapacity", layout.lane_capacity),
        ("ringSize", layout.ring_size),
        ("lanesOffset", layout.lanes_offset),
        ("laneStride", layout.lane_stride),
        ("headOffset", layout.head_offset),
        ("droppedOffset", layout.dropped_offset),
        ("tailOffset", layout.tail_offset),
        ("slotsOffset", layout.slots_offset),
        ("slotSize", layout.slot_size),
        ("stampOffset", layout.stamp_offset),
        ("eventOffset", layout.event_offset),
        ("eventSize", layout.event_size),
        ("readerTakenOffset", layout.reader_taken_offset),
    ];
    let body: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("\"{name}\": {value}"))
        .collect();
    format!("{{{}}}", body.join(", "))
}

fn event_json(event: &Event, state: &str) -> String {
    let verdict = Verdict::of(event);
    let line = LineBuf::from_event(event);
    format!(
        "{{\"kind\": {}, \"seq\": {}, \"lane\": {}, \"ts\": {}, \"cpu\": {}, \"irql\": {}, \
         \"pid\": {}, \"tid\": {}, \"rpid\": {}, \"rtid\": {}, \"req\": {}, \"file\": {}, \
         \"detail\": \"{:#x}\", \"flags\": {}, \"kindValue\": {}, \"irqlName\": {}, \
         \"state\": {}, \"placement\": {}, \"contextOk\": {}, \"irqlOk\": {}, \"line\": {}}}",
        string(event.kind.name()),
        number(event.seq),
        event.lane,
        number(event.timestamp),
        event.cpu,
        event.irql,
        event.pid,
        event.tid,
        event.requestor_pid,
        event.requestor_tid,
        number(event.request_id),
        number(event.file_id),
        event.detail,
        event.flags,
        event.kind as u8,
        string(irql_name(event.irql)),
        string(state),
        string(verdict.placement.name()),
        verdict.context_ok,
        verdict.irql_ok,
        string(line.as_str().trim_end()),
    )
}

/// Per-callback counts over `events`, in callback order, for the kinds that occur.
fn summary_json(events: &[Event]) -> String {
    let rows: Vec<String> = CallbackKind::ALL
        .into_iter()
        .filter_map(|kind| {
            let of_kind: Vec<&Event> = events.iter().filter(|event| event.kind == kind).collect();
            if of_kind.is_empty() {
                return None;
            }
            let placed = |placement: Placement| {
                of_kind
                    .iter()
                    .filter(|event| Verdict::of(event).placement == placement)
                    .count()
            };
            let consistent = of_kind
                .iter()
                .filter(|event| Verdict::of(event).consistent())
                .count();
            let irqls: BTreeSet<u8> = of_kind.iter().map(|event| event.irql).collect();
            let documented = kind.documented();
            Some(format!(
                "{{\"kind\": {}, \"kindValue\": {}, \"documentedContext\": {}, \
                 \"documentedIrql\": {}, \"count\": {}, \"requestorThread\": {}, \
                 \"otherThread\": {}, \"noRequestor\": {}, \"irqls\": [{}], \"consistent\": {}, \
                 \"inconsistent\": {}}}",
                string(kind.name()),
                kind as u8,
                string(documented.context.name()),
                string(documented.irql.describe()),
                of_kind.len(),
                placed(Placement::RequestorThread),
                placed(Placement::OtherThread),
                placed(Placement::NoRequestor),
                irqls
                    .iter()
                    .map(u8::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                consistent,
                of_kind.len() - consistent,
            ))
        })
        .collect();
    if rows.is_empty() {
        "[]".to_owned()
    } else {
        format!("[\n    {}\n  ]", rows.join(",\n    "))
    }
}

/// The callback table and the IRQL names, as the extension must have them.
fn kinds_json() -> String {
    const IRQLS: std::ops::RangeInclusive<u8> = 0..=15;
    let kinds: Vec<String> = CallbackKind::ALL
        .into_iter()
        .map(|kind| {
            let documented = kind.documented();
            let allowed: Vec<String> = IRQLS
                .filter(|&irql| documented.irql.allows(irql))
                .map(|irql| irql.to_string())
                .collect();
            format!(
                "{{\"value\": {}, \"name\": {}, \"context\": {}, \"irqlRule\": {}, \
                 \"irqlText\": {}, \"irqlAllowed\": [{}], \"hasRequestor\": {}, \"source\": {}}}",
                kind as u8,
                string(kind.name()),
                string(documented.context.name()),
                string(&format!("{:?}", documented.irql)),
                string(documented.irql.describe()),
                allowed.join(", "),
                kind.has_requestor(),
                string(documented.source),
            )
        })
        .collect();
    let irql_names: Vec<String> = IRQLS.map(|irql| string(irql_name(irql))).collect();
    format!(
        "{{\n  \"systemPid\": {},\n  \"irqlNames\": [{}],\n  \"kinds\": [\n    {}\n  ]\n}}\n",
        ctxscope_core::kind::SYSTEM_PID,
        irql_names.join(", "),
        kinds.join(",\n    ")
    )
}

fn ctx(pid: u32, tid: u32, irql: u8, cpu: u32) -> ExecContext {
    ExecContext {
        pid,
        tid,
        irql,
        cpu,
    }
}

/// A deterministic pseudo-random sequence (xorshift64), so fixtures are the same on every run.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        let index = self.below(items.len() as u64);
        items[usize::try_from(index).expect("below the length of a slice")]
    }
}

/// An event of `kind` as the driver would record it in a plausible context, drawn from `rng`.
#[allow(clippy::cast_possible_truncation)] // every `below(n)` fits the field it fills.
fn plausible(kind: CallbackKind, rng: &mut Xorshift, timestamp: u64) -> Event {
    const APP: Requestor = Requestor {
        pid: 0x1a4c,
        tid: 0x1b08,
    };
    let cpu = rng.below(12) as u32;
    let request = 0xffff_c004_0000_0000 | (rng.below(1 << 24) << 4);
    let file = 0xffff_c004_1000_0000 | (rng.below(1 << 16) << 4);
    let event = match kind.documented().context {
        ctxscope_core::ContextClass::System => Event::new(kind, ctx(4, 0x58 + 4 * cpu, 0, cpu), 0),
        ctxscope_core::ContextClass::Requestor => {
            Event::new(kind, ctx(APP.pid, APP.tid, 0, cpu), 0).with_requestor(Some(APP))
        }
        ctxscope_core::ContextClass::Arbitrary => {
            let irql = match kind {
                CallbackKind::EvtInterruptIsr => 5 + rng.below(4) as u8,
                CallbackKind::EvtTimerFunc | CallbackKind::EvtInterruptDpc => 2,
                CallbackKind::EvtFileClose => 0,
                _ => rng.pick(&[0, 2]),
            };
            let (pid, tid) = match rng.below(3) {
                0 => (APP.pid, APP.tid),
                1 => (0, 0),
                _ => (4, 0x40 + 4 * rng.below(64) as u32),
            };
            Event::new(kind, ctx(pid, tid, irql, cpu), 0)
                .with_requestor(kind.has_requestor().then_some(APP))
        }
    };
    let event = Event { timestamp, ..event };
    if kind.has_requestor() {
        event.with_ids(request, file).completing(rng.below(4) == 0)
    } else {
        event.with_detail(rng.next())
    }
}

fn empty() -> Fixture<2, 4> {
    Fixture::new("empty", "a ring nothing was recorded in")
}

fn partly_drained() -> Fixture<4, 8> {
    let mut fixture = Fixture::new(
        "partly_drained",
        "20 events over 6 CPUs, the 7 oldest drained",
    );
    let mut rng = Xorshift(0x5eed_0001);
    for index in 0..20u32 {
        let kind = CallbackKind::ALL[(index as usize * 5) % CallbackKind::COUNT];
        let mut event = plausible(kind, &mut rng, 1000 + u64::from(index) * 37);
        event.cpu = index % 6;
        fixture.record(event);
    }
    fixture.drain(7);
    fixture
}

fn full_with_drops() -> Fixture<2, 4> {
    let mut fixture = Fixture::new(
        "full_with_drops",
        "both lanes full and never drained: later events dropped and counted",
    );
    let mut rng = Xorshift(0x5eed_0002);
    for index in 0..11u64 {
        let mut event = plausible(CallbackKind::EvtInterruptIsr, &mut rng, 50 + index);
        event.cpu = if index < 6 { 0 } else { 3 };
        fixture.record(event);
    }
    fixture
}

fn wrapped() -> Fixture<2, 4> {
    let mut fixture = Fixture::new(
        "wrapped",
        "lanes wrapped over several laps; timestamps cross 2^53",
    );
    let mut rng = Xorshift(0x5eed_0003);
    let mut timestamp = MAX_SAFE_INTEGER - 20;
    for round in 0..9 {
        for cpu in [0, 0, 0, 1, 1] {
            timestamp += 1;
            let kind = CallbackKind::ALL[(round + cpu * 7) % CallbackKind::COUNT];
            let mut event = plausible(kind, &mut rng, timestamp);
            event.cpu = u32::try_from(cpu).expect("small");
            fixture.record(event);
        }
        fixture.drain(if round == 8 { 2 } else { 4 });
    }
    fixture
}

fn every_kind() -> Fixture<8, 32> {
    let mut fixture = Fixture::new(
        "every_kind",
        "every callback kind, with and without requestors, consistent and not; 5 drained",
    );
    let app = Requestor {
        pid: 0x1a4c,
        tid: 0x1b08,
    };
    let mut timestamp = 10_000;
    let mut add = |fixture: &mut Fixture<8, 32>, event: Event| {
        timestamp += 17;
        fixture.record(Event { timestamp, ..event });
    };
    let request = 0xffff_c004_2c3d_1a70;
    let file = 0xffff_c004_2b11_0e30;
    for kind in CallbackKind::ALL {
        let documented = kind.documented();
        let event = match documented.context {
            ctxscope_core::ContextClass::System => Event::new(kind, ctx(4, 0x6c, 0, 1), 0),
            ctxscope_core::ContextClass::Requestor => {
                Event::new(kind, ctx(app.pid, app.tid, 0, 2), 0)
                    .with_requestor(Some(app))
                    .with_ids(request, file)
            }
            ctxscope_core::ContextClass::Arbitrary => match kind {
                CallbackKind::EvtInterruptIsr => {
                    Event::new(kind, ctx(0, 0, 9, 3), 0).with_detail(1)
                }
                CallbackKind::EvtInterruptDpc | CallbackKind::EvtTimerFunc => {
                    Event::new(kind, ctx(4, 0x94, 2, 3), 0).with_detail(0x10)
                }
                _ => Event::new(kind, ctx(app.pid, app.tid, 0, 2), 0)
                    .with_requestor(Some(app))
                    .with_ids(request, file)
                    .with_detail(512),
            },
        };
        add(&mut fixture, event);
    }
    // EvtIoRead presented from a completion DPC: another thread, at DISPATCH.
    add(
        &mut fixture,
        Event::new(CallbackKind::EvtIoRead, ctx(0, 0, 2, 3), 0)
            .with_requestor(Some(Requestor {
                pid: app.pid,
                tid: app.tid + 4,
            }))
            .with_ids(request + 0x40, file)
            .completing(true),
    );
    // EvtIoWrite in another thread of the requestor's own process (a worker thread of the app).
    add(
        &mut fixture,
        Event::new(CallbackKind::EvtIoWrite, ctx(app.pid, app.tid + 8, 0, 2), 0)
            .with_requestor(Some(app))
            .with_ids(request + 0x80, file),
    );
    // Contradictions of the documentation, as a buggy driver or a wrong table would show.
    add(
        &mut fixture,
        Event::new(CallbackKind::EvtIoInCallerContext, ctx(4, 0x6c, 0, 5), 0)
            .with_requestor(Some(app)),
    );
    add(
        &mut fixture,
        Event::new(CallbackKind::EvtInterruptIsr, ctx(0, 0, 2, 6), 0),
    );
    // A System-thread callback outside the System process.
    add(
        &mut fixture,
        Event::new(CallbackKind::EvtDeviceD0Entry, ctx(900, 0x3a4, 0, 4), 0),
    );
    // A specific-context callback without a requestor proves nothing.
    add(
        &mut fixture,
        Event::new(CallbackKind::EvtFileCleanup, ctx(app.pid, app.tid, 0, 7), 0),
    );
    fixture.drain(5);
    fixture
}

fn reader_active() -> Fixture<2, 4> {
    let mut fixture = Fixture::new(
        "reader_active",
        "a dump taken while the app held the reader role",
    );
    let mut rng = Xorshift(0x5eed_0005);
    for index in 0..5 {
        fixture.record(plausible(CallbackKind::EvtIoWrite, &mut rng, 700 + index));
    }
    fixture.drain(2);
    fixture.hold_reader();
    fixture
}

fn driver_ring() -> Fixture<8, 512> {
    let mut fixture = Fixture::new(
        "driver_ring",
        "the driver's geometry (8 x 512): 7000 events, drained in bursts; laps and drops",
    );
    let mut rng = Xorshift(0x5eed_0006);
    let mut timestamp = 0x0000_0123_4567_0000;
    for burst in 0..7 {
        for _ in 0..1000 {
            timestamp += 1 + rng.below(400);
            let kind = rng.pick(&CallbackKind::ALL);
            fixture.record(plausible(kind, &mut rng, timestamp));
        }
        fixture.drain(if burst == 6 { 300 } else { 600 });
    }
    fixture
}

fn run(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    empty().write(dir)?;
    partly_drained().write(dir)?;
    full_with_drops().write(dir)?;
    wrapped().write(dir)?;
    every_kind().write(dir)?;
    reader_active().write(dir)?;
    driver_ring().write(dir)?;
    write_file(&dir.join("kinds.json"), kinds_json().as_bytes())
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!(
            "usage: cargo run -p ctxscope-core --example ring_image -- OUT_DIR\n\
             writes ring memory images and their expected decoding into OUT_DIR"
        );
        return ExitCode::from(2);
    };
    match run(&PathBuf::from(dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ring_image: {error}");
            ExitCode::FAILURE
        }
    }
}
