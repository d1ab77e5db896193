// ctxscope.js: a WinDbg JavaScript extension that reads ctxscope.sys's in-driver event ring,
// live (kernel debugging) or from a kernel or complete memory dump.
//
//   .scriptload <path>\tools\windbg\ctxscope.js
//   dx @$ctxscope = Debugger.State.Scripts.ctxscope.Contents
//   dx @$ctxscope.events()          events still in the ring, ready and unconsumed, in lane order
//   dx @$ctxscope.events(true)      also consumed events whose slot has not been reused yet
//   dx -g @$ctxscope.summary()      per callback: where it ran against its requestor
//   dx @$ctxscope.stats()           head / dropped / tail per lane, and totals
//
// The same three functions are also registered as function aliases: `dx @$ctxevents()`,
// `dx -g @$ctxsummary()`, `dx @$ctxstats()` (and `!ctxstats`).
//
// How it finds the ring: the driver exports two symbols side by side,
//   CTXSCOPE_EVENT_RING   the EventRing itself
//   CTXSCOPE_RING_LAYOUT  a RingLayout descriptor: magic "CTXR", version, lanes, lane capacity,
//                         strides and the offset of every field (crates/core/src/ring/image.rs)
// so nothing here hard-codes the ring's geometry. The 64-byte event record is the documented
// record format of crates/core/src/event.rs, versioned with the layout.
//
// Reading a slot (stamp encoding 1, "lap parity"): for lane position p in a lane of capacity CAP,
// a slot's stamp is 2 * floor(p / CAP) while free for the writer of p, and that + 1 once it holds
// p's event. So in slot i:
//   - an odd stamp s holds the ready (unconsumed) event of position (s - 1) / 2 * CAP + i;
//   - an even stamp s = 2k is free for position p' = k * CAP + i. If p' < head, a writer has
//     claimed p' and may be writing it: "in flight", the bytes are not an event and are not shown.
//     Otherwise, if k >= 1, the slot still holds the consumed event of p' - CAP, intact until a
//     writer claims p' ("consumed", shown by events(true)). k = 0 and p' >= head: never used.
// Every record also carries its own position (seq) and lane; a record that disagrees with its
// stamp is reported in stats().problems and not shown. Each event displays as the driver's log
// line (crates/core/src/logline.rs), character for character. This holds for a snapshot taken at any
// instant, including mid-record or mid-drain, so it is right for a live break-in and a crash dump.
//
// Structure: everything above the "WinDbg adapter" line is pure (bytes + layout in, plain objects
// out) and is tested under node by tools/windbg/test (run.sh), against ring images written by the
// Rust core's own encoder. The adapter below it only finds symbols and reads memory.

"use strict";

// ---------------------------------------------------------------------------------------------
// Formats (crates/core/src/ring/image.rs, crates/core/src/event.rs, crates/core/src/kind.rs)
// ---------------------------------------------------------------------------------------------

const RING_LAYOUT_MAGIC = 0x52585443; // the bytes "CTXR", little-endian
const RING_LAYOUT_VERSION = 1;
const STAMP_LAP_PARITY = 1;
const EVENT_SIZE = 64;
const FLAG_REQUESTOR = 1;
const FLAG_COMPLETES = 2;
const DEFINED_FLAGS = FLAG_REQUESTOR | FLAG_COMPLETES;
const SYSTEM_PID = 4;
const MODULE_NAME = "ctxscope";

// The RingLayout descriptor: u32 fields, little-endian, in this order.
const LAYOUT_FIELDS = [
    "magic", "version", "descriptorSize", "stampEncoding", "lanes", "laneCapacity", "ringSize",
    "lanesOffset", "laneStride", "headOffset", "droppedOffset", "tailOffset", "slotsOffset",
    "slotSize", "stampOffset", "eventOffset", "eventSize", "readerTakenOffset",
];
const LAYOUT_SIZE = LAYOUT_FIELDS.length * 4;

// IRQL rules of kind.rs's IrqlRule: the text the report shows and which IRQLs each allows.
const IRQL_RULES = {
    Passive: { text: "PASSIVE", allows: function (irql) { return irql === 0; } },
    AtMostDispatch: { text: "<=DISPATCH", allows: function (irql) { return irql <= 2; } },
    Dispatch: { text: "DISPATCH", allows: function (irql) { return irql === 2; } },
    Dirql: { text: "DIRQL", allows: function (irql) { return irql > 2; } },
    CallersIrql: { text: "caller's (<=DISPATCH)", allows: function (irql) { return irql <= 2; } },
};

// kind.rs's CallbackKind table: discriminant, name, documented context class and IRQL, and the
// Microsoft page that documents it. The node test compares this with CallbackKind::ALL.
const CALLBACK_KINDS = [
    kindEntry(0, "DriverEntry", "system", "Passive", false,
        "https://learn.microsoft.com/windows-hardware/drivers/kernel/writing-a-driverentry-routine"),
    kindEntry(1, "EvtDriverDeviceAdd", "system", "Passive", false,
        "https://learn.microsoft.com/windows-hardware/drivers/kernel/adddevice-routines-in-function-or-filter-drivers"),
    kindEntry(2, "EvtDevicePrepareHardware", "system", "Passive", false,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_prepare_hardware"),
    kindEntry(3, "EvtDeviceReleaseHardware", "system", "Passive", false,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_release_hardware"),
    kindEntry(4, "EvtDeviceD0Entry", "system", "Passive", false,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_d0_entry"),
    kindEntry(5, "EvtDeviceD0Exit", "system", "Passive", false,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_d0_exit"),
    kindEntry(6, "EvtDeviceFileCreate", "requestor", "Passive", true,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_device_file_create"),
    kindEntry(7, "EvtFileCleanup", "requestor", "Passive", true,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdffileobject/nc-wdffileobject-evt_wdf_file_cleanup"),
    kindEntry(8, "EvtFileClose", "arbitrary", "Passive", true,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdffileobject/nc-wdffileobject-evt_wdf_file_close"),
    kindEntry(9, "EvtIoInCallerContext", "requestor", "CallersIrql", true,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdfdevice/nc-wdfdevice-evt_wdf_io_in_caller_context"),
    kindEntry(10, "EvtIoRead", "arbitrary", "AtMostDispatch", true,
        "https://learn.microsoft.com/windows-hardware/drivers/wdf/request-handlers"),
    kindEntry(11, "EvtIoWrite", "arbitrary", "AtMostDispatch", true,
        "https://learn.microsoft.com/windows-hardware/drivers/wdf/request-handlers"),
    kindEntry(12, "EvtIoDeviceControl", "arbitrary", "AtMostDispatch", true,
        "https://learn.microsoft.com/windows-hardware/drivers/wdf/request-handlers"),
    kindEntry(13, "EvtTimerFunc", "arbitrary", "Dispatch", false,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdftimer/nc-wdftimer-evt_wdf_timer"),
    kindEntry(14, "EvtInterruptIsr", "arbitrary", "Dirql", false,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdfinterrupt/nc-wdfinterrupt-evt_wdf_interrupt_isr"),
    kindEntry(15, "EvtInterruptDpc", "arbitrary", "Dispatch", false,
        "https://learn.microsoft.com/windows-hardware/drivers/kernel/introduction-to-dpcs"),
    kindEntry(16, "EvtDriverUnload", "system", "Passive", false,
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdfdriver/nc-wdfdriver-evt_wdf_driver_unload"),
];

function kindEntry(value, name, context, irqlRule, hasRequestor, source) {
    return { value: value, name: name, context: context, irqlRule: irqlRule,
             hasRequestor: hasRequestor, source: source };
}

// kind.rs's irql_name.
function irqlName(irql) {
    switch (irql) {
        case 0: return "PASSIVE";
        case 1: return "APC";
        case 2: return "DISPATCH";
        default: return "DIRQL";
    }
}

// ---------------------------------------------------------------------------------------------
// Little-endian integers. Values are read as two 32-bit halves: the engine may have no BigInt.
// ---------------------------------------------------------------------------------------------

const TWO_POW_32 = 4294967296;
const SAFE_HIGH_LIMIT = 0x200000; // a u64 is below 2^53 (exact as a number) iff its high half is

function u32At(bytes, at) {
    return bytes[at] + bytes[at + 1] * 0x100 + bytes[at + 2] * 0x10000 + bytes[at + 3] * 0x1000000;
}

function u64At(bytes, at) {
    return { lo: u32At(bytes, at), hi: u32At(bytes, at + 4) };
}

function u64IsSafe(value) {
    return value.hi < SAFE_HIGH_LIMIT;
}

// The value as a number: exact below 2^53, nearest double above.
function u64Number(value) {
    return value.hi * TWO_POW_32 + value.lo;
}

// Exact decimal digits of a u64, by long division on 16-bit limbs.
function u64Decimal(value) {
    const limbs = [value.hi >>> 16, value.hi & 0xffff, value.lo >>> 16, value.lo & 0xffff];
    let digits = "";
    while (limbs[0] || limbs[1] || limbs[2] || limbs[3]) {
        let remainder = 0;
        for (let i = 0; i < 4; i++) {
            const current = remainder * 0x10000 + limbs[i];
            limbs[i] = Math.floor(current / 10);
            remainder = current % 10;
        }
        digits = remainder + digits;
    }
    return digits === "" ? "0" : digits;
}

// A counter-like u64 for display and JSON: a number when exact, else its decimal string.
function u64Plain(value) {
    return u64IsSafe(value) ? u64Number(value) : u64Decimal(value);
}

// A u64 as the log line writes `detail`: 0x and lower-case hex without leading zeros.
function u64Hex(value) {
    if (value.hi === 0) {
        return "0x" + value.lo.toString(16);
    }
    let low = value.lo.toString(16);
    while (low.length < 8) {
        low = "0" + low;
    }
    return "0x" + value.hi.toString(16) + low;
}

// ---------------------------------------------------------------------------------------------
// The layout descriptor
// ---------------------------------------------------------------------------------------------

function isPowerOfTwo(value) {
    return value > 0 && (value & (value - 1)) === 0;
}

function hex32(value) {
    let text = value.toString(16);
    while (text.length < 8) {
        text = "0" + text;
    }
    return "0x" + text;
}

// Reads and checks a RingLayout from its bytes (RingLayout::from_bytes in image.rs). Throws an
// Error saying what is wrong and what to do.
function parseLayout(bytes) {
    if (!bytes || bytes.length < LAYOUT_SIZE) {
        throw new Error("ctxscope: the ring layout needs " + LAYOUT_SIZE + " bytes, got " +
            (bytes ? bytes.length : 0));
    }
    const layout = {};
    for (let i = 0; i < LAYOUT_FIELDS.length; i++) {
        layout[LAYOUT_FIELDS[i]] = u32At(bytes, i * 4);
    }
    if (layout.magic !== RING_LAYOUT_MAGIC) {
        throw new Error("ctxscope: layout magic " + hex32(layout.magic) + " is not " +
            hex32(RING_LAYOUT_MAGIC) + " (\"CTXR\"): CTXSCOPE_RING_LAYOUT does not hold a ctxscope " +
            "ring layout; check that the loaded ctxscope.sys matches its symbols (.reload /f)");
    }
    if (layout.version !== RING_LAYOUT_VERSION) {
        throw new Error("ctxscope: ring layout version " + layout.version + " is not supported " +
            "(this script reads version " + RING_LAYOUT_VERSION + "); use the ctxscope.js from " +
            "the same source tree as the driver");
    }
    const inconsistent = function (what) {
        return new Error("ctxscope: inconsistent ring layout: " + what);
    };
    if (layout.descriptorSize !== LAYOUT_SIZE) {
        throw inconsistent("descriptor size " + layout.descriptorSize + ", expected " + LAYOUT_SIZE);
    }
    if (layout.stampEncoding !== STAMP_LAP_PARITY) {
        throw inconsistent("unknown stamp encoding " + layout.stampEncoding);
    }
    if (layout.eventSize !== EVENT_SIZE) {
        throw inconsistent("event size " + layout.eventSize + ", expected " + EVENT_SIZE);
    }
    if (layout.lanes < 1 || layout.lanes > 256 || !isPowerOfTwo(layout.laneCapacity)) {
        throw inconsistent("lanes must be 1..256 and lane capacity a power of two");
    }
    const inside = function (offset, width, container) { return offset + width <= container; };
    if (!inside(layout.stampOffset, 8, layout.slotSize) ||
        !inside(layout.eventOffset, EVENT_SIZE, layout.slotSize)) {
        throw inconsistent("stamp or event outside its slot");
    }
    if (layout.slotsOffset + layout.slotSize * layout.laneCapacity > layout.laneStride ||
        !inside(layout.headOffset, 8, layout.laneStride) ||
        !inside(layout.droppedOffset, 8, layout.laneStride) ||
        !inside(layout.tailOffset, 8, layout.laneStride)) {
        throw inconsistent("a lane's counters or slots lie outside the lane");
    }
    if (layout.lanesOffset + layout.laneStride * layout.lanes > layout.ringSize ||
        !inside(layout.readerTakenOffset, 1, layout.ringSize)) {
        throw inconsistent("lanes or reader flag lie outside the ring");
    }
    return layout;
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

function kindByValue(value) {
    return value < CALLBACK_KINDS.length ? CALLBACK_KINDS[value] : undefined;
}

// One event: the fields of the driver's log line (crates/core/src/logline.rs), with the same names
// and in the same order, then what the extension adds (the slot's state and the verdict). Its
// display string is the log line itself, so dx output can be compared with DebugView's.
class CtxEvent {
    constructor(fields) {
        Object.assign(this, fields);
    }

    toString() {
        let flags = this.flags.toString(16);
        if (flags.length < 2) {
            flags = "0" + flags;
        }
        return "ctxscope: " + this.kind + " seq=" + this.seq + " lane=" + this.lane +
            " ts=" + this.ts + " cpu=" + this.cpu + " irql=" + this.irql + " pid=" + this.pid +
            " tid=" + this.tid + " rpid=" + this.rpid + " rtid=" + this.rtid + " req=" + this.req +
            " file=" + this.file + " detail=" + this.detail + " flags=0x" + flags;
    }
}

// Decodes the 64-byte record at `at`: a CtxEvent, or a string saying why the bytes are not one
// (Event::from_bytes's checks).
function decodeEvent(bytes, at, state) {
    const kindValue = bytes[at + 60];
    const kind = kindByValue(kindValue);
    if (kind === undefined) {
        return "unknown callback kind " + kindValue;
    }
    const flags = bytes[at + 62];
    if (flags & ~DEFINED_FLAGS) {
        return "undefined flag bits 0x" + (flags & ~DEFINED_FLAGS).toString(16);
    }
    const pid = u32At(bytes, at + 40);
    const tid = u32At(bytes, at + 44);
    const rpid = u32At(bytes, at + 48);
    const rtid = u32At(bytes, at + 52);
    const hasRequestor = (flags & FLAG_REQUESTOR) !== 0;
    if (!hasRequestor && (rpid !== 0 || rtid !== 0)) {
        return "requestor fields set without the requestor flag";
    }
    const irql = bytes[at + 61];
    const placement = !hasRequestor ? "none" : (rpid === pid && rtid === tid ? "requestor" : "other");
    let contextOk;
    switch (kind.context) {
        case "requestor": contextOk = placement === "requestor"; break;
        case "system": contextOk = pid === SYSTEM_PID; break;
        default: contextOk = true;
    }
    return new CtxEvent({
        kind: kind.name,
        seq: u64Plain(u64At(bytes, at)),
        lane: bytes[at + 63],
        ts: u64Plain(u64At(bytes, at + 8)),
        cpu: u32At(bytes, at + 56),
        irql: irql,
        pid: pid,
        tid: tid,
        rpid: rpid,
        rtid: rtid,
        req: u64Plain(u64At(bytes, at + 16)),
        file: u64Plain(u64At(bytes, at + 24)),
        detail: u64Hex(u64At(bytes, at + 32)),
        flags: flags,
        kindValue: kindValue,
        irqlName: irqlName(irql),
        state: state,
        placement: placement,
        contextOk: contextOk,
        irqlOk: IRQL_RULES[kind.irqlRule].allows(irql),
    });
}

// ---------------------------------------------------------------------------------------------
// Lanes and the ring
// ---------------------------------------------------------------------------------------------

// Decodes one lane whose first byte is bytes[base]. Returns its counters, its ready and consumed
// events (each in position order), the positions being written, and any problems found.
function decodeLane(layout, bytes, base, laneIndex) {
    if (base + layout.laneStride > bytes.length) {
        throw new Error("ctxscope: lane " + laneIndex + " needs bytes up to " +
            (base + layout.laneStride) + ", only " + bytes.length + " given");
    }
    const cap = layout.laneCapacity;
    const headValue = u64At(bytes, base + layout.headOffset);
    const droppedValue = u64At(bytes, base + layout.droppedOffset);
    const tailValue = u64At(bytes, base + layout.tailOffset);
    const head = u64Number(headValue);
    const tail = u64Number(tailValue);
    const lane = {
        lane: laneIndex,
        head: head,
        dropped: u64Number(droppedValue),
        tail: tail,
        ready: [],
        consumed: [],
        inFlight: [],
        problems: [],
    };
    const problem = function (text) { lane.problems.push("lane " + laneIndex + ": " + text); };
    if (!u64IsSafe(headValue) || !u64IsSafe(tailValue) || !u64IsSafe(droppedValue)) {
        problem("a counter exceeds 2^53; positions below are approximate");
    }
    if (tail > head) {
        problem("tail " + tail + " is ahead of head " + head);
    }
    for (let slot = 0; slot < cap; slot++) {
        const at = base + layout.slotsOffset + slot * layout.slotSize;
        const stampValue = u64At(bytes, at + layout.stampOffset);
        const stamp = u64Number(stampValue);
        const lap = Math.floor(stamp / 2);
        const record = at + layout.eventOffset;
        let position;
        let state;
        if (stamp % 2 === 1) {
            position = lap * cap + slot;
            state = "ready";
        } else if (lap * cap + slot < head) {
            lane.inFlight.push(lap * cap + slot);
            continue;
        } else if (lap >= 1) {
            position = (lap - 1) * cap + slot;
            state = "consumed";
        } else {
            continue; // never used
        }
        const event = decodeEvent(bytes, record, state);
        if (typeof event === "string") {
            problem("slot " + slot + " (" + state + " position " + position + "): " + event);
            continue;
        }
        if (event.seq !== position || event.lane !== laneIndex) {
            problem("slot " + slot + ": stamp says " + state + " position " + position +
                " but the record says lane " + event.lane + " position " + event.seq);
            continue;
        }
        if (state === "ready" && (position < tail || position >= head)) {
            problem("slot " + slot + ": ready position " + position + " outside [tail " + tail +
                ", head " + head + ")");
        }
        (state === "ready" ? lane.ready : lane.consumed).push(event);
    }
    const bySeq = function (a, b) { return compareNumbers(a.seq, b.seq); };
    lane.ready.sort(bySeq);
    lane.consumed.sort(bySeq);
    lane.inFlight.sort(compareNumbers);
    return lane;
}

// Orders plain numbers and the decimal strings u64Plain uses beyond 2^53.
function compareNumbers(a, b) {
    if (typeof a === "number" && typeof b === "number") {
        return a - b;
    }
    const x = String(a);
    const y = String(b);
    return x.length !== y.length ? x.length - y.length : (x < y ? -1 : (x > y ? 1 : 0));
}

// A snapshot of the ring from decoded lanes (null for a lane whose memory could not be read).
function assemble(layout, lanes, readerActive, problems) {
    const all = (problems || []).slice();
    for (let i = 0; i < lanes.length; i++) {
        if (lanes[i] !== null) {
            for (let j = 0; j < lanes[i].problems.length; j++) {
                all.push(lanes[i].problems[j]);
            }
        }
    }
    return { layout: layout, lanes: lanes, readerActive: readerActive, problems: all };
}

// Decodes a whole ring image (the bytes at CTXSCOPE_EVENT_RING, layout.ringSize of them).
function decodeRing(layout, bytes) {
    if (!bytes || bytes.length < layout.ringSize) {
        throw new Error("ctxscope: the ring needs " + layout.ringSize + " bytes, got " +
            (bytes ? bytes.length : 0));
    }
    const lanes = [];
    for (let i = 0; i < layout.lanes; i++) {
        lanes.push(decodeLane(layout, bytes, layout.lanesOffset + i * layout.laneStride, i));
    }
    return assemble(layout, lanes, bytes[layout.readerTakenOffset] !== 0, []);
}

// ---------------------------------------------------------------------------------------------
// Views: events, summary, stats
// ---------------------------------------------------------------------------------------------

// The snapshot's events in lane order, then position order: ready ones, and with
// includeConsumed the consumed-but-intact ones too.
function eventsOf(snapshot, includeConsumed) {
    const out = [];
    for (let i = 0; i < snapshot.lanes.length; i++) {
        const lane = snapshot.lanes[i];
        if (lane === null) {
            continue;
        }
        const list = includeConsumed ? lane.consumed.concat(lane.ready) : lane.ready;
        const sorted = list.slice().sort(function (a, b) { return compareNumbers(a.seq, b.seq); });
        for (let j = 0; j < sorted.length; j++) {
            out.push(sorted[j]);
        }
    }
    return out;
}

class SummaryRow {
    constructor(fields) {
        Object.assign(this, fields);
    }

    toString() {
        return this.kind + ": " + this.count + " (requestor thread " + this.requestorThread +
            ", other thread " + this.otherThread + ", no requestor " + this.noRequestor +
            "), documented " + this.documentedContext + " at " + this.documentedIrql +
            (this.inconsistent ? ", " + this.inconsistent + " inconsistent" : ", consistent");
    }
}

// Per callback kind (in kind order, the kinds that occur): where the events ran relative to
// their requestor, at which IRQLs, against the documented context and IRQL.
function summarize(events) {
    const rows = [];
    for (let k = 0; k < CALLBACK_KINDS.length; k++) {
        const kind = CALLBACK_KINDS[k];
        const ofKind = events.filter(function (event) { return event.kindValue === kind.value; });
        if (ofKind.length === 0) {
            continue;
        }
        const placed = function (placement) {
            return ofKind.filter(function (event) { return event.placement === placement; }).length;
        };
        const consistent = ofKind.filter(function (event) {
            return event.contextOk && event.irqlOk;
        }).length;
        const irqls = [];
        for (let i = 0; i < ofKind.length; i++) {
            if (irqls.indexOf(ofKind[i].irql) < 0) {
                irqls.push(ofKind[i].irql);
            }
        }
        irqls.sort(compareNumbers);
        rows.push(new SummaryRow({
            kind: kind.name,
            kindValue: kind.value,
            documentedContext: kind.context,
            documentedIrql: IRQL_RULES[kind.irqlRule].text,
            count: ofKind.length,
            requestorThread: placed("requestor"),
            otherThread: placed("other"),
            noRequestor: placed("none"),
            irqls: irqls,
            consistent: consistent,
            inconsistent: ofKind.length - consistent,
        }));
    }
    return rows;
}

class LaneStats {
    constructor(fields) {
        Object.assign(this, fields);
    }

    toString() {
        return "lane " + this.lane + ": head " + this.head + ", dropped " + this.dropped +
            ", tail " + this.tail + ", pending " + this.pending;
    }
}

// Counters per lane and in total (RingStats in ring.rs), plus what the decoder found.
function statsOf(snapshot) {
    const lanes = [];
    const totals = { recorded: 0, dropped: 0, consumed: 0, pending: 0, produced: 0 };
    for (let i = 0; i < snapshot.lanes.length; i++) {
        const lane = snapshot.lanes[i];
        if (lane === null) {
            continue;
        }
        lanes.push(new LaneStats({
            lane: lane.lane,
            head: lane.head,
            dropped: lane.dropped,
            tail: lane.tail,
            pending: Math.max(0, lane.head - lane.tail),
            ready: lane.ready.length,
            consumedIntact: lane.consumed.length,
            inFlight: lane.inFlight.length,
        }));
        totals.recorded += lane.head;
        totals.dropped += lane.dropped;
        totals.consumed += lane.tail;
    }
    totals.pending = Math.max(0, totals.recorded - totals.consumed);
    totals.produced = totals.recorded + totals.dropped;
    return {
        lanes: lanes,
        totals: totals,
        readerActive: snapshot.readerActive,
        problems: snapshot.problems,
    };
}

// ---------------------------------------------------------------------------------------------
// WinDbg adapter: symbols and memory. Nothing above this line touches `host`.
// ---------------------------------------------------------------------------------------------

function requireHost() {
    if (typeof host === "undefined") {
        throw new Error("ctxscope: this needs WinDbg's JavaScript provider (.scriptload ctxscope.js)");
    }
}

// The address of ctxscope!<name>. getModuleSymbolAddress needs the symbol's type information (the
// package's full PDB has it); `x` also finds a public symbol from a stripped PDB.
function symbolAddress(name) {
    let failure = "";
    try {
        const address = host.getModuleSymbolAddress(MODULE_NAME, name);
        if (address !== undefined && address !== null) {
            return address;
        }
    } catch (error) {
        failure = " (" + error.message + ")";
    }
    const lines = host.namespace.Debugger.Utility.Control.ExecuteCommand(
        "x " + MODULE_NAME + "!" + name);
    for (const line of lines) {
        const match = /^\s*([0-9a-fA-F]{8}`?[0-9a-fA-F]{8}|[0-9a-fA-F]{8,16})\s+\S*!/.exec(String(line));
        if (match) {
            return host.parseInt64(match[1].replace("`", ""), 16);
        }
    }
    throw new Error("ctxscope: symbol " + MODULE_NAME + "!" + name + " not found" + failure +
        ". Is ctxscope.sys loaded (lm m ctxscope), and are its symbols loaded (.sympath+ the " +
        "package folder holding ctxscope.pdb, then .reload /f ctxscope.sys)?");
}

function readBytes(address, count) {
    return host.memory.readMemoryValues(address, count, 1, false);
}

// Reads the ring out of the target, lane by lane, so that a dump missing some pages still shows
// the lanes it has.
function readTarget() {
    requireHost();
    const layout = parseLayout(readBytes(symbolAddress("CTXSCOPE_RING_LAYOUT"), LAYOUT_SIZE));
    const ring = symbolAddress("CTXSCOPE_EVENT_RING");
    const lanes = [];
    const problems = [];
    for (let i = 0; i < layout.lanes; i++) {
        const offset = layout.lanesOffset + i * layout.laneStride;
        let bytes;
        try {
            bytes = readBytes(ring.add(offset), layout.laneStride);
        } catch (error) {
            problems.push("lane " + i + ": memory at ring+0x" + offset.toString(16) +
                " cannot be read (" + error.message + "); a small memory dump does not hold " +
                "driver data, use a kernel or complete memory dump");
            lanes.push(null);
            continue;
        }
        lanes.push(decodeLane(layout, bytes, 0, i));
    }
    let readerActive = null;
    try {
        readerActive = readBytes(ring.add(layout.readerTakenOffset), 1)[0] !== 0;
    } catch (error) {
        problems.push("reader flag cannot be read (" + error.message + ")");
    }
    return assemble(layout, lanes, readerActive, problems);
}

// dx @$ctxscope.events([includeConsumed])
function events(includeConsumed) {
    return eventsOf(readTarget(), includeConsumed === true);
}

// dx -g @$ctxscope.summary([includeConsumed])
function summary(includeConsumed) {
    return summarize(eventsOf(readTarget(), includeConsumed === true));
}

// dx @$ctxscope.stats()
function stats() {
    return statsOf(readTarget());
}

function initializeScript() {
    return [
        new host.apiVersionSupport(1, 7),
        new host.functionAlias(events, "ctxevents"),
        new host.functionAlias(summary, "ctxsummary"),
        new host.functionAlias(stats, "ctxstats"),
    ];
}

if (typeof module !== "undefined" && module.exports) {
    module.exports = {
        RING_LAYOUT_MAGIC: RING_LAYOUT_MAGIC,
        RING_LAYOUT_VERSION: RING_LAYOUT_VERSION,
        LAYOUT_FIELDS: LAYOUT_FIELDS,
        LAYOUT_SIZE: LAYOUT_SIZE,
        EVENT_SIZE: EVENT_SIZE,
        SYSTEM_PID: SYSTEM_PID,
        CALLBACK_KINDS: CALLBACK_KINDS,
        IRQL_RULES: IRQL_RULES,
        irqlName: irqlName,
        u64Decimal: u64Decimal,
        u64Hex: u64Hex,
        u64Plain: u64Plain,
        parseLayout: parseLayout,
        decodeEvent: decodeEvent,
        decodeLane: decodeLane,
        decodeRing: decodeRing,
        assemble: assemble,
        eventsOf: eventsOf,
        summarize: summarize,
        statsOf: statsOf,
        events: events,
        summary: summary,
        stats: stats,
    };
}
