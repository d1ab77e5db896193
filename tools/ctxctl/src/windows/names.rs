//! Process image names: a `ToolHelp` snapshot of every process, and `QueryFullProcessImageNameW`
//! for one process at a time (`watch`).

use std::collections::BTreeMap;

use ctxscope_core::kind::{IDLE_PID, SYSTEM_PID};
use windows_sys::Win32::Foundation::{CloseHandle, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, PROCESSENTRY32W, Process32FirstW, Process32NextW, TH32CS_SNAPPROCESS,
};
use windows_sys::Win32::System::Threading::{
    OpenProcess, PROCESS_NAME_WIN32, PROCESS_QUERY_LIMITED_INFORMATION, QueryFullProcessImageNameW,
};

fn exe_name(wide: &[u16]) -> String {
    let end = wide.iter().position(|&c| c == 0).unwrap_or(wide.len());
    String::from_utf16_lossy(&wide[..end])
}

/// The name Windows tools show for the two pseudo-processes.
fn well_known(pid: u32) -> Option<&'static str> {
    match pid {
        IDLE_PID => Some("Idle"),
        SYSTEM_PID => Some("System"),
        _ => None,
    }
}

/// Image name by process ID for every process running now. Empty if the snapshot fails.
#[must_use]
pub fn snapshot() -> BTreeMap<u32, String> {
    let mut names = BTreeMap::new();
    // SAFETY: no pointers; the returned handle is checked and closed below.
    let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
    if snap == INVALID_HANDLE_VALUE {
        return names;
    }
    #[allow(clippy::cast_possible_truncation)] // the structure's size, as the API requires
    let mut entry = PROCESSENTRY32W {
        dwSize: size_of::<PROCESSENTRY32W>() as u32,
        ..PROCESSENTRY32W::default()
    };
    // SAFETY: `entry` is a valid PROCESSENTRY32W with dwSize set.
    let mut more = unsafe { Process32FirstW(snap, &raw mut entry) } != 0;
    while more {
        let pid = entry.th32ProcessID;
        let name = well_known(pid).map_or_else(|| exe_name(&entry.szExeFile), str::to_owned);
        names.insert(pid, name);
        // SAFETY: as above; the snapshot handle is still open.
        more = unsafe { Process32NextW(snap, &raw mut entry) } != 0;
    }
    // SAFETY: the snapshot handle is closed exactly once.
    unsafe { CloseHandle(snap) };
    names
}

/// The image name of one process (file name only), if it can be opened.
#[must_use]
pub fn process_name(pid: u32) -> Option<String> {
    if let Some(name) = well_known(pid) {
        return Some(name.to_owned());
    }
    // SAFETY: no pointers; the handle is checked and closed below.
    let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if process.is_null() {
        return None;
    }
    let mut buffer = [0u16; 1024];
    #[allow(clippy::cast_possible_truncation)] // 1024
    let mut len = buffer.len() as u32;
    // SAFETY: `buffer` holds `len` UTF-16 units; the function writes at most that many and sets
    // `len` to the count written.
    let ok = unsafe {
        QueryFullProcessImageNameW(
            process,
            PROCESS_NAME_WIN32,
            buffer.as_mut_ptr(),
            &raw mut len,
        )
    };
    // SAFETY: the process handle is closed exactly once.
    unsafe { CloseHandle(process) };
    if ok == 0 {
        return None;
    }
    let path = String::from_utf16_lossy(&buffer[..(len as usize).min(buffer.len())]);
    Some(path.rsplit(['\\', '/']).next().unwrap_or(&path).to_owned())
}

/// A cache of [`process_name`] for `watch`, which meets the same few processes again and again.
#[derive(Default)]
pub struct NameCache {
    names: BTreeMap<u32, Option<String>>,
}

impl NameCache {
    /// Fills `names` with every process `pids` mentions that can be named.
    pub fn resolve(
        &mut self,
        pids: impl IntoIterator<Item = u32>,
        names: &mut crate::model::Names,
    ) {
        for pid in pids {
            let name = self.names.entry(pid).or_insert_with(|| process_name(pid));
            if let Some(name) = name {
                names.processes.entry(pid).or_insert_with(|| name.clone());
            }
        }
    }
}
