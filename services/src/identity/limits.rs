//! The rate limits of the auth routes: per client IP, and per username from one client network.

use serde_json::json;

use super::rules::*;
use super::store::AuditRecord;
use super::{Caller, Identity, IdentityError, RATE_LIMIT_ERRORS_TOTAL, RATE_LIMITED_TOTAL};
use crate::ratelimit::Decision;
use crate::text::escape_free_text;

impl Identity {
    pub(super) async fn limit(
        &self,
        caller: Caller,
        scope: &'static str,
        username: Option<&str>,
    ) -> Result<(), IdentityError> {
        let ip = caller.ip.to_string();
        let mut checks = vec![("ip", ip.clone(), self.inner.ip_rule)];
        // Per username *and client network*: guesses against one name are bounded, but
        // someone elsewhere cannot lock its owner out by failing on purpose.
        if let Some(username) = username {
            let key = format!("{}|{}", username.to_lowercase(), client_network(caller.ip));
            checks.push(("user", key, self.inner.username_rule));
        }
        for (kind, key, rule) in checks {
            let bucket = format!("{scope}:{kind}");
            match self.inner.limiter.check(&bucket, &key, rule).await {
                Ok(Decision::Allowed) => {}
                Ok(Decision::Denied {
                    retry_after,
                    first_denial,
                }) => {
                    metrics::counter!(RATE_LIMITED_TOTAL, "scope" => scope, "key" => kind)
                        .increment(1);
                    // One audit entry per episode, so a flood cannot fill the log.
                    if first_denial {
                        self.record_quietly(AuditRecord {
                            actor_id: None,
                            actor: username.map(|name| escape_free_text(name, 64)),
                            action: "auth.rate_limited",
                            target: Some(format!("{scope}:{kind}")),
                            source_ip: Some(ip.clone()),
                            details: json!({"retry_after_ms": retry_after.as_millis() as u64}),
                        })
                        .await;
                    }
                    return Err(IdentityError::RateLimited { retry_after });
                }
                Err(error) => {
                    // Fail open: an unavailable Redis must not lock everyone out of logging in.
                    metrics::counter!(RATE_LIMIT_ERRORS_TOTAL).increment(1);
                    tracing::warn!(%error, scope, "rate limiter unavailable; allowing the request");
                }
            }
        }
        Ok(())
    }
}
