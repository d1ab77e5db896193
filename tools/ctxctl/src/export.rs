//! Machine-readable forms of a run: the JSON export (read back by `ctxctl report`), CSV (one row
//! per event) and the driver's own log lines.
//!
//! # JSON export (schema version 1)
//! ```text
//! {
//!   "meta": {
//!     "schema_version": 1, "tool": "ctxctl 0.1.0",
//!     "source": "driver" | "simulator" | "log",
//!     "origin": "live" | "simulated" | "debugview-log" | "windbg-log" | "plain-log",
//!     "mode": "edu" | "root" | "starting" | null, "seed": N | null, "cpus": N | null,
//!     "counter_frequency": N | null, "driver_version": "0.1.0" | null, "protocol_version": 1,
//!     "workload": { "processes", "threads", "reads", "writes", "ioctls", "neither", "overlapped",
//!                   "timer_period_ms", "interrupt_latency_us", "background_threads" } | null,
//!     "stopped_early": bool,
//!     "lost": { "dropped": N, "cursor_gaps": N, "driver_restarted": bool },
//!     "skipped_lines": N, "malformed_lines": N
//!   },
//!   "names": {
//!     "processes": [ { "pid": N, "name": "ctxctl.exe" } ],
//!     "threads": [ { "tid": N, "pid": N, "label": "ctxctl worker 1" } ]
//!   },
//!   "summary": [ { "callback", "documented", "documented_irql", "events",
//!                  "in_requestor_context", "other_context", "no_requestor", "requestor_share",
//!                  "distinct_threads", "distinct_processes", "irql": [N],
//!                  "context_violations", "irql_violations", "violations", "consistent",
//!                  "other_processes": [ { "pid", "name", "events" } ],
//!                  "other_threads": [ { "tid", "pid", "label", "events" } ],
//!                  "reference" } ],
//!   "events": [ { "seq", "lane", "callback", "timestamp", "cpu", "irql", "pid", "tid",
//!                 "requestor": { "pid", "tid" } | null, "request_id", "file_id", "detail",
//!                 "completes", "placement": "requestor" | "other" | "none", "consistent" } ]
//! }
//! ```
//! `summary`, `placement` and `consistent` are derived: `report` recomputes them from the events.

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use ctxscope_core::logline::{LineBuf, format_event};
use ctxscope_core::{CallbackKind, Event, Requestor};
use serde::{Deserialize, Serialize};

use crate::model::{Meta, Names, Run, SCHEMA_VERSION, ThreadName};
use crate::summary::{KindSummary, summarize};

/// A requestor in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestorJson {
    /// Process ID.
    pub pid: u32,
    /// Thread ID.
    pub tid: u32,
}

/// An event in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventJson {
    /// Position in its ring lane.
    pub seq: u64,
    /// Ring lane.
    pub lane: u8,
    /// Callback name.
    pub callback: String,
    /// Performance-counter ticks.
    pub timestamp: u64,
    /// Processor.
    pub cpu: u32,
    /// IRQL.
    pub irql: u8,
    /// Process it ran in.
    pub pid: u32,
    /// Thread it ran in.
    pub tid: u32,
    /// The thread that issued the request, if any.
    pub requestor: Option<RequestorJson>,
    /// Request identifier (0: none).
    pub request_id: u64,
    /// File object identifier (0: none).
    pub file_id: u64,
    /// Callback-specific detail.
    pub detail: u64,
    /// The callback completed its request.
    pub completes: bool,
    /// Derived: `requestor`, `other` or `none`.
    #[serde(default, skip_deserializing)]
    pub placement: String,
    /// Derived: the event agrees with the documentation.
    #[serde(default, skip_deserializing)]
    pub consistent: bool,
}

impl EventJson {
    fn from_event(event: &Event) -> Self {
        let verdict = event.verdict();
        Self {
            seq: event.seq,
            lane: event.lane,
            callback: event.kind.name().to_owned(),
            timestamp: event.timestamp,
            cpu: event.cpu,
            irql: event.irql,
            pid: event.pid,
            tid: event.tid,
            requestor: event.requestor().map(|r| RequestorJson {
                pid: r.pid,
                tid: r.tid,
            }),
            request_id: event.request_id,
            file_id: event.file_id,
            detail: event.detail,
            completes: event.flags & Event::FLAG_COMPLETES != 0,
            placement: verdict.placement.name().to_owned(),
            consistent: verdict.consistent(),
        }
    }

    fn to_event(&self, index: usize) -> Result<Event> {
        let kind = CallbackKind::from_name(&self.callback).with_context(|| {
            format!(
                "events[{index}]: field callback: unknown callback name {:?}",
                self.callback
            )
        })?;
        let mut event = Event::new(
            kind,
            ctxscope_core::ExecContext {
                pid: self.pid,
                tid: self.tid,
                irql: self.irql,
                cpu: self.cpu,
            },
            self.timestamp,
        )
        .with_requestor(self.requestor.map(|r| Requestor {
            pid: r.pid,
            tid: r.tid,
        }))
        .with_ids(self.request_id, self.file_id)
        .with_detail(self.detail)
        .completing(self.completes);
        event.seq = self.seq;
        event.lane = self.lane;
        Ok(event)
    }
}

/// A process name in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessJson {
    /// Process ID.
    pub pid: u32,
    /// Image name.
    pub name: String,
}

/// A thread name in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadJson {
    /// Thread ID.
    pub tid: u32,
    /// Owning process ID.
    pub pid: u32,
    /// Label.
    pub label: String,
}

/// The `names` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamesJson {
    /// Processes, by ascending ID.
    pub processes: Vec<ProcessJson>,
    /// Threads, by ascending ID.
    pub threads: Vec<ThreadJson>,
}

#[derive(Serialize)]
struct ExportOut<'a> {
    meta: &'a Meta,
    names: NamesJson,
    summary: Vec<KindSummary>,
    events: Vec<EventJson>,
}

#[derive(Deserialize)]
struct ExportIn {
    meta: Meta,
    #[serde(default)]
    names: NamesJson,
    events: Vec<EventJson>,
}

fn names_json(names: &Names) -> NamesJson {
    NamesJson {
        processes: names
            .processes
            .iter()
            .map(|(&pid, name)| ProcessJson {
                pid,
                name: name.clone(),
            })
            .collect(),
        threads: names
            .threads
            .iter()
            .map(|(&tid, thread)| ThreadJson {
                tid,
                pid: thread.pid,
                label: thread.label.clone(),
            })
            .collect(),
    }
}

/// The JSON export of `run`, pretty-printed, ending with a newline.
///
/// # Errors
/// Only if serialization fails, which plain data cannot.
pub fn to_json(run: &Run) -> Result<String> {
    let out = ExportOut {
        meta: &run.meta,
        names: names_json(&run.names),
        summary: summarize(&run.events, &run.names),
        events: run.events.iter().map(EventJson::from_event).collect(),
    };
    let mut text = serde_json::to_string_pretty(&out).context("serializing the run")?;
    text.push('\n');
    Ok(text)
}

/// Reads a JSON export back.
///
/// # Errors
/// Not JSON, not an export (with the path of the bad field), another schema version, or an event
/// that is not a valid record.
pub fn from_json(text: &str) -> Result<Run> {
    let doc: ExportIn = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "not a ctxctl JSON export: {e} (expected the output of `ctxctl simulate|run --format json`)"
        )
    })?;
    if doc.meta.schema_version != SCHEMA_VERSION {
        bail!(
            "JSON export has schema_version {}, this ctxctl reads version {SCHEMA_VERSION}; re-export it with this ctxctl",
            doc.meta.schema_version
        );
    }
    let mut events = Vec::with_capacity(doc.events.len());
    for (index, json) in doc.events.iter().enumerate() {
        let event = json.to_event(index)?;
        Event::from_bytes(&event.to_bytes())
            .map_err(|e| anyhow::anyhow!("events[{index}]: {e}"))?;
        events.push(event);
    }
    let mut names = Names::default();
    for process in doc.names.processes {
        names.processes.insert(process.pid, process.name);
    }
    for thread in doc.names.threads {
        names.threads.insert(
            thread.tid,
            ThreadName {
                pid: thread.pid,
                label: thread.label,
            },
        );
    }
    Ok(Run {
        meta: doc.meta,
        events,
        names,
    })
}

/// The CSV header, in column order.
pub const CSV_COLUMNS: [&str; 23] = [
    "seq",
    "lane",
    "callback",
    "documented",
    "timestamp",
    "time_us",
    "cpu",
    "irql",
    "irql_name",
    "pid",
    "process",
    "tid",
    "thread",
    "requestor_pid",
    "requestor_tid",
    "requestor_thread",
    "request_id",
    "file_id",
    "detail",
    "completes",
    "placement",
    "consistent",
    "violation",
];

/// One row per event, with a header; `time_us` is microseconds since the first event (empty if the
/// counter frequency is unknown).
///
/// # Errors
/// Only if the CSV writer fails on memory, which it cannot.
pub fn to_csv(run: &Run) -> Result<String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_COLUMNS)?;
    let start = run.events.iter().map(|e| e.timestamp).min().unwrap_or(0);
    let tick = run.seconds_per_tick();
    for event in &run.events {
        let verdict = event.verdict();
        let requestor = event.requestor();
        #[allow(clippy::cast_precision_loss)] // tick deltas of a run, far below 2^52
        let time_us = tick.map_or_else(String::new, |s| {
            format!("{:.3}", (event.timestamp - start) as f64 * s * 1e6)
        });
        let violation = match (verdict.context_ok, verdict.irql_ok) {
            (true, true) => "",
            (false, true) => "context",
            (true, false) => "irql",
            (false, false) => "context+irql",
        };
        writer.write_record([
            event.seq.to_string(),
            event.lane.to_string(),
            event.kind.name().to_owned(),
            event.kind.documented().context.name().to_owned(),
            event.timestamp.to_string(),
            time_us,
            event.cpu.to_string(),
            event.irql.to_string(),
            ctxscope_core::kind::irql_name(event.irql).to_owned(),
            event.pid.to_string(),
            run.names.process(event.pid),
            event.tid.to_string(),
            run.names.context_thread(event.tid, event.pid, event.cpu),
            requestor.map(|r| r.pid.to_string()).unwrap_or_default(),
            requestor.map(|r| r.tid.to_string()).unwrap_or_default(),
            requestor
                .map(|r| run.names.thread(r.tid, r.pid))
                .unwrap_or_default(),
            event.request_id.to_string(),
            event.file_id.to_string(),
            format!("{:#x}", event.detail),
            (event.flags & Event::FLAG_COMPLETES != 0).to_string(),
            verdict.placement.name().to_owned(),
            verdict.consistent().to_string(),
            violation.to_owned(),
        ])?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| anyhow::anyhow!("CSV: {e}"))?;
    String::from_utf8(bytes).context("CSV is not UTF-8")
}

/// The driver's log line for each event (`logline::format_event`), one per line, exactly as the
/// driver prints them.
#[must_use]
pub fn to_log(run: &Run) -> String {
    let mut out = String::with_capacity(run.events.len() * 160);
    let mut buf = LineBuf::new();
    for event in &run.events {
        let _ = write!(out, "{}", format_event(event, &mut buf));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Origin, Source};
    use crate::summary::tests::hand_built;

    fn run() -> Run {
        let (mut events, names) = hand_built();
        for (i, event) in events.iter_mut().enumerate() {
            event.seq = i as u64;
            event.timestamp = 10_000 + 10 * i as u64;
        }
        let mut meta = Meta::new(Source::Simulator, Origin::Simulated);
        meta.seed = Some(7);
        meta.mode = Some("edu".into());
        meta.counter_frequency = Some(10_000_000);
        Run {
            meta,
            events,
            names,
        }
    }

    #[test]
    fn json_round_trips() {
        let run = run();
        let text = to_json(&run).unwrap();
        assert_eq!(from_json(&text).unwrap(), run);
    }

    #[test]
    fn json_errors_name_the_problem() {
        let err = from_json("{}").unwrap_err().to_string();
        assert!(err.contains("missing field `meta`"), "{err}");
        let text = to_json(&run()).unwrap();
        // Corrupts the first `from` in the events section (the summary is derived, not read).
        let in_events = |from: &str, to: &str| {
            let at = text.find("\"events\": [").unwrap();
            format!("{}{}", &text[..at], text[at..].replacen(from, to, 1))
        };
        let err = from_json(&in_events("\"EvtIoRead\"", "\"EvtIoReed\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("field callback"), "{err}");
        let err = from_json(&text.replace("\"schema_version\": 1", "\"schema_version\": 2"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("schema_version 2"), "{err}");
        let err = from_json(&in_events("\"irql\": 0,", "\"irql\": 300,"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("300"), "{err}");
    }

    #[test]
    fn csv_has_one_row_per_event() {
        let run = run();
        let text = to_csv(&run).unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let headers = reader.headers().unwrap().clone();
        assert_eq!(headers.iter().collect::<Vec<_>>(), CSV_COLUMNS);
        let rows: Vec<_> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), run.events.len());
        // Row 2: EvtIoInCallerContext in worker 1 for worker 2's request.
        let row = &rows[2];
        assert_eq!(&row[2], "EvtIoInCallerContext");
        assert_eq!(&row[3], "requestor");
        assert_eq!(&row[5], "2.000"); // 20 ticks at 10 MHz
        assert_eq!(&row[12], "ctxctl worker 1");
        assert_eq!(&row[15], "ctxctl worker 2");
        assert_eq!(&row[20], "other");
        assert_eq!(&row[21], "false");
        assert_eq!(&row[22], "context");
        // Row 7: the ISR at IRQL 9 in Idle, no requestor.
        assert_eq!(&rows[7][10], "Idle");
        assert_eq!(&rows[7][8], "DIRQL");
        assert_eq!(&rows[7][13], "");
        assert_eq!(&rows[8][22], "irql");
    }

    #[test]
    fn log_lines_parse_back() {
        let run = run();
        let log = to_log(&run);
        let parsed: Vec<Event> = log
            .lines()
            .map(|line| ctxscope_core::logline::parse_line(line).unwrap().unwrap())
            .collect();
        assert_eq!(parsed, run.events);
    }
}
