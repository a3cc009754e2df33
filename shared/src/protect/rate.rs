//! Per-account rate limits, shared by every Lambda instance through DynamoDB: fixed
//! one-second windows, sharded so that no window item takes more than [`SHARD_RATE`] units,
//! and **leased**: an instance takes a batch of units from a window with one conditional
//! `UpdateItem` (`ADD n :lease` if `n + lease <= cap`) and spends them locally, one call after
//! the other, for at most [`LEASE_SECS`] seconds. So the limiter writes once per lease, not once
//! per call: a Lambda instance serves one call at a time, and its lease is sized to about
//! [`LEASE_SECS`] of its own recent demand (at most a quarter of a shard's cap).
//!
//! What it admits: every unit spent was counted in some window before it was spent, and a
//! lease lives at most [`LEASE_SECS`] seconds, so over any T seconds an account gets at most
//! `limit × (T + LEASE_SECS)` units (a 30 s flood: ≤ 1.07× the limit), and at most about twice
//! its limit in any single second (the fixed windows' burst).
//!
//! When a window is full, the instance remembers it for the rest of that second and refuses
//! without writing: a flood costs each instance one write per second, whatever its rate.
//!
//! When the store cannot be written (throttled past the SDK's retries, or down) and no lease is
//! left, the call is refused with `503` (docs/DECISIONS.md): the limiter never lets a call
//! through because its own storage failed. A lease already held is still spent.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::AccountId;
use crate::store::StoreError;
use crate::store::dynamo::DynamoStore;

/// Units per second one window item takes at most.
pub const SHARD_RATE: i64 = 400;
/// How long a lease may be spent, from the start of the window it was counted in.
pub const LEASE_SECS: i64 = 2;
const LIMIT_MAX_AGE: Duration = Duration::from_secs(60);
/// Accounts an instance keeps state for before it forgets them all (a bound on memory).
const ACCOUNTS_MAX: usize = 4096;

/// How a limit is spread: (shards, cap per shard).
pub fn plan(limit: i64) -> (i64, i64) {
    let limit = limit.max(1);
    let shards = (limit + SHARD_RATE - 1) / SHARD_RATE;
    (shards, (limit + shards - 1) / shards)
}

/// How many units to lease for a call of `units`, given this instance's demand in the last
/// full second (`recent`) and a shard's `cap`: about [`LEASE_SECS`] of that demand, at least
/// the call (and a few, so that a fresh instance does not write per call), at most a quarter
/// of the cap (so that several instances share a window), never less than the call itself.
pub fn lease_size(units: i64, recent: i64, cap: i64) -> i64 {
    let most = (cap / 4).max(1);
    let least = 4.min(most);
    (recent * LEASE_SECS).clamp(least, most).max(units)
}

/// Why a call was not admitted.
#[derive(Debug)]
pub enum Refusal {
    /// Over the account's limit: `429` with `Retry-After` (seconds).
    Limited { retry_after: i64 },
    /// The limiter's storage failed and this instance holds no lease: `503`.
    Unavailable(StoreError),
}

#[derive(Default)]
struct Lease {
    /// The window (epoch second) the lease was counted in.
    window: i64,
    left: i64,
}

#[derive(Default)]
struct AccountState {
    lease: Lease,
    /// Units of work done past what its call was charged at admission (see
    /// [`RateLimiter::owe`]), charged on this instance's next admissions for the account.
    debt: i64,
    /// Shards found full in `full_second`.
    full: HashSet<i64>,
    full_second: i64,
    /// Units asked in `second`, and in the second before it.
    second: i64,
    asked: i64,
    asked_before: i64,
}

impl AccountState {
    fn count(&mut self, second: i64, units: i64) {
        if second != self.second {
            self.asked_before = if second == self.second + 1 { self.asked } else { 0 };
            self.second = second;
            self.asked = 0;
        }
        self.asked += units;
    }

    fn take_local(&mut self, second: i64, units: i64) -> bool {
        let lease = &mut self.lease;
        if second < lease.window + LEASE_SECS && lease.left >= units {
            lease.left -= units;
            return true;
        }
        false
    }

    fn full_shards(&mut self, second: i64) -> &mut HashSet<i64> {
        if self.full_second != second {
            self.full.clear();
            self.full_second = second;
        }
        &mut self.full
    }
}

#[derive(Default)]
pub struct RateLimiter {
    limits: Mutex<HashMap<AccountId, (Option<i64>, Instant)>>,
    state: Mutex<HashMap<AccountId, AccountState>>,
}

impl RateLimiter {
    /// Admits a call that costs `units` against the account's limit.
    pub async fn admit(
        &self,
        store: &DynamoStore,
        account: &AccountId,
        units: i64,
        now_ms: i64,
    ) -> Result<(), Refusal> {
        let second = now_ms.div_euclid(1000);
        let (units, recent) = {
            let mut states = self.state.lock().expect("not poisoned");
            if states.len() >= ACCOUNTS_MAX && !states.contains_key(account) {
                states.clear();
            }
            let st = states.entry(account.clone()).or_default();
            // This call's units and what earlier calls still owe.
            let units = units.max(1) + st.debt;
            st.count(second, units);
            if st.take_local(second, units) {
                st.debt = 0;
                return Ok(());
            }
            (units, st.asked_before.max(st.asked))
        };
        let limit = match self.limit(store, account).await.map_err(Refusal::Unavailable)? {
            Some(l) if l > 0 => l,
            // No such account (or no limit set): nothing to count against.
            _ => return Ok(()),
        };
        let (shards, cap) = plan(limit);
        // A call never costs more than one shard's second (else it could never be admitted);
        // what a debt holds past that waits for the next calls.
        let owed_after = (units - cap).max(0);
        let units = units.min(cap);
        // Try up to two shards not yet found full this second.
        for _ in 0..2 {
            let Some(shard) = self.pick_shard(account, second, shards) else { break };
            let want = lease_size(units, recent, cap);
            match store.lease(account, shard, second, cap, want, units).await {
                Ok(granted) if granted >= units => {
                    let mut states = self.state.lock().expect("not poisoned");
                    let st = states.entry(account.clone()).or_default();
                    // A newer lease replaces the old one; the old one's rest is forgone.
                    st.lease = Lease { window: second, left: granted - units };
                    st.debt = owed_after;
                    return Ok(());
                }
                Ok(_) => {
                    let mut states = self.state.lock().expect("not poisoned");
                    states.entry(account.clone()).or_default().full_shards(second).insert(shard);
                }
                Err(e) => {
                    tracing::warn!(error = %e, %account, "rate window unwritable; call refused (503)");
                    return Err(Refusal::Unavailable(e));
                }
            }
        }
        let retry_after = 1;
        Err(Refusal::Limited { retry_after })
    }

    /// Charges `units` of work a call did past what it was charged when admitted (a
    /// 25,000-id segment call is admitted for one unit, and owes the rest): this instance's
    /// next admissions for the account charge them too, a shard's second at a time. The work is
    /// done once; what it costs is paid by the calls that follow, so an account's sustained
    /// rate counts its work, not its calls.
    pub fn owe(&self, account: &AccountId, units: i64) {
        if units > 0 {
            let mut states = self.state.lock().expect("not poisoned");
            states.entry(account.clone()).or_default().debt += units;
        }
    }

    /// A random shard not found full in this second, or `None` when all are.
    fn pick_shard(&self, account: &AccountId, second: i64, shards: i64) -> Option<i64> {
        let mut states = self.state.lock().expect("not poisoned");
        let full = states.entry(account.clone()).or_default().full_shards(second);
        let open: Vec<i64> = (0..shards).filter(|s| !full.contains(s)).collect();
        (!open.is_empty()).then(|| open[random_below(open.len() as i64) as usize])
    }

    /// The account's limit, read once a minute per instance. When the read fails, a limit read
    /// before (however old) is used; with none, the call is refused.
    async fn limit(&self, store: &DynamoStore, account: &AccountId) -> Result<Option<i64>, StoreError> {
        let known = self.limits.lock().expect("not poisoned").get(account).copied();
        if let Some((limit, at)) = known
            && at.elapsed() < LIMIT_MAX_AGE
        {
            return Ok(limit);
        }
        match store.rate_limit(account).await {
            Ok(limit) => {
                let mut limits = self.limits.lock().expect("not poisoned");
                if limits.len() >= ACCOUNTS_MAX {
                    limits.clear();
                }
                limits.insert(account.clone(), (limit, Instant::now()));
                Ok(limit)
            }
            Err(e) => match known {
                Some((limit, _)) => {
                    tracing::warn!(error = %e, %account, "rate limit unreadable; the last one read is used");
                    Ok(limit)
                }
                None => Err(e),
            },
        }
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
    fn leases_follow_demand_within_a_quarter_of_the_cap() {
        assert_eq!(lease_size(1, 0, 100), 4);
        assert_eq!(lease_size(1, 11, 100), 22);
        assert_eq!(lease_size(1, 1000, 100), 25);
        assert_eq!(lease_size(1, 0, 3), 1);
        assert_eq!(lease_size(30, 0, 100), 30);
        assert_eq!(lease_size(1, 50, 400), 100);
    }

    #[test]
    fn a_lease_is_spent_only_within_its_lifetime() {
        let mut st = AccountState { lease: Lease { window: 10, left: 3 }, ..Default::default() };
        assert!(st.take_local(10, 1));
        assert!(st.take_local(11, 2));
        assert!(!st.take_local(11, 1), "spent");
        st.lease.left = 5;
        assert!(!st.take_local(12, 1), "expired");
    }

    #[test]
    fn demand_is_the_last_full_second() {
        let mut st = AccountState::default();
        st.count(5, 1);
        st.count(5, 1);
        st.count(6, 1);
        assert_eq!((st.asked_before, st.asked), (2, 1));
        st.count(9, 1);
        assert_eq!((st.asked_before, st.asked), (0, 1));
    }

    #[test]
    fn random_shards_stay_in_range() {
        assert!((0..1000).map(|_| random_below(25)).all(|s| (0..25).contains(&s)));
        assert_eq!(random_below(1), 0);
    }
}
