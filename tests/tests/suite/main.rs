//! The integration tests, one binary: every module runs against the local DynamoDB-compatible
//! server that `scripts/test.sh` (or `scripts/quick-test.sh`) starts, each test on tables under
//! its own prefix. One binary links once, not once per file. The segments tests are the one other binary (`tests/tests/segments.rs`):
//! `scripts/test.sh` runs them beside this one, against a server of their own.

mod bearer;
mod console;
mod erase;
mod events;
mod faults;
mod flood;
mod hostile_imports;
mod imports;
mod integrations;
mod keys;
mod layers;
mod logs;
mod moengage;
mod openapi;
mod protections;
mod revocation;
mod routes;
mod rule_segments;
mod template;
mod token;
mod user_data;
mod write_extensions;
