//! `ctxctl info`: the driver's `GetInfo` reply, for people.

use std::fmt::Write as _;

use ctxscope_core::protocol::{InfoReply, PROTOCOL_VERSION};

/// The reply as text.
#[must_use]
pub fn render(info: &InfoReply) -> String {
    let mut out = String::new();
    let c = &info.counters;
    let mode_note = match info.mode {
        ctxscope_core::protocol::Mode::Edu => {
            "bound to QEMU's edu device: real interrupts complete reads"
        }
        ctxscope_core::protocol::Mode::Root => {
            "root-enumerated: no interrupt resource, the ISR never runs; the timer completes reads"
        }
        ctxscope_core::protocol::Mode::Starting => "the device has not finished starting",
    };
    let _ = writeln!(out, "driver version     {}", info.driver_version);
    let _ = writeln!(out, "protocol version   {PROTOCOL_VERSION}");
    let _ = writeln!(out, "mode               {} ({mode_note})", info.mode);
    let _ = writeln!(out, "timer period       {} ms", info.timer_period_ms);
    let _ = writeln!(out, "log level          {}", info.log_level);
    let _ = writeln!(out, "counter frequency  {} Hz", info.counter_frequency);
    let _ = writeln!(
        out,
        "event ring         {} lanes x {} events",
        info.ring_lanes, info.lane_capacity
    );
    let _ = writeln!(
        out,
        "  recorded {}, dropped {}, consumed {}, pending {}",
        info.ring.recorded,
        info.ring.dropped,
        info.ring.consumed,
        info.ring.pending()
    );
    let _ = writeln!(
        out,
        "interrupts         {} ({} not ours)",
        c.interrupts, c.spurious_interrupts
    );
    let _ = writeln!(out, "timer ticks        {}", c.timer_ticks);
    let _ = writeln!(
        out,
        "reads              {} completed, {} cancelled",
        c.reads_completed, c.reads_cancelled
    );
    let _ = writeln!(
        out,
        "log lines          {} printed, {} suppressed by the log level",
        c.log_lines_printed, c.log_lines_suppressed
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctxscope_core::RingStats;
    use ctxscope_core::protocol::{DriverCounters, DriverVersion, LogLevel, Mode};

    #[test]
    fn shows_every_counter() {
        let info = InfoReply {
            driver_version: DriverVersion {
                major: 0,
                minor: 1,
                patch: 0,
            },
            mode: Mode::Root,
            counter_frequency: 10_000_000,
            ring_lanes: 8,
            lane_capacity: 512,
            ring: RingStats {
                recorded: 100,
                dropped: 2,
                consumed: 90,
            },
            counters: DriverCounters {
                interrupts: 0,
                spurious_interrupts: 0,
                timer_ticks: 55,
                reads_completed: 40,
                reads_cancelled: 1,
                log_lines_printed: 98,
                log_lines_suppressed: 2,
            },
            timer_period_ms: 10,
            log_level: LogLevel::Every,
        };
        let text = render(&info);
        assert!(text.contains("driver version     0.1.0"));
        assert!(text.contains("mode               root (root-enumerated"));
        assert!(text.contains("recorded 100, dropped 2, consumed 90, pending 10"));
        assert!(text.contains("reads              40 completed, 1 cancelled"));
        assert!(text.contains("timer ticks        55"));
    }
}
