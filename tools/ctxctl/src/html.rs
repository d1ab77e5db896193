//! The HTML timeline: one self-contained file (inline CSS, SVG and a little JS, nothing fetched)
//! with a swim lane per thread over time and a mark per callback, coloured by kind, so that ISRs
//! and DPCs landing in unrelated threads are seen at a glance. Hovering a mark shows the event.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use ctxscope_core::kind::{IDLE_PID, SYSTEM_PID, irql_name};
use ctxscope_core::{CallbackKind, Event, Placement};

use crate::model::{Run, thread_key};
use crate::summary::summarize;
use crate::table::{LEGEND, heading, warnings};

/// A colour per callback kind, indexed by the kind's value.
const COLORS: [&str; CallbackKind::COUNT] = [
    "#7f7f7f", // DriverEntry
    "#8c564b", // EvtDriverDeviceAdd
    "#a0522d", // EvtDevicePrepareHardware
    "#bc8f8f", // EvtDeviceReleaseHardware
    "#6b8e23", // EvtDeviceD0Entry
    "#556b2f", // EvtDeviceD0Exit
    "#17becf", // EvtDeviceFileCreate
    "#0e7c86", // EvtFileCleanup
    "#5f9ea0", // EvtFileClose
    "#2ca02c", // EvtIoInCallerContext
    "#1f77b4", // EvtIoRead
    "#9467bd", // EvtIoWrite
    "#e377c2", // EvtIoDeviceControl
    "#ff7f0e", // EvtTimerFunc
    "#d62728", // EvtInterruptIsr
    "#f0b400", // EvtInterruptDpc
    "#404040", // EvtDriverUnload
];

const LABEL_WIDTH: u32 = 300;
const PLOT_WIDTH: u32 = 1040;
const LANE_HEIGHT: u32 = 22;
const AXIS_HEIGHT: u32 = 28;

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A lane: one thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Lane {
    /// Sort group: 0 the requesting app's processes, 1 System, 2 Idle, 3 others.
    group: u8,
    pid: u32,
    tid: u32,
    /// The CPU, for the Idle process's per-CPU threads (all ID 0).
    cpu: Option<u32>,
}

fn lanes(events: &[&Event]) -> Vec<Lane> {
    let requestors: BTreeSet<u32> = events
        .iter()
        .filter_map(|e| e.requestor().map(|r| r.pid))
        .collect();
    let group = |pid: u32| match pid {
        _ if requestors.contains(&pid) => 0,
        SYSTEM_PID => 1,
        IDLE_PID => 2,
        _ => 3,
    };
    let mut set = BTreeSet::new();
    for event in events {
        let (pid, tid, cpu) = thread_key(event);
        set.insert(Lane {
            group: group(pid),
            pid,
            tid,
            cpu,
        });
        if let Some(r) = event.requestor() {
            set.insert(Lane {
                group: group(r.pid),
                pid: r.pid,
                tid: r.tid,
                cpu: None,
            });
        }
    }
    set.into_iter().collect()
}

fn describe(run: &Run, event: &Event, t: &str) -> String {
    let verdict = event.verdict();
    let mut text = format!(
        "{} at {t}\nran in {} ({}/{}) on CPU {} at {} ({})",
        event.kind.name(),
        run.names.context_thread(event.tid, event.pid, event.cpu),
        event.pid,
        event.tid,
        event.cpu,
        irql_name(event.irql),
        event.irql,
    );
    match event.requestor() {
        Some(r) => {
            let _ = write!(
                text,
                "\nrequestor {} ({}/{}): {}",
                run.names.thread(r.tid, r.pid),
                r.pid,
                r.tid,
                match verdict.placement {
                    Placement::RequestorThread => "ran in the requestor's thread",
                    _ => "ran in ANOTHER thread",
                }
            );
        }
        None => text.push_str("\nno requestor"),
    }
    if event.request_id != 0 {
        let _ = write!(text, "\nrequest {}", event.request_id);
    }
    let _ = write!(
        text,
        "\ndocumented: {} context, {}\n{}",
        event.kind.documented().context.name(),
        event.kind.documented().irql.describe(),
        if verdict.consistent() {
            "consistent"
        } else {
            "VIOLATION"
        }
    );
    text
}

/// Renders the HTML page.
#[must_use]
#[allow(clippy::too_many_lines)] // one page, written top to bottom
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)] // pixel arithmetic
pub fn render(run: &Run) -> String {
    let shown = window(&run.events, MAX_MARKS);
    let lanes = lanes(&shown);
    let index: BTreeMap<(u32, u32, Option<u32>), usize> = lanes
        .iter()
        .enumerate()
        .map(|(i, lane)| ((lane.pid, lane.tid, lane.cpu), i))
        .collect();
    let start = shown.iter().map(|e| e.timestamp).min().unwrap_or(0);
    let end = shown.iter().map(|e| e.timestamp).max().unwrap_or(0);
    let span = (end - start).max(1) as f64;
    let tick = run.seconds_per_tick();
    let time_label = |ticks: u64| match tick {
        Some(s) => format!("{:.3} ms", ticks as f64 * s * 1e3),
        None => format!("{ticks} ticks"),
    };
    let x_of =
        |ts: u64| f64::from(LABEL_WIDTH) + (ts - start) as f64 / span * f64::from(PLOT_WIDTH);
    let y_of = |lane: usize| AXIS_HEIGHT + lane as u32 * LANE_HEIGHT;
    let height = AXIS_HEIGHT + lanes.len() as u32 * LANE_HEIGHT + 8;
    let width = LABEL_WIDTH + PLOT_WIDTH + 20;

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg id="tl" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="timeline">"#
    );
    // Lanes and their labels.
    let mut previous_pid = None;
    for (i, lane) in lanes.iter().enumerate() {
        let y = y_of(i);
        let class = if i % 2 == 0 { "lane even" } else { "lane" };
        let _ = write!(
            svg,
            r#"<rect class="{class}" x="0" y="{y}" width="{width}" height="{LANE_HEIGHT}"/>"#
        );
        if previous_pid.is_some_and(|pid| pid != lane.pid) {
            let _ = write!(
                svg,
                r#"<line class="sep" x1="0" y1="{y}" x2="{width}" y2="{y}"/>"#
            );
        }
        previous_pid = Some(lane.pid);
        let thread = lane.cpu.map_or_else(
            || run.names.thread(lane.tid, lane.pid),
            |cpu| run.names.context_thread(lane.tid, lane.pid, cpu),
        );
        let label = format!("{} · {thread} [{}]", run.names.process(lane.pid), lane.tid);
        let _ = write!(
            svg,
            r#"<text class="label" x="6" y="{}">{}</text>"#,
            y + LANE_HEIGHT / 2 + 4,
            escape(&truncate(&label, 46))
        );
    }
    // Time axis.
    for step in 0..=10u32 {
        let x = f64::from(LABEL_WIDTH) + f64::from(PLOT_WIDTH) * f64::from(step) / 10.0;
        let ticks = (end - start).max(1) * u64::from(step) / 10;
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}"/><text class="axis" x="{x:.1}" y="16" text-anchor="{}">{}</text>"#,
            AXIS_HEIGHT - 4,
            height - 8,
            if step == 10 { "end" } else { "middle" },
            escape(&time_label(ticks))
        );
    }
    // Connectors from events that ran elsewhere to their requestor's lane.
    for event in &shown {
        let Some(r) = event.requestor() else { continue };
        if event.verdict().placement != Placement::OtherThread {
            continue;
        }
        let (Some(&from), Some(&to)) = (
            index.get(&thread_key(event)),
            index.get(&(r.pid, r.tid, None)),
        ) else {
            continue;
        };
        let x = x_of(event.timestamp);
        let _ = write!(
            svg,
            r#"<line class="link k{}" x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="{}"/>"#,
            event.kind as u8,
            y_of(from) + LANE_HEIGHT / 2,
            y_of(to) + LANE_HEIGHT / 2,
            COLORS[event.kind as usize]
        );
    }
    // The marks.
    for event in &shown {
        let Some(&lane) = index.get(&thread_key(event)) else {
            continue;
        };
        let x = x_of(event.timestamp);
        let y = y_of(lane);
        let consistent = event.verdict().consistent();
        let details = describe(run, event, &time_label(event.timestamp - start));
        // Interrupt service routines take the top half of the lane and DPCs the bottom half,
        // so an ISR and the DPC it queued stay visible side by side.
        let (top, mark_height) = match event.kind {
            CallbackKind::EvtInterruptIsr => (y + 2, LANE_HEIGHT / 2 - 2),
            CallbackKind::EvtInterruptDpc | CallbackKind::EvtTimerFunc => {
                (y + LANE_HEIGHT / 2, LANE_HEIGHT / 2 - 2)
            }
            _ => (y + 3, LANE_HEIGHT - 6),
        };
        let _ = write!(
            svg,
            r#"<rect class="m k{k}{bad}" x="{:.1}" y="{top}" width="4" height="{mark_height}" rx="1" fill="{}"><title>{}</title></rect>"#,
            x - 2.0,
            COLORS[event.kind as usize],
            escape(&details),
            k = event.kind as u8,
            bad = if consistent { "" } else { " bad" },
        );
    }
    svg.push_str("</svg>");

    // Legend with toggles, for the kinds present.
    let summary = summarize(&run.events, &run.names);
    let mut legend = String::new();
    for kind in &summary {
        let Some(k) = CallbackKind::from_name(kind.callback) else {
            continue;
        };
        let _ = write!(
            legend,
            r#"<label class="key"><input type="checkbox" checked data-k="{}"><span class="sw" style="background:{}"></span>{} <small>({}, {})</small></label>"#,
            k as u8, COLORS[k as usize], kind.callback, kind.documented, kind.events
        );
    }
    // Summary table.
    let mut rows = String::new();
    for kind in &summary {
        let in_requestor = kind.requestor_share.map_or_else(
            || "– (no requestor)".to_owned(),
            |s| format!("{} ({:.1}%)", kind.in_requestor_context, s * 100.0),
        );
        let others: Vec<_> = kind
            .other_processes
            .iter()
            .map(|p| format!("{} ×{}", p.name, p.events))
            .collect();
        let irql: Vec<_> = kind.irql.iter().map(|&i| irql_name(i)).collect();
        let _ = write!(
            rows,
            r#"<tr><td><span class="sw" style="background:{}"></span>{}</td><td>{}</td><td>{}</td><td class="n">{}</td><td class="n">{in_requestor}</td><td>{}</td><td class="{}">{}</td></tr>"#,
            COLORS[CallbackKind::from_name(kind.callback).map_or(0, |k| k as usize)],
            kind.callback,
            kind.documented,
            irql.join(", "),
            kind.events,
            escape(&others.join(", ")),
            if kind.consistent { "ok" } else { "bad" },
            if kind.consistent {
                "consistent".to_owned()
            } else {
                format!("VIOLATION ({})", kind.violations)
            },
        );
    }
    let mut notes = String::new();
    if shown.len() < run.events.len() {
        let _ = write!(
            notes,
            "<p class=\"warn\">The timeline shows the first {} of {} events ({} of the run); the table counts them all, and the JSON or CSV export holds every event.</p>",
            shown.len(),
            run.events.len(),
            escape(&time_label(end - start)),
        );
    }
    for warning in warnings(run) {
        let _ = write!(notes, "<p class=\"warn\">warning: {}</p>", escape(&warning));
    }

    let mut page = String::new();
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>ctxscope timeline</title>
<style>
body{{font:13px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:16px;color:#222;background:#fff}}
h1{{font-size:18px;margin:0 0 4px}}
pre.head{{margin:0 0 10px;font:12px ui-monospace,Consolas,monospace;color:#444}}
table.sum{{border-collapse:collapse;margin:8px 0 12px}}
table.sum td,table.sum th{{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}}
table.sum th{{background:#f3f3f3}}
td.n{{text-align:right}} td.ok{{color:#1a7f37}} td.bad{{color:#c62828;font-weight:bold}}
.sw{{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}}
.keys{{margin:6px 0}} .key{{margin-right:14px;white-space:nowrap;cursor:pointer}}
.wrap{{overflow-x:auto;border:1px solid #ddd}}
.lane{{fill:#fff}} .lane.even{{fill:#f7f8fa}}
.sep{{stroke:#b0b4ba;stroke-width:1}}
.grid{{stroke:#e2e4e8;stroke-width:1}}
.axis{{font-size:11px;fill:#555}}
.label{{font-size:11px;fill:#333;font-family:ui-monospace,Consolas,monospace}}
.link{{stroke-width:1;stroke-dasharray:2 2;opacity:.45}}
.m{{cursor:pointer}} .m:hover{{stroke:#000;stroke-width:1}}
.m.bad{{stroke:#c62828;stroke-width:2}}
#tip{{position:fixed;pointer-events:none;background:#222;color:#fff;padding:6px 8px;border-radius:4px;font:12px ui-monospace,Consolas,monospace;white-space:pre;display:none;z-index:9;max-width:560px}}
p.warn{{color:#b26a00;margin:2px 0}}
details{{margin-top:12px}} details pre{{font-size:12px}}
{hide}
</style></head><body>
<h1>ctxscope: where each callback ran</h1>
<pre class="head">{head}</pre>
{notes}
<table class="sum"><tr><th>Callback</th><th>Documented</th><th>IRQL seen</th><th>Events</th><th>In requestor's thread</th><th>Other processes</th><th>Verdict</th></tr>
{rows}</table>
<div class="keys">{legend}</div>
<p>One lane per thread, time running right. A mark is a callback in the thread it ran in; a dashed line joins a callback that ran in another thread to its requestor's lane. Red outlines contradict the documentation. Hover a mark for details; click a key to hide a kind.</p>
<div class="wrap">{svg}</div>
<details><summary>What "arbitrary" and "specific" context mean</summary><pre>{legend_text}</pre></details>
<div id="tip"></div>
<script>
(function(){{
var tip=document.getElementById('tip'),svg=document.getElementById('tl');
svg.querySelectorAll('rect.m').forEach(function(m){{var t=m.querySelector('title');if(t){{m.setAttribute('data-d',t.textContent);m.removeChild(t);}}}});
svg.addEventListener('mousemove',function(e){{
 var d=e.target.getAttribute&&e.target.getAttribute('data-d');
 if(!d){{tip.style.display='none';return;}}
 tip.textContent=d;tip.style.display='block';
 var x=e.clientX+14,y=e.clientY+14;
 if(x+tip.offsetWidth>window.innerWidth)x=e.clientX-tip.offsetWidth-14;
 if(y+tip.offsetHeight>window.innerHeight)y=e.clientY-tip.offsetHeight-14;
 tip.style.left=x+'px';tip.style.top=y+'px';
}});
svg.addEventListener('mouseleave',function(){{tip.style.display='none';}});
document.querySelectorAll('.key input').forEach(function(box){{
 box.addEventListener('change',function(){{svg.classList.toggle('hide-k'+box.getAttribute('data-k'),!box.checked);}});
}});
}})();
</script>
</body></html>
"#,
        hide = (0..CallbackKind::COUNT).fold(String::new(), |mut css, k| {
            let _ = write!(css, ".hide-k{k} .k{k}{{display:none}}");
            css
        }),
        head = escape(&heading(run)),
        legend_text = escape(LEGEND),
    );
    page
}

/// Most marks the timeline draws: beyond this a browser struggles and the file grows past what
/// anyone scrolls through.
pub const MAX_MARKS: usize = 20_000;

/// The events of the earliest stretch of the run holding at most `limit` events (all of them if
/// there are fewer), so the timeline shows a contiguous window rather than a thinned-out sample.
fn window(events: &[Event], limit: usize) -> Vec<&Event> {
    if events.len() <= limit {
        return events.iter().collect();
    }
    let mut order: Vec<&Event> = events.iter().collect();
    order.sort_by_key(|e| (e.timestamp, e.lane, e.seq));
    order.truncate(limit);
    order
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max - 1).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Meta, Origin, Source};
    use crate::summary::tests::hand_built;

    fn run() -> Run {
        let (mut events, mut names) = hand_built();
        for (i, event) in events.iter_mut().enumerate() {
            event.timestamp = 1_000 + 100 * i as u64;
        }
        names.processes.insert(1200, "<ctx&ctl>.exe".into());
        let mut meta = Meta::new(Source::Simulator, Origin::Simulated);
        meta.counter_frequency = Some(10_000_000);
        Run {
            meta,
            events,
            names,
        }
    }

    #[test]
    fn the_page_is_self_contained_and_complete() {
        let page = render(&run());
        assert!(page.starts_with("<!DOCTYPE html>"));
        for forbidden in ["http://", "https://", "<link", "src="] {
            let outside_svg_namespace = page.replace("http://www.w3.org/2000/svg", "");
            // The Microsoft references are not in the page; nothing is fetched.
            assert!(
                !outside_svg_namespace.contains(forbidden),
                "{forbidden} found"
            );
        }
        // One mark per event, with its details.
        assert_eq!(page.matches("<rect class=\"m ").count(), 10);
        assert_eq!(page.matches("class=\"m k").count(), 10);
        assert_eq!(page.matches(" bad\"").count(), 2);
        // Lanes: 1204, 1208 (app), System 88, Idle 0.
        assert_eq!(page.matches("<rect class=\"lane").count(), 4);
        // Names are escaped.
        assert!(page.contains("&lt;ctx&amp;ctl&gt;.exe"));
        assert!(!page.contains("<ctx&ctl>"));
        // Times are in ms at 10 MHz: the last event is 900 ticks = 0.090 ms after the first.
        assert!(page.contains("0.090 ms"));
        assert!(page.contains("ran in ANOTHER thread"));
        // Three events ran outside their requestor's thread with the requestor's lane present,
        // plus the EvtIoInCallerContext violation.
        assert_eq!(page.matches("<line class=\"link").count(), 4);
    }

    #[test]
    fn a_long_run_shows_its_first_window() {
        let (events, names) = hand_built();
        let mut long = Vec::new();
        for i in 0..(MAX_MARKS as u64 + 50) {
            let mut event = events[(i % 10) as usize];
            // Delivered out of time order, as lanes are drained one after another.
            event.timestamp = if i % 2 == 0 { i } else { 1_000_000 - i };
            long.push(event);
        }
        let run = Run {
            meta: Meta::new(Source::Driver, Origin::Live),
            events: long,
            names,
        };
        let shown = window(&run.events, MAX_MARKS);
        assert_eq!(shown.len(), MAX_MARKS);
        let latest = shown.iter().map(|e| e.timestamp).max().unwrap();
        assert!(
            run.events
                .iter()
                .filter(|e| e.timestamp > latest)
                .all(|e| !shown.iter().any(|s| std::ptr::eq(*s, e)))
        );
        assert_eq!(
            run.events.iter().filter(|e| e.timestamp <= latest).count(),
            MAX_MARKS
        );
        let page = render(&run);
        assert_eq!(page.matches("<rect class=\"m ").count(), MAX_MARKS);
        assert!(page.contains(&format!("first {MAX_MARKS} of {} events", MAX_MARKS + 50)));
    }

    #[test]
    fn an_empty_run_still_renders() {
        let mut run = run();
        run.events.clear();
        let page = render(&run);
        assert!(page.contains("</svg>"));
        assert_eq!(page.matches("<rect class=\"m ").count(), 0);
    }
}
