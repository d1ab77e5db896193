//! Portable helpers for the Windows module: UTF-16 strings and multi-strings, and what a Win32
//! error from the device means to a user.

/// `text` as a NUL-terminated UTF-16 string.
#[must_use]
#[cfg_attr(not(windows), allow(dead_code))]
pub fn to_wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(std::iter::once(0)).collect()
}

/// Splits a `REG_MULTI_SZ`-style list (strings each ended by NUL, the list by an empty string),
/// as `CM_Get_Device_Interface_ListW` returns it. Stops at the first empty string, and at the end
/// of the buffer if the terminator is missing.
#[must_use]
#[cfg_attr(not(windows), allow(dead_code))]
pub fn split_multi_sz(buffer: &[u16]) -> Vec<String> {
    buffer
        .split(|&unit| unit == 0)
        .take_while(|s| !s.is_empty())
        .map(String::from_utf16_lossy)
        .collect()
}

/// Win32 error codes the device's requests fail with (`RtlNtStatusToDosError` of the driver's
/// NTSTATUS).
pub mod code {
    /// `ERROR_INVALID_FUNCTION` (`STATUS_INVALID_DEVICE_REQUEST`).
    pub const INVALID_FUNCTION: u32 = 1;
    /// `ERROR_FILE_NOT_FOUND`.
    pub const FILE_NOT_FOUND: u32 = 2;
    /// `ERROR_ACCESS_DENIED`.
    pub const ACCESS_DENIED: u32 = 5;
    /// `ERROR_NOT_READY` (`STATUS_DEVICE_NOT_READY`).
    pub const NOT_READY: u32 = 21;
    /// `ERROR_INVALID_PARAMETER` (`STATUS_INVALID_PARAMETER`).
    pub const INVALID_PARAMETER: u32 = 87;
    /// `ERROR_INSUFFICIENT_BUFFER` (`STATUS_BUFFER_TOO_SMALL`).
    pub const INSUFFICIENT_BUFFER: u32 = 122;
    /// `ERROR_BUSY` (`STATUS_DEVICE_BUSY`).
    pub const BUSY: u32 = 170;
    /// `ERROR_OPERATION_ABORTED` (`STATUS_CANCELLED`).
    pub const OPERATION_ABORTED: u32 = 995;
    /// `ERROR_REVISION_MISMATCH` (`STATUS_REVISION_MISMATCH`).
    pub const REVISION_MISMATCH: u32 = 1306;
}

/// What to do about a Win32 error from the ctxscope device, if there is something to say.
#[must_use]
pub fn device_error_hint(error: u32) -> Option<&'static str> {
    Some(match error {
        code::ACCESS_DENIED => {
            "the device allows SYSTEM and Administrators only: run ctxctl from an elevated prompt (Run as administrator)"
        }
        code::FILE_NOT_FOUND => {
            "the device went away: is the driver still started? `ctxctl status` shows what is installed"
        }
        code::NOT_READY => "the device has not finished starting; check it in Device Manager",
        code::BUSY => {
            "another program is reading the driver's events (a second `ctxctl run` or `ctxctl watch`?); stop it and retry"
        }
        code::REVISION_MISMATCH | code::INVALID_FUNCTION => {
            "the driver and ctxctl come from different builds: install the driver from the same build (`ctxctl uninstall`, then `ctxctl install --package DIR`)"
        }
        code::INVALID_PARAMETER | code::INSUFFICIENT_BUFFER => {
            "the driver refused the request's buffers; if the driver and ctxctl are from the same build, report this as a bug"
        }
        code::OPERATION_ABORTED => "the request was cancelled (Ctrl-C, or the handle was closed)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_sz_splits() {
        let path = r"\\?\ROOT#SYSTEM#0001#{4bf19e48-db6b-4fb9-9fb5-bff5bb39e598}";
        let mut buffer: Vec<u16> = path.encode_utf16().collect();
        buffer.push(0);
        buffer.extend("second".encode_utf16());
        buffer.extend([0, 0]);
        assert_eq!(split_multi_sz(&buffer), [path, "second"]);
        assert!(split_multi_sz(&[0]).is_empty());
        assert!(split_multi_sz(&[]).is_empty());
        // A missing final terminator still yields the strings.
        assert_eq!(split_multi_sz(&to_wide("a")[..1]), ["a"]);
        assert_eq!(to_wide("ab"), [97, 98, 0]);
    }

    #[test]
    fn device_errors_say_what_to_do() {
        assert!(
            device_error_hint(code::ACCESS_DENIED)
                .unwrap()
                .contains("elevated")
        );
        assert!(
            device_error_hint(code::BUSY)
                .unwrap()
                .contains("ctxctl watch")
        );
        assert!(
            device_error_hint(code::REVISION_MISMATCH)
                .unwrap()
                .contains("same build")
        );
        assert_eq!(device_error_hint(12345), None);
    }
}
