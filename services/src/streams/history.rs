//! A producer's history: its last messages, in Redis, for consumers that come back.
//!
//! The publish script appends each message's consumer frame to a Redis Stream per producer,
//! with the entry id `<seq>-0`, trimmed to about the producer's history length on append
//! (`MAXLEN ~`); the stream expires when the producer has been silent for the history's age.
//! Reads are exact where the trimming is approximate: they leave out what is beyond the last
//! `history_messages` sequence numbers or older than `history_age_secs`.
//!
//! The **epoch** names one unbroken numbering of the producer's messages. It changes only when
//! the sequence counter was lost (Redis flushed, or failed over without persistence); a
//! consumer that resumes with an epoch other than the current one is told its position no
//! longer holds.

use fred::types::Value as RedisValue;
use fred::types::scripts::Script;
use nodegrid_protocol::stream::StreamPolicy;

use crate::bus::{BusError, RedisBus};

/// KEYS: seq counter, epoch, history stream. ARGV: first entry id wanted, most entries.
/// Returns {last seq, epoch, oldest seq held (0: none), then seq and frame per entry}.
const READ_SCRIPT: &str = r#"
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = redis.call('GET', KEYS[2]) or ''
local oldest = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
local out = {last, epoch, 0}
if oldest[1] then
  out[3] = tonumber(string.match(oldest[1][1], '^(%d+)'))
end
local entries = redis.call('XRANGE', KEYS[3], ARGV[1], '+', 'COUNT', ARGV[2])
for _, entry in ipairs(entries) do
  out[#out + 1] = tonumber(string.match(entry[1], '^(%d+)'))
  out[#out + 1] = entry[2][2]
end
return out
"#;

/// One message from history: its sequence number and its consumer frame, as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub seq: u64,
    pub frame: String,
}

/// A read of a producer's history.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryPage {
    /// The current epoch; empty before the producer's first message.
    pub epoch: String,
    /// The producer's latest sequence number.
    pub last_seq: u64,
    /// The oldest sequence number history still holds, within the policy's window.
    pub first_seq: Option<u64>,
    /// Entries after the asked position, oldest first, within the window.
    pub entries: Vec<HistoryEntry>,
    /// The read stopped at its limit: more entries follow.
    pub more: bool,
}

impl HistoryPage {
    /// Where a consumer that last saw `since_seq` of `epoch` stands: the range it will not
    /// get, if any, as `(from_seq, to_seq)`. A different epoch always reports one (the
    /// numbering restarted); `to_seq < from_seq` then means nothing of the new epoch is
    /// missing.
    pub fn gap(&self, since_seq: u64, epoch: Option<&str>) -> Option<(u64, u64)> {
        let epoch_changed =
            epoch.is_some_and(|epoch| epoch != self.epoch) && !self.epoch.is_empty();
        let after = if epoch_changed { 0 } else { since_seq };
        let first_available = match (self.entries.first(), self.first_seq) {
            (Some(entry), _) => entry.seq,
            (None, Some(first)) if first > after => first,
            _ => self.last_seq.max(after) + 1,
        };
        if epoch_changed || first_available > after + 1 {
            Some((after + 1, first_available - 1))
        } else {
            None
        }
    }
}

/// The position a resume starts from once the epoch is known: after `since_seq` in the same
/// epoch, from the start of history in a new one.
pub fn resume_after(page: &HistoryPage, since_seq: u64, epoch: Option<&str>) -> u64 {
    match epoch {
        Some(epoch) if !page.epoch.is_empty() && epoch != page.epoch => 0,
        _ => since_seq,
    }
}

#[derive(Clone)]
pub struct StreamHistory {
    bus: RedisBus,
    script: Script,
}

impl StreamHistory {
    pub fn new(bus: RedisBus) -> StreamHistory {
        StreamHistory {
            bus,
            script: Script::from_lua(READ_SCRIPT),
        }
    }

    /// Up to `limit` messages of `producer_id` after `after_seq`, within `policy`'s window at
    /// `now_ms`. One round trip.
    pub async fn read(
        &self,
        producer_id: i64,
        after_seq: u64,
        limit: usize,
        policy: StreamPolicy,
        now_ms: i64,
    ) -> Result<HistoryPage, BusError> {
        let keys = self.bus.keys();
        // One more than asked, to know whether more follow.
        let asked = limit.saturating_add(1);
        let answer: Vec<RedisValue> = self
            .script
            .evalsha_with_reload(
                self.bus.publisher(),
                vec![
                    keys.producer_seq(producer_id),
                    keys.producer_epoch(producer_id),
                    keys.producer_history(producer_id),
                ],
                vec![
                    format!("{}-0", after_seq.saturating_add(1)),
                    asked.to_string(),
                ],
            )
            .await?;
        parse_page(answer, limit, policy, now_ms)
    }
}

fn parse_page(
    answer: Vec<RedisValue>,
    limit: usize,
    policy: StreamPolicy,
    now_ms: i64,
) -> Result<HistoryPage, BusError> {
    let unexpected = || BusError::Unexpected("the history script answered a wrong shape".into());
    let mut values = answer.into_iter();
    let last_seq = values
        .next()
        .and_then(|value| value.as_u64())
        .ok_or_else(unexpected)?;
    let epoch = values
        .next()
        .and_then(|value| value.into_string())
        .ok_or_else(unexpected)?;
    let oldest = values
        .next()
        .and_then(|value| value.as_u64())
        .ok_or_else(unexpected)?;
    // The window: the last `history_messages` numbers, and nothing older than the age.
    let window_start = last_seq
        .saturating_sub(u64::from(policy.history_messages))
        .saturating_add(1);
    let age_ms = i64::try_from(policy.history_age_secs.saturating_mul(1_000)).unwrap_or(i64::MAX);
    let oldest_ts = now_ms.saturating_sub(age_ms);
    let mut entries = Vec::new();
    let mut more = false;
    let mut rest = values;
    while let (Some(seq), Some(frame)) = (rest.next(), rest.next()) {
        let (Some(seq), Some(frame)) = (seq.as_u64(), frame.into_string()) else {
            return Err(unexpected());
        };
        if seq < window_start || frame_ts(&frame).is_some_and(|ts| ts < oldest_ts) {
            continue;
        }
        if entries.len() == limit {
            more = true;
            break;
        }
        entries.push(HistoryEntry { seq, frame });
    }
    let first_seq = if policy.history_messages == 0 || oldest == 0 {
        None
    } else {
        // What is left of history once the window is applied: the first kept entry if this
        // read started at the beginning, else at least the window's start.
        Some(oldest.max(window_start))
    };
    Ok(HistoryPage {
        epoch,
        last_seq,
        first_seq,
        entries,
        more,
    })
}

/// The `ts` of a published frame, read without decoding it: the publisher writes
/// `…,"ts":<ms>,"payload":…` (see `publisher::OutgoingMessage`).
pub fn frame_ts(frame: &str) -> Option<i64> {
    let after = frame.split_once(",\"ts\":")?.1;
    let end = after.find(',')?;
    after[..end].parse().ok()
}

/// The `seq` of a published frame, read without decoding it.
pub fn frame_seq(frame: &str) -> Option<u64> {
    let after = frame.split_once(",\"seq\":")?.1;
    let end = after.find(',')?;
    after[..end].parse().ok()
}

/// A published frame's `epoch` field, read without decoding the whole frame.
pub fn frame_epoch(frame: &str) -> Option<&str> {
    let after = frame.split_once(",\"epoch\":\"")?.1;
    Some(&after[..after.find('"')?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_is_read_from_a_published_frame() {
        let frame =
            r#"{"type":"data","producer_id":5,"seq":12,"epoch":"3f9c0d2e","ts":1,"payload":{}}"#;
        assert_eq!(frame_epoch(frame), Some("3f9c0d2e"));
        assert_eq!(frame_seq(frame), Some(12));
        assert_eq!(frame_epoch(r#"{"type":"data","seq":1}"#), None);
    }

    fn page(epoch: &str, last_seq: u64, first_seq: Option<u64>, seqs: &[u64]) -> HistoryPage {
        HistoryPage {
            epoch: epoch.into(),
            last_seq,
            first_seq,
            entries: seqs
                .iter()
                .map(|&seq| HistoryEntry {
                    seq,
                    frame: String::new(),
                })
                .collect(),
            more: false,
        }
    }

    #[test]
    fn no_gap_when_history_reaches_the_next_message() {
        assert_eq!(
            page("e", 10, Some(1), &[6, 7, 8, 9, 10]).gap(5, Some("e")),
            None
        );
        // Nothing missed at all.
        assert_eq!(page("e", 10, Some(1), &[]).gap(10, Some("e")), None);
        // No epoch given: the position is taken as it is.
        assert_eq!(page("e", 10, Some(1), &[6]).gap(5, None), None);
    }

    #[test]
    fn a_gap_names_what_left_the_window() {
        assert_eq!(
            page("e", 10, Some(8), &[8, 9, 10]).gap(3, Some("e")),
            Some((4, 7))
        );
        // History expired entirely: everything after the position up to the last is gone.
        assert_eq!(page("e", 10, None, &[]).gap(3, Some("e")), Some((4, 10)));
    }

    #[test]
    fn a_new_epoch_always_reports_a_gap() {
        assert_eq!(
            page("new", 3, Some(1), &[1, 2, 3]).gap(50, Some("old")),
            Some((1, 0))
        );
        assert_eq!(
            page("new", 5, Some(3), &[3, 4, 5]).gap(50, Some("old")),
            Some((1, 2))
        );
        assert_eq!(resume_after(&page("new", 5, None, &[]), 50, Some("old")), 0);
        assert_eq!(resume_after(&page("e", 5, None, &[]), 50, Some("e")), 50);
    }

    #[test]
    fn frames_are_read_without_decoding() {
        let frame = r#"{"type":"data","producer_id":7,"seq":42,"epoch":"ab","ts":1700000000123,"payload":{"seq":1,"ts":2}}"#;
        assert_eq!(frame_seq(frame), Some(42));
        assert_eq!(frame_ts(frame), Some(1_700_000_000_123));
    }
}
