//! The imports function: bulk file imports of an integration (the seeds' "CSV Upload").
//!
//! `POST /public/v1/integrations/{integrationId}/imports` creates one and answers a presigned
//! upload URL; `GET .../imports` lists an integration's imports, newest first;
//! `GET .../imports/{importId}` is one import's status. The upload itself goes to S3, whose
//! event starts the `import-worker` function.

use lambda_http::Request;
use serde_json::Value;

use auth::Principal;
use domain::clock::rfc3339_of_epoch_secs;
use domain::import::{ImportSpec, MAX_FILE_BYTES};
use domain::{ImportId, IntegrationId, Scope, Timestamp};
use edge::api;
use edge::front::{Call, Env, Route, Service};
use edge::http::request::{json_body, page_params};
use edge::http::{ApiError, Reply, RequestInfo};
use edge::lookup::account_integration;
use files::{Files, UPLOAD_URL_TTL};
use store::dynamo::DynamoStore;
use store::imports::{ImportRecord, ImportStatus, Progress};

const MAX_BODY_BYTES: usize = 8 * 1024;
const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    List,
    Get,
}

pub struct App {
    store: DynamoStore,
    files: Files,
    /// `http://` callback URLs (a local stack's test server); never set on AWS.
    allow_http_callbacks: bool,
}

impl App {
    pub fn new(env: &Env) -> Self {
        Self::with_files(env, Files::from_env(&env.sdk))
    }

    /// The same, on the import bucket `files` (a test stack's own).
    pub fn with_files(env: &Env, files: Files) -> Self {
        Self { store: env.store.clone(), files, allow_http_callbacks: files::local_callbacks_allowed() }
    }
}

const IMPORTS: &str = "/public/v1/integrations/{integrationId}/imports";
const IMPORT: &str = "/public/v1/integrations/{integrationId}/imports/{importId}";

impl Service for App {
    type Op = Op;
    // Imports write end-user data, so every route takes the scope that writes it.
    const ROUTES: &'static [Route<Op>] = &[
        Route::bearer("POST", IMPORTS, Op::Create, Scope::EndUserUpdateWrite),
        Route::bearer("GET", IMPORTS, Op::List, Scope::EndUserUpdateWrite),
        Route::bearer("GET", IMPORT, Op::Get, Scope::EndUserUpdateWrite),
    ];

    async fn handle(&self, op: Op, call: Call<'_>) -> Result<Reply, ApiError> {
        let p = call.principal()?;
        let integration_id = call.param("integrationId");
        match op {
            Op::Create => create(self, call.info, p, integration_id, call.req).await,
            Op::List => list(self, p, integration_id, call.req).await,
            Op::Get => get(self, p, integration_id, call.param("importId")).await,
        }
    }
}

/// The integration must exist in the caller's account.
async fn integration(app: &App, p: &Principal, id: &str) -> Result<(), ApiError> {
    account_integration(&app.store, &p.account, id).await.map(drop)
}

async fn create(
    app: &App,
    info: &RequestInfo,
    p: &Principal,
    integration_id: &str,
    req: &Request,
) -> Result<Reply, ApiError> {
    let body: Value = json_body(req, MAX_BODY_BYTES)?;
    let spec = ImportSpec::from_json(&body, app.allow_http_callbacks)
        .map_err(|d| ApiError::validation("the import is invalid", d))?;
    integration(app, p, integration_id).await?;
    let import_id = ImportId::generate().to_string();
    let now = Timestamp::now().epoch_secs();
    let callback_secret = match &spec.callback_url {
        None => None,
        Some(_) => {
            let key = app.store.callback_key().await?;
            Some(files::callback_secret(&key, &p.account, &import_id))
        }
    };
    let rec = ImportRecord {
        account: p.account.clone(),
        integration_id: integration_id.to_string(),
        import_id: import_id.clone(),
        format: spec.format,
        mode: spec.mode,
        status: ImportStatus::WaitingForUpload,
        callback_url: spec.callback_url,
        client_id: Some(p.client_id.clone()),
        created_at: now,
        upload_expires_at: now + UPLOAD_URL_TTL.as_secs() as i64,
        started_at: None,
        finished_at: None,
        failure: None,
        progress: Progress::default(),
        callback_status: None,
    };
    let upload = app
        .files
        .presign_upload(&files::upload_key(&p.account, integration_id, &import_id))
        .await
        .map_err(ApiError::unavailable)?;
    app.store.create_import(&rec).await?;
    tracing::info!(request_id = %info.request_id, account = %p.account, integration_id, import_id,
        format = rec.format.as_str(), mode = rec.mode.as_str(), "import created");
    let location = format!("/public/v1/integrations/{integration_id}/imports/{import_id}");
    let body = api::ImportCreated {
        import: view(&rec, None),
        upload_url: upload.url,
        upload_method: upload.method,
        upload_headers: upload.headers.into_iter().collect(),
        expires_at: rfc3339_of_epoch_secs(rec.upload_expires_at),
        max_bytes: MAX_FILE_BYTES,
        callback_secret: callback_secret.as_deref(),
    };
    Ok(Reply::json(201, &body).header("location", &location))
}

async fn list(app: &App, p: &Principal, integration_id: &str, req: &Request) -> Result<Reply, ApiError> {
    let (limit, cursor) = page_params(req, DEFAULT_PAGE, MAX_PAGE, ImportId::parse_cursor)?;
    integration(app, p, integration_id).await?;
    let (records, more) = app
        .store
        .list_imports(&p.account, integration_id, limit, cursor.as_ref().map(ImportId::as_str))
        .await?;
    let next_cursor = more.then(|| records.last().map(|r| r.import_id.clone())).flatten();
    let mut imports = Vec::with_capacity(records.len());
    for rec in &records {
        imports.push(view(rec, errors_url(app, rec).await?));
    }
    Ok(Reply::json(200, &api::ImportList { imports, next_cursor }))
}

async fn get(app: &App, p: &Principal, integration_id: &str, import_id: &str) -> Result<Reply, ApiError> {
    let not_found = || ApiError::NotFound("import not found".into());
    if ImportId::parse(import_id).is_err() || IntegrationId::parse(integration_id).is_err() {
        return Err(not_found());
    }
    let rec = app.store.get_import(&p.account, integration_id, import_id).await?.ok_or_else(not_found)?;
    Ok(Reply::json(200, &view(&rec, errors_url(app, &rec).await?)))
}

async fn errors_url(app: &App, rec: &ImportRecord) -> Result<Option<String>, ApiError> {
    if rec.progress.reported == 0 {
        return Ok(None);
    }
    let key = files::report_key(&rec.account, &rec.integration_id, &rec.import_id);
    Ok(Some(app.files.presign_download(&key).await.map_err(ApiError::unavailable)?))
}

/// An import as shown. One still waiting past its URL's expiry can never start: it is shown
/// as failed, with the reason.
fn view(rec: &ImportRecord, errors_url: Option<String>) -> api::Import {
    let expired =
        rec.status == ImportStatus::WaitingForUpload && Timestamp::now().epoch_secs() > rec.upload_expires_at;
    let (status, failure) = if expired {
        (ImportStatus::Failed, Some("no file was uploaded before the upload URL expired".to_string()))
    } else {
        (rec.status, rec.failure.clone())
    };
    let p = &rec.progress;
    api::Import {
        import_id: rec.import_id.clone(),
        integration_id: rec.integration_id.clone(),
        status: status.as_str(),
        format: rec.format.as_str(),
        mode: rec.mode.as_str(),
        rows_read: p.rows_read,
        accepted: p.accepted,
        rejected: p.rejected,
        superseded: p.superseded,
        bytes_read: p.bytes_read,
        ignored_columns: p.ignored.clone(),
        created_at: rfc3339_of_epoch_secs(rec.created_at),
        started_at: rec.started_at.map(rfc3339_of_epoch_secs),
        finished_at: rec.finished_at.map(rfc3339_of_epoch_secs),
        failure,
        errors_url,
        callback_url: rec.callback_url.clone(),
        callback_status: rec.callback_status.clone(),
    }
}
