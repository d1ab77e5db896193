//! ctxscope's portable core.
//!
//! Everything ctxscope decides lives here, in `no_std` Rust with no allocation, so that the
//! driver (`ctxscope.sys`), the simulator and the user-mode app share one implementation and all
//! of it is tested on any OS:
//!
//! - [`kind`]: the callbacks observed and where Microsoft documents each to run;
//! - [`event`]: the 64-byte event record and the verdict drawn from it;
//! - [`ring`]: the lock-free event ring, writable at any IRQL;
//! - [`protocol`]: the I/O controls and message layouts between the driver and `ctxctl`;
//! - [`logline`]: the one-line text form of an event that the driver prints, and its parser;
//! - [`logic`]: each callback's logic, against the [`logic::Kernel`] trait the driver and the
//!   simulator implement;
//!
//! Only [`ring`] contains `unsafe` code (two blocks, each proven by loom and Miri).

#![no_std]
#![deny(unsafe_code)]

#[cfg(any(test, loom))]
extern crate std;

pub mod event;
pub mod kind;
pub mod logic;
pub mod logline;
pub mod protocol;
pub mod ring;

pub use event::{Event, ExecContext, Placement, Requestor, Verdict};
pub use kind::{CallbackKind, ContextClass, IrqlRule};
pub use ring::{EventRing, LaneFull, Reader, Recorded, RingStats};
