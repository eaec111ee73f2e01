//! Token-bucket rate limits kept in Redis, so that every instance counts against the same
//! bucket.
//!
//! A bucket holds up to `burst` tokens and refills at `per_minute / 60` tokens a second; each
//! request takes one. The arithmetic runs in one Lua script on Redis's clock, so instances with
//! skewed clocks agree. A denied request also learns whether it is the first denial of the
//! current wait, which lets callers record one audit entry per episode instead of one per try.

use std::time::Duration;

use fred::prelude::LuaInterface;

use crate::bus::{BusError, RedisBus, RedisClient};

const TOKEN_BUCKET_SCRIPT: &str = r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local burst = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * per_ms)
local allowed, retry_ms, first = 0, 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_ms = math.ceil((1 - tokens) / per_ms)
  if redis.call('SET', KEYS[2], '1', 'NX', 'PX', retry_ms) then first = 1 end
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / per_ms) + 1000)
return {allowed, retry_ms, first}
"#;

/// One limit: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateRule {
    pub per_minute: u32,
    pub burst: u32,
}

/// The outcome of one request against a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Denied {
        retry_after: Duration,
        first_denial: bool,
    },
}

#[derive(Clone)]
pub struct RateLimiter {
    client: RedisClient,
    prefix: String,
}

impl RateLimiter {
    pub fn new(bus: &RedisBus) -> RateLimiter {
        RateLimiter {
            client: bus.publisher().clone(),
            prefix: format!("{}:rl", bus.keys().prefix()),
        }
    }

    /// Takes one token from bucket `scope:key` under `rule`.
    pub async fn check(
        &self,
        scope: &str,
        key: &str,
        rule: RateRule,
    ) -> Result<Decision, BusError> {
        if rule.per_minute == 0 || rule.burst == 0 {
            return Ok(Decision::Allowed);
        }
        let bucket = format!("{}:{scope}:{key}", self.prefix);
        let denial = format!("{bucket}:denied");
        let per_ms = f64::from(rule.per_minute) / 60_000.0;
        let (allowed, retry_ms, first): (i64, i64, i64) = self
            .client
            .eval(
                TOKEN_BUCKET_SCRIPT,
                vec![bucket, denial],
                vec![rule.burst.to_string(), per_ms.to_string()],
            )
            .await?;
        if allowed == 1 {
            return Ok(Decision::Allowed);
        }
        Ok(Decision::Denied {
            retry_after: Duration::from_millis(u64::try_from(retry_ms).unwrap_or(1).max(1)),
            first_denial: first == 1,
        })
    }
}
