//! Writes a seed corpus for the fuzz targets, made by the encoders at run time (no committed
//! binaries): `make_seeds <corpus dir>` fills `<corpus dir>/protocol_decode` and
//! `<corpus dir>/logline_parse`.

use std::fs;
use std::path::{Path, PathBuf};

use ctxscope_core::event::{Event, ExecContext, Requestor};
use ctxscope_core::kind::CallbackKind;
use ctxscope_core::logline::LineBuf;
use ctxscope_core::protocol::{
    AlignedBuf, CompletedBy, ConfigureRequest, DriverCounters, DriverVersion, EventsReplyHeader,
    GetEventsRequest, InfoReply, LogLevel, Mode, NeitherDemoReply, ProtocolError, ReadReceipt,
    ResetReply, TrailEntry, checksum, encode_events_reply,
};
use ctxscope_core::ring::RingStats;

fn event(kind: CallbackKind, n: u32) -> Event {
    let mut event = Event::new(
        kind,
        ExecContext {
            pid: 4,
            tid: 100 + n,
            irql: 2,
            cpu: n % 4,
        },
        1_000_000 + u64::from(n),
    )
    .with_ids(u64::from(n), 9)
    .with_detail(u64::from(n) << 8);
    if kind.has_requestor() {
        event = event.with_requestor(Some(Requestor {
            pid: 1200,
            tid: 1204,
        }));
    }
    event.seq = u64::from(n);
    event.lane = (n % 4) as u8;
    event
}

fn write(dir: &Path, name: &str, selector: Option<u8>, bytes: &[u8]) -> std::io::Result<()> {
    let mut data = Vec::with_capacity(bytes.len() + 1);
    data.extend(selector);
    data.extend_from_slice(bytes);
    fs::write(dir.join(name), data)
}

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(std::env::args_os().nth(1).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "usage: make_seeds <corpus dir>",
        )
    })?);
    let protocol = root.join("protocol_decode");
    let logline = root.join("logline_parse");
    fs::create_dir_all(&protocol)?;
    fs::create_dir_all(&logline)?;
    protocol_seeds(&protocol)?;
    logline_seeds(&logline)?;
    println!("seeds written under {}", root.display());
    Ok(())
}

/// One event of every kind.
fn events() -> Vec<Event> {
    CallbackKind::ALL
        .iter()
        .zip(0..)
        .map(|(&kind, n)| event(kind, n))
        .collect()
}

fn encode_error(error: ProtocolError) -> std::io::Error {
    std::io::Error::other(error.to_string())
}

/// Every message, each behind the selector byte of its decoder.
fn protocol_seeds(protocol: &Path) -> std::io::Result<()> {
    let mut buf = Box::new(AlignedBuf::<4096>::new());
    let info = InfoReply {
        driver_version: DriverVersion {
            major: 0,
            minor: 1,
            patch: 0,
        },
        mode: Mode::Edu,
        counter_frequency: 10_000_000,
        ring_lanes: 8,
        lane_capacity: 1024,
        ring: RingStats {
            recorded: 10,
            dropped: 1,
            consumed: 7,
        },
        counters: DriverCounters {
            interrupts: 3,
            timer_ticks: 40,
            ..DriverCounters::default()
        },
        timer_period_ms: 100,
        log_level: LogLevel::Lifecycle,
    };
    let n = info.encode(buf.as_mut_bytes()).map_err(encode_error)?;
    write(protocol, "info", Some(0), &buf.0[..n])?;
    let n = GetEventsRequest { cursor: 42 }
        .encode(buf.as_mut_bytes())
        .map_err(encode_error)?;
    write(protocol, "get-events-request", Some(1), &buf.0[..n])?;
    let n = ResetReply { discarded: 5 }
        .encode(buf.as_mut_bytes())
        .map_err(encode_error)?;
    write(protocol, "reset", Some(2), &buf.0[..n])?;
    let configure = ConfigureRequest {
        timer_period_ms: 250,
        log_level: LogLevel::Every,
    };
    let n = configure.encode(buf.as_mut_bytes()).map_err(encode_error)?;
    write(protocol, "configure", Some(3), &buf.0[..n])?;
    let present = |kind, tid| TrailEntry {
        kind,
        irql: 2,
        present: true,
        pid: 4,
        tid,
        cpu: 1,
        timestamp: u64::from(tid),
    };
    let receipt = ReadReceipt {
        request_id: 7,
        requestor_pid: 1200,
        requestor_tid: 1204,
        mode: Mode::Edu,
        completed_by: CompletedBy::InterruptDpc,
        trail: [
            present(CallbackKind::EvtIoInCallerContext, 1204),
            present(CallbackKind::EvtIoRead, 1204),
            present(CallbackKind::EvtInterruptIsr, 8),
            present(CallbackKind::EvtInterruptDpc, 8),
            present(CallbackKind::EvtInterruptDpc, 8),
        ],
    };
    let n = receipt.encode(buf.as_mut_bytes()).map_err(encode_error)?;
    write(protocol, "receipt", Some(4), &buf.0[..n])?;
    let demo = NeitherDemoReply {
        locked_by_pid: 1200,
        locked_by_tid: 1204,
        filled_by_pid: 4,
        filled_by_tid: 8,
        input_len: 5,
        input_checksum: checksum(b"hello"),
    };
    let n = demo.encode(buf.as_mut_bytes()).map_err(encode_error)?;
    write(protocol, "neither-demo", Some(5), &buf.0[..n])?;

    let events = events();
    let header = EventsReplyHeader {
        cursor: 100,
        next_cursor: 100 + events.len() as u64,
        stats: RingStats {
            recorded: 200,
            dropped: 2,
            consumed: 117,
        },
    };
    let n = encode_events_reply(&header, &events, buf.as_mut_bytes()).map_err(encode_error)?;
    write(protocol, "events-reply", Some(6), &buf.0[..n])?;
    let empty = EventsReplyHeader {
        cursor: 3,
        next_cursor: 3,
        stats: RingStats::default(),
    };
    let n = encode_events_reply(&empty, &[], buf.as_mut_bytes()).map_err(encode_error)?;
    write(protocol, "events-reply-empty", Some(7), &buf.0[..n])?;
    Ok(())
}

/// Lines of every kind, in the forms debuggers save, and one line that is not ours.
fn logline_seeds(logline: &Path) -> std::io::Result<()> {
    let events = events();
    for (n, event) in events.iter().enumerate() {
        let line = LineBuf::from_event(event);
        write(logline, &format!("line-{n}"), None, line.as_bytes())?;
    }
    let line = LineBuf::from_event(&events[10]);
    let body = line.as_str().trim_end();
    write(
        logline,
        "debugview-elapsed",
        None,
        format!("17\t0.00012345\t{body}\r\n").as_bytes(),
    )?;
    write(
        logline,
        "debugview-clock",
        None,
        format!("18\t12:34:56.789\t{body}\r\n").as_bytes(),
    )?;
    write(
        logline,
        "windbg",
        None,
        format!("0: kd> {body}\n").as_bytes(),
    )?;
    write(
        logline,
        "other-driver",
        None,
        b"19\t0.5\tnvlddmkm: hello\r\n",
    )?;
    Ok(())
}
