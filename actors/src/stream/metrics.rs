//! The streaming metrics. Handles are created once, so the hot path only bumps atomics.

use std::sync::LazyLock;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use nodegrid_protocol::stream::StreamErrorCode;

pub const CONNECTIONS: &str = "nodegrid_ws_connections";
pub const FRAMES_IN: &str = "nodegrid_ws_frames_in_total";
pub const FRAMES_OUT: &str = "nodegrid_ws_frames_out_total";
pub const BYTES_IN: &str = "nodegrid_ws_bytes_in_total";
pub const BYTES_OUT: &str = "nodegrid_ws_bytes_out_total";
pub const ERRORS: &str = "nodegrid_ws_errors_total";
pub const CLOSES: &str = "nodegrid_ws_closes_total";
pub const PUBLISH_SECONDS: &str = "nodegrid_stream_publish_duration_seconds";
pub const DELIVERY_SECONDS: &str = "nodegrid_stream_delivery_latency_seconds";
pub const BUS_MESSAGES: &str = "nodegrid_stream_bus_messages_total";
pub const DUPLICATES: &str = "nodegrid_stream_duplicates_total";
pub const UNDECODABLE: &str = "nodegrid_stream_bus_undecodable_total";
pub const PUBLISH_BATCH: &str = "nodegrid_stream_publish_batch_messages";
pub const RESUMES: &str = "nodegrid_stream_resumes_total";
pub const CATCH_UPS: &str = "nodegrid_stream_catch_ups_total";
pub const SUBSCRIPTION_PROBES_REPEATED: &str = "nodegrid_stream_subscription_probes_repeated_total";
pub const HISTORY_REPLAYED: &str = "nodegrid_stream_history_replayed_total";
pub const HISTORY_LENGTH: &str = "nodegrid_stream_history_length_messages";

pub struct RoleMetrics {
    pub connections: Gauge,
    /// Frames in, by what they turned out to be: `data`, `subscription`, or `invalid`
    /// (undecodable, oversized, unknown type, or not allowed for the role).
    pub frames_in_data: Counter,
    pub frames_in_subscription: Counter,
    pub frames_in_invalid: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
}

impl RoleMetrics {
    fn new(role: &'static str) -> RoleMetrics {
        RoleMetrics {
            connections: gauge!(CONNECTIONS, "role" => role),
            frames_in_data: counter!(FRAMES_IN, "role" => role, "type" => "data"),
            frames_in_subscription: counter!(FRAMES_IN, "role" => role, "type" => "subscription"),
            frames_in_invalid: counter!(FRAMES_IN, "role" => role, "type" => "invalid"),
            bytes_in: counter!(BYTES_IN, "role" => role),
            bytes_out: counter!(BYTES_OUT, "role" => role),
        }
    }
}

pub struct StreamMetrics {
    pub producer: RoleMetrics,
    pub consumer: RoleMetrics,
    pub acks: Counter,
    pub data_out: Counter,
    pub publish_seconds: Histogram,
    pub delivery_seconds: Histogram,
    pub bus_messages: Counter,
    pub duplicates: Counter,
    pub undecodable: Counter,
    pub publish_batch: Histogram,
    /// Resumes by outcome: everything missed was in history, a gap was reported, or the
    /// epoch had changed.
    pub resumes_complete: Counter,
    pub resumes_with_gap: Counter,
    pub resumes_epoch_changed: Counter,
    pub history_replayed: Counter,
    pub history_length: Histogram,
    /// Sessions that caught up from history after the Redis subscriber reconnected.
    pub catch_ups: Counter,
    /// Producer-channel subscriptions whose probe did not come back in time and that were
    /// sent again (Redis slow to take the SUBSCRIBE, or a subscriber connection lost).
    pub subscription_probes_repeated: Counter,
}

pub static STREAM: LazyLock<StreamMetrics> = LazyLock::new(|| StreamMetrics {
    producer: RoleMetrics::new("producer"),
    consumer: RoleMetrics::new("consumer"),
    acks: counter!(FRAMES_OUT, "role" => "producer", "type" => "ack"),
    data_out: counter!(FRAMES_OUT, "role" => "consumer", "type" => "data"),
    publish_seconds: histogram!(PUBLISH_SECONDS),
    delivery_seconds: histogram!(DELIVERY_SECONDS),
    bus_messages: counter!(BUS_MESSAGES),
    duplicates: counter!(DUPLICATES),
    undecodable: counter!(UNDECODABLE),
    publish_batch: histogram!(PUBLISH_BATCH),
    resumes_complete: counter!(RESUMES, "outcome" => "complete"),
    resumes_with_gap: counter!(RESUMES, "outcome" => "gap"),
    resumes_epoch_changed: counter!(RESUMES, "outcome" => "epoch_changed"),
    history_replayed: counter!(HISTORY_REPLAYED),
    history_length: histogram!(HISTORY_LENGTH),
    catch_ups: counter!(CATCH_UPS),
    subscription_probes_repeated: counter!(SUBSCRIPTION_PROBES_REPEATED),
});

/// The instance's own running totals of what the admin view shows as rates (the Prometheus
/// handles cannot be read back).
pub struct Totals {
    /// Messages acked to producers.
    pub acked: std::sync::atomic::AtomicU64,
    /// Data frames queued to consumers.
    pub delivered: std::sync::atomic::AtomicU64,
}

pub static TOTALS: Totals = Totals {
    acked: std::sync::atomic::AtomicU64::new(0),
    delivered: std::sync::atomic::AtomicU64::new(0),
};

/// Counts an error frame sent on a socket (a rare path: no cached handle).
pub fn error(role: &'static str, code: StreamErrorCode) {
    counter!(ERRORS, "role" => role, "code" => code.as_str()).increment(1);
}

/// Counts a close the server initiated, by reason.
pub fn closed(role: &'static str, reason: &'static str) {
    counter!(CLOSES, "role" => role, "reason" => reason).increment(1);
}

pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(CONNECTIONS, "Open WebSocket connections, by role.");
    describe_counter!(
        FRAMES_IN,
        "Frames received on sockets, by role and type (data, subscription, invalid)."
    );
    describe_counter!(
        FRAMES_OUT,
        "Frames sent on sockets, by role and type (ack, data)."
    );
    describe_counter!(BYTES_IN, Unit::Bytes, "Bytes received on sockets, by role.");
    describe_counter!(BYTES_OUT, Unit::Bytes, "Bytes queued to sockets, by role.");
    describe_counter!(ERRORS, "Error frames sent, by role and code.");
    describe_counter!(
        CLOSES,
        "Connections the server closed, by role and reason (slow_consumer, user_blocked, idle_timeout, too_many_errors, too_large, server_shutdown)."
    );
    describe_histogram!(
        PUBLISH_SECONDS,
        Unit::Seconds,
        "Time to stamp and publish one batch of a producer's messages on Redis."
    );
    describe_histogram!(
        DELIVERY_SECONDS,
        Unit::Seconds,
        "From a message's server timestamp to its arrival at this instance's fan-out."
    );
    describe_counter!(
        BUS_MESSAGES,
        "Producer messages received from Redis for local fan-out."
    );
    describe_counter!(
        DUPLICATES,
        "Producer messages resent with an id already published (acked again, not published again)."
    );
    describe_counter!(
        UNDECODABLE,
        "Messages on producer channels that were not text, and were dropped."
    );
    describe_histogram!(
        PUBLISH_BATCH,
        "Messages of one producer published in one Redis round trip."
    );
    describe_counter!(
        RESUMES,
        "Consumer resumes, by outcome (complete: everything missed was in history; gap: a gap frame was sent; epoch_changed: the producer's history had been reset)."
    );
    describe_counter!(
        CATCH_UPS,
        "Sessions that caught up from history after the Redis subscriber reconnected (counted per session and producer)."
    );
    describe_counter!(
        SUBSCRIPTION_PROBES_REPEATED,
        "Producer-channel subscriptions sent again because their probe did not come back in time."
    );
    describe_counter!(
        HISTORY_REPLAYED,
        "Messages sent from history to resuming consumers."
    );
    describe_histogram!(
        HISTORY_LENGTH,
        "Messages a producer's history held when a consumer resumed or read it."
    );
}
