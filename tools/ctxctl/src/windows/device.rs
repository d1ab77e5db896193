//! The ctxscope device: finding it through its device interface, opening it, and the requests
//! the app sends (reads, writes, I/O controls), synchronous or overlapped.

use std::io;
use std::ptr;

use anyhow::{Context, Result, bail};
use ctxscope_core::protocol::{
    AlignedBuf, DEVICE_INTERFACE_GUID, GetEventsReply, GetEventsRequest, InfoReply, Ioctl,
    NeitherDemoReply, PROTOCOL_VERSION, ProtocolError, ReadReceipt, checksum,
};
use windows_sys::Win32::Devices::DeviceAndDriverInstallation::{
    CM_GET_DEVICE_INTERFACE_LIST_PRESENT, CM_Get_Device_Interface_List_SizeW,
    CM_Get_Device_Interface_ListW, CR_BUFFER_SMALL, CR_SUCCESS,
};
use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_IO_PENDING, GENERIC_READ, GENERIC_WRITE, GetLastError, HANDLE,
    INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_ATTRIBUTE_NORMAL, FILE_FLAG_OVERLAPPED, FILE_SHARE_READ, FILE_SHARE_WRITE,
    OPEN_EXISTING, ReadFile, WriteFile,
};
use windows_sys::Win32::System::IO::{
    CancelIoEx, DeviceIoControl, GetOverlappedResult, OVERLAPPED,
};
use windows_sys::Win32::System::Threading::CreateEventW;
use windows_sys::core::GUID;

use crate::wide::{device_error_hint, split_multi_sz, to_wide};

/// The largest `GetEvents` reply: its size field is 16 bits.
pub const EVENTS_BUFFER: usize = 0x1_0000;

/// What to tell a user whose machine has no ctxscope device.
const NOT_INSTALLED: &str = "the ctxscope driver is not installed or its device is not started (no device interface present); run `ctxctl install` or see docs/vm-guide.md (`ctxctl status` shows what is installed)";

/// A Win32 error from a device request, with what to do about it.
pub fn device_error(what: &str, error: &io::Error) -> anyhow::Error {
    let hint = error
        .raw_os_error()
        .and_then(|code| u32::try_from(code).ok())
        .and_then(device_error_hint);
    match hint {
        Some(hint) => anyhow::anyhow!("{what}: {error}; {hint}"),
        None => anyhow::anyhow!("{what}: {error}"),
    }
}

fn last_error() -> io::Error {
    // SAFETY: GetLastError only reads the calling thread's last-error value.
    let code = unsafe { GetLastError() };
    #[allow(clippy::cast_possible_wrap)] // Win32 error codes are below 2^31
    io::Error::from_raw_os_error(code as i32)
}

fn guid() -> GUID {
    GUID {
        data1: DEVICE_INTERFACE_GUID.data1,
        data2: DEVICE_INTERFACE_GUID.data2,
        data3: DEVICE_INTERFACE_GUID.data3,
        data4: DEVICE_INTERFACE_GUID.data4,
    }
}

/// The paths of the present ctxscope device interfaces.
///
/// # Errors
/// The configuration manager fails.
pub fn interface_paths() -> Result<Vec<String>> {
    let guid = guid();
    // The list can grow between the two calls (a device arriving): retry on CR_BUFFER_SMALL.
    for _ in 0..8 {
        let mut len: u32 = 0;
        // SAFETY: `len` and `guid` are valid for the call; a null device ID asks for every
        // device's interfaces.
        let cr = unsafe {
            CM_Get_Device_Interface_List_SizeW(
                &raw mut len,
                &raw const guid,
                ptr::null(),
                CM_GET_DEVICE_INTERFACE_LIST_PRESENT,
            )
        };
        if cr != CR_SUCCESS {
            bail!("CM_Get_Device_Interface_List_Size failed (CONFIGRET {cr:#x})");
        }
        let mut buffer = vec![0u16; len.max(1) as usize];
        #[allow(clippy::cast_possible_truncation)] // the length the size call returned
        let buffer_len = buffer.len() as u32;
        // SAFETY: `buffer` holds `buffer_len` UTF-16 units, which the function fills with a
        // multi-string no longer than that.
        let cr = unsafe {
            CM_Get_Device_Interface_ListW(
                &raw const guid,
                ptr::null(),
                buffer.as_mut_ptr(),
                buffer_len,
                CM_GET_DEVICE_INTERFACE_LIST_PRESENT,
            )
        };
        if cr == CR_BUFFER_SMALL {
            continue;
        }
        if cr != CR_SUCCESS {
            bail!("CM_Get_Device_Interface_List failed (CONFIGRET {cr:#x})");
        }
        return Ok(split_multi_sz(&buffer));
    }
    bail!("the list of ctxscope devices kept changing; retry")
}

/// An open handle to the device.
pub struct Device {
    handle: HANDLE,
    overlapped: bool,
}

impl Drop for Device {
    fn drop(&mut self) {
        // SAFETY: the handle came from CreateFileW and is closed exactly once, here; every
        // overlapped operation on it has been waited for (`Pending` borrows the device).
        unsafe { CloseHandle(self.handle) };
    }
}

/// An overlapped operation in flight: the `OVERLAPPED` and its buffer stay put (boxed) until the
/// operation is finished, and dropping it cancels and waits.
pub struct Pending<'d> {
    device: &'d Device,
    overlapped: Box<OVERLAPPED>,
    buffer: Box<AlignedBuf<{ ReadReceipt::SIZE }>>,
    event: HANDLE,
    done: bool,
}

impl Pending<'_> {
    /// Waits for the operation; returns the bytes transferred.
    ///
    /// # Errors
    /// The operation failed.
    pub fn wait(&mut self) -> io::Result<usize> {
        let mut transferred: u32 = 0;
        // SAFETY: the OVERLAPPED is the one the operation was started with, boxed so it has
        // not moved; TRUE waits on its event until the operation is complete.
        let ok = unsafe {
            GetOverlappedResult(
                self.device.handle,
                &raw const *self.overlapped,
                &raw mut transferred,
                1,
            )
        };
        self.done = true;
        if ok == 0 {
            return Err(last_error());
        }
        Ok(transferred as usize)
    }

    /// The buffer, once the operation is finished.
    pub fn bytes(&self, len: usize) -> &[u8] {
        &self.buffer.as_bytes()[..len.min(ReadReceipt::SIZE)]
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            // SAFETY: cancels only this operation (identified by its OVERLAPPED) on our handle.
            unsafe { CancelIoEx(self.device.handle, &raw const *self.overlapped) };
            let _ = self.wait();
        }
        // SAFETY: the event was created for this operation, which is finished, and is closed once.
        unsafe { CloseHandle(self.event) };
    }
}

fn new_event() -> io::Result<HANDLE> {
    // SAFETY: no security attributes, no name; a manual-reset event, initially non-signalled,
    // as GetOverlappedResult expects.
    let event = unsafe { CreateEventW(ptr::null(), 1, 0, ptr::null()) };
    if event.is_null() {
        Err(last_error())
    } else {
        Ok(event)
    }
}

#[allow(clippy::cast_possible_truncation)] // every buffer here is at most 64 KiB
fn len32(bytes: &[u8]) -> u32 {
    bytes.len() as u32
}

impl Device {
    /// Opens the first present ctxscope device. `overlapped` opens it for overlapped I/O.
    ///
    /// # Errors
    /// No device (not installed), access denied (not elevated), or another open failure, each
    /// saying what to do.
    pub fn open(overlapped: bool) -> Result<Self> {
        let paths = interface_paths()?;
        let Some(path) = paths.first() else {
            bail!("{NOT_INSTALLED}");
        };
        let wide = to_wide(path);
        let flags = if overlapped {
            FILE_FLAG_OVERLAPPED
        } else {
            FILE_ATTRIBUTE_NORMAL
        };
        // SAFETY: `wide` is a NUL-terminated path that outlives the call; no security
        // attributes or template.
        let handle = unsafe {
            CreateFileW(
                wide.as_ptr(),
                GENERIC_READ | GENERIC_WRITE,
                FILE_SHARE_READ | FILE_SHARE_WRITE,
                ptr::null(),
                OPEN_EXISTING,
                flags,
                ptr::null_mut(),
            )
        };
        if handle == INVALID_HANDLE_VALUE {
            return Err(device_error(
                &format!("cannot open the ctxscope device {path}"),
                &last_error(),
            ));
        }
        Ok(Self { handle, overlapped })
    }

    /// Runs one request to completion: directly on a synchronous handle, or started with an
    /// `OVERLAPPED` and waited for on an overlapped one. `start` makes the Win32 call.
    fn complete(
        &self,
        start: impl FnOnce(HANDLE, *mut u32, *mut OVERLAPPED) -> i32,
    ) -> io::Result<usize> {
        if !self.overlapped {
            let mut transferred: u32 = 0;
            if start(self.handle, &raw mut transferred, ptr::null_mut()) == 0 {
                return Err(last_error());
            }
            return Ok(transferred as usize);
        }
        let event = new_event()?;
        let mut overlapped = Box::new(OVERLAPPED {
            hEvent: event,
            ..OVERLAPPED::default()
        });
        let started = start(self.handle, ptr::null_mut(), &raw mut *overlapped);
        let error = (started == 0).then(last_error);
        let result = match error {
            Some(e) if e.raw_os_error() != Some(ERROR_IO_PENDING.cast_signed()) => Err(e),
            _ => {
                let mut transferred: u32 = 0;
                // SAFETY: the operation was started with this boxed OVERLAPPED; TRUE waits for
                // it to finish before the box is dropped.
                let ok = unsafe {
                    GetOverlappedResult(
                        self.handle,
                        &raw const *overlapped,
                        &raw mut transferred,
                        1,
                    )
                };
                if ok == 0 {
                    Err(last_error())
                } else {
                    Ok(transferred as usize)
                }
            }
        };
        // SAFETY: the event was created above, the operation is finished, and it is closed once.
        unsafe { CloseHandle(event) };
        result
    }

    /// `DeviceIoControl`; returns the bytes written to `output`.
    ///
    /// # Errors
    /// The request failed.
    pub fn ioctl(&self, ioctl: Ioctl, input: &[u8], output: &mut [u8]) -> io::Result<usize> {
        let (in_len, out_len) = (len32(input), len32(output));
        let (in_ptr, out_ptr) = (input.as_ptr(), output.as_mut_ptr());
        self.complete(|handle, transferred, overlapped| {
            // SAFETY: the buffers are valid for their lengths and outlive the call and, on an
            // overlapped handle, the wait that `complete` does before returning.
            unsafe {
                DeviceIoControl(
                    handle,
                    ioctl.code(),
                    in_ptr.cast(),
                    in_len,
                    out_ptr.cast(),
                    out_len,
                    transferred,
                    overlapped,
                )
            }
        })
    }

    /// `GetInfo`, checking the protocol version first.
    ///
    /// # Errors
    /// The request fails, or the driver speaks another protocol version (both named, and what to
    /// do).
    pub fn info(&self) -> Result<InfoReply> {
        // Room for a larger reply than this version's, so that a driver from another build
        // still answers and its header names its protocol version.
        let mut out = AlignedBuf::<1024>::new();
        let n = self
            .ioctl(Ioctl::GetInfo, &[], out.as_mut_bytes())
            .map_err(|e| device_error("IOCTL_CTXSCOPE_GET_INFO failed", &e))?;
        InfoReply::decode(&out.as_bytes()[..n]).map_err(|e| match e {
            ProtocolError::UnsupportedVersion { found } => anyhow::anyhow!(
                "protocol version mismatch: the driver speaks version {found}, this ctxctl speaks version {PROTOCOL_VERSION}; install the driver from the same build as ctxctl (`ctxctl uninstall`, then `ctxctl install --package DIR`)"
            ),
            other => anyhow::anyhow!("the driver's GetInfo reply is invalid: {other}; {}", other.hint()),
        })
    }

    /// One `GetEvents` into `buffer`; returns the reply's length.
    ///
    /// # Errors
    /// The request failed (raw, so the caller can retry on `ERROR_BUSY`).
    pub fn get_events_raw(&self, cursor: u64, buffer: &mut [u8]) -> io::Result<usize> {
        let mut input = AlignedBuf::<{ GetEventsRequest::SIZE }>::new();
        GetEventsRequest { cursor }
            .encode(input.as_mut_bytes())
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.ioctl(Ioctl::GetEvents, input.as_bytes(), buffer)
    }

    /// Decodes a `GetEvents` reply.
    ///
    /// # Errors
    /// The reply is invalid (with the protocol's hint).
    pub fn decode_events(bytes: &[u8]) -> Result<GetEventsReply<'_>> {
        GetEventsReply::decode(bytes).map_err(|e| {
            anyhow::anyhow!("the driver's GetEvents reply is invalid: {e}; {}", e.hint())
        })
    }

    /// `Reset`; returns the events discarded.
    ///
    /// # Errors
    /// The request failed.
    pub fn reset(&self) -> Result<u64> {
        let mut out = AlignedBuf::<{ ctxscope_core::protocol::ResetReply::SIZE }>::new();
        let n = self
            .ioctl(Ioctl::Reset, &[], out.as_mut_bytes())
            .map_err(|e| device_error("IOCTL_CTXSCOPE_RESET failed", &e))?;
        let reply = ctxscope_core::protocol::ResetReply::decode(&out.as_bytes()[..n])
            .map_err(|e| anyhow::anyhow!("invalid Reset reply: {e}; {}", e.hint()))?;
        Ok(reply.discarded)
    }

    /// `Configure` with a new timer period, keeping the log level in force.
    ///
    /// # Errors
    /// The request failed.
    pub fn set_timer_period(&self, info: &InfoReply, timer_period_ms: u32) -> Result<()> {
        let request = ctxscope_core::protocol::ConfigureRequest {
            timer_period_ms,
            ..info.config()
        };
        let mut input = AlignedBuf::<{ ctxscope_core::protocol::ConfigureRequest::SIZE }>::new();
        request
            .encode(input.as_mut_bytes())
            .map_err(|e| anyhow::anyhow!("{e}; {}", e.hint()))?;
        self.ioctl(Ioctl::Configure, input.as_bytes(), &mut [])
            .map_err(|e| device_error("IOCTL_CTXSCOPE_CONFIGURE failed", &e))?;
        Ok(())
    }

    /// The `METHOD_NEITHER` demonstration; checks the driver read the input it was given.
    ///
    /// # Errors
    /// The request failed or the reply does not match the input.
    pub fn neither_demo(&self, input: &[u8]) -> Result<NeitherDemoReply> {
        let mut out = AlignedBuf::<{ NeitherDemoReply::SIZE }>::new();
        let n = self
            .ioctl(Ioctl::NeitherDemo, input, out.as_mut_bytes())
            .map_err(|e| device_error("IOCTL_CTXSCOPE_NEITHER_DEMO failed", &e))?;
        let reply = NeitherDemoReply::decode(&out.as_bytes()[..n])
            .map_err(|e| anyhow::anyhow!("invalid METHOD_NEITHER reply: {e}"))?;
        if reply.input_len as usize != input.len() || reply.input_checksum != checksum(input) {
            bail!("the METHOD_NEITHER reply does not match the input the app sent");
        }
        Ok(reply)
    }

    /// A synchronous (or waited-for) read; returns the receipt.
    ///
    /// # Errors
    /// The read failed, or its receipt is invalid.
    pub fn read(&self) -> Result<ReadReceipt> {
        let mut buffer = AlignedBuf::<{ ReadReceipt::SIZE }>::new();
        let len = len32(buffer.as_bytes());
        let ptr = buffer.as_mut_bytes().as_mut_ptr();
        let n = self
            .complete(|handle, transferred, overlapped| {
                // SAFETY: the buffer is valid for `len` bytes and outlives the call and the wait.
                unsafe { ReadFile(handle, ptr, len, transferred, overlapped) }
            })
            .map_err(|e| device_error("ReadFile failed", &e))?;
        ReadReceipt::decode(&buffer.as_bytes()[..n])
            .map_err(|e| anyhow::anyhow!("invalid read receipt: {e}; {}", e.hint()))
    }

    /// Starts an overlapped read (the handle must be overlapped).
    ///
    /// # Errors
    /// The read could not be started.
    pub fn start_read(&self) -> Result<Pending<'_>> {
        let event = new_event().map_err(|e| device_error("CreateEvent failed", &e))?;
        let mut pending = Pending {
            device: self,
            overlapped: Box::new(OVERLAPPED {
                hEvent: event,
                ..OVERLAPPED::default()
            }),
            buffer: Box::new(AlignedBuf::new()),
            event,
            done: false,
        };
        let len = len32(pending.buffer.as_bytes());
        // SAFETY: the buffer and OVERLAPPED are boxed, so they stay put until `Pending` has
        // waited for the read (in `wait` or in its `Drop`).
        let ok = unsafe {
            ReadFile(
                self.handle,
                pending.buffer.as_mut_bytes().as_mut_ptr(),
                len,
                ptr::null_mut(),
                &raw mut *pending.overlapped,
            )
        };
        if ok == 0 {
            let error = last_error();
            if error.raw_os_error() != Some(ERROR_IO_PENDING.cast_signed()) {
                pending.done = true;
                return Err(device_error("ReadFile failed", &error));
            }
        }
        Ok(pending)
    }

    /// A write of `data`.
    ///
    /// # Errors
    /// The write failed or was short.
    pub fn write(&self, data: &[u8]) -> Result<()> {
        let len = len32(data);
        let ptr = data.as_ptr();
        let n = self
            .complete(|handle, transferred, overlapped| {
                // SAFETY: `data` is valid for `len` bytes and outlives the call and the wait.
                unsafe { WriteFile(handle, ptr, len, transferred, overlapped) }
            })
            .map_err(|e| device_error("WriteFile failed", &e))?;
        if n != data.len() {
            bail!("WriteFile wrote {n} of {} bytes", data.len());
        }
        Ok(())
    }
}

/// Opens the device and checks the protocol version: what every subcommand does first.
///
/// # Errors
/// As [`Device::open`] and [`Device::info`].
pub fn open_checked(overlapped: bool) -> Result<(Device, InfoReply)> {
    let device = Device::open(overlapped)?;
    let info = device
        .info()
        .context("checking the driver's protocol version")?;
    Ok((device, info))
}
