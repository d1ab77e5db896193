//! Ctrl-C: the first press asks the run to stop and report what it gathered; a second press
//! ends the process at once.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static STOP: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler (once per process).
pub fn install_handler() {
    let installed = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\nstopping at once");
            std::process::exit(130);
        }
        eprintln!(
            "\nstopping: finishing outstanding I/O and reporting what was gathered (Ctrl-C again to quit now)"
        );
    });
    if let Err(e) = installed {
        eprintln!("warning: Ctrl-C will end ctxctl without a report ({e})");
    }
}

/// Whether a stop was asked for.
#[must_use]
pub fn requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// A progress bar on standard error, hidden when standard error is not a terminal.
#[must_use]
pub fn progress_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}
