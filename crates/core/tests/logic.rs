//! The driver's callback logic under a test implementation of the kernel trait: each callback
//! records what it should, decides what it should, and rejects bad input with the right status.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use ctxscope_core::event::{Event, ExecContext, Placement, Requestor};
use ctxscope_core::kind::{CallbackKind, DISPATCH_LEVEL, PASSIVE_LEVEL, SYSTEM_PID};
use ctxscope_core::logic::more_status::{
    STATUS_CANCELLED, STATUS_DEVICE_BUSY, STATUS_DEVICE_CONFIGURATION_ERROR,
    STATUS_DEVICE_NOT_READY,
};
use ctxscope_core::logic::status::{
    STATUS_BUFFER_TOO_SMALL, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER,
    STATUS_REVISION_MISMATCH, STATUS_SUCCESS,
};
use ctxscope_core::logic::{
    BufferedInput, CallerDecision, DeviceRegisters, Driver, DriverRing, FileState, Hardware,
    IoKind, IsrDecision, Kernel, NeitherBuffers, PrivateBytes, PrivateBytesMut, QueueDispatch,
    ReadDecision, ReadToComplete, RequestState, edu,
};
use ctxscope_core::logline::{LineBuf, parse_line};
use ctxscope_core::protocol::{
    AlignedBuf, CompletedBy, ConfigureRequest, GetEventsReply, GetEventsRequest, InfoReply, Ioctl,
    LogLevel, Mode, NeitherDemoReply, ReadReceipt, ResetReply, TrailSlot, checksum,
};

const APP_PID: u32 = 1200;
const APP_TID: u32 = 1204;
const OTHER_TID: u32 = 1300;
const DIRQL: u8 = 7;

/// A kernel whose current context the test sets, whose counter ticks by one per read, and whose
/// log lines are kept.
struct TestKernel {
    context: Cell<ExecContext>,
    now: Cell<u64>,
    requestors: RefCell<HashMap<u32, Requestor>>,
    lines: RefCell<Vec<String>>,
}

impl TestKernel {
    fn new() -> Self {
        Self {
            context: Cell::new(system_thread()),
            now: Cell::new(1000),
            requestors: RefCell::new(HashMap::new()),
            lines: RefCell::new(Vec::new()),
        }
    }

    fn run_in(&self, context: ExecContext) {
        self.context.set(context);
    }

    /// A user-mode request `handle` issued by the app's thread `tid`.
    fn request_from(&self, handle: u32, tid: u32) -> u32 {
        self.requestors
            .borrow_mut()
            .insert(handle, Requestor { pid: APP_PID, tid });
        handle
    }

    fn lines(&self) -> Vec<String> {
        self.lines.borrow().clone()
    }
}

impl Kernel for TestKernel {
    type Request = u32;

    fn current(&self) -> ExecContext {
        self.context.get()
    }

    fn counter(&self) -> u64 {
        self.now.set(self.now.get() + 1);
        self.now.get()
    }

    fn counter_frequency(&self) -> u64 {
        10_000_000
    }

    fn requestor(&self, request: u32) -> Option<Requestor> {
        self.requestors.borrow().get(&request).copied()
    }

    fn log(&self, line: &LineBuf) {
        assert_eq!(
            line.as_cstr_bytes().last(),
            Some(&0),
            "NUL-terminated for DbgPrintEx"
        );
        self.lines.borrow_mut().push(line.as_str().to_owned());
    }
}

fn system_thread() -> ExecContext {
    ExecContext {
        pid: SYSTEM_PID,
        tid: 72,
        irql: PASSIVE_LEVEL,
        cpu: 0,
    }
}

fn app_thread(tid: u32) -> ExecContext {
    ExecContext {
        pid: APP_PID,
        tid,
        irql: PASSIVE_LEVEL,
        cpu: 1,
    }
}

fn dpc_in_idle(cpu: u32) -> ExecContext {
    ExecContext {
        pid: 0,
        tid: 0,
        irql: DISPATCH_LEVEL,
        cpu,
    }
}

/// QEMU's edu device as docs/specs/edu.rst describes it, optionally broken.
#[derive(Default)]
struct FakeEdu {
    identification: u32,
    liveness_broken: bool,
    liveness: u32,
    status: u32,
    raised: Vec<u32>,
    acknowledged: Vec<u32>,
}

impl FakeEdu {
    fn working() -> Self {
        Self {
            identification: 0x0100_00ed,
            ..Self::default()
        }
    }
}

impl DeviceRegisters for FakeEdu {
    fn read32(&mut self, offset: u32) -> u32 {
        match offset {
            edu::REG_IDENTIFICATION => self.identification,
            edu::REG_LIVENESS if self.liveness_broken => self.liveness,
            edu::REG_LIVENESS => !self.liveness,
            edu::REG_INTERRUPT_STATUS => self.status,
            _ => 0,
        }
    }

    fn write32(&mut self, offset: u32, value: u32) {
        match offset {
            edu::REG_LIVENESS => self.liveness = value,
            edu::REG_INTERRUPT_RAISE => {
                self.status |= value;
                self.raised.push(value);
            }
            edu::REG_INTERRUPT_ACK => {
                self.status &= !value;
                self.acknowledged.push(value);
            }
            _ => {}
        }
    }
}

fn drain(driver: &Driver<'_>) -> Vec<Event> {
    let mut reader = driver.ring().reader().expect("no other reader");
    let mut out = vec![Event::ZERO; 4096];
    let n = reader.drain(&mut out);
    out.truncate(n);
    out
}

fn new_ring() -> Box<DriverRing> {
    Box::new(DriverRing::new())
}

/// A driver brought up to D0 in `mode` by System threads, with its start-up events drained.
fn started<'r>(ring: &'r DriverRing, kernel: &TestKernel, mode: Mode) -> Driver<'r> {
    let driver = Driver::new(ring);
    kernel.run_in(system_thread());
    driver.driver_entry(kernel);
    driver.device_add(kernel);
    let chosen = match mode {
        Mode::Edu => {
            let mut regs = FakeEdu::working();
            driver.prepare_hardware(
                kernel,
                Hardware::Edu {
                    registers: &mut regs,
                    bar0_len: 1 << 20,
                    has_interrupt: true,
                },
            )
        }
        _ => driver.prepare_hardware::<_, FakeEdu>(kernel, Hardware::None),
    };
    assert_eq!(chosen, Ok(mode));
    driver.d0_entry(kernel, 5);
    drain(&driver);
    driver
}

fn open_file(driver: &Driver<'_>, kernel: &TestKernel, tid: u32) -> FileState {
    kernel.run_in(app_thread(tid));
    let request = kernel.request_from(9000 + tid, tid);
    let (file, completion) = driver.file_create(kernel, request);
    assert_eq!(completion.status, STATUS_SUCCESS);
    file
}

#[test]
fn start_up_runs_in_system_threads_and_sets_up_the_queues() {
    let ring = new_ring();
    let kernel = TestKernel::new();
    let driver = Driver::new(&ring);
    driver.driver_entry(&kernel);
    let setup = driver.device_add(&kernel);
    assert_eq!(setup.read_queue, QueueDispatch::Sequential);
    assert_eq!(setup.write_queue, QueueDispatch::Parallel);
    assert_eq!(setup.control_queue, QueueDispatch::Sequential);
    assert_eq!(
        driver.prepare_hardware::<_, FakeEdu>(&kernel, Hardware::None),
        Ok(Mode::Root)
    );
    assert_eq!(driver.mode(), Mode::Root);
    assert!(driver.timer_completes_reads());
    let timer = driver.d0_entry(&kernel, 5);
    assert_eq!(timer.rearm_ms, driver.timer_period_ms());

    let events = drain(&driver);
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            CallbackKind::DriverEntry,
            CallbackKind::EvtDriverDeviceAdd,
            CallbackKind::EvtDevicePrepareHardware,
            CallbackKind::EvtDeviceD0Entry
        ]
    );
    for event in &events {
        assert_eq!(event.verdict().placement, Placement::NoRequestor);
        assert!(event.verdict().consistent(), "{event:?}");
    }
    assert_eq!(events[2].detail, Mode::Root as u64);
    assert_eq!(events[3].detail, 5);

    driver.d0_exit(&kernel, 4);
    driver.release_hardware(&kernel);
    driver.driver_unload(&kernel);
    assert_eq!(driver.mode(), Mode::Starting);
    let kinds: Vec<_> = drain(&driver).iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            CallbackKind::EvtDeviceD0Exit,
            CallbackKind::EvtDeviceReleaseHardware,
            CallbackKind::EvtDriverUnload
        ]
    );
}

#[test]
fn prepare_hardware_accepts_only_a_real_edu_device() {
    const STATUS_INSUFFICIENT_RESOURCES: i32 = 0xC000_009A_u32.cast_signed();
    let ring = new_ring();
    let kernel = TestKernel::new();
    let driver = Driver::new(&ring);

    let mut working = FakeEdu::working();
    let mode = driver.prepare_hardware(
        &kernel,
        Hardware::Edu {
            registers: &mut working,
            bar0_len: 1 << 20,
            has_interrupt: true,
        },
    );
    assert_eq!(mode, Ok(Mode::Edu));
    assert_eq!(
        working.liveness,
        edu::LIVENESS_PROBE,
        "the liveness register was exercised"
    );
    driver.release_hardware(&kernel);

    let cases: [(FakeEdu, u64, bool, &str); 4] = [
        (
            FakeEdu {
                identification: 0x1234_5678,
                ..FakeEdu::default()
            },
            1 << 20,
            true,
            "identification",
        ),
        (
            FakeEdu {
                liveness_broken: true,
                ..FakeEdu::working()
            },
            1 << 20,
            true,
            "liveness",
        ),
        (FakeEdu::working(), 1 << 20, false, "no interrupt"),
        (FakeEdu::working(), 0x40, true, "too small"),
    ];
    for (mut regs, bar0_len, has_interrupt, what) in cases {
        let outcome = driver.prepare_hardware(
            &kernel,
            Hardware::Edu {
                registers: &mut regs,
                bar0_len,
                has_interrupt,
            },
        );
        assert_eq!(outcome, Err(STATUS_DEVICE_CONFIGURATION_ERROR), "{what}");
        assert_eq!(driver.mode(), Mode::Starting, "{what}: the mode is not set");
        let note = kernel.lines().last().cloned().unwrap();
        assert!(note.starts_with("ctxscope-note: edu"), "{what}: {note}");
        assert!(note.contains("status=0xc0000182"), "{what}: {note}");
        assert_eq!(parse_line(&note), Ok(None), "notes are not events");
    }
    // The glue could not map BAR0 or create the interrupt: recorded and refused all the same.
    let outcome = driver.prepare_hardware::<_, FakeEdu>(
        &kernel,
        Hardware::Unusable {
            what: "mapping BAR0 failed",
            status: STATUS_INSUFFICIENT_RESOURCES,
        },
    );
    assert_eq!(outcome, Err(STATUS_INSUFFICIENT_RESOURCES));
    assert!(
        kernel
            .lines()
            .last()
            .unwrap()
            .starts_with("ctxscope-note: mapping BAR0 failed status=0xc000009a")
    );
    let failures: Vec<_> = drain(&driver)
        .into_iter()
        .filter(|e| e.kind == CallbackKind::EvtDevicePrepareHardware && e.detail >> 32 == 1)
        .collect();
    assert_eq!(failures.len(), 5);
    assert_eq!(
        failures[0].detail & 0xffff_ffff,
        u64::from(STATUS_DEVICE_CONFIGURATION_ERROR.cast_unsigned())
    );
}

#[test]
fn file_callbacks_carry_opener_and_closer() {
    let ring = new_ring();
    let kernel = TestKernel::new();
    let driver = started(&ring, &kernel, Mode::Root);

    let file = open_file(&driver, &kernel, APP_TID);
    let second = open_file(&driver, &kernel, OTHER_TID);
    assert_ne!(file.id, second.id);
    assert_eq!(
        file.opener,
        Some(Requestor {
            pid: APP_PID,
            tid: APP_TID
        })
    );

    // The last handle is closed by another thread of the app; the close runs later in a DPC.
    kernel.run_in(app_thread(OTHER_TID));
    let closer = Some(Requestor {
        pid: APP_PID,
        tid: OTHER_TID,
    });
    driver.file_cleanup(&kernel, &file, closer);
    kernel.run_in(dpc_in_idle(3));
    driver.file_close(&kernel, &file, closer);

    let events = drain(&driver);
    let create = &events[0];
    assert_eq!(create.kind, CallbackKind::EvtDeviceFileCreate);
    assert_eq!(create.verdict().placement, Placement::RequestorThread);
    assert!(create.verdict().consistent());
    assert_eq!(create.file_id, file.id);

    let cleanup = events
        .iter()
        .find(|e| e.kind == CallbackKind::EvtFileCleanup)
        .unwrap();
    assert_eq!(cleanup.verdict().placement, Placement::RequestorThread);
    assert!(cleanup.verdict().consistent());

    let close = events
        .iter()
        .find(|e| e.kind == CallbackKind::EvtFileClose)
        .unwrap();
    assert_eq!(
        close.requestor(),
        Some(Requestor {
            pid: APP_PID,
            tid: OTHER_TID
        })
    );
    assert_eq!(close.verdict().placement, Placement::OtherThread);
    assert!(
        !close.verdict().irql_ok,
        "a close at DISPATCH_LEVEL breaks the documented IRQL"
    );
}

#[test]
fn in_caller_context_identifies_the_request_and_decides() {
    let ring = new_ring();
    let kernel = TestKernel::new();
    let driver = started(&ring, &kernel, Mode::Edu);
    let file = open_file(&driver, &kernel, APP_TID);
    let request = kernel.request_from(1, APP_TID);

    let (read, decision) =
        driver.in_caller_context(&kernel, request, &file, IoKind::Read { length: 512 });
    assert_eq!(decision, CallerDecision::Enqueue);
    assert_eq!(
        read.requestor,
        Some(Requestor {
            pid: APP_PID,
            tid: APP_TID
        })
    );
    assert_eq!(read.file_id, file.id);
    let entry = read.trail[TrailSlot::InCallerContext as usize];
    assert!(entry.present);
    assert_eq!((entry.pid, entry.tid), (APP_PID, APP_TID));

    let (write, _) = driver.in_caller_context(&kernel, request, &file, IoKind::Write { length: 8 });
    assert!(write.id > read.id, "every request gets its own identifier");

    let neither = |input_length, output_length| IoKind::DeviceControl {
        code: Ioctl::NeitherDemo.code(),
        input_length,
        output_length,
    };
    let (_, small) = driver.in_caller_context(&kernel, request, &file, neither(4, 8));
    assert_eq!(
        small,
        CallerDecision::Complete(ctxscope_core::logic::Completion::failed(
            STATUS_BUFFER_TOO_SMALL
        ))
    );
    let (_, huge) = driver.in_caller_context(&kernel, request, &file, neither(1 << 20, 64));
    assert_eq!(
        huge,
        CallerDecision::Complete(ctxscope_core::logic::Completion::failed(
            STATUS_INVALID_PARAMETER
        ))
    );
    let (_, huge_output) = driver.in_caller_context(&kernel, request, &file, neither(4, 1 << 20));
    assert_eq!(
        huge_output,
        CallerDecision::Complete(ctxscope_core::logic::Completion::failed(
            STATUS_INVALID_PARAMETER
        ))
    );
    let (mut state, lock) = driver.in_caller_context(&kernel, request, &file, neither(16, 64));
    assert_eq!(
        lock,
        CallerDecision::ProbeAndLock {
            input_length: 16,
            output_length: 64
        }
    );
    assert_eq!(
        driver.neither_buffers_locked(&mut state.clone(), Err(STATUS_INVALID_PARAMETER)),
        CallerDecision::Complete(ctxscope_core::logic::Completion::failed(
            STATUS_INVALID_PARAMETER
        ))
    );
    assert_eq!(
        driver.neither_buffers_locked(&mut state, Ok(())),
        CallerDecision::Enqueue
    );
    assert!(state.neither_locked);

    let events = drain(&driver);
    let callers: Vec<_> = events
        .iter()
        .filter(|e| e.kind == CallbackKind::EvtIoInCallerContext)
        .collect();
    assert_eq!(callers.len(), 6);
    for event in &callers {
        assert_eq!(event.verdict().placement, Placement::RequestorThread);
        assert!(event.verdict().consistent());
    }
    assert_eq!(callers[0].detail, IoKind::Read { length: 512 }.code());
    assert_eq!(callers[0].flags & Event::FLAG_COMPLETES, 0);
    assert_ne!(
        callers[2].flags & Event::FLAG_COMPLETES,
        0,
        "completed in caller context"
    );
}

fn read_state(
    driver: &Driver<'_>,
    kernel: &TestKernel,
    file: &FileState,
    handle: u32,
) -> RequestState {
    kernel.run_in(app_thread(APP_TID));
    let request = kernel.request_from(handle, APP_TID);
    let (state, decision) = driver.in_caller_context(
        kernel,
        request,
        file,
        IoKind::Read {
            length: ReadReceipt::SIZE,
        },
    );
    assert_eq!(decision, CallerDecision::Enqueue);
    state
}

#[test]
fn edu_read_is_completed_by_the_interrupt_dpc_with_its_whole_trail() {
    let ring = new_ring();
    let kernel = TestKernel::new();
    let driver = started(&ring, &kernel, Mode::Edu);
    let file = open_file(&driver, &kernel, APP_TID);
    let mut state = read_state(&driver, &kernel, &file, 7);

    // Presented inline, in the caller's thread.
    let decision = driver.io_read(&kernel, &mut state, ReadReceipt::SIZE);
    assert_eq!(
        decision,
        ReadDecision::RaiseInterrupt {
            value: edu::READ_INTERRUPT_BIT
        }
    );

    // The interrupt lands on CPU 2 while an unrelated thread of another process runs.
    let mut device = FakeEdu::working();
    device.write32(edu::REG_INTERRUPT_RAISE, edu::READ_INTERRUPT_BIT);
    kernel.run_in(ExecContext {
        pid: 888,
        tid: 892,
        irql: DIRQL,
        cpu: 2,
    });
    let status = device.read32(edu::REG_INTERRUPT_STATUS);
    let IsrDecision::Claim { acknowledge, isr } = driver.interrupt_isr(&kernel, status) else {
        panic!("the interrupt is ours");
    };
    device.write32(edu::REG_INTERRUPT_ACK, acknowledge);
    assert_eq!(device.status, 0, "acknowledged");

    kernel.run_in(ExecContext {
        pid: 888,
        tid: 892,
        irql: DISPATCH_LEVEL,
        cpu: 2,
    });
    // The read's system buffer: 8-byte aligned, as the I/O manager allocates it.
    let mut system_buffer = AlignedBuf::<{ ReadReceipt::SIZE + 16 }>::new();
    system_buffer.0.fill(0xAA);
    let buffer = &mut system_buffer.0;
    let completion = driver
        .interrupt_dpc(
            &kernel,
            Some((isr, acknowledge)),
            Some(ReadToComplete {
                state: &mut state,
                buffer,
            }),
        )
        .expect("the DPC completes the read");
    assert_eq!(completion.status, STATUS_SUCCESS);
    assert_eq!(completion.information, ReadReceipt::SIZE);
    assert!(
        buffer[ReadReceipt::SIZE..].iter().all(|&b| b == 0),
        "the rest of the output is zeroed"
    );

    let receipt = ReadReceipt::decode(&buffer[..ReadReceipt::SIZE]).unwrap();
    assert_eq!(receipt.completed_by, CompletedBy::InterruptDpc);
    assert_eq!(receipt.mode, Mode::Edu);
    assert_eq!(
        (receipt.requestor_pid, receipt.requestor_tid),
        (APP_PID, APP_TID)
    );
    for slot in TrailSlot::ALL {
        assert!(receipt.entry(slot).is_some(), "{slot:?} present");
    }
    assert_eq!(receipt.entry(TrailSlot::Isr).unwrap().irql, DIRQL);
    assert_eq!(
        receipt.entry(TrailSlot::Deferred).unwrap().kind,
        CallbackKind::EvtInterruptDpc
    );
    assert_eq!(receipt.entry(TrailSlot::Deferred).unwrap().pid, 888);

    let events = drain(&driver);
    let dpc = events
        .iter()
        .find(|e| e.kind == CallbackKind::EvtInterruptDpc)
        .unwrap();
    assert_eq!(dpc.request_id, state.id);
    assert_ne!(dpc.flags & Event::FLAG_COMPLETES, 0);
    assert_eq!(dpc.verdict().placement, Placement::OtherThread);
    assert!(dpc.verdict().consistent());
    let isr_event = events
        .iter()
        .find(|e| e.kind == CallbackKind::EvtInterruptIsr)
        .unwrap();
    assert_eq!(isr_event.detail, u64::from(edu::READ_INTERRUPT_BIT));
    assert!(isr_event.verdict().consistent());
    assert_eq!(driver.counters().reads_completed, 1);
    assert_eq!(driver.counters().interrupts, 1);
}

#[test]
fn spurious_interrupt_is_not_claimed_but_is_recorded() {
    let ring = new_ring();
    let kernel = TestKernel::new();
    let driver = started(&ring, &kernel, Mode::Edu);
    kernel.run_in(ExecContext {
        pid: 0,
        tid: 0,
        irql: DIRQL,
        cpu: 0,
    });
    assert_eq!(driver.interrupt_isr(&kernel, 0), IsrDecision::NotOurs);
    assert_eq!(driver.counters().spurious_interrupts, 1);
    let events = drain(&driver);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].detail, 0);
}

#[test]
fn root_read_waits_for_the_timer_which_completes_it_without_an_isr() {
    let ring = new_ring();
    let kernel = TestKernel::new();
    let driver = started(&ring, &kernel, Mode::Root);
    let file = open_file(&driver, &kernel, APP_TID);
    let mut state = read_state(&driver, &kernel, &file, 7);
    assert_eq!(
        driver.io_read(&kernel, &mut state, ReadReceipt::SIZE),
        ReadDecision::WaitForTimer
    );

    kernel.run_in(ExecContext {
        pid: SYSTEM_PID,
        tid: 88,
        irql: DISPATCH_LEVEL,
        cpu: 3,
    });
    let (idle_tick, nothing) = driver.timer(&kernel, None);
    assert!(nothing.is_none());
    let mut buffer = AlignedBuf::<{ ReadReceipt::SIZE }>::new();
    let (tick, completion) = driver.timer(
        &kernel,
        Some(ReadToComplete {
            state: &mut state,
            buffer: &mut buffer.0,
        }),
    );
    assert_eq!(tick.rearm_ms, idle_tick.rearm_ms);
    assert_eq!(completion.unwrap().information, ReadReceipt::SIZE);
    let receipt = ReadReceipt::decode(&buffer.0).unwrap();
    assert_eq!(receipt.completed_by, CompletedBy::TimerDpc);
    assert!(
        receipt.entry(TrailSlot::Isr).is_none(),
        "no ISR runs in root mode"
    );

    let ticks: Vec<_> = drain(&driver)
        .into_iter()
        .filter(|e| e.kind == CallbackKind::EvtTimerFunc)
        .collect();
    assert_eq!(ticks.iter().map(|e| e.detail).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(ticks[1].request_id, state.id);
    assert!(ticks.iter().all(|e| e.verdict().consistent()));
    assert_eq!(driver.counters().timer_ticks, 2);
}

#[test]
fn reads_are_refused_before_start_and_with_small_buffers() {
    let ring = new_ring();
    let kernel = TestKernel::new();
    let driver = Driver::new(&ring);
    let file = FileState {
        id: 1,
        opener: None,
    };
    let mut state = read_state(&driver, &kernel, &file, 1);
    assert_eq!(
        driver.io_read(&kernel, &mut state, ReadReceipt::SIZE),
        ReadDecision::Complete(ctxscope_core::logic::Completion::failed(
            STATUS_DEVICE_NOT_READY
        ))
    );
    let driver = started(&ring, &kernel, Mode::Root);
    assert_eq!(
        driver.io_read(&kernel, &mut state, ReadReceipt::SIZE - 1),
        ReadDecision::Complete(ctxscope_core::logic::Completion::failed(
            STATUS_BUFFER_TOO_SMALL
        ))
    );
}

#[test]
fn cancel_and_write_complete_as_documented() {
    let ring = new_ring();
    let kernel = TestKernel::new();
    let driver = started(&ring, &kernel, Mode::Root);
    let completion = driver.read_cancelled();
    assert_eq!(
        (completion.status, completion.information),
        (STATUS_CANCELLED, 0)
    );
    assert_eq!(driver.counters().reads_cancelled, 1);

    let file = open_file(&driver, &kernel, APP_TID);
    let request = kernel.request_from(3, APP_TID);
    let (state, _) =
        driver.in_caller_context(&kernel, request, &file, IoKind::Write { length: 100 });
    let completion = driver.io_write(&kernel, &state, 100);
    assert_eq!(
        (completion.status, completion.information),
        (STATUS_SUCCESS, 100)
    );
    let write = drain(&driver)
        .into_iter()
        .find(|e| e.kind == CallbackKind::EvtIoWrite)
        .unwrap();
    assert_eq!(write.detail, 100);
    assert_eq!(write.verdict().placement, Placement::RequestorThread);
}

fn control(
    driver: &Driver<'_>,
    kernel: &TestKernel,
    ioctl: Ioctl,
    input: &[u8],
    output: &mut [u8],
) -> ctxscope_core::logic::Completion {
    let file = FileState {
        id: 1,
        opener: None,
    };
    kernel.run_in(app_thread(APP_TID));
    let request = kernel.request_from(50, APP_TID);
    let kind = IoKind::DeviceControl {
        code: ioctl.code(),
        input_length: input.len(),
        output_length: output.len(),
    };
    let (state, decision) = driver.in_caller_context(kernel, request, &file, kind);
    assert_eq!(decision, CallerDecision::Enqueue);
    let mut aligned = AlignedBuf::<64>::new();
    let input = if input.len() <= 64 {
        aligned.0[..input.len()].copy_from_slice(input);
        BufferedInput::Copied(&aligned.0[..input.len()])
    } else {
        BufferedInput::TooLong(input.len())
    };
    driver.io_device_control(kernel, &state, ioctl.code(), input, output, None)
}

#[test]
fn get_info_reports_mode_config_and_counters() {
    let ring = new_ring();
    let kernel = TestKernel::new();
    let driver = started(&ring, &kernel, Mode::Edu);
    let mut out = AlignedBuf::<256>::new();
    let completion = control(&driver, &kernel, Ioctl::GetInfo, &[], &mut out.0);
    assert_eq!(completion.status, STATUS_SUCCESS);
    assert_eq!(completion.information, InfoReply::SIZE);
    let info = InfoReply::decode(&out.0[..InfoReply::SIZE]).unwrap();
    assert_eq!(info.mode, Mode::Edu);
    assert_eq!(info.counter_frequency, 10_000_000);
    assert_eq!(info.ring_lanes, 8);
    assert_eq!(info.lane_capacity, 512);
    assert_eq!(
        info.ring.recorded,
        4 + 2,
        "start-up events, the caller-context event, this one"
    );
    assert!(out.0[InfoReply::SIZE..].iter().all(|&b| b == 0));

    let mut out = AlignedBuf::<256>::new();
    let completion = control(&driver, &kernel, Ioctl::GetInfo, &[1, 2, 3], &mut out.0);
    assert_eq!(
        (completion.status, completion.information),
        (STATUS_INVALID_PARAMETER, 0)
    );
    let mut small = AlignedBuf::<64>::new();
    let completion = control(&driver, &kernel, Ioctl::GetInfo, &[], &mut small.0);
    assert_eq!(completion.status, STATUS_BUFFER_TOO_SMALL);
}

#[test]
fn get_events_drains_the_ring_and_moves_the_cursor() {
    let ring = new_ring();
    let kernel = TestKernel::new();
    let driver = started(&ring, &kernel, Mode::Root);
    let consumed_before = ring.stats().consumed;
    kernel.run_in(dpc_in_idle(1));
    for _ in 0..5 {
        driver.timer(&kernel, None);
    }
    let mut input = AlignedBuf::<16>::new();
    GetEventsRequest {
        cursor: consumed_before,
    }
    .encode(&mut input.0)
    .unwrap();
    let mut out = Box::new(AlignedBuf::<4096>::new());
    let out_bytes: &mut [u8] = &mut out.0;
    let completion = control(&driver, &kernel, Ioctl::GetEvents, &input.0, out_bytes);
    assert_eq!(completion.status, STATUS_SUCCESS);
    let reply = GetEventsReply::decode(&out_bytes[..completion.information]).unwrap();
    let events: Vec<_> = reply.events().collect();
    // Five ticks, the caller-context event and the device-control event itself.
    assert_eq!(events.len(), 7);
    assert_eq!(
        completion.information,
        GetEventsReply::FIXED_SIZE + 7 * Event::SIZE
    );
    assert_eq!(reply.header.cursor, consumed_before);
    assert_eq!(reply.header.next_cursor, consumed_before + 7);
    assert!(events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));

    // A reader already holds the ring: busy, not a wait.
    let held = ring.reader().unwrap();
    let completion = control(&driver, &kernel, Ioctl::GetEvents, &input.0, out_bytes);
    assert_eq!(completion.status, STATUS_DEVICE_BUSY);
    drop(held);

    let mut tiny = AlignedBuf::<32>::new();
    let completion = control(&driver, &kernel, Ioctl::GetEvents, &input.0, &mut tiny.0);
    assert_eq!(completion.status, STATUS_BUFFER_TOO_SMALL);
    let mut bad = input;
    bad.0[0] = 9; // protocol version 9
    let completion = control(&driver, &kernel, Ioctl::GetEvents, &bad.0, out_bytes);
    assert_eq!(
        (completion.status, completion.information),
        (STATUS_REVISION_MISMATCH, 0)
    );
    assert!(
        out_bytes.iter().all(|&b| b == 0),
        "a failed request leaves a zeroed output"
    );
}

#[test]
fn reset_discards_and_configure_validates() {
    let ring = new_ring();
    let kernel = TestKernel::new();
    let driver = started(&ring, &kernel, Mode::Root);
    kernel.run_in(dpc_in_idle(0));
    driver.timer(&kernel, None);
    let mut out = AlignedBuf::<16>::new();
    let completion = control(&driver, &kernel, Ioctl::Reset, &[], &mut out.0);
    assert_eq!(completion.information, ResetReply::SIZE);
    // The tick, the caller-context event of the reset and the device-control event itself.
    assert_eq!(ResetReply::decode(&out.0).unwrap().discarded, 3);

    let mut input = AlignedBuf::<16>::new();
    ConfigureRequest {
        timer_period_ms: 250,
        log_level: LogLevel::Lifecycle,
    }
    .encode(&mut input.0)
    .unwrap();
    let completion = control(&driver, &kernel, Ioctl::Configure, &input.0, &mut []);
    assert_eq!(
        (completion.status, completion.information),
        (STATUS_SUCCESS, 0)
    );
    assert_eq!(driver.timer_period_ms(), 250);
    assert_eq!(driver.log_level(), LogLevel::Lifecycle);
    kernel.run_in(dpc_in_idle(0));
    assert_eq!(
        driver.timer(&kernel, None).0.rearm_ms,
        250,
        "takes effect at the next tick"
    );

    let mut out_of_range = input;
    out_of_range.0[8..12].copy_from_slice(&0u32.to_le_bytes());
    let completion = control(&driver, &kernel, Ioctl::Configure, &out_of_range.0, &mut []);
    assert_eq!(completion.status, STATUS_INVALID_PARAMETER);
    assert_eq!(
        driver.timer_period_ms(),
        250,
        "a refused configuration changes nothing"
    );
    let completion = control(&driver, &kernel, Ioctl::Configure, &[0; 100], &mut []);
    assert_eq!(
        completion.status, STATUS_INVALID_PARAMETER,
        "longer than any input"
    );
}

#[test]
fn unknown_codes_and_unlocked_neither_requests_are_refused() {
    let ring = new_ring();
    let kernel = TestKernel::new();
    let driver = started(&ring, &kernel, Mode::Root);
    let state = RequestState {
        id: 1,
        file_id: 1,
        requestor: None,
        kind: IoKind::DeviceControl {
            code: 0x0022_3FFC,
            input_length: 0,
            output_length: 0,
        },
        trail: [ctxscope_core::protocol::TrailEntry::ABSENT; 5],
        neither_locked: false,
    };
    let completion = driver.io_device_control(
        &kernel,
        &state,
        0x0022_3FFC,
        BufferedInput::Copied(&[]),
        &mut [],
        None,
    );
    assert_eq!(completion.status, STATUS_INVALID_DEVICE_REQUEST);
    let mut output = [0u8; 64];
    let completion = driver.io_device_control(
        &kernel,
        &state,
        Ioctl::NeitherDemo.code(),
        BufferedInput::Copied(&[]),
        &mut [],
        Some(NeitherBuffers {
            input: &PrivateBytes(&[]),
            output: &mut PrivateBytesMut(&mut output),
        }),
    );
    assert_eq!(
        completion.status, STATUS_INVALID_DEVICE_REQUEST,
        "buffers not locked in caller context"
    );
}

#[test]
fn neither_demo_fills_the_locked_output_from_an_arbitrary_thread() {
    let ring = new_ring();
    let kernel = TestKernel::new();
    let driver = started(&ring, &kernel, Mode::Root);
    let file = open_file(&driver, &kernel, APP_TID);
    let request = kernel.request_from(77, APP_TID);
    let kind = IoKind::DeviceControl {
        code: Ioctl::NeitherDemo.code(),
        input_length: 5,
        output_length: NeitherDemoReply::SIZE,
    };
    let (mut state, decision) = driver.in_caller_context(&kernel, request, &file, kind);
    assert!(matches!(decision, CallerDecision::ProbeAndLock { .. }));
    driver.neither_buffers_locked(&mut state, Ok(()));

    // Presented later from a System worker thread: only the locked memory is used.
    kernel.run_in(ExecContext {
        pid: SYSTEM_PID,
        tid: 96,
        irql: PASSIVE_LEVEL,
        cpu: 2,
    });
    let input = *b"hello";
    let mut locked_output = AlignedBuf::<{ NeitherDemoReply::SIZE }>::new();
    locked_output.0.fill(0xAA);
    let completion = driver.io_device_control(
        &kernel,
        &state,
        Ioctl::NeitherDemo.code(),
        BufferedInput::Copied(&[]),
        &mut [],
        Some(NeitherBuffers {
            input: &PrivateBytes(&input),
            output: &mut PrivateBytesMut(&mut locked_output.0),
        }),
    );
    assert_eq!(
        (completion.status, completion.information),
        (STATUS_SUCCESS, NeitherDemoReply::SIZE)
    );
    let reply = NeitherDemoReply::decode(&locked_output.0).unwrap();
    assert_eq!(
        (reply.locked_by_pid, reply.locked_by_tid),
        (APP_PID, APP_TID)
    );
    assert_eq!((reply.filled_by_pid, reply.filled_by_tid), (SYSTEM_PID, 96));
    assert_eq!(reply.input_len, 5);
    assert_eq!(reply.input_checksum, checksum(b"hello"));
}

#[test]
fn log_level_governs_lines_never_the_ring_and_lines_parse_back() {
    let ring = new_ring();
    let kernel = TestKernel::new();
    let driver = started(&ring, &kernel, Mode::Root);
    let lines = kernel.lines();
    assert_eq!(
        lines.len(),
        4,
        "every start-up event is printed at the default level"
    );
    for line in &lines {
        assert!(line.ends_with('\n'));
        assert!(parse_line(line).unwrap().is_some(), "{line}");
    }

    let mut input = AlignedBuf::<16>::new();
    ConfigureRequest {
        timer_period_ms: 10,
        log_level: LogLevel::Lifecycle,
    }
    .encode(&mut input.0)
    .unwrap();
    control(&driver, &kernel, Ioctl::Configure, &input.0, &mut []);
    drain(&driver);
    let printed_before = kernel.lines().len();
    kernel.run_in(dpc_in_idle(0));
    driver.timer(&kernel, None);
    let file = open_file(&driver, &kernel, APP_TID);
    let printed: Vec<_> = kernel.lines()[printed_before..].to_vec();
    assert_eq!(printed.len(), 1, "lifecycle: the file create, not the tick");
    let recorded = drain(&driver);
    assert_eq!(recorded.len(), 2, "the ring records both");
    assert_eq!(parse_line(&printed[0]).unwrap(), Some(recorded[1]));
    assert_eq!(recorded[1].file_id, file.id);

    ConfigureRequest {
        timer_period_ms: 10,
        log_level: LogLevel::Off,
    }
    .encode(&mut input.0)
    .unwrap();
    control(&driver, &kernel, Ioctl::Configure, &input.0, &mut []);
    let printed_before = kernel.lines().len();
    let suppressed_before = driver.counters().log_lines_suppressed;
    driver.timer(&kernel, None);
    assert_eq!(kernel.lines().len(), printed_before);
    assert_eq!(
        driver.counters().log_lines_suppressed,
        suppressed_before + 1
    );
}

#[test]
fn a_full_lane_drops_and_counts_without_printing() {
    let ring = new_ring();
    let kernel = TestKernel::new();
    let driver = started(&ring, &kernel, Mode::Root);
    kernel.run_in(dpc_in_idle(5));
    let lines_before = kernel.lines().len();
    for _ in 0..600 {
        driver.timer(&kernel, None);
    }
    let stats = ring.stats();
    assert_eq!(stats.dropped, 600 - 512);
    assert_eq!(
        kernel.lines().len() - lines_before,
        512,
        "dropped events are not printed"
    );
    assert_eq!(drain(&driver).len(), 512);
    assert_eq!(
        driver.counters().timer_ticks,
        600,
        "every tick ran and was counted"
    );
}
