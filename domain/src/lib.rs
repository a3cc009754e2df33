//! The rules of the product: identifiers, values, what a request may hold and the problems
//! found in one. The compiler keeps this crate free of HTTP, Lambda and AWS types: it depends
//! on none of those crates.

pub mod clock;
pub mod exact;
pub mod ids;
pub mod import;
pub mod import_rows;
pub mod integration;
pub mod moengage;
pub mod operations;
pub mod problem;
#[cfg(feature = "rules")]
pub mod rule_segment;
#[cfg(feature = "rules")]
pub mod rules;
pub mod scope;
pub mod segment;
pub mod source_time;
pub mod user_data;

pub use clock::Timestamp;
pub use ids::{AccountId, ClientId, IdError, ImportId, IntegrationId, SegmentGuid, SystemGuid};
pub use problem::Problem;
pub use scope::{Scope, ScopeSet};
