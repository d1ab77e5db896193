//! Bookkeeping of `GetEvents` replies: the cursor the next request sends, and the events known
//! to be lost (ring overflow and cursor gaps).

use ctxscope_core::RingStats;
use ctxscope_core::protocol::{CursorCheck, EventsReplyHeader};

use crate::model::Lost;

/// The app's side of the event cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainState {
    /// The cursor the next `GetEvents` sends.
    pub cursor: u64,
    /// What is known lost so far.
    pub lost: Lost,
    /// The ring's `dropped` counter when counting started (or the driver restarted).
    dropped_base: u64,
    /// Drops counted before a driver restart.
    dropped_before_restart: u64,
}

impl DrainState {
    /// Starts from the ring's counters as `GetInfo` (or a reset) left them.
    #[must_use]
    pub fn new(ring: RingStats) -> Self {
        Self {
            cursor: ring.consumed,
            lost: Lost::default(),
            dropped_base: ring.dropped,
            dropped_before_restart: 0,
        }
    }

    /// Accounts for one reply.
    pub fn accept(&mut self, header: &EventsReplyHeader) {
        match header.check_cursor(self.cursor) {
            CursorCheck::InStep => {}
            CursorCheck::Skipped { missed } => self.lost.cursor_gaps += missed,
            CursorCheck::Restarted { .. } => {
                // The driver's counters restarted at zero: so did its drop count.
                self.lost.driver_restarted = true;
                self.dropped_before_restart = self.lost.dropped;
                self.dropped_base = 0;
            }
        }
        self.cursor = header.next_cursor;
        self.lost.dropped =
            self.dropped_before_restart + header.stats.dropped.saturating_sub(self.dropped_base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(cursor: u64, count: u64, dropped: u64) -> EventsReplyHeader {
        EventsReplyHeader {
            cursor,
            next_cursor: cursor + count,
            stats: RingStats {
                recorded: cursor + count,
                dropped,
                consumed: cursor + count,
            },
        }
    }

    #[test]
    fn gaps_and_drops_are_counted() {
        let mut state = DrainState::new(RingStats {
            recorded: 100,
            dropped: 5,
            consumed: 100,
        });
        assert_eq!(state.cursor, 100);
        state.accept(&reply(100, 10, 5));
        assert_eq!(state.cursor, 110);
        assert_eq!(state.lost, Lost::default());
        // Someone else took 7 events, and the ring dropped 3 more.
        state.accept(&reply(117, 3, 8));
        assert_eq!(state.lost.cursor_gaps, 7);
        assert_eq!(state.lost.dropped, 3);
        assert_eq!(state.cursor, 120);
        // The driver reloads: its cursor restarts at 0 and its drops at 0.
        state.accept(&reply(0, 4, 2));
        assert!(state.lost.driver_restarted);
        assert_eq!(state.lost.dropped, 5);
        assert_eq!(state.cursor, 4);
        state.accept(&reply(4, 1, 2));
        assert_eq!(state.lost.dropped, 5);
        assert_eq!(state.lost.cursor_gaps, 7);
    }
}
