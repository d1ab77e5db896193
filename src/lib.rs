//! `ctxscope.sys`: a KMDF 1.33 driver that records the process, thread, IRQL and CPU of every
//! callback it registers, in a lock-free event ring, and prints one line per callback.
//!
//! Everything the driver decides lives in [`ctxscope_core::logic`], which builds and is tested on
//! any OS. This crate is the Windows glue: one module per framework object, as Microsoft's KMDF
//! samples are laid out, each callback gathering raw facts through wdk-sys, calling the logic, and
//! carrying out the decision it returns.
//!
//! - `driver`: `DriverEntry`, `EvtDriverDeviceAdd`, `EvtDriverUnload`;
//! - `device`: the device object, its context, the Plug and Play and power callbacks and the
//!   `IRP_MJ_CLEANUP` preprocess callback;
//! - `file`: the file-object callbacks (create, cleanup, close);
//! - `queue`: `EvtIoInCallerContext`, the read, write and device-control queues, the pending read
//!   and its cancel routine;
//! - `timer`: the one-shot timer that the logic re-arms;
//! - `interrupt`: the edu device's interrupt, ISR and DPC;
//! - `kernel`: the [`ctxscope_core::logic::Kernel`] implementation;
//! - `registers`: the [`ctxscope_core::logic::DeviceRegisters`] implementation over BAR0;
//! - `context`: the typed-context plumbing every object uses.
//!
//! The wdk crates build only on a Windows host with the WDK, so every module is compiled only for
//! `target_os = "windows"`. On any other host this crate is empty; the logic it carries out is
//! tested in `ctxscope-core` and by the simulator, and `tests/` checks that the INF and the
//! callback registrations here agree with the core.
#![cfg_attr(target_os = "windows", no_std)]

#[cfg(all(target_os = "windows", not(test)))]
extern crate wdk_panic;

#[cfg(target_os = "windows")]
mod context;
#[cfg(target_os = "windows")]
mod device;
#[cfg(target_os = "windows")]
mod driver;
#[cfg(target_os = "windows")]
mod file;
#[cfg(target_os = "windows")]
mod interrupt;
#[cfg(target_os = "windows")]
mod kernel;
#[cfg(target_os = "windows")]
mod queue;
#[cfg(target_os = "windows")]
mod registers;
#[cfg(target_os = "windows")]
mod timer;

#[cfg(target_os = "windows")]
use ctxscope_core::logic::{Driver, DriverRing};
#[cfg(target_os = "windows")]
use ctxscope_core::ring::image::RingLayout;

/// The event ring, in non-paged static storage, under a symbol the `WinDbg` extension finds.
#[cfg(target_os = "windows")]
#[unsafe(no_mangle)]
pub static CTXSCOPE_EVENT_RING: DriverRing = DriverRing::new();

/// Where everything is in [`CTXSCOPE_EVENT_RING`], computed from the ring's own types, so that a
/// debugger needs no hard-coded offset.
#[cfg(target_os = "windows")]
#[unsafe(no_mangle)]
pub static CTXSCOPE_RING_LAYOUT: RingLayout = DriverRing::LAYOUT;

/// The driver's state: the ring, the configuration and the counters. Every callback records
/// through it.
#[cfg(target_os = "windows")]
static DRIVER: Driver<'static> = Driver::new(&CTXSCOPE_EVENT_RING);
