//! `ctxctl run` and `ctxctl worker`: worker threads (and processes) issuing I/O to the device, a
//! drainer thread gathering the driver's events, and the report.

use std::collections::VecDeque;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ctxscope_core::Event;
use ctxscope_core::protocol::{AlignedBuf, InfoReply, ReadReceipt};
use windows_sys::Win32::System::Threading::{GetCurrentProcessId, GetCurrentThreadId};

use super::device::{Device, EVENTS_BUFFER, device_error, open_checked};
use super::names;
use crate::cli::{RunArgs, WorkerArgs, WorkloadArgs};
use crate::drain::DrainState;
use crate::model::{Meta, Names, Origin, Run, Source, ThreadName, WorkloadMeta};
use crate::wide::code;
use crate::worker::{IoCounts, WorkerReport, WorkerThread, thread_label};
use crate::{output, stop};

/// How many errors a worker keeps to show.
const ERRORS_KEPT: usize = 5;
/// Pause between two `GetEvents` when the previous reply was not full.
const DRAIN_PAUSE: Duration = Duration::from_millis(20);
/// How long the drainer retries while another reader holds the ring.
const BUSY_GIVE_UP: Duration = Duration::from_secs(5);

fn current_tid() -> u32 {
    // SAFETY: no arguments; returns the calling thread's ID.
    unsafe { GetCurrentThreadId() }
}

fn current_pid() -> u32 {
    // SAFETY: no arguments; returns the calling process's ID.
    unsafe { GetCurrentProcessId() }
}

/// What one worker thread did.
struct ThreadResult {
    tid: u32,
    label: String,
    io: IoCounts,
    errors: Vec<String>,
}

/// One worker thread: opens its own handle (so file create, cleanup and close run for it),
/// then interleaves its reads, writes and I/O controls.
fn worker_thread(workload: &WorkloadArgs, label: String, progress: &AtomicU64) -> ThreadResult {
    let tid = current_tid();
    let mut io = IoCounts::default();
    let mut errors = Vec::new();
    let mut note = |error: anyhow::Error, io: &mut IoCounts| {
        io.failed += 1;
        if errors.len() < ERRORS_KEPT {
            errors.push(format!("{label}: {error:#}"));
        }
    };
    let device = match Device::open(workload.overlapped > 0) {
        Ok(device) => device,
        Err(error) => {
            note(error, &mut io);
            return ThreadResult {
                tid,
                label,
                io,
                errors,
            };
        }
    };
    let rounds = [
        workload.reads,
        workload.writes,
        workload.ioctls,
        workload.neither,
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    let mut outstanding = VecDeque::new();
    let payload = [0x5Au8; 64];
    let neither_input = b"ctxscope METHOD_NEITHER demonstration";
    for round in 0..rounds {
        if stop::requested() {
            break;
        }
        if round < workload.reads {
            if workload.overlapped > 0 {
                // Keep up to `overlapped` reads in flight; finish the oldest when full.
                while outstanding.len() >= workload.overlapped as usize {
                    finish_read(outstanding.pop_front(), &mut io, &mut note, progress);
                }
                match device.start_read() {
                    Ok(pending) => outstanding.push_back(pending),
                    Err(error) => note(error, &mut io),
                }
            } else {
                match device.read() {
                    Ok(_) => io.reads_ok += 1,
                    Err(error) => note(error, &mut io),
                }
                progress.fetch_add(1, Ordering::Relaxed);
            }
        }
        if round < workload.writes {
            match device.write(&payload) {
                Ok(()) => io.writes_ok += 1,
                Err(error) => note(error, &mut io),
            }
            progress.fetch_add(1, Ordering::Relaxed);
        }
        if round < workload.ioctls {
            match device.info() {
                Ok(_) => io.ioctls_ok += 1,
                Err(error) => note(error, &mut io),
            }
            progress.fetch_add(1, Ordering::Relaxed);
        }
        if round < workload.neither {
            match device.neither_demo(neither_input) {
                Ok(_) => io.neither_ok += 1,
                Err(error) => note(error, &mut io),
            }
            progress.fetch_add(1, Ordering::Relaxed);
        }
    }
    while let Some(pending) = outstanding.pop_front() {
        finish_read(Some(pending), &mut io, &mut note, progress);
    }
    drop(outstanding);
    // The handle closes here, in this thread: EvtFileCleanup runs in it.
    drop(device);
    ThreadResult {
        tid,
        label,
        io,
        errors,
    }
}

fn finish_read(
    pending: Option<super::device::Pending<'_>>,
    io: &mut IoCounts,
    note: &mut impl FnMut(anyhow::Error, &mut IoCounts),
    progress: &AtomicU64,
) {
    let Some(mut pending) = pending else { return };
    progress.fetch_add(1, Ordering::Relaxed);
    match pending.wait() {
        Ok(n) => match ReadReceipt::decode(pending.bytes(n)) {
            Ok(_) => io.reads_ok += 1,
            Err(e) => note(anyhow::anyhow!("invalid read receipt: {e}"), io),
        },
        Err(e) => note(device_error("overlapped ReadFile failed", &e), io),
    }
}

/// Runs `workload.threads` worker threads of process `index` and waits for them.
fn run_threads(
    workload: &WorkloadArgs,
    index: u32,
    progress: &Arc<AtomicU64>,
) -> Vec<ThreadResult> {
    let handles: Vec<_> = (0..workload.threads)
        .map(|t| {
            let workload = workload.clone();
            let progress = Arc::clone(progress);
            thread::Builder::new()
                .name(thread_label(index, t))
                .spawn(move || worker_thread(&workload, thread_label(index, t), &progress))
        })
        .collect();
    let mut results = Vec::new();
    for handle in handles {
        match handle {
            Ok(handle) => match handle.join() {
                Ok(result) => results.push(result),
                Err(_) => eprintln!("warning: a worker thread panicked"),
            },
            Err(error) => eprintln!("warning: could not start a worker thread: {error}"),
        }
    }
    results
}

/// What the drainer gathered.
struct Drained {
    events: Vec<Event>,
    state: DrainState,
}

/// Drains events until `done` is set, then until the ring is empty.
fn drainer(device: &Device, start: &InfoReply, done: &AtomicBool) -> Result<Drained> {
    let mut buffer = Box::new(AlignedBuf::<EVENTS_BUFFER>::new());
    let buffer = buffer.as_mut_bytes();
    let mut state = DrainState::new(start.ring);
    let mut events = Vec::new();
    let mut busy_since: Option<Instant> = None;
    loop {
        let finishing = done.load(Ordering::SeqCst);
        match device.get_events_raw(state.cursor, buffer) {
            Ok(n) => {
                busy_since = None;
                let reply = Device::decode_events(&buffer[..n])?;
                state.accept(&reply.header);
                let count = reply.len();
                events.extend(reply.events());
                if count == 0 && finishing {
                    break;
                }
                if count < ctxscope_core::protocol::GetEventsReply::MAX_EVENTS {
                    thread::sleep(DRAIN_PAUSE);
                }
            }
            Err(error) if error.raw_os_error() == Some(code::BUSY.cast_signed()) => {
                let since = *busy_since.get_or_insert_with(Instant::now);
                if since.elapsed() > BUSY_GIVE_UP {
                    return Err(device_error(
                        "IOCTL_CTXSCOPE_GET_EVENTS kept failing",
                        &error,
                    ));
                }
                thread::sleep(DRAIN_PAUSE);
            }
            Err(error) => return Err(device_error("IOCTL_CTXSCOPE_GET_EVENTS failed", &error)),
        }
    }
    Ok(Drained { events, state })
}

fn spawn_worker_process(workload: &WorkloadArgs, index: u32) -> Result<Child> {
    let exe = std::env::current_exe().context("cannot find ctxctl's own executable")?;
    let mut command = Command::new(exe);
    command
        .arg("worker")
        .args(["--index", &index.to_string()])
        .args(["--threads", &workload.threads.to_string()])
        .args(["--reads", &workload.reads.to_string()])
        .args(["--writes", &workload.writes.to_string()])
        .args(["--ioctls", &workload.ioctls.to_string()])
        .args(["--neither", &workload.neither.to_string()])
        .args(["--overlapped", &workload.overlapped.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
        .spawn()
        .with_context(|| format!("cannot start worker process {index}"))
}

/// `ctxctl run`.
///
/// # Errors
/// The device cannot be used (with what to do), or the report cannot be written.
#[allow(clippy::too_many_lines)] // the run, start to end
pub fn run(args: &RunArgs) -> Result<()> {
    let workload = &args.workload;
    let (control, info) = open_checked(false)?;
    if let Some(period) = args.timer_period_ms {
        control.set_timer_period(&info, period)?;
    }
    if !args.keep_earlier {
        let discarded = control.reset()?;
        if discarded > 0 {
            eprintln!("discarded {discarded} event(s) recorded before this run");
        }
    }
    // The cursor and drop count start from here.
    let start = control.info()?;
    stop::install_handler();

    let done = Arc::new(AtomicBool::new(false));
    let drain = {
        let done = Arc::clone(&done);
        thread::Builder::new()
            .name("ctxctl drainer".into())
            .spawn(move || -> Result<(Drained, u32)> {
                let tid = current_tid();
                let device = Device::open(false)?;
                Ok((drainer(&device, &start, &done)?, tid))
            })
            .context("cannot start the drainer thread")?
    };

    let children: Vec<(u32, Result<Child>)> = (1..workload.processes)
        .map(|index| (index, spawn_worker_process(workload, index)))
        .collect();
    let mut process_names = names::snapshot();

    let per_process = u64::from(workload.threads)
        * u64::from(workload.reads + workload.writes + workload.ioctls + workload.neither);
    let bar = stop::progress_bar(per_process, "I/O of this process");
    let progress = Arc::new(AtomicU64::new(0));
    let local = {
        let workload = workload.clone();
        let progress = Arc::clone(&progress);
        thread::spawn(move || run_threads(&workload, 0, &progress))
    };
    while !local.is_finished() {
        bar.set_position(progress.load(Ordering::Relaxed));
        thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
    let local = local
        .join()
        .map_err(|_| anyhow::anyhow!("the worker threads panicked"))?;

    let mut reports = Vec::new();
    let mut problems = Vec::new();
    for (index, child) in children {
        match child.and_then(|child| {
            let output = child
                .wait_with_output()
                .with_context(|| format!("worker process {index} failed"))?;
            let stdout = String::from_utf8_lossy(&output.stdout);
            crate::worker::parse_report(&stdout)
                .map_err(|e| anyhow::anyhow!("worker process {index}: {e}"))
        }) {
            Ok(report) => reports.push(report),
            Err(error) => problems.push(format!("{error:#}")),
        }
    }

    // Completions still in flight in the driver (timer period) land in the ring shortly.
    thread::sleep(Duration::from_millis(
        u64::from(start.timer_period_ms).clamp(20, 2_000) * 2,
    ));
    done.store(true, Ordering::SeqCst);
    let (drained, drainer_tid) = drain
        .join()
        .map_err(|_| anyhow::anyhow!("the drainer thread panicked"))??;

    // Names: processes seen while the workers ran, and now; our own threads by role.
    for (pid, name) in names::snapshot() {
        process_names.entry(pid).or_insert(name);
    }
    let me = current_pid();
    let mut names = Names {
        processes: process_names,
        ..Names::default()
    };
    names.threads.insert(
        drainer_tid,
        ThreadName {
            pid: me,
            label: "ctxctl drainer".into(),
        },
    );
    names.threads.insert(
        current_tid(),
        ThreadName {
            pid: me,
            label: "ctxctl main".into(),
        },
    );
    let mut io = IoCounts::default();
    for result in &local {
        io.add(&result.io);
        problems.extend(result.errors.iter().cloned());
        names.threads.insert(
            result.tid,
            ThreadName {
                pid: me,
                label: result.label.clone(),
            },
        );
    }
    for report in &reports {
        io.add(&report.io);
        problems.extend(report.errors.iter().cloned());
        names
            .processes
            .entry(report.pid)
            .or_insert_with(|| "ctxctl.exe".into());
        for thread in &report.threads {
            names.threads.insert(
                thread.tid,
                ThreadName {
                    pid: report.pid,
                    label: thread.label.clone(),
                },
            );
        }
    }
    for problem in problems.iter().take(10) {
        eprintln!("warning: {problem}");
    }
    if io.failed > 0 {
        eprintln!("warning: {} request(s) failed", io.failed);
    }

    let end = control.info()?;
    let mut meta = Meta::new(Source::Driver, Origin::Live);
    meta.mode = Some(end.mode.name().to_owned());
    meta.counter_frequency = Some(end.counter_frequency);
    meta.driver_version = Some(end.driver_version.to_string());
    meta.workload = Some(WorkloadMeta {
        processes: workload.processes,
        threads: workload.threads,
        reads: workload.reads,
        writes: workload.writes,
        ioctls: workload.ioctls,
        neither: workload.neither,
        overlapped: workload.overlapped,
        timer_period_ms: Some(end.timer_period_ms),
        interrupt_latency_us: None,
        background_threads: None,
    });
    meta.stopped_early = stop::requested();
    meta.lost = drained.state.lost;
    let run = Run {
        meta,
        events: drained.events,
        names,
    };
    if run.events.is_empty() && io.failed > 0 {
        bail!(
            "no events were gathered and {} request(s) failed",
            io.failed
        );
    }
    output::emit(&run, &args.output)
}

/// `ctxctl worker`: one process's worker threads; prints a [`WorkerReport`] line.
///
/// # Errors
/// The report cannot be printed.
pub fn worker(args: &WorkerArgs) -> Result<()> {
    stop::install_handler();
    let progress = Arc::new(AtomicU64::new(0));
    let results = run_threads(&args.workload, args.index, &progress);
    let mut report = WorkerReport {
        pid: current_pid(),
        threads: Vec::new(),
        io: IoCounts::default(),
        errors: Vec::new(),
    };
    for result in results {
        report.io.add(&result.io);
        report.errors.extend(result.errors);
        report.threads.push(WorkerThread {
            tid: result.tid,
            label: result.label,
        });
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
