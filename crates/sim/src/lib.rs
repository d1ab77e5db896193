//! Simulator (in progress).
#![forbid(unsafe_code)]
