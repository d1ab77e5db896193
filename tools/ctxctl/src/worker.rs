//! What a worker process (`ctxctl worker`, started by `ctxctl run --processes N`) tells its
//! parent: one JSON line on standard output naming its process, its threads and what its I/O did.

use serde::{Deserialize, Serialize};

/// What one worker thread's I/O did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoCounts {
    /// Reads completed with a receipt.
    pub reads_ok: u64,
    /// Writes completed.
    pub writes_ok: u64,
    /// `GetInfo` controls completed.
    pub ioctls_ok: u64,
    /// `METHOD_NEITHER` demonstrations completed.
    pub neither_ok: u64,
    /// Requests that failed.
    pub failed: u64,
}

impl IoCounts {
    /// Adds `other`.
    pub fn add(&mut self, other: &Self) {
        self.reads_ok += other.reads_ok;
        self.writes_ok += other.writes_ok;
        self.ioctls_ok += other.ioctls_ok;
        self.neither_ok += other.neither_ok;
        self.failed += other.failed;
    }
}

/// A worker thread.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerThread {
    /// Thread ID.
    pub tid: u32,
    /// Label for the report.
    pub label: String,
}

/// The line a worker process prints when done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Its process ID.
    pub pid: u32,
    /// Its worker threads.
    pub threads: Vec<WorkerThread>,
    /// Their I/O, added up.
    pub io: IoCounts,
    /// The first errors met (at most a few), for the parent to show.
    pub errors: Vec<String>,
}

/// The label of worker thread `thread` of process `process` (both 0-based; process 0 is `run`).
#[must_use]
pub fn thread_label(process: u32, thread: u32) -> String {
    format!("ctxctl worker {}.{}", process, thread + 1)
}

/// Parses the report line among a worker's standard output.
///
/// # Errors
/// No line parses as a report.
pub fn parse_report(stdout: &str) -> Result<WorkerReport, String> {
    stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line.trim()).ok())
        .ok_or_else(|| {
            format!(
                "the worker printed no report; its output was: {:?}",
                stdout.trim()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_line_round_trips() {
        let report = WorkerReport {
            pid: 1300,
            threads: vec![WorkerThread {
                tid: 1304,
                label: thread_label(1, 0),
            }],
            io: IoCounts {
                reads_ok: 3,
                failed: 1,
                ..IoCounts::default()
            },
            errors: vec!["read: the device is busy".into()],
        };
        let line = serde_json::to_string(&report).unwrap();
        assert_eq!(parse_report(&format!("noise\n{line}\n")).unwrap(), report);
        assert_eq!(report.threads[0].label, "ctxctl worker 1.1");
        assert!(
            parse_report("nothing here")
                .unwrap_err()
                .contains("nothing here")
        );
        let mut total = IoCounts::default();
        total.add(&report.io);
        total.add(&report.io);
        assert_eq!((total.reads_ok, total.failed), (6, 2));
    }
}
