//! One session's resume of one producer, as the fan-out runs it.
//!
//! The switch from history to live must lose nothing and repeat nothing, also while the
//! producer keeps publishing. The fan-out gets there in three steps: it makes sure the
//! producer's channel is subscribed (its probe came back) before it reads history, so every
//! message published after the read is delivered live; it holds the session's live messages
//! while it sends history page by page; and then it releases only the held messages numbered
//! after the last one history sent.
//! The publish script appends to history and publishes in one atomic step, so a message is
//! either in the read or among the live ones, and sequence numbers tell which were both. A
//! message published just before the read can reach the fan-out only after the resume ended;
//! the fan-out skips live messages up to the last number sent until a later one arrives.

use std::collections::VecDeque;

use nodegrid_services::streams::history::HistoryEntry;

use crate::stream::outbox::Outgoing;

/// Where a resuming session starts: after `since_seq` of `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeFrom {
    pub since_seq: u64,
    pub epoch: Option<String>,
}

/// Most history entries read in one step.
pub const MAX_PAGE: usize = 500;

/// The state of one resume.
#[derive(Debug)]
pub struct Replay {
    pub from: ResumeFrom,
    /// Tells this resume from a later one of the same session and producer, so that a page
    /// read for an earlier one is ignored.
    pub generation: u64,
    /// History after this number is still to be sent.
    pub after_seq: u64,
    /// The first page has not been answered yet: it decides about epochs and gaps.
    pub first_page: bool,
    /// A page read is in flight or scheduled.
    pub reading: bool,
    /// Entries read and not yet sent: they go out as the session's outbox has room.
    pub backlog: VecDeque<HistoryEntry>,
    /// History holds more after the last entry read.
    pub more: bool,
    /// The fan-out fell behind its subscriber while this resume ran, so live messages may
    /// have been dropped rather than held: history is read once more before going live.
    pub reread: bool,
    live: VecDeque<(u64, Outgoing)>,
    live_limit: usize,
}

/// The session held more live messages than its buffer allows while history was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldTooMany;

impl Replay {
    pub fn new(from: ResumeFrom, generation: u64, live_limit: usize) -> Replay {
        Replay {
            after_seq: from.since_seq,
            from,
            generation,
            first_page: true,
            reading: false,
            backlog: VecDeque::new(),
            more: false,
            reread: false,
            live: VecDeque::new(),
            live_limit: live_limit.max(1),
        }
    }

    /// Holds a live message until history has been sent.
    pub fn hold(&mut self, seq: u64, frame: Outgoing) -> Result<(), HeldTooMany> {
        if self.live.len() >= self.live_limit {
            return Err(HeldTooMany);
        }
        self.live.push_back((seq, frame));
        Ok(())
    }

    /// History is sent: the held live messages it did not already send, in order, with their
    /// numbers.
    pub fn release(self) -> impl Iterator<Item = (u64, Outgoing)> {
        let after = self.after_seq;
        self.live.into_iter().filter(move |(seq, _)| *seq > after)
    }

    /// Whether an outbox with `room` free of `capacity` (frames, bytes) may take a history
    /// frame of `length` bytes: a quarter of it is kept for the session's live traffic, so
    /// that resuming several producers at once never overflows a consumer that reads.
    pub fn fits(room: (usize, u64), capacity: (usize, u64), length: u64) -> bool {
        room.0 > capacity.0 / 4 && room.1 >= length.saturating_add(capacity.1 / 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &'static str) -> Outgoing {
        Outgoing::Text(text.into())
    }

    #[test]
    fn release_skips_what_history_already_sent() {
        let mut replay = Replay::new(
            ResumeFrom {
                since_seq: 3,
                epoch: None,
            },
            1,
            10,
        );
        for (seq, text) in [(5, "5"), (6, "6"), (7, "7")] {
            replay.hold(seq, frame(text)).unwrap();
        }
        replay.after_seq = 6;
        let released: Vec<String> = replay
            .release()
            .map(|(_, frame)| match frame {
                Outgoing::Text(text) => text.to_string(),
                _ => String::new(),
            })
            .collect();
        assert_eq!(released, ["7"]);
    }

    #[test]
    fn holding_is_bounded() {
        let mut replay = Replay::new(
            ResumeFrom {
                since_seq: 0,
                epoch: None,
            },
            1,
            1,
        );
        assert_eq!(replay.hold(1, frame("1")), Ok(()));
        assert_eq!(replay.hold(2, frame("2")), Err(HeldTooMany));
    }

    #[test]
    fn history_keeps_a_quarter_of_the_outbox_for_live_traffic() {
        let capacity = (1_000, 1_000_000);
        assert!(Replay::fits((1_000, 1_000_000), capacity, 100));
        assert!(!Replay::fits((250, 1_000_000), capacity, 100));
        assert!(Replay::fits((251, 1_000_000), capacity, 100));
        assert!(!Replay::fits((1_000, 250_050), capacity, 100));
    }
}
