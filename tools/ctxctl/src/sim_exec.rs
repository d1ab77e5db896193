//! Runs `ctxctl simulate`: the simulator with a progress bar and Ctrl-C, then the report.

use anyhow::Result;
use ctxscope_sim::SimError;

use crate::cli::SimulateArgs;
use crate::{output, sim, stop};

/// Simulates the workload the flags describe and reports it.
///
/// # Errors
/// A workload out of range (naming the flag), or the report cannot be written.
pub fn execute(args: &SimulateArgs) -> Result<()> {
    let workload = sim::workload(args);
    workload.validate().map_err(|error| match error {
        SimError::OutOfRange {
            field,
            value,
            expected,
        } => anyhow::anyhow!(
            "--{} {value} is out of range: expected {expected}",
            field.replace('_', "-")
        ),
        other @ SimError::InvalidMode => anyhow::anyhow!("invalid workload: {other}"),
    })?;
    stop::install_handler();
    let bar = stop::progress_bar(0, "simulating");
    let mut observer = |progress: ctxscope_sim::Progress| {
        bar.set_length(progress.requests_total);
        bar.set_position(progress.requests_done);
        !stop::requested()
    };
    let result = ctxscope_sim::simulate(&workload, &mut observer);
    bar.finish_and_clear();
    let sim_run = result.map_err(|e| anyhow::anyhow!("the simulation failed: {e}"))?;
    let run = sim::to_run(&sim_run);
    output::emit(&run, &args.output)
}
