//! The subcommands that talk to the driver or install it: Windows only. Everything they decide
//! is in the portable modules (`drain`, `install`, `watch`, `worker`, `info`); this is the Win32
//! glue and the process spawning.

mod device;
mod names;
mod run;

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ctxscope_core::protocol::{AlignedBuf, GetEventsReply};

use crate::cli::{InstallArgs, UninstallArgs, WatchArgs, WorkerArgs};
use crate::drain::DrainState;
use crate::install::{self, Cmd, DeviceTool, Output, SecureBoot, StepLog};
use crate::model::Names;
use crate::wide::code;
use crate::{stop, watch as watch_fmt};

pub use run::{run, worker as run_worker};

/// `ctxctl worker`.
///
/// # Errors
/// As [`run::worker`].
pub fn worker(args: &WorkerArgs) -> Result<()> {
    run_worker(args)
}

/// `ctxctl info`.
///
/// # Errors
/// The device cannot be opened or answers with another protocol version.
pub fn info() -> Result<()> {
    let (_device, info) = device::open_checked(false)?;
    print!("{}", crate::info::render(&info));
    Ok(())
}

/// `ctxctl watch`.
///
/// # Errors
/// The device cannot be used.
pub fn watch(args: &WatchArgs) -> Result<()> {
    let (device, info) = device::open_checked(false)?;
    let filter = watch_fmt::Filter::from_args(args);
    stop::install_handler();
    let mut state = DrainState::new(info.ring);
    let mut names = Names::default();
    let mut cache = names::NameCache::default();
    let mut buffer = Box::new(AlignedBuf::<{ device::EVENTS_BUFFER }>::new());
    let first_ts = std::cell::Cell::new(None::<u64>);
    #[allow(clippy::cast_precision_loss)] // tick deltas and a frequency, well within f64
    let seconds = |ts: u64| {
        let first = *first_ts.get().get_or_insert(ts);
        first_ts.set(Some(first));
        Some(ts.saturating_sub(first) as f64 / info.counter_frequency as f64)
    };
    eprintln!(
        "watching the ctxscope driver ({} mode); Ctrl-C to stop",
        info.mode
    );
    let mut shown = 0u64;
    while !stop::requested() {
        let before = state.lost;
        let n = match device.get_events_raw(state.cursor, buffer.as_mut_bytes()) {
            Ok(n) => n,
            Err(error) if error.raw_os_error() == Some(code::BUSY.cast_signed()) => {
                thread::sleep(Duration::from_millis(args.interval_ms));
                continue;
            }
            Err(error) => {
                return Err(device::device_error(
                    "IOCTL_CTXSCOPE_GET_EVENTS failed",
                    &error,
                ));
            }
        };
        let reply = device::Device::decode_events(&buffer.as_bytes()[..n])?;
        state.accept(&reply.header);
        if state.lost.dropped > before.dropped {
            println!(
                "-- {} event(s) lost: the driver's ring was full",
                state.lost.dropped - before.dropped
            );
        }
        if state.lost.cursor_gaps > before.cursor_gaps {
            println!(
                "-- {} event(s) taken by another reader",
                state.lost.cursor_gaps - before.cursor_gaps
            );
        }
        if state.lost.driver_restarted && !before.driver_restarted {
            println!("-- the driver was reloaded");
        }
        let events: Vec<_> = reply.events().collect();
        cache.resolve(
            events
                .iter()
                .flat_map(|e| [Some(e.pid), e.requestor().map(|r| r.pid)])
                .flatten(),
            &mut names,
        );
        for event in events.iter().filter(|e| filter.accepts(e)) {
            println!(
                "{}",
                watch_fmt::format_line(event, &names, seconds(event.timestamp))
            );
            shown += 1;
        }
        if reply.len() < GetEventsReply::MAX_EVENTS {
            thread::sleep(Duration::from_millis(args.interval_ms));
        }
    }
    eprintln!("{shown} event(s) shown");
    Ok(())
}

// ---- Install, uninstall, status --------------------------------------------------------------

/// Runs a command and captures its output (standard output, then standard error).
fn exec(cmd: &Cmd) -> Result<Output> {
    let output = Command::new(&cmd.program)
        .args(&cmd.args)
        .output()
        .with_context(|| {
            format!(
                "cannot run `{}` (is {} on PATH?)",
                cmd.display(),
                cmd.program
            )
        })?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok(Output {
        code: output.status.code(),
        text,
    })
}

fn device_tool() -> Option<DeviceTool> {
    let path = std::env::var_os("PATH")?;
    let pathext = std::env::var("PATHEXT").unwrap_or_else(|_| ".COM;.EXE".to_owned());
    [DeviceTool::Devgen, DeviceTool::Devcon]
        .into_iter()
        .find(|tool| install::find_on_path(tool.program(), &path, Some(&pathext)).is_some())
}

fn testsigning() -> Result<bool> {
    let output = exec(&install::bcdedit_enum_current())?;
    install::parse_testsigning(&output.text)
}

fn secure_boot() -> SecureBoot {
    exec(&install::confirm_secure_boot())
        .map_or(SecureBoot::Unknown, |o| install::parse_secure_boot(&o))
}

fn our_packages() -> Result<Vec<install::DriverPackage>> {
    let output = exec(&install::pnputil_enum_drivers())?;
    if output.code != Some(0) {
        bail!("`pnputil /enum-drivers` failed:\n{}", output.text.trim());
    }
    Ok(
        install::ctxscope_packages(&install::parse_enum_drivers(&output.text))
            .into_iter()
            .cloned()
            .collect(),
    )
}

fn our_devices(published: &[&str]) -> Result<Vec<install::Device>> {
    let mut output = exec(&install::pnputil_enum_devices())?;
    if output.code != Some(0) {
        // Older pnputil has no /deviceids: match by the driver's published INF only.
        output = exec(&install::pnputil_enum_devices_plain())?;
    }
    if output.code != Some(0) {
        bail!(
            "`{}` failed (pnputil /enum-devices needs Windows 10 2004 or later):\n{}",
            install::pnputil_enum_devices_plain().display(),
            output.text.trim()
        );
    }
    let devices = install::parse_enum_devices(&output.text);
    Ok(install::ctxscope_devices(&devices, published)
        .into_iter()
        .cloned()
        .collect())
}

fn cert_sha1(cer: &Path) -> Result<String> {
    let output = exec(&install::certutil_dump(cer))?;
    install::parse_cert_sha1(&output.text)
        .with_context(|| format!("`certutil -dump {}` shows no SHA-1 hash", cer.display()))
}

/// Runs one install step, recording it in `log`, or prints the failure report and fails.
fn step<T>(log: &StepLog, what: &str, result: Result<T>) -> Result<T> {
    result.map_err(|error| anyhow::anyhow!("{}", log.failure_report(what, &error)))
}

/// `ctxctl install`.
///
/// # Errors
/// A step failed: the message says what succeeded, what failed and how to undo it.
#[allow(clippy::too_many_lines)] // the install, one checked step after another
pub fn install(args: &InstallArgs) -> Result<()> {
    let mut log = StepLog::default();
    let package = step(
        &log,
        "check the package",
        install::check_package(&args.package, !args.skip_certificate),
    )?;
    println!("package: {}", package.dir.display());

    let on = step(
        &log,
        "check test signing (bcdedit /enum {current})",
        testsigning(),
    )?;
    if !on {
        return Err(anyhow::anyhow!(
            "{}",
            log.failure_report(
                "check test signing",
                &anyhow::anyhow!("test signing is off: run `bcdedit /set testsigning on` from an elevated prompt and reboot, then run `ctxctl install` again")
            )
        ));
    }
    println!("test signing: on");
    match secure_boot() {
        SecureBoot::On => {
            return Err(anyhow::anyhow!(
                "{}",
                log.failure_report(
                    "check Secure Boot",
                    &anyhow::anyhow!("Secure Boot is on, and with it Windows ignores test signing: turn it off in the VM's firmware settings (see docs/vm-guide.md)")
                )
            ));
        }
        SecureBoot::Off => println!("Secure Boot: off"),
        SecureBoot::NotUefi => println!("Secure Boot: not available (legacy BIOS)"),
        SecureBoot::Unknown => println!(
            "Secure Boot: could not be checked; if the driver fails to load with code 52, turn it off"
        ),
    }
    let tool = device_tool();
    let Some(tool) = tool else {
        return Err(anyhow::anyhow!(
            "{}",
            log.failure_report(
                "find devgen or devcon",
                &anyhow::anyhow!("neither devgen.exe nor devcon.exe is on PATH: add the WDK's tools folder (e.g. C:\\Program Files (x86)\\Windows Kits\\10\\Tools\\<version>\\x64) to PATH")
            )
        ));
    };

    if let Some(cer) = &package.cer {
        let sha1 = step(&log, "read the certificate", cert_sha1(cer))?;
        for store in ["root", "trustedpublisher"] {
            let what = format!("trust the test certificate ({store} store)");
            let output = step(&log, &what, exec(&install::certutil_addstore(store, cer)))?;
            step(&log, &what, install::check_certutil(&output))?;
            log.done(
                format!("trusted {} in the {store} store", cer.display()),
                Some(install::certutil_delstore(store, &sha1).display()),
            );
            println!("certificate: trusted ({store})");
        }
    }

    let output = step(
        &log,
        "add the driver package (pnputil /add-driver)",
        exec(&install::pnputil_add_driver(&package.inf)),
    )?;
    let added = step(
        &log,
        "add the driver package (pnputil /add-driver)",
        install::parse_add_driver(&output),
    )?;
    log.done(
        format!("added the driver package as {}", added.published_name),
        Some(install::pnputil_delete_driver(&added.published_name).display()),
    );
    println!(
        "driver package: {}{}",
        added.published_name,
        if added.already_present {
            " (already in the driver store)"
        } else {
            ""
        }
    );

    let existing = step(&log, "list devices", our_devices(&[&added.published_name]))?;
    if existing.is_empty() {
        let create = tool.create_device(&package.inf);
        let output = step(&log, "create the root device", exec(&create))?;
        step(
            &log,
            "create the root device",
            install::check_create_device(tool, &output),
        )?;
        let created = step(&log, "list devices", our_devices(&[&added.published_name]))?;
        let undo = created
            .first()
            .map(|d| install::pnputil_remove_device(&d.instance_id).display());
        log.done(
            format!("created the root device ({})", create.display()),
            undo,
        );
        println!("device: created");
    } else {
        for device in &existing {
            println!(
                "device: {} already present ({})",
                device.instance_id, device.status
            );
        }
    }

    // The interface appears once the driver has started the device.
    for _ in 0..20 {
        if !device::interface_paths()?.is_empty() {
            let (_device, info) = device::open_checked(false)?;
            println!(
                "installed: driver {} running in {} mode; try `ctxctl run`",
                info.driver_version, info.mode
            );
            return Ok(());
        }
        thread::sleep(Duration::from_millis(500));
    }
    Err(anyhow::anyhow!(
        "{}",
        log.failure_report(
            "start the device",
            &anyhow::anyhow!("the device did not start within 10 s: look at it in Device Manager (a code 52 means the signature is not trusted, code 10 that the driver failed to start); `ctxctl status` shows the details")
        )
    ))
}

/// `ctxctl uninstall`.
///
/// # Errors
/// A step failed; the message says which, and what was already removed.
pub fn uninstall(args: &UninstallArgs) -> Result<()> {
    let packages = our_packages()?;
    let published: Vec<&str> = packages.iter().map(|p| p.published_name.as_str()).collect();
    let devices = our_devices(&published)?;
    let mut failures = Vec::new();
    for device in &devices {
        let cmd = install::pnputil_remove_device(&device.instance_id);
        match exec(&cmd).and_then(|o| install::check_pnputil_removal(&o)) {
            Ok(()) => println!("removed device {}", device.instance_id),
            Err(error) => failures.push(format!("`{}`: {error:#}", cmd.display())),
        }
    }
    for package in &packages {
        let cmd = install::pnputil_delete_driver(&package.published_name);
        match exec(&cmd).and_then(|o| install::check_pnputil_removal(&o)) {
            Ok(()) => println!("deleted driver package {}", package.published_name),
            Err(error) => failures.push(format!("`{}`: {error:#}", cmd.display())),
        }
    }
    if args.untrust_certificate {
        let dir = args
            .package
            .as_deref()
            .unwrap_or(Path::new("ctxscope_package"));
        let package = install::check_package(dir, true)?;
        if let Some(cer) = &package.cer {
            let sha1 = cert_sha1(cer)?;
            for store in ["trustedpublisher", "root"] {
                let cmd = install::certutil_delstore(store, &sha1);
                match exec(&cmd).and_then(|o| install::check_certutil(&o)) {
                    Ok(()) => println!("removed the test certificate from {store}"),
                    Err(error) => failures.push(format!("`{}`: {error:#}", cmd.display())),
                }
            }
        }
    }
    if devices.is_empty() && packages.is_empty() {
        println!("no ctxscope device or driver package was installed");
    }
    if failures.is_empty() {
        Ok(())
    } else {
        bail!(
            "uninstall incomplete; these steps failed (run them from an elevated prompt):\n  {}",
            failures.join("\n  ")
        )
    }
}

/// `ctxctl status`.
///
/// # Errors
/// Only if pnputil cannot be run at all.
pub fn status() -> Result<()> {
    match testsigning() {
        Ok(on) => println!(
            "test signing: {}",
            if on {
                "on"
            } else {
                "OFF (bcdedit /set testsigning on, then reboot)"
            }
        ),
        Err(error) => println!("test signing: unknown ({error:#})"),
    }
    println!(
        "Secure Boot: {}",
        match secure_boot() {
            SecureBoot::On => "ON (test-signed drivers will not load)",
            SecureBoot::Off => "off",
            SecureBoot::NotUefi => "not available (legacy BIOS)",
            SecureBoot::Unknown => "unknown",
        }
    );
    let packages = our_packages()?;
    if packages.is_empty() {
        println!("driver packages: none (run `ctxctl install`)");
    }
    for package in &packages {
        println!(
            "driver package: {} ({}, {}, signed by {})",
            package.published_name, package.original_name, package.driver_version, package.signer
        );
    }
    let published: Vec<&str> = packages.iter().map(|p| p.published_name.as_str()).collect();
    match our_devices(&published) {
        Ok(devices) if devices.is_empty() => println!("devices: none"),
        Ok(devices) => {
            for device in devices {
                println!(
                    "device: {} ({}) {}",
                    device.instance_id, device.description, device.status
                );
            }
        }
        Err(error) => println!("devices: unknown ({error:#})"),
    }
    let paths = device::interface_paths()?;
    if paths.is_empty() {
        println!("device interface: none present (the driver is not running)");
        return Ok(());
    }
    for path in &paths {
        println!("device interface: {path}");
    }
    match device::open_checked(false) {
        Ok((_device, info)) => print!("{}", crate::info::render(&info)),
        Err(error) => println!("driver: cannot be queried ({error:#})"),
    }
    Ok(())
}
