//! Sending what the outbox holds. One round claims the due deliveries (moving their next
//! attempt past this round's timeout, so that a second deliverer during a leadership hand-over
//! does not take them too), lets the pooled connection go, sends them a few at a time, and
//! records each outcome. A delivery is retried with doubling delays, up to an hour apart,
//! until its retry window has passed; then it is `failed`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use nodegrid_protocol::webhooks::{DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER};

use super::{WEBHOOK_DELIVERIES_TOTAL, WEBHOOK_DELIVERY_SECONDS, WebhookSettings, Webhooks};
use crate::db::DbError;
use crate::keyed::keyed_hash;

/// Deliveries claimed per round.
const CLAIM_BATCH: i64 = 100;
/// The longest delay between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(3_600);
/// Characters of an error kept on a delivery.
const MAX_ERROR_CHARS: usize = 300;

/// The `Nodegrid-Signature` value of `body` sent at `timestamp` (unix seconds):
/// `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let digest = keyed_hash(
        secret.as_bytes(),
        &[timestamp.to_string().as_bytes(), b".", body.as_bytes()],
    );
    format!("t={timestamp},v1={}", crate::text::hex(&digest))
}

/// The delay before attempt `attempts + 1`, after `attempts` failures: the base doubled each
/// time, at most an hour.
pub fn retry_delay(base: Duration, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(20);
    base.saturating_mul(1u32 << doublings).min(MAX_RETRY_DELAY)
}

struct Due {
    id: i64,
    event_type: String,
    body: String,
    attempts: i32,
    created_at: DateTime<Utc>,
    url: String,
    secret: String,
}

enum Outcome {
    Delivered(u16),
    Refused(u16),
    Unreachable(String),
}

/// What a round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub delivered: usize,
    pub retried: usize,
    pub failed: usize,
}

/// The HTTP client could not be built (the TLS-less client fails only when the system
/// refuses it resources).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the webhook HTTP client: {0}")]
pub struct DelivererSetupError(#[from] reqwest::Error);

/// Sends due deliveries; run by the housekeeping leader only.
#[derive(Clone)]
pub struct Deliverer {
    webhooks: Webhooks,
    http: reqwest::Client,
}

impl Deliverer {
    pub fn new(webhooks: Webhooks) -> Result<Deliverer, DelivererSetupError> {
        let http = reqwest::Client::builder()
            .timeout(webhooks.settings().timeout)
            .connect_timeout(webhooks.settings().timeout)
            // A receiver does not get to send nodegrid elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            // A connection per attempt: deliveries are seconds apart, and a kept-alive
            // connection the receiver has closed meanwhile would fail the next one.
            .pool_max_idle_per_host(0)
            .user_agent(concat!("nodegrid-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Deliverer { webhooks, http })
    }

    fn settings(&self) -> &WebhookSettings {
        self.webhooks.settings()
    }

    /// One round: claim, send, record. Returns what happened.
    pub async fn round(&self) -> Result<RoundReport, DbError> {
        let due = self.claim().await?;
        if due.is_empty() {
            return Ok(RoundReport::default());
        }
        let outcomes: Vec<(Due, Outcome)> = futures_util::stream::iter(due)
            .map(|due| async move {
                let outcome = self.send(&due).await;
                (due, outcome)
            })
            .buffer_unordered(self.settings().concurrency.max(1))
            .collect()
            .await;
        let mut report = RoundReport::default();
        let client = self.webhooks.database().client().await?;
        for (due, outcome) in outcomes {
            let attempts = due.attempts.saturating_add(1);
            let (status, error) = match outcome {
                Outcome::Delivered(status) => {
                    client
                        .execute(
                            "UPDATE webhook_deliveries SET status = 'delivered', attempts = $2,
                                 delivered_at = now(), last_status = $3, last_error = NULL
                             WHERE id = $1 AND status = 'pending'",
                            &[&due.id, &attempts, &i32::from(status)],
                        )
                        .await?;
                    report.delivered += 1;
                    metrics::counter!(WEBHOOK_DELIVERIES_TOTAL, "outcome" => "delivered")
                        .increment(1);
                    continue;
                }
                Outcome::Refused(status) => (
                    Some(i32::from(status)),
                    format!("the receiver answered {status}"),
                ),
                Outcome::Unreachable(error) => (None, error),
            };
            let delay = retry_delay(
                self.settings().retry_base,
                u32::try_from(attempts).unwrap_or(0),
            );
            let next = Utc::now()
                + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1));
            let window = chrono::Duration::from_std(self.settings().retry_for)
                .unwrap_or(chrono::Duration::days(1));
            let give_up = next > due.created_at + window;
            client
                .execute(
                    "UPDATE webhook_deliveries SET status = $2, attempts = $3,
                                 next_attempt_at = $4, last_status = $5, last_error = $6
                             WHERE id = $1 AND status = 'pending'",
                    &[
                        &due.id,
                        &if give_up { "failed" } else { "pending" },
                        &attempts,
                        &next,
                        &status,
                        &error.chars().take(MAX_ERROR_CHARS).collect::<String>(),
                    ],
                )
                .await?;
            let outcome = if give_up {
                report.failed += 1;
                "failed"
            } else {
                report.retried += 1;
                "retried"
            };
            metrics::counter!(WEBHOOK_DELIVERIES_TOTAL, "outcome" => outcome).increment(1);
            tracing::debug!(
                delivery = due.id,
                event = %due.event_type,
                attempts,
                %error,
                outcome,
                "a webhook delivery did not succeed"
            );
        }
        Ok(report)
    }

    /// Takes the due deliveries of live webhooks, moving their next attempt past this round.
    async fn claim(&self) -> Result<Vec<Due>, DbError> {
        let client = self.webhooks.database().client().await?;
        // Held past the longest this round can take: every claimed row sent in turn by the
        // concurrent senders, each up to the timeout, and a margin.
        let turns = (CLAIM_BATCH as f64 / self.settings().concurrency.max(1) as f64).ceil();
        let hold = self.settings().timeout.as_secs_f64() * turns + 30.0;
        let rows = client
            .query(
                "UPDATE webhook_deliveries d
                 SET next_attempt_at = now() + make_interval(secs => $2)
                 FROM webhooks w
                 WHERE d.id IN (SELECT id FROM webhook_deliveries
                                WHERE status = 'pending' AND next_attempt_at <= now()
                                ORDER BY next_attempt_at LIMIT $1
                                FOR UPDATE SKIP LOCKED)
                   AND w.id = d.webhook_id AND w.deleted_at IS NULL
                 RETURNING d.id, d.event_type, d.body, d.attempts, d.created_at, w.url, w.secret",
                &[&CLAIM_BATCH, &hold],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| Due {
                id: row.get(0),
                event_type: row.get(1),
                body: row.get(2),
                attempts: row.get(3),
                created_at: row.get(4),
                url: row.get(5),
                secret: row.get(6),
            })
            .collect())
    }

    async fn send(&self, due: &Due) -> Outcome {
        // The host is checked again: the allowed list may have narrowed since registration.
        if let Err(error) = self.webhooks.check_url(&due.url) {
            return Outcome::Unreachable(error.to_string());
        }
        let started = Instant::now();
        let timestamp = Utc::now().timestamp();
        let sent = self
            .http
            .post(&due.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(EVENT_HEADER, &due.event_type)
            .header(DELIVERY_HEADER, due.id.to_string())
            .header(
                SIGNATURE_HEADER,
                signature(&due.secret, timestamp, &due.body),
            )
            .body(due.body.clone())
            .send()
            .await;
        metrics::histogram!(WEBHOOK_DELIVERY_SECONDS).record(started.elapsed().as_secs_f64());
        match sent {
            Ok(response) if response.status().is_success() => {
                Outcome::Delivered(response.status().as_u16())
            }
            Ok(response) => Outcome::Refused(response.status().as_u16()),
            // Without the URL: reqwest's errors name it, and it is the admin's to see, not
            // the log's.
            Err(error) => Outcome::Unreachable(describe(error)),
        }
    }

    /// Deletes delivered and failed deliveries older than the settings keep, and every delivery
    /// of a webhook deleted that long ago.
    pub async fn prune(&self) -> Result<u64, DbError> {
        let client = self.webhooks.database().client().await?;
        let keep = self.settings().keep.as_secs_f64();
        Ok(client
            .execute(
                "DELETE FROM webhook_deliveries d
                 WHERE (d.status <> 'pending' AND d.created_at < now() - make_interval(secs => $1))
                    OR EXISTS (SELECT 1 FROM webhooks w WHERE w.id = d.webhook_id
                               AND w.deleted_at < now() - make_interval(secs => $1))",
                &[&keep],
            )
            .await?)
    }
}

/// What went wrong, in the error's own words with its causes, but without the URL (it is the
/// admin's to see in the webhook, not every delivery's).
fn describe(error: reqwest::Error) -> String {
    if error.is_timeout() {
        return "no answer within the timeout".into();
    }
    if error.is_redirect() {
        return "the receiver redirected (redirects are not followed)".into();
    }
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_up_to_an_hour() {
        let base = Duration::from_secs(10);
        assert_eq!(retry_delay(base, 1), Duration::from_secs(10));
        assert_eq!(retry_delay(base, 2), Duration::from_secs(20));
        assert_eq!(retry_delay(base, 4), Duration::from_secs(80));
        assert_eq!(retry_delay(base, 30), MAX_RETRY_DELAY);
    }

    #[test]
    fn the_signature_is_an_hmac_of_the_timestamp_and_the_body() {
        let signed = signature("whsec_0123456789abcdef", 1_700_000_000, "{}");
        assert!(signed.starts_with("t=1700000000,v1="));
        assert_eq!(signed.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(
            signed,
            signature("another-secret-0123", 1_700_000_000, "{}")
        );
    }
}
