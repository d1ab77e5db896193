//! The INF template and the code agree: hardware IDs, service binary, KMDF version, device access,
//! MSI, and the rules a declarative KMDF 1.33 INF follows.
//!
//! The driver itself builds only on Windows, so this test reads files: `inf/ctxscope.inx`, the
//! package manifest, and `src/device.rs`, and compares them with `ctxscope_core`'s constants.

use std::collections::BTreeMap;
use std::path::Path;

use ctxscope_core::logic::edu;
use ctxscope_core::protocol::{DEVICE_INTERFACE_GUID, Guid};

/// The GUID of the inbox System setup class.
const SYSTEM_CLASS_GUID: &str = "{4d36e97d-e325-11ce-bfc1-08002be10318}";
/// The security descriptor the device must have: a protected DACL granting `GENERIC_ALL` to
/// SYSTEM and to Administrators, and nothing to anyone else.
const EXPECTED_SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)";

/// One INF line: the key before `=` (if any, lower-cased) and the comma-separated values, with
/// quotes removed and whitespace trimmed.
#[derive(Debug, Clone)]
struct Line {
    key: Option<String>,
    values: Vec<String>,
    raw: String,
}

/// An INF file as sections of lines; section names lower-cased (INF names are case-insensitive).
struct Inf {
    sections: BTreeMap<String, Vec<Line>>,
    order: Vec<String>,
}

/// Strips a `;` comment that is not inside a quoted string.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (at, ch) in line.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            ';' if !quoted => return &line[..at],
            _ => {}
        }
    }
    line
}

/// Splits on commas outside quotes, trimming and unquoting each field.
fn split_fields(text: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for ch in text.chars() {
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut current).trim().to_string()),
            _ => current.push(ch),
        }
    }
    fields.push(current.trim().to_string());
    fields
}

impl Inf {
    fn parse(text: &str) -> Self {
        let mut sections: BTreeMap<String, Vec<Line>> = BTreeMap::new();
        let mut order = Vec::new();
        let mut current: Option<String> = None;
        for (number, raw) in text.lines().enumerate() {
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[') {
                let name = name
                    .strip_suffix(']')
                    .unwrap_or_else(|| {
                        panic!("line {}: unterminated section header {raw:?}", number + 1)
                    })
                    .trim()
                    .to_ascii_lowercase();
                assert!(
                    !sections.contains_key(&name),
                    "line {}: section [{name}] appears twice",
                    number + 1
                );
                sections.insert(name.clone(), Vec::new());
                order.push(name.clone());
                current = Some(name);
                continue;
            }
            let section = current
                .as_ref()
                .unwrap_or_else(|| panic!("line {}: {raw:?} is outside any section", number + 1));
            let (key, rest) = match line.split_once('=') {
                // `HKR,,Security,,"D:P(...)"` has no key; a `=` inside quotes is not one.
                Some((key, rest)) if !key.contains('"') && !key.contains(',') => {
                    (Some(key.trim().to_ascii_lowercase()), rest)
                }
                _ => (None, line),
            };
            sections
                .get_mut(section)
                .expect("section exists")
                .push(Line {
                    key,
                    values: split_fields(rest),
                    raw: line.to_string(),
                });
        }
        Self { sections, order }
    }

    fn section(&self, name: &str) -> &[Line] {
        self.sections
            .get(&name.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("the INF has no [{name}] section"))
    }

    fn has_section(&self, name: &str) -> bool {
        self.sections.contains_key(&name.to_ascii_lowercase())
    }

    /// The values of `key` in `section` (all lines with that key, fields joined per line).
    fn values(&self, section: &str, key: &str) -> Vec<Vec<String>> {
        let key = key.to_ascii_lowercase();
        self.section(section)
            .iter()
            .filter(|line| line.key.as_deref() == Some(key.as_str()))
            .map(|line| line.values.clone())
            .collect()
    }

    /// The single value of `key` in `section`.
    fn value(&self, section: &str, key: &str) -> String {
        let values = self.values(section, key);
        assert_eq!(
            values.len(),
            1,
            "[{section}] must have exactly one {key} line, has {values:?}"
        );
        values[0].join(",")
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

fn inx() -> Inf {
    Inf::parse(&read("inf/ctxscope.inx"))
}

fn manifest() -> toml::Table {
    read("Cargo.toml")
        .parse::<toml::Table>()
        .expect("Cargo.toml is valid TOML")
}

fn package_name() -> String {
    manifest()["package"]["name"]
        .as_str()
        .expect("package.name is a string")
        .to_string()
}

/// The model lines: (install section, hardware IDs) for every model section the [Manufacturer]
/// section names, with stampinf's `$ARCH$` left in place.
fn models(inf: &Inf) -> Vec<(String, Vec<String>)> {
    let manufacturer = inf.section("Manufacturer");
    assert_eq!(manufacturer.len(), 1, "one manufacturer: {manufacturer:?}");
    let fields = &manufacturer[0].values;
    let (base, decorations) = fields.split_first().expect("a models section name");
    assert!(
        !decorations.is_empty(),
        "the models section must be decorated with NT$ARCH$..."
    );
    let mut models = Vec::new();
    for decoration in decorations {
        assert!(
            decoration.starts_with("NT$ARCH$"),
            "decoration {decoration:?} must start with NT$ARCH$ for stampinf"
        );
        for line in inf.section(&format!("{base}.{decoration}")) {
            let (install, ids) = line.values.split_first().expect("install section and IDs");
            assert!(
                !ids.is_empty(),
                "model line without a hardware ID: {}",
                line.raw
            );
            models.push((install.clone(), ids.to_vec()));
        }
    }
    models
}

fn pci_hardware_id() -> String {
    format!("PCI\\VEN_{:04X}&DEV_{:04X}", edu::VENDOR_ID, edu::DEVICE_ID)
}

#[test]
fn hardware_ids_are_the_root_device_and_the_edu_device() {
    let inf = inx();
    let mut ids: Vec<String> = models(&inf)
        .into_iter()
        .flat_map(|(_, ids)| ids)
        .map(|id| id.to_ascii_uppercase())
        .collect();
    ids.sort();
    let mut expected = vec![
        "ROOT\\CTXSCOPE".to_string(),
        pci_hardware_id().to_ascii_uppercase(),
    ];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(pci_hardware_id(), "PCI\\VEN_1234&DEV_11E8");
}

#[test]
fn every_install_section_copies_and_runs_the_crates_binary() {
    let inf = inx();
    let binary = format!("{}.sys", package_name());
    let disk_files: Vec<_> = inf
        .section("SourceDisksFiles")
        .iter()
        .filter_map(|l| l.key.clone())
        .collect();
    assert_eq!(
        disk_files,
        [binary.as_str()],
        "SourceDisksFiles lists the driver only"
    );
    assert_eq!(
        inf.value("DestinationDirs", "DefaultDestDir"),
        "13",
        "driver-store run-from (13)"
    );
    for (install, ids) in models(&inf) {
        let ddinstall = install.clone() + ".NT$ARCH$";
        let copy = inf.value(&ddinstall, "CopyFiles");
        let copied: Vec<_> = inf
            .section(&copy)
            .iter()
            .map(|line| line.raw.to_ascii_lowercase())
            .collect();
        assert_eq!(
            copied,
            [binary.as_str()],
            "[{copy}] copies {binary} for {ids:?}"
        );

        let services = inf.values(&format!("{ddinstall}.Services"), "AddService");
        assert_eq!(services.len(), 1, "{ddinstall}: one AddService");
        let service = &services[0];
        assert_eq!(service[0], package_name(), "service name is the crate's");
        assert_eq!(
            service[1], "%SPSVCINST_ASSOCSERVICE%",
            "the service is the function driver"
        );
        let service_section = &service[2];
        assert_eq!(
            inf.value(service_section, "ServiceType"),
            "1",
            "SERVICE_KERNEL_DRIVER"
        );
        assert_eq!(
            inf.value(service_section, "StartType"),
            "3",
            "SERVICE_DEMAND_START"
        );
        assert_eq!(
            inf.value(service_section, "ErrorControl"),
            "1",
            "SERVICE_ERROR_NORMAL"
        );
        assert_eq!(
            inf.value(service_section, "ServiceBinary"),
            format!("%13%\\{binary}")
        );
    }
    assert_eq!(inf.value("Strings", "SPSVCINST_ASSOCSERVICE"), "0x00000002");
}

#[test]
fn kmdf_version_is_1_33_in_the_manifest_and_left_to_stampinf_in_the_inx() {
    let manifest = manifest();
    let model = &manifest["package"]["metadata"]["wdk"]["driver-model"];
    assert_eq!(model["driver-type"].as_str(), Some("KMDF"));
    assert_eq!(model["kmdf-version-major"].as_integer(), Some(1));
    assert_eq!(model["target-kmdf-version-minor"].as_integer(), Some(33));

    let inf = inx();
    for (install, _) in models(&inf) {
        let wdf = inf.values(&format!("{install}.NT$ARCH$.Wdf"), "KmdfService");
        assert_eq!(wdf.len(), 1, "{install}: one KmdfService");
        assert_eq!(
            wdf[0][0],
            package_name(),
            "KmdfService names the AddService service"
        );
        assert_eq!(inf.value(&wdf[0][1], "KmdfLibraryVersion"), "$KMDFVERSION$");
    }
    // KMDF 1.33 is inbox: no co-installer, no WDF co-installer sections.
    for name in &inf.order {
        assert!(
            !name.contains("coinstaller"),
            "[{name}]: KMDF 1.33 needs no co-installer"
        );
    }
}

#[test]
fn version_section_is_declarative_and_locked_down() {
    let inf = inx();
    assert_eq!(inf.value("Version", "Signature"), "$WINDOWS NT$");
    assert_eq!(inf.value("Version", "Class"), "System");
    assert_eq!(
        inf.value("Version", "ClassGuid").to_ascii_lowercase(),
        SYSTEM_CLASS_GUID
    );
    assert_eq!(inf.value("Version", "PnpLockdown"), "1");
    assert!(
        !inf.has_section("ClassInstall32"),
        "an inbox class needs no class installer"
    );
    // DriverVer is stampinf's to write; the catalog is named after the crate, as inf2cat names it.
    assert!(
        inf.values("Version", "DriverVer").is_empty(),
        "stampinf writes DriverVer"
    );
    assert_eq!(
        inf.value("Version", "CatalogFile"),
        format!("{}.cat", package_name())
    );
}

/// Parses `D:P(ace)(ace)...` into its ACE strings.
fn dacl_aces(sddl: &str) -> Vec<&str> {
    let rest = sddl
        .strip_prefix("D:P")
        .unwrap_or_else(|| panic!("{sddl}: expected a protected DACL (D:P)"));
    let aces: Vec<&str> = rest
        .split_inclusive(')')
        .map(|ace| {
            ace.strip_prefix('(')
                .and_then(|ace| ace.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{sddl}: malformed ACE {ace:?}"))
        })
        .collect();
    assert!(!aces.is_empty(), "{sddl}: empty DACL");
    aces
}

#[test]
fn every_device_is_restricted_to_system_and_administrators() {
    let inf = inx();
    assert_eq!(dacl_aces(EXPECTED_SDDL), ["A;;GA;;;SY", "A;;GA;;;BA"]);
    for (install, _) in models(&inf) {
        let hw = format!("{install}.NT$ARCH$.HW");
        let addreg = inf.value(&hw, "AddReg");
        let mut security = Vec::new();
        for section in addreg.split(',').map(str::trim) {
            for line in inf.section(section) {
                if line.values.len() >= 3
                    && line.values[0] == "HKR"
                    && line.values[1].is_empty()
                    && line.values[2] == "Security"
                {
                    security.push(line.values.clone());
                }
            }
        }
        assert_eq!(
            security.len(),
            1,
            "{hw}: exactly one HKR,,Security line, found {security:?}"
        );
        let line = &security[0];
        assert_eq!(line.len(), 5, "HKR,,Security,,\"<SDDL>\": {line:?}");
        assert_eq!(line[3], "", "REG_SZ (no flags)");
        assert_eq!(
            line[4], EXPECTED_SDDL,
            "{hw}: SYSTEM and Administrators only"
        );
        let mut aces = dacl_aces(&line[4]);
        aces.sort_unstable();
        assert_eq!(aces, ["A;;GA;;;BA", "A;;GA;;;SY"]);
    }
}

#[test]
fn the_edu_device_asks_for_one_msi_message() {
    let inf = inx();
    let (install, _) = models(&inf)
        .into_iter()
        .find(|(_, ids)| {
            ids.iter()
                .any(|id| id.eq_ignore_ascii_case(&pci_hardware_id()))
        })
        .expect("a model for the edu device");
    let addreg = inf.value(&format!("{install}.NT$ARCH$.HW"), "AddReg");
    let lines: Vec<Line> = addreg
        .split(',')
        .map(str::trim)
        .flat_map(|section| inf.section(section).to_vec())
        .collect();
    let key = "Interrupt Management\\MessageSignaledInterruptProperties";
    let dword = |name: &str| {
        lines
            .iter()
            .find(|line| line.values.len() == 5 && line.values[1] == key && line.values[2] == name)
            .map(|line| (line.values[3].clone(), line.values[4].clone()))
    };
    assert_eq!(
        dword("MSISupported"),
        Some(("0x00010001".into(), "1".into())),
        "MSISupported = 1 (DWORD)"
    );
    assert_eq!(
        dword("MessageNumberLimit"),
        Some(("0x00010001".into(), "1".into())),
        "one message"
    );

    // The root-enumerated device has no interrupt: no MSI settings there.
    let (root_install, _) = models(&inf)
        .into_iter()
        .find(|(_, ids)| {
            ids.iter()
                .any(|id| id.eq_ignore_ascii_case("Root\\CtxScope"))
        })
        .expect("a model for the root device");
    let root_addreg = inf.value(&format!("{root_install}.NT$ARCH$.HW"), "AddReg");
    for section in root_addreg.split(',').map(str::trim) {
        assert!(
            inf.section(section)
                .iter()
                .all(|line| !line.raw.contains("MessageSignaledInterruptProperties")),
            "[{section}]: MSI settings on the root device"
        );
    }
}

#[test]
fn the_interface_guid_is_the_cores() {
    // The driver registers the core's interface GUID, field by field, and no other.
    let device = read("src/device.rs");
    for field in ["data1", "data2", "data3", "data4"] {
        assert!(
            device.contains(&format!("DEVICE_INTERFACE_GUID.{field}")),
            "src/device.rs must build the interface GUID from DEVICE_INTERFACE_GUID.{field}"
        );
    }
    assert!(device.contains("WdfDeviceCreateDeviceInterface"));
    assert!(device.contains("&INTERFACE_GUID"));

    // If the INF ever names a GUID other than its setup class, it must be the interface's.
    let text = read("inf/ctxscope.inx");
    let mut rest = text.as_str();
    while let Some(open) = rest.find('{') {
        let candidate = rest[open..].get(..38).unwrap_or("");
        rest = &rest[open + 1..];
        let Ok(guid) = Guid::parse(candidate) else {
            continue;
        };
        if candidate.eq_ignore_ascii_case(SYSTEM_CLASS_GUID) {
            continue;
        }
        assert_eq!(
            guid, DEVICE_INTERFACE_GUID,
            "the INF names {candidate}, not the interface GUID"
        );
    }
}

#[test]
fn every_string_token_is_defined() {
    let inf = inx();
    let defined: Vec<String> = inf
        .section("Strings")
        .iter()
        .filter_map(|line| line.key.clone())
        .collect();
    let text = read("inf/ctxscope.inx");
    for line in text.lines().map(strip_comment) {
        let mut rest = line;
        while let Some(start) = rest.find('%') {
            let after = &rest[start + 1..];
            let Some(end) = after.find('%') else { break };
            let token = &after[..end];
            rest = &after[end + 1..];
            if token.chars().all(|c| c.is_ascii_digit()) {
                continue; // %13% and other DIRIDs
            }
            assert!(
                defined.contains(&token.to_ascii_lowercase()),
                "%{token}% is used but not defined in [Strings]"
            );
        }
    }
}

#[test]
fn the_makefile_stamps_this_template() {
    // wdk-build's makefile reads `<crate>.inx` beside Cargo.toml; ctxscope's Makefile.toml replaces
    // that step to read inf/<crate>.inx, the file these tests check.
    let makefile = read("Makefile.toml")
        .parse::<toml::Table>()
        .expect("Makefile.toml is valid TOML");
    let extend = makefile["extend"].as_array().expect("extend is a list");
    assert!(
        extend
            .iter()
            .any(|entry| entry["path"].as_str() == Some("target/rust-driver-makefile.toml")),
        "Makefile.toml extends wdk-build's rust-driver-makefile.toml"
    );
    let load = makefile["config"]["windows_load_script"]
        .as_str()
        .expect("a Windows load script");
    assert!(load.contains("wdk_build::cargo_make::load_rust_driver_makefile()"));
    let copy = &makefile["tasks"]["copy-inx-to-output"];
    assert_eq!(copy["clear"].as_bool(), Some(true));
    let script = copy["script"].as_str().expect("a copy script");
    assert!(
        script.contains("/inf/${CARGO_MAKE_CRATE_FS_NAME}.inx"),
        "the copy reads inf/<crate>.inx: {script}"
    );
    assert!(root().join(format!("inf/{}.inx", package_name())).is_file());
}
