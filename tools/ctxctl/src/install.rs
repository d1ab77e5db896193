//! Installing and removing the driver, made safe: the commands to run, and the parsing of what
//! `bcdedit`, `pnputil`, `certutil`, `devgen` and `devcon` print (English output). Everything
//! here is pure and portable, tested on any OS with captured outputs; only spawning the processes
//! lives in the Windows module.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The INF's file name.
pub const INF_NAME: &str = "ctxscope.inf";
/// The hardware ID of the root-enumerated device (the INF's `[Standard.NT$ARCH$]` model).
pub const ROOT_HARDWARE_ID: &str = r"Root\CtxScope";

/// A command line to run: program and arguments, passed as separate arguments (no shell).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd {
    /// Program (found on `PATH`).
    pub program: String,
    /// Arguments.
    pub args: Vec<OsString>,
}

impl Cmd {
    fn new<I, S>(program: &str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Self {
            program: program.to_owned(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// The command as a user would type it (for messages and undo instructions).
    #[must_use]
    pub fn display(&self) -> String {
        let mut out = self.program.clone();
        for arg in &self.args {
            let arg = arg.to_string_lossy();
            out.push(' ');
            if arg.contains(' ') || arg.is_empty() {
                out.push('"');
                out.push_str(&arg);
                out.push('"');
            } else {
                out.push_str(&arg);
            }
        }
        out
    }
}

/// What a command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// Exit code (`None` if it was killed).
    pub code: Option<i32>,
    /// Standard output and standard error, concatenated.
    pub text: String,
}

// ---- Commands ------------------------------------------------------------------------------------

/// `bcdedit /enum {current}`.
#[must_use]
pub fn bcdedit_enum_current() -> Cmd {
    Cmd::new("bcdedit", ["/enum", "{current}"])
}

/// `powershell -NoProfile -NonInteractive -Command Confirm-SecureBootUEFI`.
#[must_use]
pub fn confirm_secure_boot() -> Cmd {
    Cmd::new(
        "powershell",
        [
            "-NoProfile",
            "-NonInteractive",
            "-Command",
            "Confirm-SecureBootUEFI",
        ],
    )
}

/// `certutil -addstore <store> <cer>`.
#[must_use]
pub fn certutil_addstore(store: &str, cer: &Path) -> Cmd {
    Cmd::new(
        "certutil",
        [
            OsString::from("-addstore"),
            store.into(),
            cer.as_os_str().to_owned(),
        ],
    )
}

/// `certutil -delstore <store> <sha1>`.
#[must_use]
pub fn certutil_delstore(store: &str, sha1: &str) -> Cmd {
    Cmd::new("certutil", ["-delstore", store, sha1])
}

/// `certutil -dump <cer>`: prints the certificate's hash, to find it in the stores.
#[must_use]
pub fn certutil_dump(cer: &Path) -> Cmd {
    Cmd::new(
        "certutil",
        [OsString::from("-dump"), cer.as_os_str().to_owned()],
    )
}

/// `pnputil /add-driver <inf> /install`.
#[must_use]
pub fn pnputil_add_driver(inf: &Path) -> Cmd {
    Cmd::new(
        "pnputil",
        [
            OsString::from("/add-driver"),
            inf.as_os_str().to_owned(),
            "/install".into(),
        ],
    )
}

/// `pnputil /enum-drivers`.
#[must_use]
pub fn pnputil_enum_drivers() -> Cmd {
    Cmd::new("pnputil", ["/enum-drivers"])
}

/// `pnputil /enum-devices /deviceids` (lists hardware IDs; Windows 10 21H2 and later).
#[must_use]
pub fn pnputil_enum_devices() -> Cmd {
    Cmd::new("pnputil", ["/enum-devices", "/deviceids"])
}

/// `pnputil /enum-devices`: the fallback for Windows versions whose pnputil has no
/// `/deviceids` (devices are then matched by their driver's published INF only).
#[must_use]
pub fn pnputil_enum_devices_plain() -> Cmd {
    Cmd::new("pnputil", ["/enum-devices"])
}

/// `pnputil /delete-driver <oemNN.inf> /uninstall /force`.
#[must_use]
pub fn pnputil_delete_driver(published: &str) -> Cmd {
    Cmd::new(
        "pnputil",
        ["/delete-driver", published, "/uninstall", "/force"],
    )
}

/// `pnputil /remove-device <instance id>`.
#[must_use]
pub fn pnputil_remove_device(instance_id: &str) -> Cmd {
    Cmd::new("pnputil", ["/remove-device", instance_id])
}

/// The tool that creates the root-enumerated device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceTool {
    /// `devgen.exe` (WDK).
    Devgen,
    /// `devcon.exe` (WDK sample).
    Devcon,
}

impl DeviceTool {
    /// The program name.
    #[must_use]
    pub const fn program(self) -> &'static str {
        match self {
            Self::Devgen => "devgen",
            Self::Devcon => "devcon",
        }
    }

    /// The command creating the root device.
    #[must_use]
    pub fn create_device(self, inf: &Path) -> Cmd {
        match self {
            Self::Devgen => Cmd::new(
                "devgen",
                ["/add", "/bus", "ROOT", "/hardwareid", ROOT_HARDWARE_ID],
            ),
            Self::Devcon => Cmd::new(
                "devcon",
                [
                    OsString::from("install"),
                    inf.as_os_str().to_owned(),
                    ROOT_HARDWARE_ID.into(),
                ],
            ),
        }
    }
}

/// Finds `program` in the directories of a `PATH` value, trying each extension of a `PATHEXT`
/// value (`.COM;.EXE;...`; pass `None` where programs have no extension).
#[must_use]
pub fn find_on_path(
    program: &str,
    path: &std::ffi::OsStr,
    pathext: Option<&str>,
) -> Option<PathBuf> {
    let extensions: Vec<String> = match pathext {
        Some(list) => list
            .split(';')
            .filter(|ext| !ext.is_empty())
            .map(str::to_ascii_lowercase)
            .collect(),
        None => vec![String::new()],
    };
    std::env::split_paths(path).find_map(|dir| {
        extensions.iter().find_map(|ext| {
            let candidate = dir.join(format!("{program}{ext}"));
            candidate.is_file().then_some(candidate)
        })
    })
}

// ---- Package -------------------------------------------------------------------------------------

/// The files of a driver package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// The folder.
    pub dir: PathBuf,
    /// `ctxscope.inf`.
    pub inf: PathBuf,
    /// The test certificate, if one is there.
    pub cer: Option<PathBuf>,
}

/// Checks that `dir` holds a complete package: the INF, the driver, the catalog, and (unless
/// `need_cer` is false) exactly one `.cer`.
///
/// # Errors
/// Says which files are missing and how the package is made.
pub fn check_package(dir: &Path, need_cer: bool) -> Result<Package> {
    if !dir.is_dir() {
        bail!(
            "driver package folder {} not found; build it with `cargo make` on Windows (it leaves ctxscope_package/) and pass --package DIR",
            dir.display()
        );
    }
    let mut missing: Vec<&str> = ["ctxscope.inf", "ctxscope.sys", "ctxscope.cat"]
        .into_iter()
        .filter(|name| !dir.join(name).is_file())
        .collect();
    let mut cers: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext.eq_ignore_ascii_case("cer"))
        })
        .collect();
    cers.sort();
    if need_cer && cers.is_empty() {
        missing.push("the test certificate (*.cer)");
    }
    if !missing.is_empty() {
        bail!(
            "the driver package in {} is incomplete: missing {}; rebuild it with `cargo make`",
            dir.display(),
            missing.join(", ")
        );
    }
    if need_cer && cers.len() > 1 {
        bail!(
            "{} holds {} certificates ({}); keep only the one the package was signed with",
            dir.display(),
            cers.len(),
            cers.iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(Package {
        dir: dir.to_owned(),
        inf: dir.join(INF_NAME),
        cer: cers.into_iter().next(),
    })
}

// ---- Parsing -------------------------------------------------------------------------------------

/// `key: value` or `key  value` lines, as bcdedit and pnputil print them.
fn key_value(line: &str) -> Option<(&str, &str)> {
    if let Some((key, value)) = line.split_once(':') {
        // pnputil: "Published Name:     oem3.inf", older: "Published name :   oem3.inf".
        let key = key.trim();
        if !key.is_empty() && !key.contains('\\') {
            return Some((key, value.trim()));
        }
    }
    None
}

/// Whether test signing is on, from `bcdedit /enum {current}`. An entry without a `testsigning`
/// line has it off (bcdedit omits elements at their default).
///
/// # Errors
/// The output is not a bcdedit listing of the current boot entry (bcdedit failed: not elevated,
/// or a localized Windows).
pub fn parse_testsigning(output: &str) -> Result<bool> {
    let mut saw_identifier = false;
    let mut testsigning = None;
    for line in output.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some(key), Some(value)) if key.eq_ignore_ascii_case("identifier") => {
                saw_identifier |= value.eq_ignore_ascii_case("{current}");
            }
            (Some(key), Some(value)) if key.eq_ignore_ascii_case("testsigning") => {
                testsigning = Some(value.eq_ignore_ascii_case("yes"));
            }
            _ => {}
        }
    }
    if !saw_identifier {
        bail!(
            "unexpected `bcdedit /enum {{current}}` output (run from an elevated prompt; on a non-English Windows check `testsigning` yourself):\n{}",
            output.trim()
        );
    }
    Ok(testsigning.unwrap_or(false))
}

/// Secure Boot's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecureBoot {
    /// On: test-signed drivers do not load, whatever bcdedit says.
    On,
    /// Off.
    Off,
    /// The machine boots with legacy BIOS: no Secure Boot.
    NotUefi,
    /// Could not be told.
    Unknown,
}

/// Secure Boot's state from `Confirm-SecureBootUEFI`'s output and exit code.
#[must_use]
pub fn parse_secure_boot(output: &Output) -> SecureBoot {
    let text = output.text.trim();
    if output.code == Some(0) && text.eq_ignore_ascii_case("true") {
        SecureBoot::On
    } else if output.code == Some(0) && text.eq_ignore_ascii_case("false") {
        SecureBoot::Off
    } else if text.contains("not supported on this platform") {
        SecureBoot::NotUefi
    } else {
        SecureBoot::Unknown
    }
}

/// What `pnputil /add-driver ... /install` reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddDriver {
    /// The package's name in the driver store (`oem42.inf`).
    pub published_name: String,
    /// The package was already in the store.
    pub already_present: bool,
    /// The driver was installed on at least one matching device.
    pub installed_on_device: bool,
}

/// Parses `pnputil /add-driver` (Windows 10 2004+ and the older `-a` style output).
///
/// # Errors
/// pnputil reported a failure (its message is included), or the output names no published INF.
pub fn parse_add_driver(output: &Output) -> Result<AddDriver> {
    let text = &output.text;
    let lower = text.to_ascii_lowercase();
    let published_name = text
        .lines()
        .filter_map(key_value)
        .find(|(key, _)| key.eq_ignore_ascii_case("published name"))
        .map(|(_, value)| value.to_owned())
        .filter(|name| !name.is_empty());
    let failure = text
        .lines()
        .find(|line| {
            let l = line.to_ascii_lowercase();
            l.starts_with("failed") || l.contains("failed to ") || l.starts_with("error")
        })
        .map(str::trim);
    let added = lower.contains("driver package added successfully");
    match (output.code, published_name, failure) {
        (_, _, Some(failure)) => bail!("pnputil: {failure}{}", sign_hint(&lower)),
        (Some(0 | 3010), Some(published_name), None) if added => Ok(AddDriver {
            published_name,
            already_present: lower.contains("already exists"),
            installed_on_device: lower.contains("installed on matching devices")
                || lower.contains("successfully installed the driver on a device")
                || lower.contains("updated drivers on matching devices"),
        }),
        (code, _, None) => bail!(
            "pnputil /add-driver did not confirm the package was added (exit code {}):\n{}",
            code.map_or_else(|| "none".to_owned(), |c| c.to_string()),
            text.trim()
        ),
    }
}

fn sign_hint(lower: &str) -> &'static str {
    if lower.contains("digital signature") || lower.contains("hash") || lower.contains("signed") {
        " (is test signing on, and the package's certificate trusted in root and trustedpublisher?)"
    } else if lower.contains("access") {
        " (run from an elevated prompt)"
    } else {
        ""
    }
}

/// A driver package in the driver store, from `pnputil /enum-drivers`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverPackage {
    /// `oem42.inf`.
    pub published_name: String,
    /// `ctxscope.inf`.
    pub original_name: String,
    /// Provider.
    pub provider: String,
    /// Class.
    pub class_name: String,
    /// Date and version.
    pub driver_version: String,
    /// Signer.
    pub signer: String,
}

/// Parses `pnputil /enum-drivers`: blocks of `Key: value` lines separated by blank lines.
#[must_use]
pub fn parse_enum_drivers(text: &str) -> Vec<DriverPackage> {
    let mut packages = Vec::new();
    let mut current: Option<DriverPackage> = None;
    for line in text.lines() {
        let Some((key, value)) = key_value(line) else {
            continue;
        };
        let key = key.to_ascii_lowercase();
        if key == "published name" {
            if let Some(done) = current.take() {
                packages.push(done);
            }
            current = Some(DriverPackage {
                published_name: value.to_owned(),
                ..DriverPackage::default()
            });
            continue;
        }
        let Some(package) = current.as_mut() else {
            continue;
        };
        let value = value.to_owned();
        match key.as_str() {
            "original name" => package.original_name = value,
            "provider name" => package.provider = value,
            "class name" => package.class_name = value,
            "driver version" => package.driver_version = value,
            "signer name" => package.signer = value,
            _ => {}
        }
    }
    packages.extend(current);
    packages
}

/// The ctxscope packages among `packages`.
#[must_use]
pub fn ctxscope_packages(packages: &[DriverPackage]) -> Vec<&DriverPackage> {
    packages
        .iter()
        .filter(|p| p.original_name.eq_ignore_ascii_case(INF_NAME))
        .collect()
}

/// A device from `pnputil /enum-devices`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Device {
    /// Instance ID (`ROOT\SYSTEM\0001`).
    pub instance_id: String,
    /// Description.
    pub description: String,
    /// Status (`Started`, `Problem`, `Disconnected`).
    pub status: String,
    /// The published INF of its driver (`oem42.inf`), if any.
    pub driver_name: String,
    /// Hardware IDs (with `/deviceids`).
    pub hardware_ids: Vec<String>,
}

/// Parses `pnputil /enum-devices [/deviceids]`. Hardware IDs continue on indented lines.
#[must_use]
pub fn parse_enum_devices(text: &str) -> Vec<Device> {
    let mut devices = Vec::new();
    let mut current: Option<Device> = None;
    let mut in_ids = false;
    for line in text.lines() {
        if line.trim().is_empty() {
            in_ids = false;
            continue;
        }
        let continuation = line.starts_with(' ') || line.starts_with('\t');
        // "Instance ID:  ROOT\SYSTEM\0001": the value holds backslashes, the key does not.
        let pair = line.split_once(':').map(|(k, v)| (k.trim(), v.trim()));
        match pair {
            Some((key, value)) if !continuation && !key.contains('\\') => {
                let key = key.to_ascii_lowercase();
                in_ids = false;
                if key == "instance id" {
                    if let Some(done) = current.take() {
                        devices.push(done);
                    }
                    current = Some(Device {
                        instance_id: value.to_owned(),
                        ..Device::default()
                    });
                    continue;
                }
                let Some(device) = current.as_mut() else {
                    continue;
                };
                match key.as_str() {
                    "device description" => value.clone_into(&mut device.description),
                    "status" => value.clone_into(&mut device.status),
                    "driver name" => value.clone_into(&mut device.driver_name),
                    "hardware ids" => {
                        in_ids = true;
                        if !value.is_empty() {
                            device.hardware_ids.push(value.to_owned());
                        }
                    }
                    _ => {}
                }
            }
            _ if in_ids => {
                if let Some(device) = current.as_mut() {
                    device.hardware_ids.push(line.trim().to_owned());
                }
            }
            _ => {}
        }
    }
    devices.extend(current);
    devices
}

/// The ctxscope devices among `devices`: those with our hardware ID, or bound to one of our
/// published INFs.
#[must_use]
pub fn ctxscope_devices<'d>(devices: &'d [Device], published: &[&str]) -> Vec<&'d Device> {
    devices
        .iter()
        .filter(|d| {
            d.hardware_ids
                .iter()
                .any(|id| id.eq_ignore_ascii_case(ROOT_HARDWARE_ID))
                || published
                    .iter()
                    .any(|p| d.driver_name.eq_ignore_ascii_case(p))
        })
        .collect()
}

/// Whether a `certutil -addstore` / `-delstore` succeeded.
///
/// # Errors
/// certutil's own failure line, with a hint.
pub fn check_certutil(output: &Output) -> Result<()> {
    let lower = output.text.to_ascii_lowercase();
    if output.code == Some(0) && lower.contains("command completed successfully") {
        return Ok(());
    }
    let failure = output
        .text
        .lines()
        .find(|l| l.to_ascii_lowercase().contains("failed") || l.contains("0x"))
        .unwrap_or_else(|| output.text.trim());
    let hint = if lower.contains("access is denied") || lower.contains("0x80070005") {
        " (run from an elevated prompt)"
    } else {
        ""
    };
    bail!("certutil: {}{hint}", failure.trim())
}

/// The SHA-1 hash of a certificate from `certutil -dump`: `Cert Hash(sha1): 12 ab ...` or
/// without spaces.
#[must_use]
pub fn parse_cert_sha1(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        if !key.trim().eq_ignore_ascii_case("cert hash(sha1)") {
            return None;
        }
        let hex: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        (hex.len() == 40 && hex.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| hex.to_ascii_lowercase())
    })
}

/// Whether the root device was created.
///
/// # Errors
/// The tool's own message.
pub fn check_create_device(tool: DeviceTool, output: &Output) -> Result<()> {
    let lower = output.text.to_ascii_lowercase();
    let ok = match tool {
        // devgen prints the new device's instance ID after "created".
        DeviceTool::Devgen => output.code == Some(0) && lower.contains("created"),
        // devcon: exit 0 (done) or 1 (done, reboot needed); "Drivers installed successfully."
        DeviceTool::Devcon => {
            matches!(output.code, Some(0 | 1))
                && lower.contains("device node created")
                && lower.contains("installed successfully")
        }
    };
    if ok {
        Ok(())
    } else {
        bail!(
            "{} did not create the device (exit code {}):\n{}",
            tool.program(),
            output
                .code
                .map_or_else(|| "none".to_owned(), |c| c.to_string()),
            output.text.trim()
        )
    }
}

/// Whether `pnputil /delete-driver` or `/remove-device` succeeded.
///
/// # Errors
/// pnputil's message.
pub fn check_pnputil_removal(output: &Output) -> Result<()> {
    let lower = output.text.to_ascii_lowercase();
    let ok = matches!(output.code, Some(0 | 3010))
        && (lower.contains("deleted successfully")
            || lower.contains("removed successfully")
            || lower.contains("device removed"));
    if ok {
        Ok(())
    } else {
        bail!(
            "pnputil failed (exit code {}):\n{}",
            output
                .code
                .map_or_else(|| "none".to_owned(), |c| c.to_string()),
            output.text.trim()
        )
    }
}

// ---- Step log ------------------------------------------------------------------------------------

/// A record of the steps an install took, so a failure says what succeeded, what failed and how
/// to undo it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepLog {
    /// Steps done, in order, each with the command that undoes it (if any).
    pub done: Vec<(String, Option<String>)>,
}

impl StepLog {
    /// Records a successful step.
    pub fn done(&mut self, what: impl Into<String>, undo: Option<String>) {
        self.done.push((what.into(), undo));
    }

    /// The message for a failure at `step`.
    #[must_use]
    pub fn failure_report(&self, step: &str, error: &anyhow::Error) -> String {
        let mut out = format!("install failed at: {step}\n  {error:#}\n");
        if self.done.is_empty() {
            out.push_str("Nothing was changed.\n");
            return out;
        }
        out.push_str("Done before the failure:\n");
        for (what, _) in &self.done {
            let _ = writeln!(out, "  - {what}");
        }
        let undo: Vec<_> = self
            .done
            .iter()
            .rev()
            .filter_map(|(_, u)| u.as_ref())
            .collect();
        if undo.is_empty() {
            out.push_str("Nothing needs undoing.\n");
        } else {
            out.push_str("To undo (elevated prompt), or run `ctxctl uninstall --untrust-certificate --package DIR`:\n");
            for command in undo {
                let _ = writeln!(out, "  {command}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Output {
        Output {
            code: Some(0),
            text: text.to_owned(),
        }
    }

    const BCDEDIT_ON: &str = "\r\nWindows Boot Loader\r\n-------------------\r\nidentifier              {current}\r\ndevice                  partition=C:\r\npath                    \\WINDOWS\\system32\\winload.efi\r\ndescription             Windows 10\r\nlocale                  en-US\r\ninherit                 {bootloadersettings}\r\nrecoverysequence        {b2c8a3a1-5f0e-11ee-9c4d-f3b1f9a8c0de}\r\ndisplaymessageoverride  Recovery\r\nrecoveryenabled         Yes\r\ntestsigning             Yes\r\nisolatedcontext         Yes\r\nallowedinmemorysettings 0x15000075\r\nosdevice                partition=C:\r\nsystemroot              \\WINDOWS\r\nresumeobject            {b2c8a39f-5f0e-11ee-9c4d-f3b1f9a8c0de}\r\nnx                      OptIn\r\nbootmenupolicy          Standard\r\n";

    #[test]
    fn bcdedit_testsigning() {
        assert!(parse_testsigning(BCDEDIT_ON).unwrap());
        let off = BCDEDIT_ON.replace("testsigning             Yes\r\n", "");
        assert!(!parse_testsigning(&off).unwrap());
        let no = BCDEDIT_ON.replace("testsigning             Yes", "testsigning             No");
        assert!(!parse_testsigning(&no).unwrap());
        let denied =
            "The boot configuration data store could not be opened.\r\nAccess is denied.\r\n";
        let err = parse_testsigning(denied).unwrap_err().to_string();
        assert!(err.contains("elevated"), "{err}");
        assert!(err.contains("Access is denied"), "{err}");
    }

    #[test]
    fn secure_boot() {
        assert_eq!(parse_secure_boot(&ok("True\r\n")), SecureBoot::On);
        assert_eq!(parse_secure_boot(&ok("False\r\n")), SecureBoot::Off);
        let bios = Output {
            code: Some(1),
            text: "Confirm-SecureBootUEFI : Cmdlet not supported on this platform: 0xC0000002\r\n"
                .into(),
        };
        assert_eq!(parse_secure_boot(&bios), SecureBoot::NotUefi);
        let denied = Output {
            code: Some(1),
            text: "Confirm-SecureBootUEFI : Access was denied.\r\n".into(),
        };
        assert_eq!(parse_secure_boot(&denied), SecureBoot::Unknown);
    }

    const ADD_OK: &str = "Microsoft PnP Utility\r\n\r\nAdding driver package:  ctxscope.inf\r\nDriver package added successfully.\r\nPublished Name:         oem42.inf\r\nDriver package installed on matching devices.\r\n\r\nTotal driver packages:  1\r\nAdded driver packages:  1\r\n";

    #[test]
    fn parses_pnputil_add_driver() {
        let added = parse_add_driver(&ok(ADD_OK)).unwrap();
        assert_eq!(
            added,
            AddDriver {
                published_name: "oem42.inf".into(),
                already_present: false,
                installed_on_device: true
            }
        );
        let again = "Microsoft PnP Utility\r\n\r\nAdding driver package:  ctxscope.inf\r\nDriver package added successfully. (Already exists in the system)\r\nPublished Name:         oem42.inf\r\n\r\nTotal driver packages:  1\r\nAdded driver packages:  1\r\n";
        let added = parse_add_driver(&ok(again)).unwrap();
        assert!(added.already_present);
        assert!(!added.installed_on_device);
        let old = "Microsoft PnP Utility\r\n\r\nProcessing inf :            ctxscope.inf\r\nSuccessfully installed the driver on a device on the system.\r\nDriver package added successfully.\r\nPublished name :            oem7.inf\r\n\r\nTotal attempted:              1\r\nNumber successfully imported: 1\r\n";
        let added = parse_add_driver(&ok(old)).unwrap();
        assert_eq!(added.published_name, "oem7.inf");
        assert!(added.installed_on_device);
        let unsigned = Output {
            code: Some(1),
            text: "Microsoft PnP Utility\r\n\r\nAdding driver package:  ctxscope.inf\r\nFailed to add driver package: The third-party INF does not contain digital signature information.\r\n\r\nTotal driver packages:  1\r\nAdded driver packages:  0\r\n".into(),
        };
        let err = parse_add_driver(&unsigned).unwrap_err().to_string();
        assert!(err.contains("does not contain digital signature"), "{err}");
        assert!(err.contains("test signing"), "{err}");
        // Exit 0 but no confirmation is not success.
        let err = parse_add_driver(&ok("Microsoft PnP Utility\r\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("did not confirm"), "{err}");
    }

    const ENUM_DRIVERS: &str = "Microsoft PnP Utility\r\n\r\nPublished Name:     oem0.inf\r\nOriginal Name:      prnms003.inf\r\nProvider Name:      Microsoft\r\nClass Name:         Printers\r\nClass GUID:         {4d36e979-e325-11ce-bfc1-08002be10318}\r\nClass Version:      4.0\r\nDriver Version:     06/21/2006 10.0.19041.1\r\nSigner Name:        Microsoft Windows\r\n\r\nPublished Name:     oem42.inf\r\nOriginal Name:      ctxscope.inf\r\nProvider Name:      ctxscope\r\nClass Name:         System\r\nClass GUID:         {4d36e97d-e325-11ce-bfc1-08002be10318}\r\nDriver Version:     11/24/2026 0.1.0.0\r\nSigner Name:        WDKTestCert build,134081234567890123\r\n\r\nPublished Name:     oem43.inf\r\nOriginal Name:      CtxScope.INF\r\nProvider Name:      ctxscope\r\nClass Name:         System\r\nClass GUID:         {4d36e97d-e325-11ce-bfc1-08002be10318}\r\nDriver Version:     11/25/2026 0.1.1.0\r\nSigner Name:        WDKTestCert build,134081234567890124\r\n\r\n";

    #[test]
    fn parses_pnputil_enum_drivers() {
        let packages = parse_enum_drivers(ENUM_DRIVERS);
        assert_eq!(packages.len(), 3);
        assert_eq!(packages[1].published_name, "oem42.inf");
        assert_eq!(packages[1].driver_version, "11/24/2026 0.1.0.0");
        assert_eq!(packages[1].signer, "WDKTestCert build,134081234567890123");
        let ours: Vec<_> = ctxscope_packages(&packages)
            .into_iter()
            .map(|p| p.published_name.as_str())
            .collect();
        assert_eq!(ours, ["oem42.inf", "oem43.inf"]);
        assert!(
            parse_enum_drivers("Microsoft PnP Utility\r\n\r\nNo driver packages found.\r\n")
                .is_empty()
        );
    }

    const ENUM_DEVICES: &str = "Microsoft PnP Utility\r\n\r\nInstance ID:                ROOT\\SYSTEM\\0001\r\nDevice Description:         ctxscope device\r\nClass Name:                 System\r\nClass GUID:                 {4d36e97d-e325-11ce-bfc1-08002be10318}\r\nManufacturer Name:          ctxscope\r\nStatus:                     Started\r\nDriver Name:                oem42.inf\r\nHardware IDs:               Root\\CtxScope\r\n\r\nInstance ID:                PCI\\VEN_1234&DEV_11E8&SUBSYS_11001AF4&REV_10\\3&267a616a&0&20\r\nDevice Description:         ctxscope edu device\r\nStatus:                     Started\r\nDriver Name:                oem42.inf\r\nHardware IDs:               PCI\\VEN_1234&DEV_11E8&SUBSYS_11001AF4&REV_10\r\n                            PCI\\VEN_1234&DEV_11E8&SUBSYS_11001AF4\r\n                            PCI\\VEN_1234&DEV_11E8\r\n\r\nInstance ID:                ACPI\\PNP0303\\4&1d401fb5&0\r\nDevice Description:         Standard PS/2 Keyboard\r\nStatus:                     Started\r\nDriver Name:                keyboard.inf\r\nHardware IDs:               ACPI\\VEN_PNP&DEV_0303\r\n                            *PNP0303\r\n\r\nInstance ID:                ROOT\\DEVGEN\\0000\r\nDevice Description:         Generic software device\r\nStatus:                     Problem\r\nHardware IDs:               Root\\CtxScope\r\n";

    #[test]
    fn parses_pnputil_enum_devices() {
        let devices = parse_enum_devices(ENUM_DEVICES);
        assert_eq!(devices.len(), 4);
        assert_eq!(devices[1].hardware_ids.len(), 3);
        assert_eq!(devices[1].hardware_ids[2], "PCI\\VEN_1234&DEV_11E8");
        assert_eq!(
            devices[2].hardware_ids,
            ["ACPI\\VEN_PNP&DEV_0303", "*PNP0303"]
        );
        let ours: Vec<_> = ctxscope_devices(&devices, &["oem42.inf"])
            .into_iter()
            .map(|d| d.instance_id.as_str())
            .collect();
        assert_eq!(
            ours,
            [
                "ROOT\\SYSTEM\\0001",
                "PCI\\VEN_1234&DEV_11E8&SUBSYS_11001AF4&REV_10\\3&267a616a&0&20",
                "ROOT\\DEVGEN\\0000"
            ]
        );
        assert_eq!(devices[3].status, "Problem");
    }

    #[test]
    fn certutil() {
        check_certutil(&ok("Root \"Trusted Root Certification Authorities\"\r\nSignature matches Public Key\r\nCertificate \"WDKTestCert build\" added to store.\r\nCertUtil: -addstore command completed successfully.\r\n")).unwrap();
        let denied = Output {
            code: Some(-2_147_024_891),
            text: "Root \"Trusted Root Certification Authorities\"\r\nCertUtil: -addstore command FAILED: 0x80070005 (WIN32: 5 ERROR_ACCESS_DENIED)\r\nCertUtil: Access is denied.\r\n".into(),
        };
        let err = check_certutil(&denied).unwrap_err().to_string();
        assert!(err.contains("FAILED: 0x80070005"), "{err}");
        assert!(err.contains("elevated"), "{err}");
        let dump = "X509 Certificate:\r\nVersion: 3\r\nSerial Number: 6d1f\r\n...\r\nCert Hash(md5): 01 02\r\nCert Hash(sha1): 9a 3b 5c 7d 9e 0f 1a 2b 3c 4d 5e 6f 7a 8b 9c 0d 1e 2f 3a 4b\r\nCertUtil: -dump command completed successfully.\r\n";
        assert_eq!(
            parse_cert_sha1(dump).as_deref(),
            Some("9a3b5c7d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b")
        );
        assert_eq!(
            parse_cert_sha1("Cert Hash(sha1): 9A3B5C7D9E0F1A2B3C4D5E6F7A8B9C0D1E2F3A4B").as_deref(),
            Some("9a3b5c7d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b")
        );
        assert_eq!(parse_cert_sha1("Cert Hash(sha1): 12 34"), None);
    }

    #[test]
    fn device_creation_and_removal() {
        check_create_device(
            DeviceTool::Devgen,
            &ok("Creating device with the following parameters:\r\n  Bus:          ROOT\r\n  Hardware ID:  Root\\CtxScope\r\nDevice created: ROOT\\DEVGEN\\0000\r\n"),
        )
        .unwrap();
        check_create_device(
            DeviceTool::Devcon,
            &ok("Device node created. Install is complete when drivers are installed...\r\nUpdating drivers for Root\\CtxScope from C:\\pkg\\ctxscope.inf.\r\nDrivers installed successfully.\r\n"),
        )
        .unwrap();
        let failed = Output {
            code: Some(2),
            text: "Device node created. Install is complete when drivers are installed...\r\nUpdating drivers for Root\\CtxScope from C:\\pkg\\ctxscope.inf.\r\ndevcon failed.\r\n".into(),
        };
        assert!(
            check_create_device(DeviceTool::Devcon, &failed)
                .unwrap_err()
                .to_string()
                .contains("devcon failed.")
        );
        check_pnputil_removal(&ok(
            "Microsoft PnP Utility\r\n\r\nDriver package deleted successfully.\r\n",
        ))
        .unwrap();
        check_pnputil_removal(&ok("Microsoft PnP Utility\r\n\r\nRemoving device:         ROOT\\SYSTEM\\0001\r\nDevice removed successfully.\r\n")).unwrap();
        let busy = Output {
            code: Some(1),
            text: "Microsoft PnP Utility\r\n\r\nFailed to delete driver package: One or more devices are presently installed using the specified INF.\r\n".into(),
        };
        assert!(
            check_pnputil_removal(&busy)
                .unwrap_err()
                .to_string()
                .contains("presently installed")
        );
    }

    #[test]
    fn commands_are_built_as_documented() {
        let inf = Path::new(r"C:\pkg\ctxscope.inf");
        assert_eq!(
            pnputil_add_driver(inf).display(),
            r"pnputil /add-driver C:\pkg\ctxscope.inf /install"
        );
        assert_eq!(
            DeviceTool::Devgen.create_device(inf).display(),
            r"devgen /add /bus ROOT /hardwareid Root\CtxScope"
        );
        assert_eq!(
            DeviceTool::Devcon.create_device(inf).display(),
            r"devcon install C:\pkg\ctxscope.inf Root\CtxScope"
        );
        assert_eq!(bcdedit_enum_current().display(), "bcdedit /enum {current}");
        assert_eq!(
            pnputil_enum_devices().display(),
            "pnputil /enum-devices /deviceids"
        );
        assert_eq!(
            pnputil_enum_devices_plain().display(),
            "pnputil /enum-devices"
        );
        assert_eq!(pnputil_enum_drivers().display(), "pnputil /enum-drivers");
        assert_eq!(
            confirm_secure_boot().display(),
            "powershell -NoProfile -NonInteractive -Command Confirm-SecureBootUEFI"
        );
        assert_eq!(
            certutil_delstore("root", "9a3b").display(),
            "certutil -delstore root 9a3b"
        );
        assert_eq!(
            certutil_addstore("trustedpublisher", Path::new(r"C:\my pkg\ctxscope.cer")).display(),
            r#"certutil -addstore trustedpublisher "C:\my pkg\ctxscope.cer""#
        );
        assert_eq!(
            pnputil_delete_driver("oem42.inf").display(),
            "pnputil /delete-driver oem42.inf /uninstall /force"
        );
        assert_eq!(
            pnputil_remove_device(r"ROOT\SYSTEM\0001").display(),
            r"pnputil /remove-device ROOT\SYSTEM\0001"
        );
    }

    #[test]
    fn package_checks_and_path_search() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_package(&dir.path().join("nope"), true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cargo make"), "{err}");
        std::fs::write(dir.path().join("ctxscope.inf"), "").unwrap();
        let err = check_package(dir.path(), true).unwrap_err().to_string();
        assert!(
            err.contains("ctxscope.sys, ctxscope.cat, the test certificate"),
            "{err}"
        );
        std::fs::write(dir.path().join("ctxscope.sys"), "").unwrap();
        std::fs::write(dir.path().join("ctxscope.cat"), "").unwrap();
        assert!(check_package(dir.path(), false).unwrap().cer.is_none());
        std::fs::write(dir.path().join("ctxscope.CER"), "").unwrap();
        let package = check_package(dir.path(), true).unwrap();
        assert_eq!(package.cer.unwrap().file_name().unwrap(), "ctxscope.CER");
        std::fs::write(dir.path().join("other.cer"), "").unwrap();
        assert!(
            check_package(dir.path(), true)
                .unwrap_err()
                .to_string()
                .contains("2 certificates")
        );

        let bin = tempfile::tempdir().unwrap();
        std::fs::write(bin.path().join("devcon.exe"), "").unwrap();
        let path = std::env::join_paths([dir.path(), bin.path()]).unwrap();
        assert_eq!(
            find_on_path("devcon", &path, Some(".COM;.EXE")),
            Some(bin.path().join("devcon.exe"))
        );
        assert_eq!(find_on_path("devgen", &path, Some(".COM;.EXE")), None);
    }

    #[test]
    fn failure_report_says_what_to_undo() {
        let mut log = StepLog::default();
        let err = anyhow::anyhow!("pnputil: Failed to add driver package");
        assert!(
            log.failure_report("add driver", &err)
                .contains("Nothing was changed.")
        );
        log.done(
            "trusted the certificate in root",
            Some("certutil -delstore root 9a3b".into()),
        );
        log.done("checked test signing", None);
        log.done(
            "added the package oem42.inf",
            Some("pnputil /delete-driver oem42.inf /uninstall /force".into()),
        );
        let report = log.failure_report("create the device", &err);
        assert!(report.contains("install failed at: create the device"));
        assert!(report.contains("  - added the package oem42.inf"));
        let undo_at = report.find("To undo").unwrap();
        let delete = report.find("pnputil /delete-driver").unwrap();
        let delstore = report.find("certutil -delstore").unwrap();
        assert!(
            undo_at < delete && delete < delstore,
            "undo runs in reverse order:\n{report}"
        );
    }
}
