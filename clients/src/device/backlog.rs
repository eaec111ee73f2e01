//! Readings waiting for their ack: bounded in count and bytes, oldest dropped first, and sent
//! again in order after a reconnect.

use std::collections::VecDeque;

use nodegrid_protocol::stream::{ClientFrame, Encoding, encode_frame};
use serde_json::{Value, json};

use super::options::DeviceError;

/// Readings waiting for their ack, oldest first.
pub(super) struct Backlog {
    /// This run's prefix of reading ids.
    run_id: String,
    pub(super) readings: VecDeque<Pending>,
    bytes: usize,
    max_messages: usize,
    max_bytes: usize,
    /// Readings dropped since the last reading that reported drops.
    dropped: u64,
    /// How many of the oldest readings were sent on the current socket.
    pub(super) sent: usize,
}

pub(super) struct Pending {
    number: u64,
    reading: Value,
    frame: Vec<u8>,
    /// The drop count this reading carries, once it was sent with one.
    reports_dropped: u64,
}

impl Backlog {
    /// An empty backlog of this run (its id prefixes every reading's id).
    pub(super) fn new(run_id: String, max_messages: usize, max_bytes: usize) -> Backlog {
        Backlog {
            run_id,
            readings: VecDeque::new(),
            bytes: 0,
            max_messages,
            max_bytes,
            dropped: 0,
            sent: 0,
        }
    }

    /// Adds a reading; when full, drops the oldest. A dropped reading that carried a drop count
    /// gives it back to the tally, so the count reaches the server with the next reading that
    /// is sent.
    pub(super) fn push(&mut self, number: u64, reading: Value, frame: Vec<u8>) {
        self.bytes += frame.len();
        self.readings.push_back(Pending {
            number,
            reading,
            frame,
            reports_dropped: 0,
        });
        while self.readings.len() > self.max_messages || self.bytes > self.max_bytes {
            let Some(oldest) = self.readings.pop_front() else {
                break;
            };
            self.bytes -= oldest.frame.len();
            self.sent = self.sent.saturating_sub(1);
            self.dropped += 1 + oldest.reports_dropped;
            // Logged at 1, 2, 4, 8, … so that a long outage does not flood the log.
            if self.dropped.is_power_of_two() {
                tracing::warn!(
                    dropped = self.dropped,
                    "the backlog is full: the oldest readings were dropped"
                );
            }
        }
    }

    /// The frame of the `index`th reading, ready to send: the first reading sent after drops
    /// carries their count (`"dropped": n`).
    pub(super) fn frame_to_send(
        &mut self,
        index: usize,
        encoding: Encoding,
    ) -> Result<Vec<u8>, DeviceError> {
        let dropped = self.dropped;
        let Some(pending) = self.readings.get_mut(index) else {
            return Err(DeviceError::Failed("no such reading".into()));
        };
        if dropped > 0 && pending.reports_dropped == 0 {
            pending.reports_dropped = dropped;
            pending.reading["dropped"] = json!(dropped);
            let id = format!("{}-{}", self.run_id, pending.number);
            let frame = ClientFrame::data(pending.reading.clone(), Some(id));
            let bytes = encode_frame(&frame, encoding).map_err(|error| {
                DeviceError::Failed(format!("cannot encode a reading: {error}"))
            })?;
            self.bytes = self.bytes - pending.frame.len() + bytes.len();
            pending.frame = bytes;
            self.dropped = 0;
        }
        Ok(pending.frame.clone())
    }

    /// The server acked reading `number`: it and everything older are done (acks come in
    /// order).
    pub(super) fn acked(&mut self, number: u64) {
        while self
            .readings
            .front()
            .is_some_and(|pending| pending.number <= number)
        {
            if let Some(done) = self.readings.pop_front() {
                self.bytes -= done.frame.len();
                self.sent = self.sent.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn the_backlog_drops_the_oldest_and_the_next_sent_reading_reports_them() {
        let mut backlog = Backlog::new("run".into(), 3, 10_000);
        for number in 1..=5 {
            backlog.push(number, json!({"n": number}), vec![0; 10]);
        }
        let kept: Vec<u64> = backlog
            .readings
            .iter()
            .map(|pending| pending.number)
            .collect();
        assert_eq!(kept, [3, 4, 5]);
        assert_eq!(backlog.dropped, 2);

        let frame = backlog.frame_to_send(0, Encoding::Json).unwrap();
        let sent: Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(sent["payload"]["dropped"], 2);
        assert_eq!(backlog.dropped, 0);
        // That reading is dropped in turn before its ack: the count goes back to the tally.
        for number in 6..=8 {
            backlog.push(number, json!({"n": number}), vec![0; 10]);
        }
        assert_eq!(backlog.dropped, 3 + 2);

        backlog.acked(7);
        assert_eq!(backlog.readings.len(), 1);
        assert_eq!(backlog.bytes, 10);
    }
}
