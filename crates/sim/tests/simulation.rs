//! The simulator, run on the default workload in both modes, shows what Microsoft documents about
//! where each callback runs, loses nothing, and replays exactly.

use std::collections::{BTreeMap, BTreeSet};

use ctxscope_core::kind::{DISPATCH_LEVEL, IDLE_PID, PASSIVE_LEVEL, SYSTEM_PID};
use ctxscope_core::logline::parse_line;
use ctxscope_core::protocol::Mode;
use ctxscope_core::{CallbackKind, Event, Placement};
use ctxscope_sim::{Progress, SimRun, Workload, simulate};

const MODES: [Mode; 2] = [Mode::Edu, Mode::Root];

fn run(workload: &Workload) -> SimRun {
    simulate(workload, &mut |_| true).expect("the workload validates")
}

fn default_run(mode: Mode) -> SimRun {
    run(&Workload {
        mode,
        ..Workload::default()
    })
}

/// Delivered events and those read out after unload: everything the driver recorded.
fn all_events(run: &SimRun) -> impl Iterator<Item = &Event> {
    run.events.iter().chain(&run.teardown)
}

fn of_kind(run: &SimRun, kind: CallbackKind) -> Vec<&Event> {
    all_events(run).filter(|e| e.kind == kind).collect()
}

#[test]
fn specific_context_callbacks_always_run_in_the_requestor_thread() {
    for mode in MODES {
        let run = default_run(mode);
        for kind in [
            CallbackKind::EvtIoInCallerContext,
            CallbackKind::EvtDeviceFileCreate,
            CallbackKind::EvtFileCleanup,
        ] {
            let events = of_kind(&run, kind);
            assert!(!events.is_empty(), "{mode}: no {kind}");
            for event in events {
                let verdict = event.verdict();
                assert_eq!(
                    verdict.placement,
                    Placement::RequestorThread,
                    "{mode}: {event:?}"
                );
                assert!(verdict.consistent(), "{mode}: {event:?}");
                assert_eq!(event.irql, PASSIVE_LEVEL, "{mode}: {event:?}");
            }
        }
    }
}

#[test]
fn io_read_runs_inline_in_the_requestor_and_on_completion_elsewhere() {
    for mode in MODES {
        let run = default_run(mode);
        let reads = of_kind(&run, CallbackKind::EvtIoRead);
        let inline: Vec<_> = reads
            .iter()
            .filter(|e| e.verdict().placement == Placement::RequestorThread)
            .collect();
        let elsewhere: Vec<_> = reads
            .iter()
            .filter(|e| e.verdict().placement == Placement::OtherThread)
            .collect();
        assert_eq!(inline.len() + elsewhere.len(), reads.len());
        assert!(reads.iter().all(|e| e.verdict().consistent()));
        // Presented inline to an idle queue: nested in EvtIoInCallerContext, at PASSIVE_LEVEL.
        assert!(inline.iter().all(|e| e.irql == PASSIVE_LEVEL), "{mode}");
        // Presented when the previous read completed: inside the DPC or the timer.
        assert!(elsewhere.iter().all(|e| e.irql == DISPATCH_LEVEL), "{mode}");
        let share = |part: usize| part * 100 / reads.len();
        assert!(
            share(elsewhere.len()) >= 10,
            "{mode}: other {}/{}",
            elsewhere.len(),
            reads.len()
        );
        if mode == Mode::Edu {
            assert!(
                share(inline.len()) >= 10,
                "edu: inline {}/{}",
                inline.len(),
                reads.len()
            );
        } else {
            // Root mode completes one read per 10 ms tick, and with four synchronous workers
            // some read is always waiting when a tick presents the next: the queue is idle only
            // for the first read and for the close demonstration's (the workers are done). Rare,
            // as on a real root-enumerated install, but real.
            assert!(!inline.is_empty(), "root: no inline presentation");
        }
        // Some reads presented on completion ran in a thread of another process altogether.
        assert!(elsewhere.iter().any(|e| e.pid != e.requestor_pid), "{mode}");
    }
}

#[test]
fn interrupt_dpc_and_timer_run_in_arbitrary_threads_at_documented_irqls() {
    for mode in MODES {
        let run = default_run(mode);
        let mut processes = BTreeSet::new();
        let mut seen = 0;
        for kind in [
            CallbackKind::EvtInterruptIsr,
            CallbackKind::EvtInterruptDpc,
            CallbackKind::EvtTimerFunc,
        ] {
            for event in of_kind(&run, kind) {
                seen += 1;
                assert!(event.verdict().consistent(), "{mode}: {event:?}");
                match kind {
                    CallbackKind::EvtInterruptIsr => {
                        assert_eq!(Some(event.irql), run.interrupt_irql, "{event:?}");
                        assert!(event.irql > DISPATCH_LEVEL);
                    }
                    _ => assert_eq!(event.irql, DISPATCH_LEVEL, "{event:?}"),
                }
                processes.insert(event.pid);
            }
        }
        assert!(seen > 0, "{mode}");
        assert!(processes.len() >= 3, "{mode}: only {processes:?}");
        assert!(
            processes.contains(&IDLE_PID),
            "{mode}: never in Idle: {processes:?}"
        );
        assert!(
            processes.contains(&SYSTEM_PID),
            "{mode}: never in System: {processes:?}"
        );
        let names: BTreeMap<u32, &str> = run
            .processes
            .iter()
            .map(|p| (p.pid, p.name.as_str()))
            .collect();
        assert!(processes.iter().all(|pid| names.contains_key(pid)));
    }
    // In edu mode the ISR and DPC themselves (not only the timer) are seen across processes.
    let run = default_run(Mode::Edu);
    let isr_processes: BTreeSet<u32> = of_kind(&run, CallbackKind::EvtInterruptIsr)
        .iter()
        .map(|e| e.pid)
        .collect();
    assert!(isr_processes.len() >= 3, "{isr_processes:?}");
    // The DPC runs on the processor whose ISR queued it, in the thread that was running there.
    let isrs = of_kind(&run, CallbackKind::EvtInterruptIsr);
    let dpcs = of_kind(&run, CallbackKind::EvtInterruptDpc);
    assert_eq!(isrs.len(), dpcs.len());
    for dpc in &dpcs {
        assert!(
            isrs.iter().any(|isr| isr.cpu == dpc.cpu
                && isr.tid == dpc.tid
                && isr.timestamp == dpc.timestamp),
            "no ISR before {dpc:?} on its processor"
        );
    }
}

#[test]
fn pnp_and_power_callbacks_run_in_system_threads() {
    for mode in MODES {
        let run = default_run(mode);
        let system_threads: BTreeSet<u32> = run
            .threads
            .iter()
            .filter(|t| t.pid == SYSTEM_PID)
            .map(|t| t.tid)
            .collect();
        for kind in [
            CallbackKind::DriverEntry,
            CallbackKind::EvtDriverDeviceAdd,
            CallbackKind::EvtDevicePrepareHardware,
            CallbackKind::EvtDeviceD0Entry,
            CallbackKind::EvtDeviceD0Exit,
            CallbackKind::EvtDeviceReleaseHardware,
            CallbackKind::EvtDriverUnload,
        ] {
            let events = of_kind(&run, kind);
            assert_eq!(events.len(), 1, "{mode}: {kind}");
            let event = events[0];
            assert_eq!(event.pid, SYSTEM_PID, "{mode}: {event:?}");
            assert!(system_threads.contains(&event.tid), "{mode}: {event:?}");
            assert_eq!(event.irql, PASSIVE_LEVEL);
            assert!(event.verdict().consistent());
        }
        // The app saw the start; the removal happened after it closed its handle.
        assert!(
            run.events
                .iter()
                .any(|e| e.kind == CallbackKind::EvtDriverDeviceAdd)
        );
        assert!(
            run.teardown
                .iter()
                .any(|e| e.kind == CallbackKind::EvtDriverUnload)
        );
        assert_eq!(run.info.mode, mode);
    }
}

#[test]
fn file_close_runs_outside_the_closing_thread_when_io_is_outstanding() {
    for mode in MODES {
        let run = default_run(mode);
        let closes = of_kind(&run, CallbackKind::EvtFileClose);
        let elsewhere: Vec<_> = closes
            .iter()
            .filter(|e| e.verdict().placement == Placement::OtherThread)
            .collect();
        assert!(
            !elsewhere.is_empty(),
            "{mode}: every close ran in the closing thread"
        );
        for event in &closes {
            assert_eq!(event.irql, PASSIVE_LEVEL);
            assert!(event.verdict().consistent());
        }
        // The last reference went when an IRP completed; the object manager deleted the file
        // object in a System worker thread.
        assert!(
            elsewhere.iter().all(|e| e.pid == SYSTEM_PID),
            "{mode}: {elsewhere:?}"
        );
        // One read of the closed handle was in the driver and was cancelled when the thread
        // exited; one waiting in the queue was cancelled by KMDF at cleanup.
        assert_eq!(run.info.counters.reads_cancelled, 1, "{mode}");
        assert_eq!(run.requests.cancelled, 2, "{mode}");
    }
    // Without the demonstration every handle is closed with nothing outstanding, and the close
    // follows the cleanup in the closing thread.
    let run = run(&Workload {
        close_with_io_outstanding: false,
        ..Workload::default()
    });
    let closes = of_kind(&run, CallbackKind::EvtFileClose);
    assert!(!closes.is_empty());
    assert!(
        closes
            .iter()
            .all(|e| e.verdict().placement == Placement::RequestorThread)
    );
    assert_eq!(run.requests.cancelled, 0);
}

#[test]
fn nothing_is_lost_and_every_handle_is_cleaned_up_and_closed_once() {
    for mode in MODES {
        for overlapped in [0, 4] {
            let workload = Workload {
                mode,
                overlapped,
                ..Workload::default()
            };
            let run = run(&workload);
            let r = run.requests;
            assert_eq!(r.pending, 0, "{mode}: {r:?}");
            assert_eq!(r.issued, r.completed + r.cancelled, "{mode}: {r:?}");
            assert_eq!(r.failed, 0, "{mode}: {r:?}");
            let h = run.handles;
            assert_eq!(h.opened, h.cleaned_up, "{mode}: {h:?}");
            assert_eq!(h.opened, h.closed, "{mode}: {h:?}");
            // One handle per worker, the collector's, and the demonstration's two.
            assert_eq!(
                h.opened,
                u64::from(workload.processes * workload.threads) + 3
            );
            let mut per_file: BTreeMap<u64, [u32; 3]> = BTreeMap::new();
            for event in all_events(&run) {
                let slot = match event.kind {
                    CallbackKind::EvtDeviceFileCreate => 0,
                    CallbackKind::EvtFileCleanup => 1,
                    CallbackKind::EvtFileClose => 2,
                    _ => continue,
                };
                per_file.entry(event.file_id).or_default()[slot] += 1;
            }
            assert_eq!(per_file.len() as u64, h.opened);
            assert!(
                per_file.values().all(|counts| *counts == [1, 1, 1]),
                "{per_file:?}"
            );
            // Every read the workload issued came back with a valid receipt, but the two
            // cancelled ones.
            let reads = u64::from(workload.processes * workload.threads * workload.reads) + 3;
            let c = run.checks;
            assert_eq!(c.receipts, reads - 2, "{mode}: {c:?}");
            assert_eq!(run.info.counters.reads_completed, reads - 2);
            assert_eq!(
                c.receipts_invalid + c.neither_invalid + c.info_invalid,
                0,
                "{c:?}"
            );
            assert_eq!(c.get_events_invalid + c.cursor_gaps, 0, "{c:?}");
            assert_eq!(
                c.neither,
                u64::from(workload.processes * workload.threads * workload.neither)
            );
            assert!(!run.stopped_early);
        }
    }
}

#[test]
fn ring_accounting_is_exact() {
    for mode in MODES {
        let run = default_run(mode);
        let delivered = run.events.len() as u64;
        // What the app was told in its last reply: produced = delivered + dropped.
        assert_eq!(
            run.final_reply.produced(),
            delivered + run.final_reply.dropped
        );
        assert_eq!(run.final_reply.consumed, delivered);
        // And after unload, with the teardown read out: nothing unaccounted for.
        assert_eq!(
            run.ring.produced(),
            delivered + run.teardown.len() as u64 + run.ring.dropped
        );
        assert_eq!(run.ring.pending(), 0);
        assert_eq!(run.ring.dropped, 0, "{mode}: the app drains often enough");
        // The GetInfo reply was taken just before the final drain.
        assert!(run.info.ring.produced() <= run.final_reply.produced());
        assert_eq!(run.info.counter_frequency, ctxscope_sim::COUNTER_FREQUENCY);
        // Every event is delivered once: (lane, seq) identifies it.
        let keys: BTreeSet<(u8, u64)> = all_events(&run).map(|e| (e.lane, e.seq)).collect();
        assert_eq!(keys.len() as u64, run.ring.recorded);
    }
}

#[test]
fn the_same_seed_replays_exactly_and_another_seed_differs() {
    for mode in MODES {
        let workload = Workload {
            mode,
            ..Workload::default()
        };
        let first = run(&workload);
        let again = run(&workload);
        assert_eq!(first.events, again.events, "{mode}");
        assert_eq!(first.teardown, again.teardown, "{mode}");
        assert_eq!(first.log, again.log, "{mode}");
        assert_eq!(first.threads, again.threads);
        let other = run(&Workload {
            seed: workload.seed ^ 0x9e37_79b9_7f4a_7c15,
            ..workload
        });
        assert_ne!(first.events, other.events, "{mode}");
        // Not just shifted in time: the contexts the callbacks ran in differ.
        let contexts = |run: &SimRun| -> Vec<(CallbackKind, u32, u32, u32)> {
            run.events
                .iter()
                .map(|e| (e.kind, e.pid, e.tid, e.cpu))
                .collect()
        };
        assert_ne!(contexts(&first), contexts(&other), "{mode}");
    }
}

#[test]
fn root_mode_never_runs_an_isr() {
    let run = default_run(Mode::Root);
    assert!(of_kind(&run, CallbackKind::EvtInterruptIsr).is_empty());
    assert!(of_kind(&run, CallbackKind::EvtInterruptDpc).is_empty());
    assert_eq!(run.interrupt_irql, None);
    assert_eq!(run.info.counters.interrupts, 0);
    let c = run.checks;
    assert!(c.receipts > 0);
    assert_eq!(c.receipts_with_isr, 0, "a receipt says an ISR ran: {c:?}");
    assert_eq!(c.completed_by_timer_dpc, c.receipts);
    assert_eq!(c.completed_by_interrupt_dpc, 0);

    // In edu mode the interrupt DPC completes every read, with the ISR in its trail.
    let run = default_run(Mode::Edu);
    let c = run.checks;
    assert_eq!(c.receipts_with_isr, c.receipts);
    assert_eq!(c.completed_by_interrupt_dpc, c.receipts);
    assert!(run.info.counters.interrupts >= c.receipts);
    assert_eq!(run.info.counters.spurious_interrupts, 0);
}

#[test]
fn log_lines_parse_back_into_exactly_the_recorded_events() {
    for mode in MODES {
        let run = default_run(mode);
        assert!(!run.log.is_empty());
        assert!(run.log.iter().all(|line| line.ends_with('\n')));
        let mut from_log: Vec<Event> = run
            .log
            .iter()
            .filter_map(|line| parse_line(line).expect("every driver line parses"))
            .collect();
        let mut recorded: Vec<Event> = all_events(&run).copied().collect();
        let key = |e: &Event| (e.lane, e.seq);
        from_log.sort_by_key(key);
        recorded.sort_by_key(key);
        assert_eq!(from_log, recorded, "{mode}");
        // The delivered events are exactly those the log printed before the final drain.
        let delivered: BTreeSet<(u8, u64)> = run.events.iter().map(key).collect();
        assert_eq!(
            from_log
                .iter()
                .filter(|e| delivered.contains(&key(e)))
                .count(),
            run.events.len()
        );
    }
    // Without capture, nothing is kept and the driver was told to print nothing.
    let run = run(&Workload {
        capture_log: false,
        ..Workload::default()
    });
    assert!(run.log.is_empty());
    assert!(run.info.counters.log_lines_suppressed > 0);
}

#[test]
fn overlapped_workers_keep_several_reads_outstanding() {
    /// `EvtIoInCallerContext`'s detail for `IRP_MJ_READ`.
    const READ: u64 = 0x03 << 32;
    let workload = Workload {
        overlapped: 4,
        ..Workload::default()
    };
    let run = run(&workload);
    // Per requestor thread: reads entering the driver (EvtIoInCallerContext of IRP_MJ_READ)
    // minus reads completed (events flagged as completing a read's trail), in time order,
    // completions first at equal times so the count is never overstated.
    let mut timeline: Vec<(u64, u8, u32, u64)> = Vec::new();
    let read_ids: BTreeSet<u64> = run
        .events
        .iter()
        .filter(|e| e.kind == CallbackKind::EvtIoInCallerContext && e.detail == READ)
        .map(|e| e.request_id)
        .collect();
    for event in &run.events {
        if event.kind == CallbackKind::EvtIoInCallerContext && event.detail == READ {
            timeline.push((event.timestamp, 1, event.requestor_tid, event.request_id));
        } else if event.flags & Event::FLAG_COMPLETES != 0
            && read_ids.contains(&event.request_id)
            && event.kind != CallbackKind::EvtIoInCallerContext
        {
            timeline.push((event.timestamp, 0, event.requestor_tid, event.request_id));
        }
    }
    timeline.sort_unstable();
    let mut outstanding: BTreeMap<u32, i64> = BTreeMap::new();
    let mut most = 0;
    for (_, issue, tid, _) in timeline {
        let count = outstanding.entry(tid).or_default();
        *count += if issue == 1 { 1 } else { -1 };
        most = most.max(*count);
    }
    assert!(most >= 2, "no thread ever had two reads outstanding");
    assert!(most <= i64::from(workload.overlapped), "{most}");
    assert_eq!(run.requests.pending, 0);
}

#[test]
fn processes_and_threads_look_like_windows() {
    let workload = Workload {
        processes: 3,
        threads: 2,
        cpus: 6,
        background_threads: 5,
        ..Workload::default()
    };
    let run = run(&workload);
    let names: Vec<&str> = run.processes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names[..2], ["Idle", "System"]);
    assert_eq!(names.iter().filter(|n| **n == "ctxctl.exe").count(), 3);
    assert_eq!(run.processes[0].pid, IDLE_PID);
    assert_eq!(run.processes[1].pid, SYSTEM_PID);
    let pids: BTreeSet<u32> = run.processes.iter().map(|p| p.pid).collect();
    assert_eq!(pids.len(), run.processes.len());
    // Idle has one thread per CPU, each with ID 0; every other ID is a unique multiple of 4.
    let idle: Vec<_> = run.threads.iter().filter(|t| t.pid == IDLE_PID).collect();
    assert_eq!(idle.len(), 6);
    assert!(idle.iter().all(|t| t.tid == 0));
    let others: Vec<u32> = run
        .threads
        .iter()
        .filter(|t| t.pid != IDLE_PID)
        .map(|t| t.tid)
        .collect();
    assert!(others.iter().all(|tid| tid % 4 == 0 && *tid != 0));
    assert_eq!(others.iter().collect::<BTreeSet<_>>().len(), others.len());
    assert!(
        others.iter().all(|tid| !pids.contains(tid)),
        "one ID table for processes and threads"
    );
    assert!(run.threads.iter().all(|t| pids.contains(&t.pid)));
    // Every app process issued requests.
    let requesting: BTreeSet<u32> = run
        .events
        .iter()
        .filter(|e| e.kind == CallbackKind::EvtIoInCallerContext)
        .map(|e| e.requestor_pid)
        .collect();
    assert_eq!(requesting.len(), 3);
    // Every event ran on a CPU of the machine, in a thread of the machine.
    let threads: BTreeSet<(u32, u32)> = run.threads.iter().map(|t| (t.pid, t.tid)).collect();
    assert!(all_events(&run).all(|e| e.cpu < 6 && threads.contains(&(e.pid, e.tid))));
}

#[test]
fn progress_reaches_the_total_and_stopping_early_still_drains() {
    let workload = Workload::default();
    let mut seen: Vec<Progress> = Vec::new();
    let run = simulate(&workload, &mut |p| {
        seen.push(p);
        true
    })
    .unwrap();
    assert!(!run.stopped_early);
    let total = workload.requests_total();
    assert!(seen.iter().all(|p| p.requests_total == total));
    assert!(
        seen.windows(2)
            .all(|w| w[0].requests_done <= w[1].requests_done)
    );
    assert_eq!(seen.last().map(|p| p.requests_done), Some(total));

    // Ctrl-C at the first report: the app stops issuing, lets what is in flight finish, drains
    // and closes; the run still accounts for everything.
    for mode in MODES {
        let mut calls = 0;
        let run = simulate(
            &Workload {
                mode,
                ..Workload::default()
            },
            &mut |_| {
                calls += 1;
                false
            },
        )
        .unwrap();
        assert_eq!(
            calls, 1,
            "the observer is not asked again once it said stop"
        );
        assert!(run.stopped_early);
        assert_eq!(run.requests.pending, 0);
        assert!(run.requests.issued < total, "{:?}", run.requests);
        assert!(!run.events.is_empty());
        assert_eq!(
            run.final_reply.produced(),
            run.events.len() as u64 + run.final_reply.dropped
        );
        assert_eq!(run.handles.opened, run.handles.closed);
        assert_eq!(run.handles.opened, run.handles.cleaned_up);
    }
}

#[test]
fn other_machine_shapes_run_cleanly() {
    for (cpus, threads, overlapped, latency, period) in [
        (1, 1, 0, 0, 1),
        (2, 8, 8, 5, 3),
        (12, 3, 2, 500, 25),
        (64, 2, 0, 50, 10),
    ] {
        for mode in MODES {
            let workload = Workload {
                mode,
                cpus,
                threads,
                overlapped,
                interrupt_latency_us: latency,
                timer_period_ms: period,
                reads: 20,
                writes: 5,
                ioctls: 2,
                neither: 1,
                background_threads: cpus,
                ..Workload::default()
            };
            let run = run(&workload);
            assert_eq!(run.requests.pending, 0, "{workload:?}");
            assert_eq!(run.requests.failed, 0, "{workload:?}");
            assert_eq!(run.handles.opened, run.handles.closed, "{workload:?}");
            assert_eq!(
                run.ring.produced(),
                run.events.len() as u64 + run.teardown.len() as u64 + run.ring.dropped
            );
            assert!(
                all_events(&run).all(|e| e.verdict().consistent()),
                "{workload:?}"
            );
            assert!(all_events(&run).all(|e| e.cpu < cpus));
        }
    }
}

#[test]
fn a_workload_without_requests_still_opens_drains_and_closes() {
    for mode in MODES {
        let run = run(&Workload {
            mode,
            reads: 0,
            writes: 0,
            ioctls: 0,
            neither: 0,
            close_with_io_outstanding: false,
            ..Workload::default()
        });
        assert_eq!(run.handles.opened, 5, "four workers and the collector");
        assert_eq!(run.handles.opened, run.handles.closed);
        assert_eq!(of_kind(&run, CallbackKind::EvtIoRead).len(), 0);
        assert_eq!(run.requests.pending, 0);
        assert!(
            run.events
                .iter()
                .any(|e| e.kind == CallbackKind::EvtDeviceFileCreate)
        );
    }
}

#[test]
fn ids_stay_unique_on_the_largest_machine() {
    let run = run(&Workload {
        cpus: 64,
        processes: 16,
        threads: 64,
        background_threads: 256,
        reads: 1,
        writes: 1,
        ioctls: 0,
        neither: 0,
        ..Workload::default()
    });
    let pids: BTreeSet<u32> = run.processes.iter().map(|p| p.pid).collect();
    assert_eq!(pids.len(), run.processes.len());
    let tids: Vec<u32> = run
        .threads
        .iter()
        .filter(|t| t.pid != IDLE_PID)
        .map(|t| t.tid)
        .collect();
    assert_eq!(
        tids.len(),
        2 + 2 + 256 + 16 * 64 + 2,
        "System, background, app threads"
    );
    assert_eq!(tids.iter().collect::<BTreeSet<_>>().len(), tids.len());
    assert!(tids.iter().all(|tid| !pids.contains(tid) && tid % 4 == 0));
    assert_eq!(run.requests.pending, 0);
    assert_eq!(run.handles.opened, run.handles.closed);
    assert!(all_events(&run).all(|e| e.verdict().consistent()));
}
