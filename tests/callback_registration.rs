//! Every callback kind of the core is registered by the driver and records through the logic.
//!
//! The driver builds only on Windows, so this is a consistency check over the text of `src/`, not
//! a test of behaviour (the logic's behaviour is tested in `ctxscope-core` and by the simulator).
//! For each [`CallbackKind`] it checks that:
//! - the callback function exists with the calling convention the framework calls it with;
//! - the registration that wires it (a configuration field or a registration call) is present,
//!   in the file of the framework object it belongs to;
//! - the body of that function calls the `Driver` method that records the kind, and that method
//!   exists in `crates/core/src/logic.rs`.
//!
//! The table is a `match` without a wildcard, so a new kind does not compile here until it is
//! wired.

use std::path::Path;

use ctxscope_core::CallbackKind;

/// How one callback kind is wired in `src/`.
struct Wiring {
    /// The file of the framework object (`src/<file>`).
    file: &'static str,
    /// The name of the Rust function the framework calls.
    function: &'static str,
    /// What must appear in the file to register it.
    registration: &'static [&'static str],
    /// The `Driver` method whose call in the function's body records the kind.
    logic: &'static str,
}

#[allow(clippy::too_many_lines, reason = "a table: one arm per callback kind")]
fn wiring(kind: CallbackKind) -> Wiring {
    use CallbackKind as K;
    let (file, function, registration, logic): (_, _, &'static [&'static str], _) = match kind {
        K::DriverEntry => (
            "driver.rs",
            "driver_entry",
            &[
                "#[unsafe(export_name = \"DriverEntry\")]",
                "WdfDriverCreate",
            ],
            "driver_entry",
        ),
        K::EvtDriverDeviceAdd => (
            "driver.rs",
            "evt_driver_device_add",
            &["EvtDriverDeviceAdd: Some(evt_driver_device_add)"],
            "device_add",
        ),
        K::EvtDriverUnload => (
            "driver.rs",
            "evt_driver_unload",
            &["EvtDriverUnload: Some(evt_driver_unload)"],
            "driver_unload",
        ),
        K::EvtDevicePrepareHardware => (
            "device.rs",
            "evt_device_prepare_hardware",
            &[
                "EvtDevicePrepareHardware: Some(evt_device_prepare_hardware)",
                "WdfDeviceInitSetPnpPowerEventCallbacks",
            ],
            "prepare_hardware",
        ),
        K::EvtDeviceReleaseHardware => (
            "device.rs",
            "evt_device_release_hardware",
            &[
                "EvtDeviceReleaseHardware: Some(evt_device_release_hardware)",
                "WdfDeviceInitSetPnpPowerEventCallbacks",
            ],
            "release_hardware",
        ),
        K::EvtDeviceD0Entry => (
            "device.rs",
            "evt_device_d0_entry",
            &[
                "EvtDeviceD0Entry: Some(evt_device_d0_entry)",
                "WdfDeviceInitSetPnpPowerEventCallbacks",
            ],
            "d0_entry",
        ),
        K::EvtDeviceD0Exit => (
            "device.rs",
            "evt_device_d0_exit",
            &[
                "EvtDeviceD0Exit: Some(evt_device_d0_exit)",
                "WdfDeviceInitSetPnpPowerEventCallbacks",
            ],
            "d0_exit",
        ),
        K::EvtDeviceFileCreate => (
            "file.rs",
            "evt_device_file_create",
            &[
                "EvtDeviceFileCreate: Some(evt_device_file_create)",
                "WdfDeviceInitSetFileObjectConfig",
            ],
            "file_create",
        ),
        K::EvtFileCleanup => (
            "file.rs",
            "evt_file_cleanup",
            &[
                "EvtFileCleanup: Some(evt_file_cleanup)",
                "WdfDeviceInitSetFileObjectConfig",
            ],
            "file_cleanup",
        ),
        K::EvtFileClose => (
            "file.rs",
            "evt_file_close",
            &[
                "EvtFileClose: Some(evt_file_close)",
                "WdfDeviceInitSetFileObjectConfig",
            ],
            "file_close",
        ),
        K::EvtIoInCallerContext => (
            "queue.rs",
            "evt_io_in_caller_context",
            &[
                "WdfDeviceInitSetIoInCallerContextCallback",
                "Some(evt_io_in_caller_context)",
            ],
            "in_caller_context",
        ),
        K::EvtIoRead => (
            "queue.rs",
            "evt_io_read",
            &[
                "config.EvtIoRead = Some(evt_io_read)",
                "_WDF_REQUEST_TYPE::WdfRequestTypeRead",
                "WdfDeviceConfigureRequestDispatching",
            ],
            "io_read",
        ),
        K::EvtIoWrite => (
            "queue.rs",
            "evt_io_write",
            &[
                "config.EvtIoWrite = Some(evt_io_write)",
                "_WDF_REQUEST_TYPE::WdfRequestTypeWrite",
                "WdfDeviceConfigureRequestDispatching",
            ],
            "io_write",
        ),
        K::EvtIoDeviceControl => (
            "queue.rs",
            "evt_io_device_control",
            &[
                "config.EvtIoDeviceControl = Some(evt_io_device_control)",
                "_WDF_REQUEST_TYPE::WdfRequestTypeDeviceControl",
                "WdfDeviceConfigureRequestDispatching",
            ],
            "io_device_control",
        ),
        K::EvtTimerFunc => (
            "timer.rs",
            "evt_timer_func",
            &["EvtTimerFunc: Some(evt_timer_func)", "WdfTimerCreate"],
            "timer",
        ),
        K::EvtInterruptIsr => (
            "interrupt.rs",
            "evt_interrupt_isr",
            &[
                "EvtInterruptIsr: Some(evt_interrupt_isr)",
                "WdfInterruptCreate",
            ],
            "interrupt_isr",
        ),
        K::EvtInterruptDpc => (
            "interrupt.rs",
            "evt_interrupt_dpc",
            &[
                "EvtInterruptDpc: Some(evt_interrupt_dpc)",
                "WdfInterruptCreate",
            ],
            "interrupt_dpc",
        ),
    };
    Wiring {
        file,
        function,
        registration,
        logic,
    }
}

/// `text` without whitespace, so that checks do not depend on how rustfmt wraps a call.
fn squeeze(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Whether `haystack` contains `needle`, ignoring whitespace in both.
fn mentions(haystack: &str, needle: &str) -> bool {
    squeeze(haystack).contains(&squeeze(needle))
}

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// The text from `fn <name>(` to the brace that closes its body.
fn function_body<'a>(source: &'a str, name: &str) -> Option<&'a str> {
    let signature = format!("fn {name}(");
    let start = source.find(&signature)?;
    let open = start + source[start..].find('{')?;
    let mut depth = 0_usize;
    for (offset, ch) in source[open..].char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&source[start..=open + offset]);
                }
            }
            _ => {}
        }
    }
    None
}

/// The line that declares `fn <name>(`, with what precedes it on that line.
fn declaration_line<'a>(source: &'a str, name: &str) -> Option<&'a str> {
    source
        .lines()
        .find(|line| line.contains(&format!("fn {name}(")))
}

#[test]
fn every_callback_kind_is_registered_and_records_through_the_logic() {
    let logic = read("crates/core/src/logic.rs");
    let mut problems = Vec::new();
    for kind in CallbackKind::ALL {
        let wiring = wiring(kind);
        let source = read(&format!("src/{}", wiring.file));
        for needle in wiring.registration {
            if !mentions(&source, needle) {
                problems.push(format!(
                    "{kind}: src/{} lacks the registration `{needle}`",
                    wiring.file
                ));
            }
        }
        let Some(declaration) = declaration_line(&source, wiring.function) else {
            problems.push(format!(
                "{kind}: src/{} has no fn {}",
                wiring.file, wiring.function
            ));
            continue;
        };
        let abi = if kind == CallbackKind::DriverEntry {
            "extern \"system\" fn"
        } else {
            "extern \"C\" fn"
        };
        if !declaration.contains(abi) {
            problems.push(format!(
                "{kind}: fn {} is not `{abi}`: {declaration:?}",
                wiring.function
            ));
        }
        let body = function_body(&source, wiring.function).unwrap_or("");
        let call = format!("DRIVER.{}(", wiring.logic);
        if !mentions(body, &call) {
            problems.push(format!(
                "{kind}: fn {} does not call `{call}`",
                wiring.function
            ));
        }
        let method = format!("pub fn {}<", wiring.logic);
        if !mentions(&logic, &method) {
            problems.push(format!("{kind}: logic.rs has no `{method}` for the call"));
        }
    }
    assert!(
        problems.is_empty(),
        "callback wiring problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn each_callback_function_is_wired_to_exactly_one_kind() {
    let mut functions: Vec<&str> = CallbackKind::ALL
        .into_iter()
        .map(|kind| wiring(kind).function)
        .collect();
    functions.sort_unstable();
    let count = functions.len();
    functions.dedup();
    assert_eq!(
        functions.len(),
        count,
        "two kinds share a callback function"
    );
    assert_eq!(count, CallbackKind::COUNT);
}

#[test]
fn the_pending_read_is_cancelable_and_its_cancel_routine_records_through_the_logic() {
    let queue = read("src/queue.rs");
    assert!(mentions(
        &queue,
        "WdfRequestMarkCancelableEx, request, Some(evt_request_cancel)"
    ));
    let cancel = function_body(&queue, "evt_request_cancel").expect("fn evt_request_cancel");
    assert!(
        cancel.contains("DRIVER.read_cancelled()"),
        "the cancel routine completes as the logic says"
    );
    let take = function_body(&queue, "take_pending_read").expect("fn take_pending_read");
    assert!(
        take.contains("WdfRequestUnmarkCancelable"),
        "a completer wins the read from cancel"
    );
    let pend = function_body(&queue, "pend_read").expect("fn pend_read");
    assert!(
        pend.contains("DRIVER.read_cancelled()"),
        "a read cancelled before it pends completes as cancelled"
    );
}

#[test]
fn the_cleanup_thread_is_captured_by_an_irp_mj_cleanup_preprocess_callback() {
    let device = read("src/device.rs");
    assert!(mentions(
        &device,
        "WdfDeviceInitAssignWdmIrpPreprocessCallback"
    ));
    assert!(mentions(
        &device,
        "Some(evt_device_wdm_irp_preprocess_cleanup)"
    ));
    assert!(mentions(&device, "IRP_MJ_CLEANUP"));
    let preprocess = function_body(&device, "evt_device_wdm_irp_preprocess_cleanup")
        .expect("the preprocess callback");
    assert!(
        preprocess.contains("WdfDeviceWdmDispatchPreprocessedIrp"),
        "the IRP goes back to the framework"
    );
}

#[test]
fn every_driver_module_is_windows_only() {
    let lib = read("src/lib.rs");
    assert!(mentions(
        &lib,
        "#![cfg_attr(target_os = \"windows\", no_std)]"
    ));
    for module in [
        "context",
        "device",
        "driver",
        "file",
        "interrupt",
        "kernel",
        "queue",
        "registers",
        "timer",
    ] {
        let declaration = format!("#[cfg(target_os = \"windows\")]\nmod {module};");
        assert!(
            lib.contains(&declaration),
            "src/lib.rs must declare `mod {module}` behind cfg(target_os = \"windows\")"
        );
    }
}
