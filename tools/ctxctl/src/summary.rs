//! The per-callback summary every report shows: how many events, where they ran relative to
//! their requestor, which IRQLs, and whether that agrees with Microsoft's documentation.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ctxscope_core::{CallbackKind, Event, Placement};
use serde::Serialize;

use crate::model::{Names, thread_key};

/// How many of the busiest other processes and threads a summary lists.
pub const TOP: usize = 3;

/// A process seen running a callback outside its requestor's thread.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessCount {
    /// Process ID.
    pub pid: u32,
    /// Image name.
    pub name: String,
    /// Events.
    pub events: u64,
}

/// A thread seen running a callback outside its requestor's thread.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ThreadCount {
    /// Thread ID.
    pub tid: u32,
    /// Owning process ID.
    pub pid: u32,
    /// Label.
    pub label: String,
    /// Events.
    pub events: u64,
}

/// The summary of one callback kind. Serialized as one element of the JSON export's `summary`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KindSummary {
    /// The callback's name (`EvtIoRead`).
    pub callback: &'static str,
    /// Documented context: `requestor`, `arbitrary` or `system`.
    pub documented: &'static str,
    /// Documented IRQL (`PASSIVE`, `DISPATCH`, `DIRQL`, `<=DISPATCH`, ...).
    pub documented_irql: &'static str,
    /// Events of this kind.
    pub events: u64,
    /// Events that ran in their requestor's own thread.
    pub in_requestor_context: u64,
    /// Events with a requestor that ran in another thread.
    pub other_context: u64,
    /// Events without a requestor (hardware, timer, Plug and Play).
    pub no_requestor: u64,
    /// `in_requestor_context / (in_requestor_context + other_context)`, or null when no event had
    /// a requestor.
    pub requestor_share: Option<f64>,
    /// Distinct threads the callback ran in.
    pub distinct_threads: u64,
    /// Distinct processes the callback ran in.
    pub distinct_processes: u64,
    /// IRQL values seen, ascending.
    pub irql: Vec<u8>,
    /// Events whose context contradicts the documentation.
    pub context_violations: u64,
    /// Events whose IRQL contradicts the documentation.
    pub irql_violations: u64,
    /// Events that contradict the documentation in context, IRQL or both.
    pub violations: u64,
    /// No event contradicts the documentation.
    pub consistent: bool,
    /// The busiest processes the callback ran in outside its requestor's thread, at most [`TOP`].
    pub other_processes: Vec<ProcessCount>,
    /// The busiest threads the callback ran in outside its requestor's thread, at most [`TOP`].
    pub other_threads: Vec<ThreadCount>,
    /// The Microsoft page documenting the callback's context.
    pub reference: &'static str,
}

/// Per-kind accumulator.
#[derive(Default)]
struct Acc {
    events: u64,
    in_requestor: u64,
    other: u64,
    none: u64,
    threads: BTreeSet<(u32, u32, Option<u32>)>,
    processes: BTreeSet<u32>,
    irql: BTreeSet<u8>,
    context_violations: u64,
    irql_violations: u64,
    violations: u64,
    other_processes: HashMap<u32, u64>,
    other_threads: HashMap<(u32, u32, Option<u32>), u64>,
}

/// Summarizes `events`, one entry per kind seen, in [`CallbackKind`] order.
#[must_use]
pub fn summarize(events: &[Event], names: &Names) -> Vec<KindSummary> {
    let mut by_kind: BTreeMap<CallbackKind, Acc> = BTreeMap::new();
    for event in events {
        let acc = by_kind.entry(event.kind).or_default();
        let verdict = event.verdict();
        acc.events += 1;
        match verdict.placement {
            Placement::RequestorThread => acc.in_requestor += 1,
            Placement::OtherThread => acc.other += 1,
            Placement::NoRequestor => acc.none += 1,
        }
        if verdict.placement != Placement::RequestorThread {
            *acc.other_processes.entry(event.pid).or_default() += 1;
            *acc.other_threads.entry(thread_key(event)).or_default() += 1;
        }
        acc.threads.insert(thread_key(event));
        acc.processes.insert(event.pid);
        acc.irql.insert(event.irql);
        acc.context_violations += u64::from(!verdict.context_ok);
        acc.irql_violations += u64::from(!verdict.irql_ok);
        acc.violations += u64::from(!verdict.consistent());
    }
    by_kind
        .into_iter()
        .map(|(kind, acc)| finish(kind, acc, names))
        .collect()
}

fn finish(kind: CallbackKind, acc: Acc, names: &Names) -> KindSummary {
    let documented = kind.documented();
    let with_requestor = acc.in_requestor + acc.other;
    #[allow(clippy::cast_precision_loss)] // event counts, far below 2^52
    let requestor_share =
        (with_requestor != 0).then(|| acc.in_requestor as f64 / with_requestor as f64);
    let mut processes: Vec<_> = acc.other_processes.into_iter().collect();
    // Busiest first; ties by ID so the order is stable.
    processes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut threads: Vec<_> = acc.other_threads.into_iter().collect();
    threads.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    // (The thread key sorts by process, then thread, then CPU.)
    KindSummary {
        callback: kind.name(),
        documented: documented.context.name(),
        documented_irql: documented.irql.describe(),
        events: acc.events,
        in_requestor_context: acc.in_requestor,
        other_context: acc.other,
        no_requestor: acc.none,
        requestor_share,
        distinct_threads: acc.threads.len() as u64,
        distinct_processes: acc.processes.len() as u64,
        irql: acc.irql.into_iter().collect(),
        context_violations: acc.context_violations,
        irql_violations: acc.irql_violations,
        violations: acc.violations,
        consistent: acc.violations == 0,
        other_processes: processes
            .into_iter()
            .take(TOP)
            .map(|(pid, events)| ProcessCount {
                pid,
                name: names.process(pid),
                events,
            })
            .collect(),
        other_threads: threads
            .into_iter()
            .take(TOP)
            .map(|((pid, tid, cpu), events)| ThreadCount {
                tid,
                pid,
                label: cpu.map_or_else(
                    || names.thread(tid, pid),
                    |cpu| names.context_thread(tid, pid, cpu),
                ),
                events,
            })
            .collect(),
        reference: documented.source,
    }
}

/// Events that contradict the documentation, over all kinds.
#[must_use]
pub fn violations(summary: &[KindSummary]) -> u64 {
    summary.iter().map(|kind| kind.violations).sum()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::ThreadName;
    use ctxscope_core::kind::{DISPATCH_LEVEL, PASSIVE_LEVEL};
    use ctxscope_core::{ExecContext, Requestor};

    pub(crate) const APP: u32 = 1200;
    pub(crate) const T1: u32 = 1204;
    pub(crate) const T2: u32 = 1208;

    fn ev(
        kind: CallbackKind,
        pid: u32,
        tid: u32,
        irql: u8,
        requestor: Option<(u32, u32)>,
    ) -> Event {
        Event::new(
            kind,
            ExecContext {
                pid,
                tid,
                irql,
                cpu: tid % 4,
            },
            0,
        )
        .with_requestor(requestor.map(|(pid, tid)| Requestor { pid, tid }))
    }

    /// A small run computed on paper in the tests below:
    ///
    /// | # | kind | ran in | requestor | IRQL |
    /// |---|---|---|---|---|
    /// | 0 | `EvtIoInCallerContext` | 1200/1204 | 1200/1204 | 0 |
    /// | 1 | `EvtIoInCallerContext` | 1200/1208 | 1200/1208 | 0 |
    /// | 2 | `EvtIoInCallerContext` | 1200/1204 | 1200/1208 | 0 | <- violation (other thread)
    /// | 3 | EvtIoRead | 1200/1204 | 1200/1204 | 0 |
    /// | 4 | EvtIoRead | 0/0 (Idle) | 1200/1208 | 2 |
    /// | 5 | EvtIoRead | 4/88 (System) | 1200/1204 | 2 |
    /// | 6 | EvtIoRead | 0/0 (Idle) | 1200/1204 | 2 |
    /// | 7 | EvtInterruptIsr | 0/0 | none | 9 |
    /// | 8 | EvtInterruptIsr | 1200/1204 | none | 2 | <- IRQL violation
    /// | 9 | EvtDriverDeviceAdd | 4/88 | none | 0 |
    pub(crate) fn hand_built() -> (Vec<Event>, Names) {
        use CallbackKind::*;
        let events = vec![
            ev(
                EvtIoInCallerContext,
                APP,
                T1,
                PASSIVE_LEVEL,
                Some((APP, T1)),
            ),
            ev(
                EvtIoInCallerContext,
                APP,
                T2,
                PASSIVE_LEVEL,
                Some((APP, T2)),
            ),
            ev(
                EvtIoInCallerContext,
                APP,
                T1,
                PASSIVE_LEVEL,
                Some((APP, T2)),
            ),
            ev(EvtIoRead, APP, T1, PASSIVE_LEVEL, Some((APP, T1))),
            ev(EvtIoRead, 0, 0, DISPATCH_LEVEL, Some((APP, T2))),
            ev(EvtIoRead, 4, 88, DISPATCH_LEVEL, Some((APP, T1))),
            ev(EvtIoRead, 0, 0, DISPATCH_LEVEL, Some((APP, T1))),
            ev(EvtInterruptIsr, 0, 0, 9, None),
            ev(EvtInterruptIsr, APP, T1, DISPATCH_LEVEL, None),
            ev(EvtDriverDeviceAdd, 4, 88, PASSIVE_LEVEL, None),
        ];
        let mut names = Names::default();
        names.processes.insert(APP, "ctxctl.exe".into());
        for (tid, label) in [(T1, "ctxctl worker 1"), (T2, "ctxctl worker 2")] {
            names.threads.insert(
                tid,
                ThreadName {
                    pid: APP,
                    label: label.into(),
                },
            );
        }
        names.threads.insert(
            88,
            ThreadName {
                pid: 4,
                label: "System worker".into(),
            },
        );
        (events, names)
    }

    #[test]
    fn numbers_match_the_hand_computed_run() {
        let (events, names) = hand_built();
        let summary = summarize(&events, &names);
        let kinds: Vec<_> = summary.iter().map(|s| s.callback).collect();
        assert_eq!(
            kinds,
            [
                "EvtDriverDeviceAdd",
                "EvtIoInCallerContext",
                "EvtIoRead",
                "EvtInterruptIsr"
            ]
        );

        let add = &summary[0];
        assert_eq!(add.documented, "system");
        assert_eq!((add.events, add.no_requestor), (1, 1));
        assert_eq!(add.requestor_share, None);
        assert!(add.consistent);

        let caller = &summary[1];
        assert_eq!(caller.documented, "requestor");
        assert_eq!(caller.events, 3);
        assert_eq!(caller.in_requestor_context, 2);
        assert_eq!(caller.other_context, 1);
        assert_eq!(caller.no_requestor, 0);
        assert_eq!(caller.requestor_share, Some(2.0 / 3.0));
        assert_eq!(caller.distinct_threads, 2);
        assert_eq!(caller.distinct_processes, 1);
        assert_eq!(caller.irql, [0]);
        assert_eq!(caller.context_violations, 1);
        assert!(!caller.consistent);
        assert_eq!(
            caller.other_threads,
            [ThreadCount {
                tid: T1,
                pid: APP,
                label: "ctxctl worker 1".into(),
                events: 1
            }]
        );

        let read = &summary[2];
        assert_eq!(read.documented, "arbitrary");
        assert_eq!(read.events, 4);
        assert_eq!(read.in_requestor_context, 1);
        assert_eq!(read.other_context, 3);
        assert_eq!(read.requestor_share, Some(0.25));
        // Threads: 1204, Idle 0, System 88.
        assert_eq!(read.distinct_threads, 3);
        assert_eq!(read.distinct_processes, 3);
        assert_eq!(read.irql, [0, 2]);
        assert!(
            read.consistent,
            "arbitrary callbacks are consistent anywhere"
        );
        assert_eq!(
            read.other_processes,
            [
                ProcessCount {
                    pid: 0,
                    name: "Idle".into(),
                    events: 2
                },
                ProcessCount {
                    pid: 4,
                    name: "System".into(),
                    events: 1
                },
            ]
        );
        assert_eq!(read.other_threads[0].label, "idle thread CPU 0");
        assert_eq!(read.other_threads[1].label, "System worker");

        let isr = &summary[3];
        assert_eq!(isr.no_requestor, 2);
        assert_eq!(isr.irql, [2, 9]);
        assert_eq!(isr.irql_violations, 1);
        assert_eq!(isr.context_violations, 0);
        assert!(!isr.consistent);

        assert_eq!(violations(&summary), 2);
    }

    #[test]
    fn top_lists_are_capped_and_ordered() {
        let events: Vec<_> = (0..10u32)
            .flat_map(|tid| {
                (0..=tid).map(move |_| {
                    ev(
                        CallbackKind::EvtTimerFunc,
                        100 + tid,
                        1000 + tid,
                        DISPATCH_LEVEL,
                        None,
                    )
                })
            })
            .collect();
        let summary = summarize(&events, &Names::default());
        let timer = &summary[0];
        assert_eq!(timer.events, 55);
        assert_eq!(timer.other_threads.len(), TOP);
        assert_eq!(
            timer
                .other_threads
                .iter()
                .map(|t| t.events)
                .collect::<Vec<_>>(),
            [10, 9, 8]
        );
        assert_eq!(timer.other_processes[0].pid, 109);
    }
}
