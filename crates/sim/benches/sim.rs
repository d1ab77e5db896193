//! Simulated callbacks per second on a large scenario.
//!
//! Two numbers, both measured in this run:
//! - `simulate/edu_large`: whole simulations of a large edu-mode workload (16 workers in two
//!   processes, overlapped reads, 8 CPUs, 12 background threads, no log capture), reported as
//!   callbacks (events the driver recorded) per second, and as a ratio to the goal of one
//!   million per second on one core;
//! - `logic_only`: the baseline, the driver's logic alone with a fixed context and no machine
//!   around it (`EvtIoInCallerContext` + `EvtIoWrite` pairs, drained with `GetEvents` as the app
//!   does), so the ratio of the two is what the model of the machine costs.

use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ctxscope_core::logic::{BufferedInput, Driver, DriverRing, IoKind, Kernel};
use ctxscope_core::protocol::{
    ConfigureRequest, GetEventsReply, GetEventsRequest, Ioctl, LogLevel, Mode,
};
use ctxscope_core::{Event, ExecContext, Requestor};
use ctxscope_sim::{Workload, simulate};

/// The goal: simulated callbacks per second on one core.
const GOAL_PER_SECOND: f64 = 1_000_000.0;

fn scenario() -> Workload {
    Workload {
        mode: Mode::Edu,
        cpus: 8,
        processes: 2,
        threads: 8,
        reads: 4_000,
        writes: 2_000,
        ioctls: 500,
        neither: 100,
        overlapped: 4,
        background_threads: 12,
        capture_log: false,
        ..Workload::default()
    }
}

fn simulated_callbacks(workload: &Workload) -> u64 {
    let run = simulate(workload, &mut |_| true).expect("the scenario validates");
    run.ring.produced()
}

/// A kernel with one fixed context: what the logic costs with nothing around it.
struct FixedKernel;

impl Kernel for FixedKernel {
    type Request = ();

    fn current(&self) -> ExecContext {
        ExecContext {
            pid: 4480,
            tid: 4484,
            irql: 0,
            cpu: 1,
        }
    }
    fn counter(&self) -> u64 {
        1
    }
    fn counter_frequency(&self) -> u64 {
        ctxscope_sim::COUNTER_FREQUENCY
    }
    fn requestor(&self, (): ()) -> Option<Requestor> {
        Some(Requestor {
            pid: 4480,
            tid: 4484,
        })
    }
    fn log(&self, _line: &ctxscope_core::logline::LineBuf) {}
}

/// `pairs` write requests through the logic, drained every 256 events; returns events recorded.
fn logic_only(pairs: u64) -> u64 {
    let ring: Box<DriverRing> = Box::default();
    let driver = Driver::new(&ring);
    let kernel = FixedKernel;
    let (file, _) = driver.file_create(&kernel, ());
    // As the simulated app does when it does not capture the log: no line is formatted.
    let mut configure = [0u8; ConfigureRequest::SIZE];
    ConfigureRequest {
        timer_period_ms: 10,
        log_level: LogLevel::Off,
    }
    .encode(&mut configure)
    .expect("fits");
    let (state, _) = driver.in_caller_context(
        &kernel,
        (),
        &file,
        IoKind::DeviceControl {
            code: Ioctl::Configure.code(),
            input_length: configure.len(),
            output_length: 0,
        },
    );
    let configured = driver.io_device_control(
        &kernel,
        &state,
        Ioctl::Configure.code(),
        BufferedInput::Copied(&configure),
        &mut [],
        None,
    );
    assert_eq!(configured.status, 0);
    let mut output = vec![0u8; GetEventsReply::FIXED_SIZE + 512 * Event::SIZE];
    let mut input = [0u8; GetEventsRequest::SIZE];
    let mut cursor = 0;
    for index in 0..pairs {
        let (state, _) = driver.in_caller_context(&kernel, (), &file, IoKind::Write { length: 64 });
        std::hint::black_box(driver.io_write(&kernel, &state, 64));
        if index % 128 == 127 {
            GetEventsRequest { cursor }
                .encode(&mut input)
                .expect("fits");
            let drain = driver.in_caller_context(
                &kernel,
                (),
                &file,
                IoKind::DeviceControl {
                    code: Ioctl::GetEvents.code(),
                    input_length: input.len(),
                    output_length: output.len(),
                },
            );
            let completion = driver.io_device_control(
                &kernel,
                &drain.0,
                Ioctl::GetEvents.code(),
                BufferedInput::Copied(&input),
                &mut output,
                None,
            );
            let reply =
                GetEventsReply::decode(&output[..completion.information]).expect("valid reply");
            cursor = reply.header.next_cursor;
            std::hint::black_box(reply.events().count());
        }
    }
    ring.stats().produced()
}

#[allow(clippy::cast_precision_loss)] // counts and seconds far below 2^52
fn per_second(mut f: impl FnMut() -> u64, runs: u32) -> f64 {
    let started = Instant::now();
    let total: u64 = (0..runs).map(|_| f()).sum();
    total as f64 / started.elapsed().as_secs_f64()
}

fn bench(c: &mut Criterion) {
    let workload = scenario();
    let per_run = simulated_callbacks(&workload);
    let mut group = c.benchmark_group("callbacks");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_secs(1));
    group.measurement_time(std::time::Duration::from_secs(4));
    group.throughput(Throughput::Elements(per_run));
    group.bench_function("simulate/edu_large", |b| {
        b.iter(|| simulated_callbacks(&workload));
    });
    let pairs = per_run / 2;
    group.throughput(Throughput::Elements(logic_only(pairs)));
    group.bench_function("logic_only", |b| b.iter(|| logic_only(pairs)));
    group.finish();

    // The printed ratios, measured now, in this process.
    let simulated = per_second(|| simulated_callbacks(&workload), 2);
    let baseline = per_second(|| logic_only(pairs), 2);
    println!(
        "simulate/edu_large: {per_run} callbacks per run, {simulated:.0} callbacks/s: \
         {:.2}x the 1M/s goal; logic alone {baseline:.0} callbacks/s: the machine model runs \
         at {:.2}x the speed of the bare logic",
        simulated / GOAL_PER_SECOND,
        simulated / baseline
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
