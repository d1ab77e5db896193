// Tests of ctxscope.js's pure decoder against ring images written by the Rust core's own encoder
// (crates/core/examples/ring_image.rs). Run with run.sh, or:
//   cargo run -p ctxscope-core --example ring_image -- DIR
//   CTXSCOPE_FIXTURES=DIR node --test tools/windbg/test/
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");

const ext = require("../ctxscope.js");

const dir = process.env.CTXSCOPE_FIXTURES;
if (!dir || !fs.existsSync(dir)) {
    throw new Error("CTXSCOPE_FIXTURES must name the directory written by `cargo run -p " +
        "ctxscope-core --example ring_image -- DIR` (tools/windbg/test/run.sh does both); got " +
        JSON.stringify(dir));
}

const EXPECTED_FIXTURES = ["driver_ring", "empty", "every_kind", "full_with_drops",
    "partly_drained", "reader_active", "wrapped"];
const SUFFIX = ".expected.json";
const names = fs.readdirSync(dir)
    .filter((file) => file.endsWith(SUFFIX))
    .map((file) => file.slice(0, -SUFFIX.length))
    .sort();

function load(name) {
    return {
        layoutBytes: fs.readFileSync(path.join(dir, name + ".layout.bin")),
        ringBytes: fs.readFileSync(path.join(dir, name + ".ring.bin")),
        expected: JSON.parse(fs.readFileSync(path.join(dir, name + SUFFIX), "utf8")),
    };
}

// Own enumerable fields only: what dx shows, minus the display methods.
function plain(objects) {
    return objects.map((object) => Object.assign({}, object));
}

// Expected events without their log line, which is checked against toString() separately.
function withoutLine(events) {
    return events.map((event) => {
        const copy = Object.assign({}, event);
        delete copy.line;
        return copy;
    });
}

test("every fixture the generator writes is here", () => {
    assert.deepEqual(names, EXPECTED_FIXTURES);
});

for (const name of names) {
    test(`${name}: layout descriptor`, () => {
        const { layoutBytes, ringBytes, expected } = load(name);
        const layout = ext.parseLayout(layoutBytes);
        assert.deepEqual(layout, expected.layout);
        assert.equal(layoutBytes.length, ext.LAYOUT_SIZE);
        assert.equal(ringBytes.length, layout.ringSize);
    });

    test(`${name}: ready events, in lane and position order`, () => {
        const { layoutBytes, ringBytes, expected } = load(name);
        const snapshot = ext.decodeRing(ext.parseLayout(layoutBytes), ringBytes);
        assert.deepEqual(snapshot.problems, []);
        const events = ext.eventsOf(snapshot, false);
        assert.deepEqual(plain(events), withoutLine(expected.events));
        // Each event displays as the driver's own log line (crates/core/src/logline.rs).
        assert.deepEqual(events.map(String), expected.events.map((event) => event.line));
    });

    test(`${name}: with consumed events whose slots are not reused yet`, () => {
        const { layoutBytes, ringBytes, expected } = load(name);
        const snapshot = ext.decodeRing(ext.parseLayout(layoutBytes), ringBytes);
        const all = expected.events.concat(expected.consumed).sort(
            (a, b) => a.lane - b.lane || Number(a.seq) - Number(b.seq));
        const events = ext.eventsOf(snapshot, true);
        assert.deepEqual(plain(events), withoutLine(all));
        assert.deepEqual(events.map(String), all.map((event) => event.line));
    });

    test(`${name}: summary`, () => {
        const { layoutBytes, ringBytes, expected } = load(name);
        const snapshot = ext.decodeRing(ext.parseLayout(layoutBytes), ringBytes);
        assert.deepEqual(plain(ext.summarize(ext.eventsOf(snapshot, false))), expected.summary);
        assert.deepEqual(plain(ext.summarize(ext.eventsOf(snapshot, true))), expected.summaryAll);
    });

    test(`${name}: stats`, () => {
        const { layoutBytes, ringBytes, expected } = load(name);
        const stats = ext.statsOf(ext.decodeRing(ext.parseLayout(layoutBytes), ringBytes));
        assert.deepEqual(plain(stats.lanes), expected.stats.lanes);
        assert.deepEqual(stats.totals, expected.stats.totals);
        assert.equal(stats.readerActive, expected.stats.readerActive);
        assert.deepEqual(stats.problems, []);
    });
}

test("the callback table is the Rust core's (kinds.json from CallbackKind::ALL)", () => {
    const rust = JSON.parse(fs.readFileSync(path.join(dir, "kinds.json"), "utf8"));
    assert.equal(rust.kinds.length, 17);
    const levels = [...Array(16).keys()];
    const mine = ext.CALLBACK_KINDS.map((kind) => ({
        value: kind.value,
        name: kind.name,
        context: kind.context,
        irqlRule: kind.irqlRule,
        irqlText: ext.IRQL_RULES[kind.irqlRule].text,
        irqlAllowed: levels.filter((irql) => ext.IRQL_RULES[kind.irqlRule].allows(irql)),
        hasRequestor: kind.hasRequestor,
        source: kind.source,
    }));
    assert.deepEqual(mine, rust.kinds);
    assert.deepEqual(levels.map(ext.irqlName), rust.irqlNames);
    assert.equal(ext.SYSTEM_PID, rust.systemPid);
});

// Damaged or racing images: the decoder reports, never misreads and never throws on slot data.
function everyKind() {
    const { layoutBytes, ringBytes, expected } = load("every_kind");
    return { layout: ext.parseLayout(layoutBytes), bytes: Buffer.from(ringBytes), expected };
}

function slotAt(layout, lane, slot) {
    return layout.lanesOffset + lane * layout.laneStride + layout.slotsOffset +
        slot * layout.slotSize;
}

function firstReady(expected) {
    const event = expected.events[0];
    return { lane: event.lane, seq: event.seq };
}

test("a slot claimed but not yet published is in flight, not an event", () => {
    const { layout, bytes, expected } = everyKind();
    const { lane, seq } = firstReady(expected);
    const at = slotAt(layout, lane, seq % layout.laneCapacity) + layout.stampOffset;
    // The free stamp of its position: what a writer that claimed it but had not published shows.
    bytes.writeBigUInt64LE(BigInt(2 * Math.floor(seq / layout.laneCapacity)), at);
    const snapshot = ext.decodeRing(layout, bytes);
    assert.deepEqual(snapshot.problems, []);
    const events = ext.eventsOf(snapshot, false);
    assert.equal(events.length, expected.events.length - 1);
    assert.ok(!events.some((event) => event.lane === lane && event.seq === seq));
    assert.deepEqual(snapshot.lanes[lane].inFlight, [seq]);
    assert.equal(ext.statsOf(snapshot).lanes[lane].inFlight, 1);
});

test("a record that contradicts its stamp is reported and left out", () => {
    const { layout, bytes, expected } = everyKind();
    const { lane, seq } = firstReady(expected);
    const at = slotAt(layout, lane, seq % layout.laneCapacity) + layout.eventOffset;
    bytes.writeBigUInt64LE(BigInt(seq + 7), at);
    const snapshot = ext.decodeRing(layout, bytes);
    assert.equal(snapshot.problems.length, 1);
    assert.match(snapshot.problems[0], new RegExp(`lane ${lane}: .*position ${seq} .*position ${seq + 7}`));
    assert.equal(ext.eventsOf(snapshot, false).length, expected.events.length - 1);
});

test("undecodable records are reported with the reason", () => {
    const cases = [
        [60, 99, /unknown callback kind 99/],
        [62, 0x80, /undefined flag bits 0x80/],
    ];
    for (const [offset, value, reason] of cases) {
        const { layout, bytes, expected } = everyKind();
        const { lane, seq } = firstReady(expected);
        bytes[slotAt(layout, lane, seq % layout.laneCapacity) + layout.eventOffset + offset] = value;
        const snapshot = ext.decodeRing(layout, bytes);
        assert.equal(snapshot.problems.length, 1);
        assert.match(snapshot.problems[0], reason);
        assert.equal(ext.eventsOf(snapshot, false).length, expected.events.length - 1);
    }
    // Requestor fields without the requestor flag.
    const { layout, bytes, expected } = everyKind();
    const target = expected.events.find((event) => event.placement === "none");
    const at = slotAt(layout, target.lane, target.seq % layout.laneCapacity) + layout.eventOffset;
    bytes.writeUInt32LE(1234, at + 48);
    const snapshot = ext.decodeRing(layout, bytes);
    assert.match(snapshot.problems.join("\n"), /requestor fields set without the requestor flag/);
});

test("counters that contradict each other are reported", () => {
    const { layout, bytes } = everyKind();
    const base = layout.lanesOffset + 1 * layout.laneStride;
    bytes.writeBigUInt64LE(1000n, base + layout.tailOffset);
    const snapshot = ext.decodeRing(layout, bytes);
    assert.match(snapshot.problems.join("\n"), /lane 1: tail 1000 is ahead of head/);
});

test("bad descriptors and short images are refused with what to do", () => {
    const { layoutBytes } = load("driver_ring");
    const badMagic = Buffer.from(layoutBytes);
    badMagic[0] = 0x58;
    assert.throws(() => ext.parseLayout(badMagic), /magic .* is not 0x52585443 \("CTXR"\)/);
    const badVersion = Buffer.from(layoutBytes);
    badVersion.writeUInt32LE(2, 4);
    assert.throws(() => ext.parseLayout(badVersion), /version 2 is not supported/);
    const badStride = Buffer.from(layoutBytes);
    const strideAt = 4 * ext.LAYOUT_FIELDS.indexOf("laneStride");
    badStride.writeUInt32LE(badStride.readUInt32LE(strideAt) - 64, strideAt);
    assert.throws(() => ext.parseLayout(badStride), /inconsistent ring layout/);
    assert.throws(() => ext.parseLayout(layoutBytes.subarray(0, 20)), /needs 72 bytes, got 20/);
    const layout = ext.parseLayout(layoutBytes);
    assert.throws(() => ext.decodeRing(layout, Buffer.alloc(100)), /needs 296000 bytes, got 100/);
});

test("64-bit values are exact beyond 2^53", () => {
    assert.equal(ext.u64Decimal({ hi: 0xffffffff, lo: 0xffffffff }), "18446744073709551615");
    assert.equal(ext.u64Decimal({ hi: 0x200000, lo: 0 }), "9007199254740992");
    assert.equal(ext.u64Decimal({ hi: 0, lo: 0 }), "0");
    assert.equal(ext.u64Plain({ hi: 0x1fffff, lo: 0xffffffff }), 9007199254740991);
    assert.equal(ext.u64Plain({ hi: 0x200000, lo: 1 }), "9007199254740993");
    assert.equal(ext.u64Hex({ hi: 0xffffc004, lo: 0x2c3d1a70 }), "0xffffc0042c3d1a70");
    assert.equal(ext.u64Hex({ hi: 1, lo: 0x2f }), "0x10000002f");
    assert.equal(ext.u64Hex({ hi: 0, lo: 0 }), "0x0");
});

test("the WinDbg entry points say they need WinDbg", () => {
    assert.throws(() => ext.events(), /needs WinDbg's JavaScript provider/);
    assert.throws(() => ext.summary(), /needs WinDbg's JavaScript provider/);
    assert.throws(() => ext.stats(), /needs WinDbg's JavaScript provider/);
});
