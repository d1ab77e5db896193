//! What the core's property tests share.

use ctxscope_core::event::{Event, ExecContext, Requestor};
use ctxscope_core::kind::CallbackKind;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

/// `cases` cases natively. Under Miri, which runs each case thousands of times slower, a few
/// cases still walk every code path, and failures are not persisted: Miri's isolation forbids the
/// file system, and there is nothing to replay them with.
pub fn config(cases: u32) -> Config {
    Config {
        cases: if cfg!(miri) { 4 } else { cases },
        failure_persistence: if cfg!(miri) {
            None
        } else {
            Some(Box::new(FileFailurePersistence::default()))
        },
        ..Config::default()
    }
}

prop_compose! {
    /// Any event the record can hold: every kind, every field, with or without a requestor.
    #[allow(dead_code, reason = "not every test binary that includes `common` generates events")]
    pub fn event()(
        kind in prop::sample::select(CallbackKind::ALL.to_vec()),
        seq: u64, timestamp: u64, request_id: u64, file_id: u64, detail: u64,
        pid: u32, tid: u32, cpu: u32, irql: u8, lane: u8,
        requestor in prop::option::of((any::<u32>(), any::<u32>())),
        completes: bool,
    ) -> Event {
        let mut event = Event::new(kind, ExecContext { pid, tid, irql, cpu }, timestamp)
            .with_ids(request_id, file_id)
            .with_detail(detail)
            .with_requestor(requestor.map(|(pid, tid)| Requestor { pid, tid }))
            .completing(completes);
        event.seq = seq;
        event.lane = lane;
        event
    }
}
