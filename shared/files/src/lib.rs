//! The import bucket: where a caller uploads an import's file (a presigned `PUT`), where the
//! worker reads it from (ranged `GET`s, so that a resumed import starts mid-file), and where
//! each import's error report is written (a presigned `GET` reads it).
//!
//! Keys: `uploads/<accountId>/<integrationId>/<importId>` (an upload there is the S3 event
//! that starts the import) and `reports/<accountId>/<integrationId>/<importId>.csv`. The
//! bucket's lifecycle deletes both after [`FILE_RETENTION_DAYS`].

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;

use domain::AccountId;

/// The bucket's lifecycle (template.yaml) deletes uploads and reports after this many days.
pub const FILE_RETENTION_DAYS: i64 = 7;
/// How long an upload URL is valid.
pub const UPLOAD_URL_TTL: Duration = Duration::from_secs(3600);
/// How long an error report's URL is valid (each status read signs a new one).
pub const REPORT_URL_TTL: Duration = Duration::from_secs(900);
/// The prefix whose uploads are import files (the bucket notification's filter).
pub const UPLOAD_PREFIX: &str = "uploads/";

/// A presigned request: what the caller sends, and where.
#[derive(Debug, Clone)]
pub struct Presigned {
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
}

/// A file being read, chunk by chunk as S3 sends it: memory holds one chunk, whatever the file.
pub struct Body(ByteStream);

impl Body {
    /// The next chunk; `None` at the end.
    pub async fn next(&mut self) -> Result<Option<bytes::Bytes>, FilesError> {
        self.0.try_next().await.map_err(|e| s3_error("GetObject body", e))
    }
}

/// The marker a worker uploads next to a file to start the import's next leg: its own event
/// comes through the same queue as the upload's.
pub const RESUME_SUFFIX: &str = ".resume";

/// The uploaded file as the worker first sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub size: u64,
    pub etag: String,
}

#[derive(Clone, Debug)]
pub struct Files {
    client: aws_sdk_s3::Client,
    bucket: String,
}

/// An S3 request that failed: which, and the error it met (kept whole, never a string).
#[derive(Debug, thiserror::Error)]
#[error("S3 {op} failed: {}", aws_sdk_s3::error::DisplayErrorContext(&**source))]
pub struct FilesError {
    pub op: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

fn s3_error(
    op: &'static str,
    e: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
) -> FilesError {
    FilesError { op, source: e.into() }
}

pub fn upload_key(account: &AccountId, integration_id: &str, import_id: &str) -> String {
    format!("{UPLOAD_PREFIX}{account}/{integration_id}/{import_id}")
}

pub fn report_key(account: &AccountId, integration_id: &str, import_id: &str) -> String {
    format!("reports/{account}/{integration_id}/{import_id}.csv")
}

/// Where the error report's parts wait until the import ends: one object per page that found
/// problems, named by the page's first row (so a page written again replaces its own part).
pub fn report_parts_prefix(account: &AccountId, integration_id: &str, import_id: &str) -> String {
    format!("reports/{account}/{integration_id}/{import_id}.parts/")
}

/// The (account, integration, import) an upload key names; `None` for any other key.
pub fn parse_upload_key(key: &str) -> Option<(AccountId, String, String)> {
    let mut parts = key.strip_prefix(UPLOAD_PREFIX)?.split('/');
    let (acc, int, imp) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((AccountId::parse(acc).ok()?, int.to_string(), imp.to_string()))
}

impl Files {
    /// The bucket `IMPORT_BUCKET`, through a client of `sdk` (`AWS_ENDPOINT_URL_S3` for the
    /// local server, which is addressed by path rather than by bucket host name).
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Self {
        let bucket = std::env::var("IMPORT_BUCKET").ok().filter(|b| !b.is_empty());
        Self::new(sdk, bucket.unwrap_or_else(|| "end-user-imports".into()))
    }

    pub fn new(sdk: &aws_config::SdkConfig, bucket: String) -> Self {
        let local = std::env::var("AWS_ENDPOINT_URL_S3").is_ok_and(|v| !v.is_empty());
        let conf = aws_sdk_s3::config::Builder::from(sdk).force_path_style(local).build();
        Self { client: aws_sdk_s3::Client::from_conf(conf), bucket }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// A URL that a plain `curl -X PUT --data-binary @file` uploads to.
    pub async fn presign_upload(&self, key: &str) -> Result<Presigned, FilesError> {
        let conf = PresigningConfig::expires_in(UPLOAD_URL_TTL).map_err(|e| s3_error("presign", e))?;
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(conf)
            .await
            .map_err(|e| s3_error("presign PutObject", e))?;
        // Only the headers the signature covers must be sent (the SDK also returns a tracing
        // header of this invocation, which S3 does not check).
        let url = req.uri().to_string();
        let signed: Vec<String> = url
            .split(['?', '&'])
            .find_map(|p| p.strip_prefix("X-Amz-SignedHeaders="))
            .map(|v| v.split("%3B").flat_map(|h| h.split(';')).map(str::to_ascii_lowercase).collect())
            .unwrap_or_default();
        let headers = req
            .headers()
            .filter(|(k, _)| *k != "host" && signed.iter().any(|s| s == &k.to_ascii_lowercase()))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Presigned { url, method: req.method().to_string(), headers })
    }

    pub async fn presign_download(&self, key: &str) -> Result<String, FilesError> {
        let conf = PresigningConfig::expires_in(REPORT_URL_TTL).map_err(|e| s3_error("presign", e))?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(conf)
            .await
            .map_err(|e| s3_error("presign GetObject", e))?;
        Ok(req.uri().to_string())
    }

    /// The object's size and ETag; `None` when there is none.
    pub async fn head(&self, key: &str) -> Result<Option<FileInfo>, FilesError> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => Ok(Some(FileInfo {
                size: u64::try_from(out.content_length.unwrap_or(0)).unwrap_or(0),
                etag: out.e_tag.unwrap_or_default(),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(s3_error("HeadObject", e)),
        }
    }

    /// The object from byte `from` on, only if it is still the version with `etag`.
    pub async fn read_from(&self, key: &str, from: u64, etag: &str) -> Result<Body, FilesError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={from}-"))
            .if_match(etag)
            .send()
            .await
            .map_err(|e| s3_error("GetObject", e))?;
        Ok(Body(out.body))
    }

    /// The whole object, or `None` when there is none (an error report so far).
    pub async fn read_all(&self, key: &str) -> Result<Option<Vec<u8>>, FilesError> {
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => {
                let data = out.body.collect().await.map_err(|e| s3_error("GetObject body", e))?;
                Ok(Some(data.into_bytes().to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(s3_error("GetObject", e)),
        }
    }

    /// Every key under `prefix`, in S3's (lexicographic) order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, FilesError> {
        let mut keys = Vec::new();
        let mut pages =
            self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_error("ListObjectsV2", e))?;
            keys.extend(page.contents.unwrap_or_default().into_iter().filter_map(|o| o.key));
        }
        Ok(keys)
    }

    pub async fn write(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), FilesError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| s3_error("PutObject", e))?;
        Ok(())
    }
}

/// Whether callbacks may use `http://` and private, loopback or link-local addresses
/// (`IMPORT_ALLOW_LOCAL_CALLBACKS=1`: `make dev` and the tests, whose receivers run locally).
/// Never set in template.yaml.
pub fn local_callbacks_allowed() -> bool {
    std::env::var("IMPORT_ALLOW_LOCAL_CALLBACKS").is_ok_and(|v| v == "1")
}

/// An import's callback secret: HMAC-SHA256 of the import under the deployment's callback key,
/// base64url. Derived again when the callback is signed, so it is stored nowhere.
pub fn callback_secret(callback_key: &[u8], account: &AccountId, import_id: &str) -> String {
    use base64::Engine;
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, callback_key);
    let tag = aws_lc_rs::hmac::sign(&key, format!("import-callback\0{account}\0{import_id}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
}

/// The `X-Import-Signature` header of a callback sent at `timestamp` (epoch seconds):
/// `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>" under the callback secret>`.
pub fn callback_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
    ctx.update(format!("{timestamp}.").as_bytes());
    ctx.update(body);
    let hex: String = ctx.sign().as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_keys_round_trip_and_nothing_else_parses() {
        let acc = AccountId::parse("acme").unwrap();
        let key = upload_key(&acc, "i-1", "0190-x");
        assert_eq!(parse_upload_key(&key), Some((acc.clone(), "i-1".into(), "0190-x".into())));
        assert_eq!(parse_upload_key(&report_key(&acc, "i", "x")), None);
        assert_eq!(parse_upload_key("uploads/acme/i/x/extra"), None);
        assert_eq!(parse_upload_key("uploads/acme/i"), None);
    }

    #[test]
    fn callback_secrets_differ_per_import_and_signatures_match_a_known_answer() {
        let acc = AccountId::parse("acme").unwrap();
        let a = callback_secret(b"k", &acc, "i1");
        assert_ne!(a, callback_secret(b"k", &acc, "i2"));
        assert_ne!(a, callback_secret(b"other", &acc, "i1"));
        // Checked against an independent computation (python3 -c 'import hmac,
        // hashlib; print(hmac.new(b"secret", b"1700000000.{}", hashlib.sha256).hexdigest())').
        assert_eq!(
            callback_signature("secret", 1_700_000_000, b"{}"),
            "t=1700000000,v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
    }
}
