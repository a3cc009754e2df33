//! Pay-per-call protections, free of HTTP: the account's rate limit ([`rate`]), a write's
//! `Idempotency-Key` ([`idempotency`]: key checks, fingerprints, sealed replays) and the
//! call's usage ([`usage`]). The edge runs them for every authenticated call, after the
//! route's scope was checked and before its handler (`edge::front::guard`). The costs per
//! call are in docs/TABLES.md.

pub mod idempotency;
pub mod rate;
pub mod usage;
