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
        // One slot for the bucket and its denial marker (the script takes both).
        let bucket = format!("{}:{{{scope}:{key}}}", self.prefix);
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

/// Token buckets kept in this process, for limits that must cost no round trip (the public
/// pNode API, whose answers take well under a millisecond). Each instance counts on its own:
/// behind a load balancer over N instances a client gets up to N times the rate.
///
/// The lock is held only for one bucket's arithmetic, never across an await. The map is
/// bounded: when it reaches `max_keys`, buckets that have refilled (idle clients) are dropped,
/// and if none has, the new key is refused rather than grown without limit.
/// One key's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: std::time::Instant,
    per_sec: f64,
    burst: f64,
}

pub struct LocalRateLimiter<K = std::net::IpAddr> {
    per_sec: f64,
    burst: f64,
    max_keys: usize,
    /// Each key's tokens, when they were counted, and its own rate and burst.
    buckets: std::sync::Mutex<std::collections::HashMap<K, Bucket>>,
}

impl<K: std::hash::Hash + Eq> LocalRateLimiter<K> {
    /// `per_sec` sustained, `burst` at once; `per_sec == 0` turns the limit off.
    pub fn new(per_sec: u32, burst: u32, max_keys: usize) -> LocalRateLimiter<K> {
        LocalRateLimiter {
            per_sec: f64::from(per_sec),
            burst: f64::from(burst.max(1)),
            max_keys: max_keys.max(1),
            buckets: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    pub fn is_off(&self) -> bool {
        self.per_sec <= 0.0
    }

    /// Takes a token for `key` at `now`; `Err(retry_after)` when there is none.
    pub fn check(&self, key: K, now: std::time::Instant) -> Result<(), Duration> {
        if self.is_off() {
            return Ok(());
        }
        self.check_at(key, self.per_sec, self.burst, now)
    }

    /// The same at a rate of the key's own (an API token's), `burst` at least 1.
    pub fn check_at(
        &self,
        key: K,
        per_sec: f64,
        burst: f64,
        now: std::time::Instant,
    ) -> Result<(), Duration> {
        let burst = burst.max(1.0);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !buckets.contains_key(&key) && buckets.len() >= self.max_keys {
            // Each bucket refills at its own rate: those full again belong to idle keys.
            buckets.retain(|_, bucket| {
                bucket.tokens
                    + now.saturating_duration_since(bucket.at).as_secs_f64() * bucket.per_sec
                    < bucket.burst
            });
            if buckets.len() >= self.max_keys {
                return Err(Duration::from_secs(1));
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
            per_sec,
            burst,
        });
        bucket.per_sec = per_sec;
        bucket.burst = burst;
        bucket.tokens = (bucket.tokens
            + now.saturating_duration_since(bucket.at).as_secs_f64() * per_sec)
            .min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_local_bucket_allows_its_burst_then_refills_at_its_rate() {
        let limiter = LocalRateLimiter::new(10, 3, 100);
        let (client, start) = (IpAddr::from([10, 0, 0, 1]), Instant::now());
        for _ in 0..3 {
            assert_eq!(limiter.check(client, start), Ok(()));
        }
        let retry = limiter.check(client, start).unwrap_err();
        assert!(
            retry > Duration::ZERO && retry <= Duration::from_millis(100),
            "{retry:?}"
        );
        assert_eq!(
            limiter.check(client, start + Duration::from_millis(100)),
            Ok(())
        );
        assert!(
            limiter.check(IpAddr::from([10, 0, 0, 2]), start).is_ok(),
            "per client"
        );
        assert!(
            LocalRateLimiter::new(0, 0, 1).check(client, start).is_ok(),
            "0 is off"
        );
    }

    #[test]
    fn the_local_map_stays_bounded() {
        let limiter = LocalRateLimiter::new(1, 1, 2);
        let start = Instant::now();
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        assert!(limiter.check(ip(1), start).is_ok());
        assert!(limiter.check(ip(2), start).is_ok());
        assert!(
            limiter.check(ip(3), start).is_err(),
            "full of busy clients: refused"
        );
        // A second later both have refilled and make room.
        assert!(limiter.check(ip(3), start + Duration::from_secs(2)).is_ok());
    }
}
