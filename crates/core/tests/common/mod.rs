//! What the core's property tests share.

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
