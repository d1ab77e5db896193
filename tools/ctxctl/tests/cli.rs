//! The `ctxctl` binary end to end: every subcommand that runs off Windows, its formats, its
//! errors and its exit codes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

fn ctxctl() -> Command {
    let mut cmd = Command::cargo_bin("ctxctl").expect("the ctxctl binary is built");
    cmd.env("NO_COLOR", "1");
    cmd
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Out {
    let output = cmd.output().expect("ctxctl runs");
    Out {
        code: output
            .status
            .code()
            .expect("ctxctl exits, it is not killed"),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

fn no_panic(out: &Out) {
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

/// The small workload the tests simulate.
const SMALL: [&str; 10] = [
    "--threads",
    "2",
    "--reads",
    "6",
    "--writes",
    "2",
    "--ioctls",
    "1",
    "--neither",
    "1",
];

fn simulate_json(extra: &[&str]) -> Value {
    let out = run(ctxctl()
        .arg("simulate")
        .args(SMALL)
        .args(extra)
        .args(["--format", "json"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).expect("valid JSON")
}

/// The shape of a JSON value: every path with the types seen there over all array elements.
fn shape(value: &Value, path: &str, out: &mut BTreeMap<String, BTreeSet<&'static str>>) {
    let kind = match value {
        Value::Object(map) => {
            for (key, child) in map {
                shape(child, &format!("{path}.{key}"), out);
            }
            "object"
        }
        Value::Array(items) => {
            for item in items {
                shape(item, &format!("{path}[]"), out);
            }
            "array"
        }
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Null => "null",
    };
    out.entry(path.to_owned()).or_default().insert(kind);
}

#[test]
fn json_export_schema_is_stable() {
    // Overlapped, two processes, root mode: every optional field is present.
    let json = simulate_json(&["--mode", "root", "--processes", "2", "--overlapped", "2"]);
    let mut paths = BTreeMap::new();
    shape(&json, "", &mut paths);
    let mut actual = String::new();
    for (path, kinds) in &paths {
        let kinds: Vec<_> = kinds.iter().copied().collect();
        writeln!(actual, "{path}: {}", kinds.join("|")).unwrap();
    }
    let expected = std::fs::read_to_string(golden("export-shape.txt")).expect("golden file");
    assert_eq!(
        actual, expected,
        "the JSON export's field names or types changed: update tests/golden/export-shape.txt and README.md together"
    );
}

#[test]
fn json_export_of_a_log_matches_the_golden_file() {
    let out = run(ctxctl()
        .arg("report")
        .arg(fixture("windbg.log"))
        .args(["--format", "json"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut actual: Value = serde_json::from_str(&out.stdout).unwrap();
    // The tool's version is the only field that may change without a schema change.
    actual["meta"]["tool"] = Value::String("ctxctl VERSION".into());
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(golden("windbg-report.json")).expect("golden file"),
    )
    .unwrap();
    assert_eq!(actual, expected);
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_another() {
    let a = simulate_json(&["--seed", "42"]);
    let b = simulate_json(&["--seed", "42"]);
    let c = simulate_json(&["--seed", "43"]);
    assert_eq!(a, b);
    assert_ne!(a["events"], c["events"]);
    assert_eq!(a["meta"]["seed"], 42);
    assert_eq!(a["meta"]["source"], "simulator");
    assert_eq!(a["meta"]["mode"], "edu");
}

#[test]
fn summary_agrees_with_the_events() {
    let json = simulate_json(&[]);
    let events = json["events"].as_array().unwrap();
    let summary = json["summary"].as_array().unwrap();
    let total: u64 = summary
        .iter()
        .map(|row| row["events"].as_u64().unwrap())
        .sum();
    assert_eq!(total, events.len() as u64);
    for row in summary {
        let name = row["callback"].as_str().unwrap();
        let of_kind: Vec<_> = events.iter().filter(|e| e["callback"] == name).collect();
        let count = |placement: &str| {
            of_kind
                .iter()
                .filter(|e| e["placement"] == placement)
                .count() as u64
        };
        assert_eq!(
            row["events"].as_u64().unwrap(),
            of_kind.len() as u64,
            "{name}"
        );
        assert_eq!(
            row["in_requestor_context"].as_u64().unwrap(),
            count("requestor"),
            "{name}"
        );
        assert_eq!(
            row["other_context"].as_u64().unwrap(),
            count("other"),
            "{name}"
        );
        assert_eq!(
            row["no_requestor"].as_u64().unwrap(),
            count("none"),
            "{name}"
        );
        let bad = of_kind.iter().filter(|e| e["consistent"] == false).count() as u64;
        assert_eq!(row["violations"].as_u64().unwrap(), bad, "{name}");
        assert_eq!(row["consistent"].as_bool().unwrap(), bad == 0, "{name}");
        assert!(
            ["requestor", "arbitrary", "system"].contains(&row["documented"].as_str().unwrap())
        );
    }
    // Edu mode: interrupts happen, and their DPCs run wherever the CPU was.
    assert!(
        summary
            .iter()
            .any(|row| row["callback"] == "EvtInterruptIsr")
    );
}

#[test]
fn json_and_log_exports_read_back_to_the_same_summary() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("run.json");
    let log_path = dir.path().join("run.log");
    for (format, path) in [("json", &json_path), ("log", &log_path)] {
        let out = run(ctxctl()
            .arg("simulate")
            .args(SMALL)
            .args(["--format", format, "--out"])
            .arg(path));
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(out.stderr.contains("wrote the report to"));
    }
    let original: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let reread = |path: &Path| -> Value {
        let out = run(ctxctl().arg("report").arg(path).args(["--format", "json"]));
        assert_eq!(out.code, 0, "{}", out.stderr);
        serde_json::from_str(&out.stdout).unwrap()
    };
    let from_json = reread(&json_path);
    assert_eq!(from_json, original, "a JSON export re-renders identically");
    let from_log = reread(&log_path);
    assert_eq!(from_log["events"], original["events"]);
    assert_eq!(from_log["meta"]["source"], "log");
    assert_eq!(from_log["meta"]["origin"], "plain-log");
    assert_eq!(from_log["meta"]["mode"], "edu");
    // The same counts and verdicts; only the names are unknown in a log.
    let strip = |summary: &Value| -> Vec<Value> {
        summary
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                let mut row = row.clone();
                let map = row.as_object_mut().unwrap();
                map.remove("other_processes");
                map.remove("other_threads");
                row
            })
            .collect()
    };
    assert_eq!(strip(&from_log["summary"]), strip(&original["summary"]));
}

#[test]
fn the_log_format_is_the_driver_lines() {
    let out = run(ctxctl()
        .arg("simulate")
        .args(SMALL)
        .args(["--format", "log"]));
    assert_eq!(out.code, 0);
    let json = simulate_json(&[]);
    let lines: Vec<_> = out.stdout.lines().collect();
    assert_eq!(lines.len(), json["events"].as_array().unwrap().len());
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("ctxscope: ") && l.contains(" flags=0x"))
    );
}

#[test]
fn csv_has_a_header_and_one_row_per_event() {
    let out = run(ctxctl()
        .arg("simulate")
        .args(SMALL)
        .args(["--format", "csv"]));
    assert_eq!(out.code, 0);
    let json = simulate_json(&[]);
    let mut reader = csv::Reader::from_reader(out.stdout.as_bytes());
    assert_eq!(&reader.headers().unwrap()[2], "callback");
    assert_eq!(
        reader.records().count(),
        json["events"].as_array().unwrap().len()
    );
}

#[test]
fn table_report_has_rows_legend_and_no_colour_off_a_terminal() {
    let out = run(ctxctl().arg("simulate").args(SMALL));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("ctxscope report: simulator (seed 1), mode edu")
    );
    for needle in [
        "EvtIoRead",
        "EvtInterruptDpc",
        "In requestor's thread",
        "arbitrary  whatever thread",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle} missing:\n{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains('\u{1b}'));
}

#[test]
fn html_timeline_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("t.html");
    let out = run(ctxctl()
        .arg("simulate")
        .args(SMALL)
        .args(["--format", "json", "--html"])
        .arg(&html));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_eq!(
        page.matches("<rect class=\"m ").count(),
        json["events"].as_array().unwrap().len()
    );
}

#[test]
fn debugview_log_reports_bad_lines_and_still_renders() {
    let out = run(ctxctl()
        .arg("report")
        .arg(fixture("debugview.log"))
        .args(["--format", "json"]));
    no_panic(&out);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Hand-checked against the fixture: line 6 is cut before `req`, line 10 has `rtid=12x8`.
    assert!(
        out.stderr
            .contains("debugview.log: line 6: field req: missing (the line was cut short)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("debugview.log: line 10: field rtid: not a number"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("skipped 4 other line(s) and 2 malformed ctxscope line(s)"),
        "{}",
        out.stderr
    );
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["meta"]["origin"], "debugview-log");
    assert_eq!(json["meta"]["malformed_lines"], 2);
    assert_eq!(json["events"].as_array().unwrap().len(), 7);
    let row = |name: &str| {
        json["summary"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["callback"] == name)
            .unwrap()
            .clone()
    };
    // EvtIoRead: once inline in 1204 for 1204, once in CPU 1's idle thread for 1208.
    let read = row("EvtIoRead");
    assert_eq!(read["events"], 2);
    assert_eq!(read["in_requestor_context"], 1);
    assert_eq!(read["other_context"], 1);
    assert_eq!(read["requestor_share"], 0.5);
    assert_eq!(read["irql"], serde_json::json!([0, 2]));
    assert_eq!(read["other_threads"][0]["label"], "idle thread CPU 1");
    // EvtFileCleanup ran in 1208 for a handle 1204 closed: the one violation.
    let cleanup = row("EvtFileCleanup");
    assert_eq!(cleanup["consistent"], false);
    assert_eq!(cleanup["context_violations"], 1);
    let isr = row("EvtInterruptIsr");
    assert_eq!(isr["no_requestor"], 1);
    assert_eq!(isr["consistent"], true);
    assert_eq!(row("EvtInterruptDpc")["requestor_share"], 0.0);
}

#[test]
fn table_from_a_log_shows_the_violation() {
    let out = run(ctxctl().arg("report").arg(fixture("debugview.log")));
    assert_eq!(out.code, 0);
    assert!(
        out.stdout
            .contains("1 event(s) contradict the documentation: EvtFileCleanup."),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("warning: 2 malformed ctxscope line(s) skipped")
    );
}

#[test]
fn missing_empty_and_corrupt_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(PathBuf, &str)> = vec![
        (dir.path().join("nope.log"), "cannot read"),
        (
            fixture("garbage.log"),
            "no usable ctxscope event line among 2 lines",
        ),
        (
            {
                let p = dir.path().join("empty.log");
                std::fs::write(&p, "").unwrap();
                p
            },
            "the file is empty",
        ),
        (
            {
                let p = dir.path().join("bad.json");
                std::fs::write(&p, "{\"meta\": {\"schema_version\": 1}, \"events\": [").unwrap();
                p
            },
            "not a ctxctl JSON export",
        ),
        (
            {
                let p = dir.path().join("future.json");
                let mut json = simulate_json(&[]);
                json["meta"]["schema_version"] = 9.into();
                std::fs::write(&p, json.to_string()).unwrap();
                p
            },
            "schema_version 9",
        ),
    ];
    for (path, message) in cases {
        let out = run(ctxctl().arg("report").arg(&path));
        no_panic(&out);
        assert_eq!(out.code, 1, "{}: {}", path.display(), out.stderr);
        assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
        assert!(
            out.stderr.contains(message),
            "{}: {}",
            path.display(),
            out.stderr
        );
    }
}

#[test]
fn the_driver_commands_say_they_need_windows_and_run_simulates() {
    if cfg!(windows) {
        return;
    }
    // `run` says so and simulates the same workload: the README's one command works anywhere.
    let out = run(ctxctl().args(["run", "--threads", "2", "--reads", "5", "--format", "json"]));
    no_panic(&out);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "the ctxscope driver runs only on Windows; simulating the same workload instead"
        ),
        "{}",
        out.stderr
    );
    let simulated = run(ctxctl().args([
        "simulate",
        "--threads",
        "2",
        "--reads",
        "5",
        "--format",
        "json",
    ]));
    assert_eq!(
        out.stdout, simulated.stdout,
        "run off Windows is exactly `simulate` with defaults"
    );
    for args in [
        vec!["watch", "--callback", "EvtIoRead"],
        vec!["info"],
        vec!["install"],
        vec!["uninstall"],
        vec!["status"],
        vec!["worker"],
    ] {
        let out = run(ctxctl().args(&args));
        no_panic(&out);
        assert_eq!(out.code, 1, "{args:?}");
        assert!(
            out.stderr.contains("runs only on Windows"),
            "{args:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn bad_arguments_are_usage_errors() {
    for (args, message) in [
        (vec!["simulate", "--threads", "0"], "--threads"),
        (vec!["simulate", "--mode", "pci"], "--mode"),
        (vec!["simulate", "--format", "xml"], "--format"),
        (
            vec!["simulate", "--reads=-3"],
            "invalid value '-3' for '--reads <READS>'",
        ),
        (
            vec!["watch", "--callback", "EvtIoReed"],
            "unknown callback `EvtIoReed`",
        ),
        (vec!["report"], "FILE"),
        (vec!["frobnicate"], "frobnicate"),
        (vec!["uninstall", "--untrust-certificate"], "--package"),
    ] {
        let out = run(ctxctl().args(&args));
        no_panic(&out);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn workload_limits_name_the_flag() {
    let out = run(ctxctl().args(["simulate", "--interrupt-latency-us", "2000000"]));
    no_panic(&out);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("--interrupt-latency-us 2000000 is out of range: expected 0..=1000000"),
        "{}",
        out.stderr
    );
}

#[test]
fn unwritable_output_is_a_clear_error() {
    let out = run(ctxctl()
        .arg("simulate")
        .args(SMALL)
        .args(["--out", "/nonexistent-dir/report.txt"]));
    no_panic(&out);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("cannot write /nonexistent-dir/report.txt"),
        "{}",
        out.stderr
    );
}
