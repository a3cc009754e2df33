//! The rules of the product, free of AWS and HTTP types.

pub mod ids;
pub mod integration;
pub mod moengage;
pub mod scope;
pub mod secret;
pub mod segment;
pub mod user_data;

pub use ids::{AccountId, ClientId, IdError, SegmentGuid, SystemGuid};
pub use scope::{Scope, ScopeSet};
pub use secret::{ClientSecret, SecretHash};
