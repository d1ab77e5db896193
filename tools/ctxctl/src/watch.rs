//! `ctxctl watch`: which events to show, and how one looks on a line. The polling loop lives in
//! the Windows module.

use std::fmt::Write as _;

use ctxscope_core::kind::irql_name;
use ctxscope_core::{Event, Placement};

use crate::cli::WatchArgs;
use crate::model::Names;

/// Which events `watch` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only these callbacks (empty: all).
    pub callbacks: Vec<ctxscope_core::CallbackKind>,
    /// Only events that ran in, or were requested by, these processes (empty: all).
    pub pids: Vec<u32>,
    /// Only events that contradict the documentation.
    pub violations_only: bool,
}

impl Filter {
    /// The filter the flags ask for.
    #[must_use]
    pub fn from_args(args: &WatchArgs) -> Self {
        Self {
            callbacks: args.callback.clone(),
            pids: args.pid.clone(),
            violations_only: args.violations_only,
        }
    }

    /// Whether `event` passes.
    #[must_use]
    pub fn accepts(&self, event: &Event) -> bool {
        (self.callbacks.is_empty() || self.callbacks.contains(&event.kind))
            && (self.pids.is_empty()
                || self.pids.contains(&event.pid)
                || event
                    .requestor()
                    .is_some_and(|r| self.pids.contains(&r.pid)))
            && (!self.violations_only || !event.verdict().consistent())
    }
}

/// One event as `watch` prints it: time, callback, where it ran, the requestor, the verdict.
#[must_use]
pub fn format_line(event: &Event, names: &Names, seconds: Option<f64>) -> String {
    let verdict = event.verdict();
    let mut line = String::new();
    if let Some(seconds) = seconds {
        let _ = write!(line, "{seconds:>12.6}s ");
    } else {
        let _ = write!(line, "{:>14} ", event.timestamp);
    }
    let _ = write!(
        line,
        "{:<22} cpu{:<2} {:<8} ran in {} [{}:{}]",
        event.kind.name(),
        event.cpu,
        irql_name(event.irql),
        names.context_thread(event.tid, event.pid, event.cpu),
        event.pid,
        event.tid
    );
    match event.requestor() {
        Some(r) => {
            let place = if verdict.placement == Placement::RequestorThread {
                "= requestor"
            } else {
                "for"
            };
            let _ = write!(
                line,
                " {place} {} [{}:{}]",
                names.thread(r.tid, r.pid),
                r.pid,
                r.tid
            );
        }
        None => line.push_str(" (no requestor)"),
    }
    if event.request_id != 0 {
        let _ = write!(line, " req={}", event.request_id);
    }
    let _ = write!(line, " ({})", event.kind.documented().context.name());
    if !verdict.consistent() {
        line.push_str(" VIOLATION");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::tests::{APP, T1, hand_built};
    use ctxscope_core::CallbackKind;

    #[test]
    fn filters_combine() {
        let (events, _) = hand_built();
        let count = |filter: &Filter| events.iter().filter(|e| filter.accepts(e)).count();
        assert_eq!(count(&Filter::default()), 10);
        let reads = Filter {
            callbacks: vec![CallbackKind::EvtIoRead],
            ..Filter::default()
        };
        assert_eq!(count(&reads), 4);
        // Ran in, or requested by, the app: events 0-6 and the ISR that ran in 1200.
        let app = Filter {
            pids: vec![APP],
            ..Filter::default()
        };
        assert_eq!(count(&app), 8);
        let system = Filter {
            pids: vec![4],
            ..Filter::default()
        };
        assert_eq!(count(&system), 2);
        let bad = Filter {
            violations_only: true,
            ..Filter::default()
        };
        assert_eq!(count(&bad), 2);
        let bad_reads = Filter {
            violations_only: true,
            ..reads
        };
        assert_eq!(count(&bad_reads), 0);
    }

    #[test]
    fn lines_say_where_and_for_whom() {
        let (events, names) = hand_built();
        let line = format_line(&events[4], &names, Some(1.5));
        assert!(line.starts_with("    1.500000s EvtIoRead"), "{line}");
        assert!(
            line.contains("ran in idle thread CPU 0 [0:0] for ctxctl worker 2 [1200:1208]"),
            "{line}"
        );
        assert!(line.ends_with("(arbitrary)"), "{line}");
        let line = format_line(&events[2], &names, None);
        assert!(line.ends_with("(requestor) VIOLATION"), "{line}");
        let line = format_line(&events[0], &names, None);
        assert!(
            line.contains(&format!("= requestor ctxctl worker 1 [{APP}:{T1}]")),
            "{line}"
        );
        assert!(format_line(&events[7], &names, None).contains("(no requestor)"));
    }
}
