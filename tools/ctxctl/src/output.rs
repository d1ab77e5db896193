//! The one report pipeline `run`, `simulate` and `report` share: render the run in the format
//! asked, to standard output or a file, and the HTML timeline if asked.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, Result};

use crate::cli::{Format, OutputArgs};
use crate::model::Run;
use crate::{export, html, table};

/// Renders `run` in `format`. `terminal` says the text goes to a terminal (colour, fitted width).
///
/// # Errors
/// Serialization errors, which plain data does not have.
pub fn render(run: &Run, format: Format, terminal: bool) -> Result<String> {
    Ok(match format {
        Format::Table => table::render(run, terminal, terminal),
        Format::Json => export::to_json(run)?,
        Format::Csv => export::to_csv(run)?,
        Format::Log => export::to_log(run),
    })
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Emits the report as `output` asks.
///
/// # Errors
/// A file cannot be written.
pub fn emit(run: &Run, output: &OutputArgs) -> Result<()> {
    let color_ok = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    if let Some(path) = &output.out {
        write_file(path, &render(run, output.format, false)?)?;
        eprintln!("wrote the report to {}", path.display());
    } else {
        let terminal = std::io::stdout().is_terminal() && color_ok;
        let text = render(run, output.format, terminal)?;
        let mut stdout = std::io::stdout().lock();
        // A closed pipe (`| head`) is not an error worth reporting.
        if let Err(e) = stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            return Err(e).context("writing the report");
        }
    }
    if output.format != Format::Table {
        // The table shows warnings itself; other formats are for machines, so people get them
        // on standard error.
        for warning in table::warnings(run) {
            eprintln!("warning: {warning}");
        }
    }
    if let Some(path) = &output.html {
        write_file(path, &html::render(run))?;
        eprintln!("wrote the HTML timeline to {}", path.display());
    }
    Ok(())
}
