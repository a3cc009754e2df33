//! The HTTP edge every API function is served by, on top of the lower crates (`domain` ←
//! `store` ← `auth`, `protect` ← this one; `boot` starts them):
//!
//! - [`front`]: the one runner of every HTTP function: routes, authentication, protections;
//! - [`http`]: request parsing helpers, [`http::Reply`], and the one place errors become
//!   HTTP responses;
//! - [`api`]: the response bodies of every route, named after their OpenAPI schemas.

pub mod api;
pub mod front;
pub mod http;
pub mod lookup;
