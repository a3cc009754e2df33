//! The response bodies of every route, one struct per schema of `docs/openapi.yaml`
//! (`components/schemas`, same names): changing a field here changes the API, and
//! `tests/tests/suite/openapi.rs` checks every answer against the document. Stored items have their
//! own record types in [`crate::store`], so nothing here changes what is stored.
//!
//! Error bodies are made in one place, [`crate::http::error::render`].

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use domain::Problem;
use domain::integration::{self, AttrType};
use domain::user_data::AttrValue;

/// `TokenResponse` (RFC 6749 §5.1).
#[derive(Debug, Serialize)]
pub struct TokenResponse<'a> {
    pub access_token: &'a str,
    pub expires_in: i64,
    pub token_type: &'static str,
    pub scope: String,
}

/// `Jwks`.
#[derive(Debug, Serialize)]
pub struct Jwks {
    pub keys: Vec<jsonwebtoken::jwk::Jwk>,
}

/// `OpenIdConfiguration`.
#[derive(Debug, Serialize)]
pub struct OpenIdConfiguration {
    pub issuer: String,
    pub jwks_uri: String,
    pub token_endpoint: String,
    pub grant_types_supported: [&'static str; 1],
    pub token_endpoint_auth_methods_supported: [&'static str; 2],
    pub scopes_supported: Vec<&'static str>,
    pub response_types_supported: [&'static str; 1],
    pub subject_types_supported: [&'static str; 1],
    pub id_token_signing_alg_values_supported: [&'static str; 1],
    pub access_token_signing_alg_values_supported: [&'static str; 1],
}

/// `Property`: one imported property of an integration.
#[derive(Debug, Serialize)]
pub struct Property<'a> {
    pub path: &'a str,
    pub name: &'a str,
    #[serde(rename = "type")]
    pub attr_type: AttrType,
}

impl<'a> From<&'a integration::Property> for Property<'a> {
    fn from(p: &'a integration::Property) -> Self {
        Self { path: p.path.as_str(), name: &p.name, attr_type: p.attr_type }
    }
}

/// `Integration`, and `IntegrationCreated` when `token` is set.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Integration<'a> {
    pub integration_id: &'a str,
    pub name: &'a str,
    pub user_identifier_property: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_property: Option<&'a str>,
    pub properties: Vec<Property<'a>>,
    pub endpoint: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<&'a str>,
}

/// `IntegrationList`.
#[derive(Debug, Serialize)]
pub struct IntegrationList<'a> {
    pub integrations: Vec<Integration<'a>>,
}

/// `TestReport`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestReport<'a> {
    pub valid: bool,
    pub mode: Option<&'static str>,
    pub users: Vec<TestUser<'a>>,
    pub errors: &'a [Problem],
    pub ignored_fields: &'a [String],
}

/// One user of a `TestReport`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestUser<'a> {
    pub user_id: &'a str,
    pub set: BTreeMap<String, AttrValue>,
    pub unset: Vec<&'a str>,
}

/// `UserDataResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserDataResponse<'a> {
    pub accepted: usize,
    pub mode: &'static str,
    pub ignored_fields: &'a [String],
    pub skipped: Vec<&'a str>,
    /// Erased users, refused for the account's suppression window (absent when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suppressed: Vec<&'a str>,
    /// Users whose attributes hold newer source times than this write's (absent when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<StaleUser<'a>>,
    /// Users of a several-user call whose write was refused while others were written
    /// (absent when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedUser<'a>>,
}

/// `EraseResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EraseResponse {
    /// Distinct users erased (each suppressed, whether it held data or not).
    pub erased: usize,
    /// End-user items that held attributes, deleted.
    pub items: usize,
    pub memberships: usize,
    /// RFC 3339: when their suppression ends.
    pub suppressed_until: String,
}

/// One user of a several-user call not written, and why; nothing of it was stored.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedUser<'a> {
    pub user_id: &'a str,
    pub reason: &'static str,
}

/// One user's attributes left as they were: they hold newer source times.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StaleUser<'a> {
    pub user_id: &'a str,
    pub properties: Vec<String>,
}

/// `EndUser`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndUser<'a> {
    pub user_id: &'a str,
    pub integrations: Vec<EndUserIntegration<'a>>,
    pub segments: Vec<SegmentMembership<'a>>,
}

/// `EndUserIntegration`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndUserIntegration<'a> {
    pub integration_id: &'a str,
    pub name: &'a str,
    pub attributes: BTreeMap<String, AttrValue>,
    pub types: Map<String, Value>,
    pub updated_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<&'a str>,
}

/// `SegmentMembership`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentMembership<'a> {
    pub system_guid: String,
    pub segment_guid: String,
    pub id: Option<&'a str>,
    pub name: &'a str,
}

/// `Segment`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Segment<'a> {
    pub segment_guid: String,
    pub system_guid: String,
    pub id: Option<&'a str>,
    pub name: &'a str,
    pub user_count: i64,
    pub created_at: String,
    pub updated_at: String,
    /// Ids an add refused: erased users in their suppression window (absent when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suppressed: Vec<String>,
}

/// `SegmentList`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentList<'a> {
    pub segments: Vec<Segment<'a>>,
    /// Where the next page starts; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `SegmentMembers`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentMembers<'a> {
    pub user_ids: &'a [String],
    pub next_cursor: Option<String>,
}

/// `MoEngageSuccess`.
#[derive(Debug, Serialize)]
pub struct MoEngageSuccess {
    pub status: &'static str,
    pub message: &'static str,
    /// The customer, when erased and suppressed: nothing was stored (absent otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suppressed: Vec<String>,
}

impl MoEngageSuccess {
    pub const MESSAGE: &'static str = "Your request has been accepted and will be processed soon.";

    pub fn accepted() -> Self {
        Self { status: "success", message: Self::MESSAGE, suppressed: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    /// Every body here is named after a schema of the OpenAPI document.
    #[test]
    fn every_body_is_a_schema_of_the_openapi_document() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.yaml")).unwrap();
        let src = include_str!("api.rs");
        let names: Vec<&str> = src
            .lines()
            .filter_map(|l| l.strip_prefix("pub struct "))
            .map(|l| l.split(|c: char| !c.is_alphanumeric()).next().unwrap())
            .filter(|n| *n != "TestUser")
            .collect();
        assert!(names.len() >= 14, "{names:?}");
        for name in names {
            assert!(doc.contains(&format!("\n    {name}:\n")), "{name} is not a schema of docs/openapi.yaml");
        }
    }
}

/// `ImportCreated`: the answer to `POST .../imports`, shown once (the callback secret is never
/// shown again).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportCreated<'a> {
    #[serde(flatten)]
    pub import: Import,
    pub upload_url: String,
    pub upload_method: String,
    /// Headers the upload must carry (none beyond what `curl --data-binary` sends today).
    pub upload_headers: std::collections::BTreeMap<String, String>,
    /// When the upload URL stops working (RFC 3339).
    pub expires_at: String,
    pub max_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_secret: Option<&'a str>,
}

/// `Import`: an import's status and counts.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Import {
    pub import_id: String,
    pub integration_id: String,
    pub status: &'static str,
    pub format: &'static str,
    pub mode: &'static str,
    pub rows_read: i64,
    pub accepted: i64,
    pub rejected: i64,
    /// Rows whose user a later row of the file wrote again (the later row wins).
    pub superseded: i64,
    pub bytes_read: i64,
    /// CSV columns (or NDJSON paths) that name no property of the integration.
    pub ignored_columns: Vec<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Why a `failed` import failed.
    pub failure: Option<String>,
    /// A presigned GET of the error report, when rows were rejected.
    pub errors_url: Option<String>,
    pub callback_url: Option<String>,
    /// `pending`, `delivered` or `failed` once the import has ended (with a callback URL).
    pub callback_status: Option<String>,
}

/// `ImportList`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportList {
    pub imports: Vec<Import>,
    pub next_cursor: Option<String>,
}
