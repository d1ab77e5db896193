//! What recording one event costs, against two baselines measured in the same run:
//! - the floor: one `AtomicU64::fetch_add` and a 64-byte store into a preallocated array;
//! - the usual driver approach: the same ring semantics (one lane, drop-newest, counted) behind
//!   a test-and-test-and-set spin lock.
//!
//! Each writer records `CAP` events into an empty lane, the clock stops, the lane is emptied,
//! and so on: this measures recording, never the (cheaper) drop path. With two writers, two
//! threads record at once, each as its own CPU (so each on its own lane, and both on the one
//! lock of the spin-locked ring); an iteration is one event from each. The lock-free ring is
//! measured twice with two writers: with each lane emptied on its writer's core (recording
//! alone), and with one reader on the first core emptying both (each slot of the second lane
//! then moves between the cores every lap, as slots do when a real reader drains them).
//!
//! At the end the run prints the ratios against the goals, from its own timing of the same
//! closures criterion measured (the median over criterion's samples of time per iteration).

use std::cell::UnsafeCell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use ctxscope_core::event::{Event, ExecContext};
use ctxscope_core::kind::CallbackKind;
use ctxscope_core::ring::{EventRing, LaneFull, Recorded};

/// Events per lane, and per writer between two resets.
const CAP: usize = 4096;

static RING_ONE_LANE: EventRing<1, CAP> = EventRing::new();
static RING_TWO_LANES: EventRing<2, CAP> = EventRing::new();
/// One lane per writer, each emptied on its writer's CPU: `EventRing<2, CAP>` is two such lanes
/// side by side (writers share nothing across lanes), but its one reader, on one of the two
/// cores, pulls the other writer's slots across after every run, which is what
/// `lock_free_ring_reader_on_cpu0` measures.
static LANE_OF_CPU: [EventRing<1, CAP>; 2] = [EventRing::new(), EventRing::new()];

/// What a DPC would record, with the timestamp and CPU filled in per call.
fn event(cpu: u32, timestamp: u64) -> Event {
    Event::new(
        CallbackKind::EvtInterruptDpc,
        ExecContext {
            pid: 4,
            tid: 120,
            irql: 2,
            cpu,
        },
        timestamp,
    )
    .with_ids(0x10, 0x20)
}

// ----- the spin-locked ring -----

/// A minimal test-and-test-and-set spin lock around the ring's state.
struct SpinLocked<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is only reached through `with`, which holds the lock, so one thread at a time.
unsafe impl<T: Send> Sync for SpinLocked<T> {}

impl<T> SpinLocked<T> {
    fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        loop {
            // Test (a shared read while someone holds it), then test-and-set.
            while self.locked.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                break;
            }
        }
        let value = self.value.get();
        // SAFETY: the lock is held (acquired above, released below), so this is the only
        // reference to the value.
        let result = f(unsafe { &mut *value });
        self.locked.store(false, Ordering::Release);
        result
    }
}

/// The ring's semantics, one lane: bounded, drop-newest, counted.
struct LockedLane {
    head: u64,
    tail: u64,
    dropped: u64,
    slots: Vec<Event>,
}

type LockedRing = SpinLocked<LockedLane>;

fn locked_ring(capacity: usize) -> LockedRing {
    SpinLocked::new(LockedLane {
        head: 0,
        tail: 0,
        dropped: 0,
        slots: vec![Event::ZERO; capacity],
    })
}

fn locked_record(ring: &LockedRing, mut event: Event) -> Result<Recorded, LaneFull> {
    ring.with(|lane| {
        let capacity = lane.slots.len() as u64;
        if lane.head - lane.tail == capacity {
            lane.dropped += 1;
            return Err(LaneFull { lane: 0 });
        }
        event.seq = lane.head;
        let index = usize::try_from(lane.head % capacity).unwrap();
        lane.slots[index] = event;
        lane.head += 1;
        Ok(Recorded {
            lane: 0,
            seq: event.seq,
        })
    })
}

fn locked_reset(ring: &LockedRing) {
    ring.with(|lane| lane.tail = lane.head);
}

// ----- timing -----

/// Median time per iteration of every `iter_custom` call, per benchmark: the ratios' input.
static TIMES: Mutex<BTreeMap<&'static str, Vec<f64>>> = Mutex::new(BTreeMap::new());

fn note(name: &'static str, elapsed: Duration, iters: u64) {
    if iters > 0 {
        TIMES
            .lock()
            .unwrap()
            .entry(name)
            .or_default()
            .push(elapsed.as_secs_f64() * 1e9 / iters_f64(iters));
    }
}

/// Iteration counts are far below 2^52, where `f64` stops being exact.
#[allow(clippy::cast_precision_loss)]
fn iters_f64(iters: u64) -> f64 {
    iters as f64
}

fn median_ns(name: &str) -> Option<f64> {
    let mut times = TIMES.lock().unwrap().get(name)?.clone();
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 2).copied()
}

/// Times `iters` calls of `record`, in runs of at most `CAP` with `reset` (untimed) between.
fn single_writer(iters: u64, mut record: impl FnMut(u64), mut reset: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let run = (iters - done).min(CAP as u64);
        let start = Instant::now();
        for i in done..done + run {
            record(i);
        }
        total += start.elapsed();
        reset();
        done += run;
    }
    total
}

/// Waits a moment without holding on to the CPU, in case the other thread needs it (when the
/// machine is busy, both benchmark threads can land on one core).
fn pause() {
    std::thread::yield_now();
}

/// Times `iters` calls of `record(cpu, i)` on each of two threads at once (CPUs 0 and 1), in
/// runs of at most `CAP` per thread. After each run, untimed, each thread calls `reset(cpu)` for
/// what it owns, so a writer's slots are not pulled into the other core's cache by the reset.
fn two_writers(
    iters: u64,
    record: &(impl Fn(u32, u64) + Sync),
    reset: &(impl Fn(u32) + Sync),
) -> Duration {
    two_writers_with(iters, |cpu| move |i| record(cpu, i), reset)
}

/// [`two_writers`], with each thread's recorder made on its own thread by `recorder(cpu)`, for
/// state a thread keeps to itself.
fn two_writers_with<R: FnMut(u64)>(
    iters: u64,
    recorder: impl Fn(u32) -> R + Sync,
    reset: &(impl Fn(u32) + Sync),
) -> Duration {
    // `go`: the run the helper may start (u64::MAX: quit); `done`: the last run it recorded;
    // `reset_done`: the last run after which it has reset.
    let go = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let reset_done = AtomicU64::new(0);
    let run_len = AtomicU64::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut record = recorder(1);
            let mut next = 1;
            loop {
                let run = go.load(Ordering::Acquire);
                if run == u64::MAX {
                    break;
                }
                if run < next {
                    pause();
                    continue;
                }
                let len = run_len.load(Ordering::Relaxed);
                for i in 0..len {
                    record(i);
                }
                done.store(run, Ordering::Release);
                reset(1);
                reset_done.store(run, Ordering::Release);
                next = run + 1;
            }
        });
        let mut record = recorder(0);
        let mut total = Duration::ZERO;
        let mut finished = 0;
        let mut run = 0;
        while finished < iters {
            let len = (iters - finished).min(CAP as u64);
            run += 1;
            run_len.store(len, Ordering::Relaxed);
            let start = Instant::now();
            go.store(run, Ordering::Release);
            for i in 0..len {
                record(i);
            }
            while done.load(Ordering::Acquire) != run {
                pause();
            }
            total += start.elapsed();
            reset(0);
            while reset_done.load(Ordering::Acquire) != run {
                pause();
            }
            finished += len;
        }
        go.store(u64::MAX, Ordering::Release);
        total
    })
}

/// A value alone on its cache lines.
#[repr(align(128))]
struct Padded<T>(T);

// ----- the benchmarks -----

const FLOOR: &str = "floor, 1 writer (fetch_add + 64-byte store)";
const RING_1: &str = "lock-free ring, 1 writer";
const LOCKED_1: &str = "spin-locked ring, 1 writer";
const FLOOR_2: &str = "floor, 2 writers (control: the machine's scaling)";
const RING_2: &str = "lock-free ring, 2 writers, a lane each";
const RING_2_SHARED_READER: &str = "lock-free ring, 2 writers, reader on CPU 0";
const LOCKED_2: &str = "spin-locked ring, 2 writers";

fn single_writer_benches(c: &mut Criterion) {
    let mut single = c.benchmark_group("record/single_writer");
    single.throughput(Throughput::Elements(1));

    single.bench_function("floor", |b| {
        // Escapes, so the atomic add is a real one, as the ring's is.
        let counter = AtomicU64::new(0);
        let next = black_box(&counter);
        let mut slots = vec![Event::ZERO; CAP];
        b.iter_custom(|iters| {
            let elapsed = single_writer(
                iters,
                |i| {
                    let at = next.fetch_add(1, Ordering::Relaxed);
                    slots[usize::try_from(at).unwrap() % CAP] = event(0, black_box(i));
                },
                || {},
            );
            black_box(&slots);
            note(FLOOR, elapsed, iters);
            elapsed
        });
    });

    single.bench_function("lock_free_ring", |b| {
        let mut reader = RING_ONE_LANE
            .reader()
            .expect("the bench is the only reader");
        reader.discard();
        b.iter_custom(|iters| {
            let elapsed = single_writer(
                iters,
                |i| {
                    black_box(RING_ONE_LANE.record(event(0, black_box(i))))
                        .expect("the lane was emptied");
                },
                || {
                    reader.discard();
                },
            );
            note(RING_1, elapsed, iters);
            elapsed
        });
    });

    single.bench_function("spin_locked_ring", |b| {
        let ring = locked_ring(CAP);
        b.iter_custom(|iters| {
            let elapsed = single_writer(
                iters,
                |i| {
                    black_box(locked_record(&ring, event(0, black_box(i))))
                        .expect("the lane was emptied");
                },
                || locked_reset(&ring),
            );
            note(LOCKED_1, elapsed, iters);
            elapsed
        });
    });
    single.finish();
}

fn two_writer_benches(c: &mut Criterion) {
    let mut two = c.benchmark_group("record/two_writers");
    two.throughput(Throughput::Elements(2));

    // The control: what two cores give here at all, with the floor on each.
    two.bench_function("floor", |b| {
        let counters = [const { Padded(AtomicU64::new(0)) }; 2];
        let slots: [Mutex<Vec<Event>>; 2] =
            core::array::from_fn(|_| Mutex::new(vec![Event::ZERO; CAP]));
        b.iter_custom(|iters| {
            let elapsed = two_writers_with(
                iters,
                |cpu| {
                    let next = black_box(&counters[cpu as usize].0);
                    let mut slots = slots[cpu as usize].lock().unwrap();
                    move |i| {
                        let at = next.fetch_add(1, Ordering::Relaxed);
                        slots[usize::try_from(at).unwrap() % CAP] = event(cpu, black_box(i));
                    }
                },
                &|_| {},
            );
            note(FLOOR_2, elapsed, iters);
            elapsed
        });
    });

    two.bench_function("lock_free_ring", |b| {
        b.iter_custom(|iters| {
            let elapsed = two_writers(
                iters,
                &|cpu, i| {
                    black_box(LANE_OF_CPU[cpu as usize].record(event(cpu, black_box(i))))
                        .expect("the lane was emptied");
                },
                &|cpu| {
                    LANE_OF_CPU[cpu as usize]
                        .reader()
                        .expect("each lane has its own reader")
                        .discard();
                },
            );
            note(RING_2, elapsed, iters);
            elapsed
        });
    });

    two.bench_function("lock_free_ring_reader_on_cpu0", |b| {
        b.iter_custom(|iters| {
            let elapsed = two_writers(
                iters,
                &|cpu, i| {
                    black_box(RING_TWO_LANES.record(event(cpu, black_box(i))))
                        .expect("the lane was emptied");
                },
                &|cpu| {
                    if cpu == 0 {
                        RING_TWO_LANES
                            .reader()
                            .expect("the bench is the only reader")
                            .discard();
                    }
                },
            );
            note(RING_2_SHARED_READER, elapsed, iters);
            elapsed
        });
    });

    two.bench_function("spin_locked_ring", |b| {
        let ring = locked_ring(2 * CAP);
        b.iter_custom(|iters| {
            let elapsed = two_writers(
                iters,
                &|cpu, i| {
                    black_box(locked_record(&ring, event(cpu, black_box(i))))
                        .expect("the lane was emptied");
                },
                &|cpu| {
                    if cpu == 0 {
                        locked_reset(&ring);
                    }
                },
            );
            note(LOCKED_2, elapsed, iters);
            elapsed
        });
    });
    two.finish();
}

fn print_ratios() {
    println!();
    println!("Time per iteration (median over criterion's samples of this run); an iteration is");
    println!("one event with one writer, and one event from each with two:");
    for name in [
        FLOOR,
        RING_1,
        LOCKED_1,
        FLOOR_2,
        RING_2,
        RING_2_SHARED_READER,
        LOCKED_2,
    ] {
        match median_ns(name) {
            Some(ns) => println!("  {name:<50} {ns:>8.2} ns"),
            None => println!("  {name:<50}      n/a (filtered out)"),
        }
    }
    let ratio = |numerator: Option<f64>, denominator: Option<f64>| {
        numerator.zip(denominator).map(|(n, d)| n / d)
    };
    let floor = median_ns(FLOOR);
    let ring_1 = median_ns(RING_1);
    let ring_2 = median_ns(RING_2);
    let locked_2 = median_ns(LOCKED_2);
    // Throughputs: one event per iteration with one writer, two with two.
    let aggregate_over_single = ratio(ring_1.map(|t| 2.0 * t), ring_2);
    let ring_over_locked = ratio(locked_2, ring_2);
    let control = ratio(median_ns(FLOOR).map(|t| 2.0 * t), median_ns(FLOOR_2));
    let rows = [
        (
            "single writer: ring / floor (time per event)",
            ratio(ring_1, floor),
            "<= 1.5x",
            true,
        ),
        (
            "two writers aggregate / single (throughput)",
            aggregate_over_single,
            ">= 1.5x",
            false,
        ),
        (
            "two writers: ring / spin-locked (throughput)",
            ring_over_locked,
            ">= 3x",
            false,
        ),
    ];
    println!();
    if let Some(ring_over_floor) = ratio(ring_2, median_ns(FLOOR_2)) {
        println!(
            "  two writers: ring / floor (time per event, same machine state) = \
             {ring_over_floor:.2}x"
        );
    }
    if let Some(control) = control {
        println!(
            "  control: two writers' floor aggregate / single floor = {control:.2}x \
             (below 2x: the machine does not give two writers two free cores)"
        );
    }
    for (what, value, goal, at_most) in rows {
        match value {
            Some(value) => {
                let target: f64 = goal
                    .trim_start_matches(['<', '>', '=', ' '])
                    .trim_end_matches('x')
                    .parse()
                    .unwrap();
                let met = if at_most {
                    value <= target
                } else {
                    value >= target
                };
                println!(
                    "  {what:<48} = {value:.2}x (goal {goal}) {}",
                    if met { "met" } else { "MISSED" }
                );
            }
            None => println!("  {what:<48} = n/a (a benchmark was filtered out)"),
        }
    }
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    single_writer_benches(&mut criterion);
    two_writer_benches(&mut criterion);
    criterion.final_summary();
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`) each benchmark ran
    // once as a smoke test, and there is nothing to compare.
    if std::env::args().any(|arg| arg == "--bench") {
        print_ratios();
    }
}
