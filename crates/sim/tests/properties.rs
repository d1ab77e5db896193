//! Any valid workload, stopped at any point, accounts for every request, handle and event, and
//! every callback lands where Microsoft documents it.

use ctxscope_core::protocol::Mode;
use ctxscope_sim::{Workload, simulate};
use proptest::prelude::*;

fn workload() -> impl Strategy<Value = Workload> {
    (
        (
            any::<u64>(),
            1..=16_u32,
            any::<bool>(),
            1..=3_u32,
            1..=6_u32,
        ),
        (0..30_u32, 0..10_u32, 0..4_u32, 0..3_u32, 0..6_u32),
        (
            1..=20_u32,
            0..300_u32,
            0..8_u32,
            any::<bool>(),
            any::<bool>(),
        ),
    )
        .prop_map(|(machine, requests, rest)| {
            let (seed, cpus, root, processes, threads) = machine;
            let (reads, writes, ioctls, neither, overlapped) = requests;
            let (timer_period_ms, interrupt_latency_us, background_threads, close, capture_log) =
                rest;
            Workload {
                seed,
                cpus,
                mode: if root { Mode::Root } else { Mode::Edu },
                processes,
                threads,
                reads,
                writes,
                ioctls,
                neither,
                overlapped,
                timer_period_ms,
                interrupt_latency_us,
                background_threads,
                close_with_io_outstanding: close,
                capture_log,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_run_accounts_for_everything(workload in workload(), stop_at in 0..5_u32) {
        prop_assert_eq!(workload.validate(), Ok(()));
        // stop_at 0: never stop; otherwise Ctrl-C at that progress report.
        let mut calls = 0;
        let run = simulate(&workload, &mut |_| {
            calls += 1;
            calls != stop_at
        })
        .unwrap();
        let r = run.requests;
        prop_assert_eq!(r.pending, 0);
        prop_assert_eq!(r.issued, r.completed + r.cancelled);
        prop_assert_eq!(r.failed, 0);
        prop_assert_eq!(run.handles.opened, run.handles.closed);
        prop_assert_eq!(run.handles.opened, run.handles.cleaned_up);
        prop_assert_eq!(
            run.ring.produced(),
            run.events.len() as u64 + run.teardown.len() as u64 + run.ring.dropped
        );
        prop_assert!(run.events.iter().chain(&run.teardown).all(|e| e.verdict().consistent()));
        let c = run.checks;
        prop_assert_eq!(
            c.receipts_invalid + c.neither_invalid + c.info_invalid + c.get_events_invalid,
            0
        );
        prop_assert_eq!(c.cursor_gaps, 0);
        if !run.stopped_early {
            prop_assert_eq!(run.requests.issued - c.get_events - 2, workload.requests_total());
            let cancelled = u64::from(workload.close_with_io_outstanding);
            prop_assert_eq!(run.info.counters.reads_cancelled, cancelled);
        }
        prop_assert_eq!(run.log.is_empty(), !workload.capture_log);
    }
}
