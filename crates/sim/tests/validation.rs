//! Every out-of-range workload field is refused with an error naming it.

use ctxscope_core::protocol::Mode;
use ctxscope_sim::{SimError, Workload, simulate};

fn refused(workload: &Workload) -> SimError {
    let error = workload.validate().expect_err("out of range");
    // simulate refuses it the same way, without running anything.
    let mut called = false;
    let via_simulate = simulate(workload, &mut |_| {
        called = true;
        true
    })
    .expect_err("simulate validates first");
    assert_eq!(error, via_simulate);
    assert!(!called);
    error
}

fn field_of(error: &SimError) -> &'static str {
    match error {
        SimError::OutOfRange { field, .. } => field,
        SimError::InvalidMode => "mode",
    }
}

#[test]
fn the_default_workload_is_valid() {
    assert_eq!(Workload::default().validate(), Ok(()));
    let edges = Workload {
        cpus: 64,
        processes: 16,
        threads: 64,
        reads: 0,
        writes: 0,
        ioctls: 0,
        neither: 0,
        overlapped: 64,
        timer_period_ms: 60_000,
        interrupt_latency_us: 0,
        background_threads: 256,
        ..Workload::default()
    };
    assert_eq!(edges.validate(), Ok(()));
    assert_eq!(
        Workload {
            mode: Mode::Root,
            ..Workload::default()
        }
        .validate(),
        Ok(())
    );
}

/// One out-of-range value per field: the field's name, how to set it, and the value.
type Case = (&'static str, fn(&mut Workload), u64);

const CASES: [Case; 15] = [
    ("cpus", |w| w.cpus = 0, 0),
    ("cpus", |w| w.cpus = 65, 65),
    ("processes", |w| w.processes = 0, 0),
    ("processes", |w| w.processes = 17, 17),
    ("threads", |w| w.threads = 0, 0),
    ("threads", |w| w.threads = 65, 65),
    ("reads", |w| w.reads = 10_000_001, 10_000_001),
    ("writes", |w| w.writes = u32::MAX, u32::MAX as u64),
    ("ioctls", |w| w.ioctls = 10_000_001, 10_000_001),
    ("neither", |w| w.neither = 10_000_001, 10_000_001),
    ("overlapped", |w| w.overlapped = 65, 65),
    ("timer_period_ms", |w| w.timer_period_ms = 0, 0),
    ("timer_period_ms", |w| w.timer_period_ms = 60_001, 60_001),
    (
        "interrupt_latency_us",
        |w| w.interrupt_latency_us = 1_000_001,
        1_000_001,
    ),
    ("background_threads", |w| w.background_threads = 257, 257),
];

#[test]
fn each_out_of_range_field_is_named() {
    for (field, set, value) in CASES {
        let mut workload = Workload::default();
        set(&mut workload);
        let error = refused(&workload);
        assert_eq!(field_of(&error), field, "{error}");
        let SimError::OutOfRange {
            value: given,
            expected,
            ..
        } = error
        else {
            panic!("{error}");
        };
        assert_eq!(given, value);
        let message = error.to_string();
        assert!(
            message.contains(field) && message.contains(expected),
            "{message}"
        );
    }
    let error = refused(&Workload {
        mode: Mode::Starting,
        ..Workload::default()
    });
    assert_eq!(error, SimError::InvalidMode);
    assert!(error.to_string().contains("edu or root"));
}
