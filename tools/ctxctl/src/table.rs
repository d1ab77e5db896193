//! The human report: a heading, a table with one row per callback kind, warnings and a legend.

use std::fmt::Write as _;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Attribute, Cell, CellAlignment, Color, ContentArrangement, Table};
use ctxscope_core::kind::irql_name;

use crate::model::{Run, Source};
use crate::summary::{KindSummary, summarize, violations};

/// What arbitrary and specific context mean, after Peter Viscarola's explanation (OSR).
pub const LEGEND: &str = "\
Documented context (what Microsoft's documentation promises for each callback):
  requestor  a specific context: the thread that issued the request (opened the handle, closed it).
             It can be predicted in advance; a callback anywhere else is a VIOLATION.
  arbitrary  whatever thread the CPU happened to be running when the callback was called: it cannot
             be predicted. ISRs, DPCs, timers and EvtIoXxx handlers. Running in the requestor's
             thread is then a coincidence (KMDF often presents a request inline), not a promise.
  system     a thread of the System process (Plug and Play, power, I/O manager).
The current thread also fixes the current process: its address space, security token and
priorities. Only a specific-context callback may touch the requestor's user-mode memory.
A VIOLATION is an event that contradicts the documentation (context or IRQL).";

/// Width of the table when the report does not go to a terminal.
pub const FILE_WIDTH: u16 = 160;

/// Renders the whole human report. `color` turns on ANSI colour and `fit` fits the table to the
/// terminal's width (both only on a terminal).
#[must_use]
pub fn render(run: &Run, color: bool, fit: bool) -> String {
    let summary = summarize(&run.events, &run.names);
    let mut out = String::new();
    out.push_str(&heading(run));
    out.push('\n');
    if run.events.is_empty() {
        out.push_str("\nNo events were gathered.\n");
    } else {
        out.push('\n');
        out.push_str(&table(&summary, color, fit).to_string());
        out.push('\n');
    }
    let total = violations(&summary);
    out.push('\n');
    if total == 0 {
        out.push_str("Every event agrees with the documentation.\n");
    } else {
        let kinds: Vec<_> = summary
            .iter()
            .filter(|kind| !kind.consistent)
            .map(|kind| kind.callback)
            .collect();
        let _ = writeln!(
            out,
            "{total} event(s) contradict the documentation: {}.",
            kinds.join(", ")
        );
    }
    for warning in warnings(run) {
        let _ = writeln!(out, "warning: {warning}");
    }
    out.push('\n');
    out.push_str(LEGEND);
    out.push('\n');
    out
}

/// The first lines: what ran, where, how many events.
#[must_use]
pub fn heading(run: &Run) -> String {
    let meta = &run.meta;
    let mut line = String::from("ctxscope report: ");
    line.push_str(match meta.source {
        Source::Driver => "driver",
        Source::Simulator => "simulator",
        Source::Log => "driver log",
    });
    if let Some(seed) = meta.seed {
        let _ = write!(line, " (seed {seed})");
    }
    if let Some(mode) = &meta.mode {
        let _ = write!(line, ", mode {mode}");
    }
    if let Some(cpus) = meta.cpus {
        let _ = write!(line, ", {cpus} CPUs");
    }
    if let Some(version) = &meta.driver_version {
        let _ = write!(line, ", driver {version}");
    }
    let _ = write!(line, ", {} events", run.events.len());
    if meta.stopped_early {
        line.push_str(" (stopped early)");
    }
    if let Some(w) = &meta.workload {
        let _ = write!(
            line,
            "\nworkload: {} process(es) x {} thread(s), each {} read(s), {} write(s), {} ioctl(s), {} METHOD_NEITHER",
            w.processes, w.threads, w.reads, w.writes, w.ioctls, w.neither
        );
        if w.overlapped > 0 {
            let _ = write!(line, ", {} overlapped read(s) outstanding", w.overlapped);
        } else {
            line.push_str(", synchronous I/O");
        }
        if let Some(period) = w.timer_period_ms {
            let _ = write!(line, "; timer {period} ms");
        }
    }
    line
}

/// Warnings about missing data, one sentence each.
#[must_use]
pub fn warnings(run: &Run) -> Vec<String> {
    let meta = &run.meta;
    let mut out = Vec::new();
    if meta.lost.dropped > 0 {
        out.push(format!(
            "{} event(s) lost: the driver's ring was full (drain more often, or run fewer threads)",
            meta.lost.dropped
        ));
    }
    if meta.lost.cursor_gaps > 0 {
        out.push(format!(
            "{} event(s) lost: another reader (`ctxctl watch`?) or a reset took them",
            meta.lost.cursor_gaps
        ));
    }
    if meta.lost.driver_restarted {
        out.push(
            "the driver was reloaded during the run: events before the reload are missing"
                .to_owned(),
        );
    }
    if meta.malformed_lines > 0 {
        out.push(format!(
            "{} malformed ctxscope line(s) skipped",
            meta.malformed_lines
        ));
    }
    if meta.stopped_early {
        out.push("the run was stopped before the workload finished".to_owned());
    }
    out
}

fn irqls(kind: &KindSummary) -> String {
    kind.irql
        .iter()
        .map(|&irql| {
            if irql > 2 {
                format!("DIRQL ({irql})")
            } else {
                irql_name(irql).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn in_requestor(kind: &KindSummary) -> String {
    match kind.requestor_share {
        None => "- (no requestor)".to_owned(),
        Some(share) => format!("{} ({:.1}%)", kind.in_requestor_context, share * 100.0),
    }
}

fn others(kind: &KindSummary) -> String {
    if kind.other_processes.is_empty() {
        return "-".to_owned();
    }
    let processes: Vec<_> = kind
        .other_processes
        .iter()
        .map(|p| format!("{} x{}", p.name, p.events))
        .collect();
    let threads: Vec<_> = kind
        .other_threads
        .iter()
        .map(|t| format!("{} x{}", t.label, t.events))
        .collect();
    format!("{}\n{}", processes.join(", "), threads.join(", "))
}

fn table(summary: &[KindSummary], color: bool, fit: bool) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    if color {
        table.enforce_styling();
    } else {
        table.force_no_tty();
    }
    table.set_content_arrangement(ContentArrangement::Dynamic);
    if !fit {
        // Not a terminal (a file, a pipe): a width a text editor shows whole.
        table.set_width(FILE_WIDTH);
    }
    table.set_header([
        "Callback",
        "Documented",
        "IRQL seen",
        "Events",
        "In requestor's thread",
        "Other contexts (processes, threads)",
        "Verdict",
    ]);
    for kind in summary {
        let verdict = if kind.consistent {
            Cell::new("consistent")
        } else {
            let mut reasons = Vec::new();
            if kind.context_violations > 0 {
                reasons.push(format!("{} context", kind.context_violations));
            }
            if kind.irql_violations > 0 {
                reasons.push(format!("{} IRQL", kind.irql_violations));
            }
            let cell = Cell::new(format!("VIOLATION\n{}", reasons.join(", ")));
            if color {
                cell.fg(Color::Red).add_attribute(Attribute::Bold)
            } else {
                cell
            }
        };
        table.add_row(vec![
            Cell::new(kind.callback),
            Cell::new(format!("{}\n{}", kind.documented, kind.documented_irql)),
            Cell::new(irqls(kind)),
            Cell::new(kind.events).set_alignment(CellAlignment::Right),
            Cell::new(in_requestor(kind)),
            Cell::new(others(kind)),
            verdict,
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Meta, Origin};
    use crate::summary::tests::hand_built;

    fn run() -> Run {
        let (events, names) = hand_built();
        let mut meta = Meta::new(Source::Driver, Origin::Live);
        meta.mode = Some("root".into());
        meta.lost.dropped = 3;
        meta.lost.cursor_gaps = 2;
        Run {
            meta,
            events,
            names,
        }
    }

    #[test]
    fn the_report_shows_rows_verdicts_warnings_and_legend() {
        let text = render(&run(), false, false);
        assert!(
            text.starts_with("ctxscope report: driver, mode root, 10 events\n"),
            "{text}"
        );
        let read_row = text
            .lines()
            .find(|line| line.contains("EvtIoRead"))
            .unwrap();
        assert!(read_row.contains("1 (25.0%)"), "{read_row}");
        assert!(read_row.contains("Idle x2, System x1"), "{read_row}");
        assert!(read_row.contains("consistent"), "{read_row}");
        let caller_row = text
            .lines()
            .find(|line| line.contains("EvtIoInCallerContext"))
            .unwrap();
        assert!(caller_row.contains("2 (66.7%)"), "{caller_row}");
        assert!(caller_row.contains("VIOLATION"), "{caller_row}");
        assert!(text.contains("DIRQL (9)"));
        assert!(text.contains(
            "2 event(s) contradict the documentation: EvtIoInCallerContext, EvtInterruptIsr."
        ));
        assert!(text.contains("warning: 3 event(s) lost: the driver's ring was full"));
        assert!(text.contains("warning: 2 event(s) lost: another reader"));
        assert!(text.contains("arbitrary  whatever thread the CPU happened to be running"));
        assert!(!text.contains('\u{1b}'), "no colour when not asked");
        assert!(
            text.lines()
                .all(|line| line.chars().count() <= usize::from(FILE_WIDTH)),
            "{text}"
        );
    }

    #[test]
    fn colour_only_when_asked() {
        let text = render(&run(), true, false);
        assert!(text.contains('\u{1b}'));
    }
}
