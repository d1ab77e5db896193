//! ctxscope.sys (in progress).
#![cfg_attr(target_os = "windows", no_std)]
