//! The one way in for a producer's messages, whether they come on its socket or through the
//! publish API: the producer's policy, the shared rate, one publish round trip per batch, and
//! the hand-off of accepted messages to the data writer when the producer's data is stored.

use std::sync::Arc;
use std::time::Instant;

use actix::Recipient;
use nodegrid_services::streams::data::StoredRow;
use nodegrid_services::streams::policies::ProducerPolicies;
use nodegrid_services::streams::publisher::{
    OutgoingMessage, ProducerRate, ProducerScript, PublishError, PublishOutcome, PublishedBatch,
    StreamPublisher,
};

use crate::stream::metrics::STREAM;
use crate::stream::writer::StoreRows;

#[derive(Clone)]
pub struct Ingest {
    pub publisher: StreamPublisher,
    pub policies: ProducerPolicies,
    pub writer: Recipient<StoreRows>,
    pub rate: ProducerRate,
}

impl Ingest {
    /// Publishes `messages` of a producer, in order, in one round trip; `seq_floor` as
    /// [`StreamPublisher::publish`] takes it. Accepted messages of a producer whose data is
    /// stored go to the writer before this returns (the caller acks without waiting for it).
    pub async fn publish(
        &self,
        producer: &ProducerScript,
        messages: &[OutgoingMessage],
        seq_floor: Option<u64>,
    ) -> Result<PublishedBatch, PublishError> {
        let producer_id = producer.producer_id();
        let policy = self.policies.policy(producer_id);
        let started = Instant::now();
        let outcome = self
            .publisher
            .publish(producer, messages, seq_floor, policy, self.rate)
            .await;
        STREAM
            .publish_seconds
            .record(started.elapsed().as_secs_f64());
        STREAM.publish_batch.record(messages.len() as f64);
        if let Ok(batch) = &outcome
            && policy.store_data
        {
            self.store(producer_id, messages, batch);
        }
        outcome
    }

    fn store(&self, producer_id: i64, messages: &[OutgoingMessage], batch: &PublishedBatch) {
        let epoch: Arc<str> = Arc::from(batch.epoch.as_str());
        let rows: Vec<StoredRow> = messages
            .iter()
            .zip(&batch.messages)
            .filter(|(_, published)| matches!(published.outcome, PublishOutcome::Published { .. }))
            .map(|(message, published)| StoredRow {
                producer_id,
                ts: message.ts,
                seq: published.seq,
                epoch: epoch.clone(),
                payload: message.payload_json().to_owned(),
            })
            .collect();
        if !rows.is_empty() {
            self.writer.do_send(StoreRows(rows));
        }
    }
}
