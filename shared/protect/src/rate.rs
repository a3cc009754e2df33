//! Per-account rate limits, shared by every Lambda instance through DynamoDB: fixed
//! one-second windows, sharded so that no window takes more than [`SHARD_RATE`] units,
//! and **leased**: an instance takes a batch of units with one conditional `UpdateItem` and
//! spends them locally, one call after the other. So the limiter writes once per lease, not
//! once per call: a Lambda instance serves one call at a time.
//!
//! One window item holds the counters of a **block** of [`BLOCK_SECS`] consecutive seconds
//! (`n0`..`n3`), so one lease reserves units in every remaining second of the block at once
//! (`ADD n1 :a, n2 :b, ...` if each stays `<= cap`): about one second of the instance's recent
//! demand per second (at most a quarter of a shard's cap each), the current second's scaled
//! to what is left of it, the block's last one doubled to bridge into the next block. Units
//! counted in second `w` are spent only in `[w, w + LEASE_SECS)`. A steadily busy instance
//! thus writes about once per block (4 s), not once per one-second window (measured: the
//! single-user merge's protections were 0.069 WCU per call at 13 calls/s of one instance).
//!
//! What it admits: every unit spent was counted in the window of a second no later than the
//! one it is spent in, and at most [`LEASE_SECS`] seconds earlier, so over any T seconds an
//! account gets at most `limit × (T + LEASE_SECS)` units (a 30 s flood: ≤ 1.07× the limit),
//! and at most about twice its limit in any single second (the fixed windows' burst). Units
//! reserved ahead and not spent (demand fell, the instance ended) are lost to the account for
//! those seconds: the limiter errs on the side of refusing.
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

use domain::AccountId;
use store::{DynamoStore, StoreError};

/// Units per second one window item takes at most.
pub const SHARD_RATE: i64 = 400;
/// How long a lease may be spent, from the start of the window it was counted in.
pub const LEASE_SECS: i64 = 2;
pub use store::protections::BLOCK_SECS;
const LIMIT_MAX_AGE: Duration = Duration::from_secs(60);
/// How far ahead a big call's debt is charged into the shared windows (seconds of the
/// account's whole limit): a debt larger than a minute of the limit keeps its rest on the
/// instance that served the call.
pub const DEBT_AHEAD_SECS: i64 = 60;
/// Accounts an instance keeps state for before it forgets them all (a bound on memory).
const ACCOUNTS_MAX: usize = 4096;

/// How a limit is spread: (shards, cap per shard).
pub fn plan(limit: i64) -> (i64, i64) {
    let limit = limit.max(1);
    let shards = (limit + SHARD_RATE - 1) / SHARD_RATE;
    (shards, (limit + shards - 1) / shards)
}

/// What to lease for a call of `units` at `now_ms`, given this instance's demand in the last
/// full second (`recent`) and a shard's `cap`: (second, units) for the current second and each
/// later second of its block, less what the instance already `held` for it. Per second that demand and
/// a quarter more, at least a few (so that a fresh instance does not write per call), at most a
/// quarter of the cap (so that several instances share a window); the current second's
/// scaled to the part of it that is left, and never less than the call; the block's last
/// second's doubled (its units may be spent until [`LEASE_SECS`] later, into the next block).
pub fn lease_plan(
    units: i64,
    recent: i64,
    cap: i64,
    now_ms: i64,
    held: impl Fn(i64) -> i64,
) -> Vec<(i64, i64)> {
    let most = (cap / 4).max(1);
    let least = 4.min(most);
    let second = now_ms.div_euclid(1000);
    let block_end = block_of(second) + BLOCK_SECS;
    let left_of_second = (1000 - now_ms.rem_euclid(1000)) as f64 / 1000.0;
    // A second's demand with a margin: a busier second than the last one must not cost a
    // write of its own (what a second leaves is spent in the next one).
    let per_second = |share: f64| ((recent as f64 * 1.25 * share).ceil() as i64 + 1).clamp(least, most);
    let mut plan = vec![(second, per_second(left_of_second).max(units))];
    for sec in second + 1..block_end {
        let want = per_second(if sec + 1 == block_end { 2.0 } else { 1.0 }) - held(sec);
        if want > 0 {
            plan.push((sec, want));
        }
    }
    plan
}

/// The first second of the block `second` is in.
pub fn block_of(second: i64) -> i64 {
    second - second.rem_euclid(BLOCK_SECS)
}

/// Why a call was not admitted.
#[derive(Debug)]
pub enum Refusal {
    /// Over the account's limit: `429` with `Retry-After` (seconds).
    Limited { retry_after: i64 },
    /// The limiter's storage failed and this instance holds no lease: `503`.
    Unavailable(StoreError),
}

/// Units leased and not yet spent, per second (window) they were counted in.
#[derive(Default)]
struct Lease {
    buckets: Vec<(i64, i64)>,
}

impl Lease {
    /// Spends `units` counted in windows of `second` or up to [`LEASE_SECS`] before it, oldest
    /// first, if they hold that many; forgets what can no longer be spent.
    fn take(&mut self, second: i64, units: i64) -> bool {
        self.buckets.retain(|&(w, left)| left > 0 && second < w + LEASE_SECS);
        let spendable: i64 = self.buckets.iter().filter(|(w, _)| *w <= second).map(|(_, l)| l).sum();
        if spendable < units {
            return false;
        }
        let mut due = units;
        self.buckets.sort_unstable();
        for (w, left) in &mut self.buckets {
            if *w > second || due == 0 {
                break;
            }
            let spent = due.min(*left);
            *left -= spent;
            due -= spent;
        }
        true
    }

    /// Units counted in `second` still held.
    fn held(&self, second: i64) -> i64 {
        self.buckets.iter().filter(|(w, _)| *w == second).map(|(_, left)| left).sum()
    }

    fn add(&mut self, granted: &[(i64, i64)]) {
        for &(w, n) in granted {
            match self.buckets.iter_mut().find(|(b, _)| *b == w) {
                Some((_, left)) => *left += n,
                None => self.buckets.push((w, n)),
            }
        }
    }
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
        self.lease.take(second, units)
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
            let recent = st.asked_before.max(st.asked);
            (units, recent)
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
            let wants = {
                let mut states = self.state.lock().expect("not poisoned");
                let st = states.entry(account.clone()).or_default();
                lease_plan(units, recent, cap, now_ms, |sec| st.lease.held(sec))
            };
            match store.lease(account, shard, block_of(second), cap, &wants, units).await {
                Ok(granted) if granted.first().is_some_and(|&(w, n)| w == second && n >= units) => {
                    let mut states = self.state.lock().expect("not poisoned");
                    let st = states.entry(account.clone()).or_default();
                    st.lease.add(&granted);
                    let taken = st.lease.take(second, units);
                    debug_assert!(taken, "the current second was granted the call's units");
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
    /// 25,000-id segment call is admitted for one unit, and owes the rest). The debt is written
    /// into the account's shared windows of the seconds after `now_ms`, a whole limit per
    /// second, so every instance refuses the account until those seconds have passed; at most
    /// [`DEBT_AHEAD_SECS`] seconds ahead. What is owed past them, or when the windows cannot
    /// be written, is charged on this instance's next admissions for the account, as before.
    /// One write per shard and block of seconds charged, per big call, none per cheap call.
    pub async fn owe(&self, store: &DynamoStore, account: &AccountId, units: i64, now_ms: i64) {
        if units <= 0 {
            return;
        }
        let limit = match self.limit(store, account).await {
            Ok(Some(l)) if l > 0 => l,
            Ok(_) => return,
            Err(_) => {
                self.owe_here(account, units);
                return;
            }
        };
        let (shards, cap) = plan(limit);
        let next = now_ms.div_euclid(1000) + 1;
        let per_second = shards * cap;
        let mut left = units;
        let mut seconds = Vec::new();
        for sec in next..next + DEBT_AHEAD_SECS {
            if left <= 0 {
                break;
            }
            // Each shard's window takes the second's share of what is left.
            let take = left.min(per_second);
            seconds.push((sec, (take + shards - 1) / shards));
            left -= take;
        }
        match store.charge_windows(account, shards, &seconds).await {
            Ok(()) => {
                // Units this instance leased ahead were counted before the debt: dropped, so
                // that it refuses like every other instance (erring on the side of refusing).
                let mut states = self.state.lock().expect("not poisoned");
                let st = states.entry(account.clone()).or_default();
                st.lease = Lease::default();
                st.debt += left.max(0);
            }
            Err(e) => {
                tracing::warn!(error = %e, %account, "debt not charged ahead; charged on this instance");
                self.owe_here(account, units);
            }
        }
    }

    /// Adds to what this instance's next admissions for the account charge.
    fn owe_here(&self, account: &AccountId, units: i64) {
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
    fn leases_follow_demand_within_a_quarter_of_the_cap_for_the_rest_of_the_block() {
        let none = |_| 0;
        // Second 100 is the first of its block (100..103), at its start.
        assert_eq!(lease_plan(1, 0, 100, 100_000, none), vec![(100, 4), (101, 4), (102, 4), (103, 4)]);
        assert_eq!(lease_plan(1, 11, 100, 100_000, none), vec![(100, 15), (101, 15), (102, 15), (103, 25)]);
        assert_eq!(lease_plan(1, 1000, 100, 100_000, none), vec![(100, 25), (101, 25), (102, 25), (103, 25)]);
        assert_eq!(lease_plan(1, 0, 3, 100_000, none), vec![(100, 1), (101, 1), (102, 1), (103, 1)]);
        assert_eq!(lease_plan(30, 0, 100, 100_000, none)[0], (100, 30), "never less than the call");
        // Late in the block's third second: that second's rest, then the last one doubled.
        assert_eq!(lease_plan(1, 40, 400, 102_750, none), vec![(102, 14), (103, 100)]);
        // What is held already is not asked again.
        let held = |s| {
            if s == 102 {
                11
            } else if s == 103 {
                5
            } else {
                0
            }
        };
        assert_eq!(lease_plan(1, 8, 100, 101_000, held), vec![(101, 11), (103, 16)]);
    }

    #[test]
    fn a_lease_is_spent_only_within_its_lifetime_and_never_before_its_second() {
        let mut st = AccountState::default();
        st.lease.add(&[(10, 3), (11, 2), (12, 1)]);
        assert!(st.take_local(10, 3));
        assert!(!st.take_local(10, 1), "second 11's units wait for second 11");
        assert!(st.take_local(11, 2));
        st.lease.add(&[(11, 5)]);
        assert!(!st.take_local(13, 2), "second 11's units expired; 12 holds one");
        assert!(st.take_local(13, 1));
        assert_eq!(st.lease.held(12), 0);
    }

    #[test]
    fn blocks_start_at_multiples_of_their_length() {
        assert_eq!([block_of(100), block_of(103), block_of(104), block_of(-1)], [100, 100, 104, -4]);
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
