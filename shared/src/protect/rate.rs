//! Per-account rate limits, shared by every Lambda instance through DynamoDB: fixed
//! one-second windows with atomic counters, sharded so that no item takes more than
//! [`SHARD_RATE`] writes per second (DynamoDB serves ~1,000 per partition key).
//!
//! Each request costs one conditional `UpdateItem` on a random shard of the current window
//! (`ADD n :1` if `n < cap`); the account's limit is read once a minute per instance. Fixed
//! windows let an account send up to its limit at the end of one second and again at the
//! start of the next: that is the burst (2× the limit over any one-second span, never more).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::AccountId;
use crate::store::StoreError;
use crate::store::dynamo::DynamoStore;

/// Requests per second one window item takes at most.
pub const SHARD_RATE: i64 = 400;
const LIMIT_MAX_AGE: Duration = Duration::from_secs(60);

/// How a limit is spread: (shards, cap per shard).
pub fn plan(limit: i64) -> (i64, i64) {
    let limit = limit.max(1);
    let shards = (limit + SHARD_RATE - 1) / SHARD_RATE;
    (shards, (limit + shards - 1) / shards)
}

#[derive(Default)]
pub struct RateLimiter {
    limits: Mutex<HashMap<AccountId, (Option<i64>, Instant)>>,
}

/// The outcome of a check: `Err(retry_after_secs)` when over the limit.
pub type Verdict = Result<(), i64>;

impl RateLimiter {
    /// Counts the request against the account's limit. A storage failure lets the request
    /// through (logged): the limiter protects the bill, it must not take the API down.
    pub async fn check(&self, store: &DynamoStore, account: &AccountId, now_ms: i64) -> Verdict {
        let limit = match self.limit(store, account).await {
            Ok(Some(l)) if l > 0 => l,
            Ok(_) => return Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "rate limit unreadable; request let through");
                return Ok(());
            }
        };
        let (shards, cap) = plan(limit);
        let shard = random_below(shards);
        let second = now_ms.div_euclid(1000);
        match store.take(account, shard, second, cap).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(1),
            Err(e) => {
                tracing::warn!(error = %e, "rate window unwritable; request let through");
                Ok(())
            }
        }
    }

    async fn limit(&self, store: &DynamoStore, account: &AccountId) -> Result<Option<i64>, StoreError> {
        if let Some((limit, at)) = self.limits.lock().expect("not poisoned").get(account)
            && at.elapsed() < LIMIT_MAX_AGE
        {
            return Ok(*limit);
        }
        let limit = store.rate_limit(account).await?;
        self.limits.lock().expect("not poisoned").insert(account.clone(), (limit, Instant::now()));
        Ok(limit)
    }
}

fn random_below(n: i64) -> i64 {
    if n <= 1 {
        return 0;
    }
    let mut r = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut r);
    (u64::from_le_bytes(r) % n as u64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_spread_over_shards_of_at_most_400() {
        assert_eq!(plan(1), (1, 1));
        assert_eq!(plan(100), (1, 100));
        assert_eq!(plan(400), (1, 400));
        assert_eq!(plan(401), (2, 201));
        assert_eq!(plan(10_000), (25, 400));
        assert_eq!(plan(0), (1, 1));
        for limit in [1, 7, 399, 400, 401, 999, 10_000, 123_457] {
            let (shards, cap) = plan(limit);
            assert!(cap <= SHARD_RATE, "{limit}");
            assert!(shards * cap >= limit && shards * cap < limit + shards, "{limit}");
        }
    }

    #[test]
    fn random_shards_stay_in_range() {
        assert!((0..1000).map(|_| random_below(25)).all(|s| (0..25).contains(&s)));
        assert_eq!(random_below(1), 0);
    }
}
