//! The completion callback: the import's summary POSTed to its `callbackUrl`, signed.
//!
//! `X-Import-Signature: t=<epoch seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` under the
//! import's callback secret (shown once, when the import was created; README shows how to
//! verify it). Sent over https only, to public addresses only: the name is resolved here and
//! the connection goes to the addresses that passed the check, so a name that resolves to a
//! private, loopback or link-local address (the instance metadata service, say) is never
//! called, even if it changes between the check and the call. Redirects are not followed.
//! `IMPORT_ALLOW_LOCAL_CALLBACKS=1` (`make dev`, tests) lifts both rules for local receivers.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use domain::Timestamp;
use domain::clock::rfc3339_of_epoch_secs;
use files;
use store::StoreError;
use store::imports::ImportRecord;

use crate::Worker;

/// Attempts, and the wait before each retry: 1 + 2 + 4 + 8 s (within one invocation).
const ATTEMPTS: u32 = 5;
const FIRST_WAIT: Duration = Duration::from_secs(1);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long, and how much, of a receiver's answer is read (and dropped).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_ANSWER_BYTES: usize = 64 * 1024;
pub const SIGNATURE_HEADER: &str = "x-import-signature";

type Https = hyper_rustls::HttpsConnector<HttpConnector<PublicOnly>>;

/// The HTTP client of callbacks.
#[derive(Clone)]
pub struct Sender {
    client: Client<Https, Full<bytes::Bytes>>,
    allow_local: bool,
}

impl Sender {
    /// The deployed sender: public https only, unless the environment allows a local stack's.
    pub fn from_env() -> Self {
        Self::new(files::local_callbacks_allowed())
    }

    pub fn new(allow_local: bool) -> Self {
        let mut http = HttpConnector::new_with_resolver(PublicOnly { allow_local });
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
            .unwrap_or_else(|_| {
                // No system roots (a bare container): no https receiver can be trusted.
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("aws-lc-rs supports the default versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            });
        let https = if allow_local { builder.https_or_http() } else { builder.https_only() };
        let client = Client::builder(TokioExecutor::new()).build(https.enable_http1().wrap_connector(http));
        Self { client, allow_local }
    }

    /// POSTs `body` to `url`; `Ok(status)` once answered.
    async fn post(&self, url: &str, signature: &str, body: &[u8]) -> Result<u16, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
        if let Some(host) = uri.host() {
            let literal = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = literal.parse::<IpAddr>()
                && !self.allow_local
                && !is_public(ip)
            {
                return Err(format!("{ip} is not a public address"));
            }
        }
        let req = hyper::Request::post(uri)
            .header("content-type", "application/json")
            .header("user-agent", "end-user-data-api-import/1")
            .header(SIGNATURE_HEADER, signature)
            .body(Full::new(bytes::Bytes::copy_from_slice(body)))
            .map_err(|e| e.to_string())?;
        let answer = tokio::time::timeout(ATTEMPT_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| format!("{e:?}"))?;
        let status = answer.status().as_u16();
        // Read (and drop) the answer so the connection is reused, bounded in time and in bytes:
        // a receiver that streams for ever holds neither the worker's time nor its memory.
        let bounded = http_body_util::Limited::new(answer.into_body(), MAX_ANSWER_BYTES);
        let _ = tokio::time::timeout(ANSWER_TIMEOUT, bounded.collect()).await;
        Ok(status)
    }
}

/// Whether an address is one a callback may reach from AWS: not private, loopback,
/// link-local, shared (carrier-grade NAT), multicast, documentation or unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                || seg[0] == 0x2001 && seg[1] == 0x0db8
                || seg[0] == 0x64 && seg[1] == 0xff9b)
        }
    }
}

/// A DNS resolver that answers only the public addresses of a name (or fails).
#[derive(Clone)]
pub struct PublicOnly {
    allow_local: bool,
}

impl tower_service::Service<Name> for PublicOnly {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_local = self.allow_local;
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                found.into_iter().filter(|a| allow_local || is_public(a.ip())).collect();
            if allowed.is_empty() {
                return Err(std::io::Error::other(format!("{} has no public address", name.as_str())));
            }
            Ok(allowed.into_iter())
        })
    }
}

/// The summary a callback carries (the status route's counts, without URLs).
pub fn summary(rec: &ImportRecord) -> serde_json::Value {
    let stamp = |t: Option<i64>| t.map(rfc3339_of_epoch_secs);
    let p = &rec.progress;
    json!({
        "event": "import.finished",
        "importId": rec.import_id,
        "integrationId": rec.integration_id,
        "status": rec.status.as_str(),
        "format": rec.format.as_str(),
        "mode": rec.mode.as_str(),
        "rowsRead": p.rows_read,
        "accepted": p.accepted,
        "rejected": p.rejected,
        "superseded": p.superseded,
        "bytesRead": p.bytes_read,
        "ignoredColumns": p.ignored,
        "failure": rec.failure,
        "createdAt": stamp(Some(rec.created_at)),
        "startedAt": stamp(rec.started_at),
        "finishedAt": stamp(rec.finished_at),
    })
}

/// Sends the callback of an ended import, retrying with backoff, and records how it went.
/// A receiver's 4xx (but 408 and 429) is final: retrying would be refused the same way.
pub async fn deliver(worker: &Worker, rec: &ImportRecord) -> Result<(), StoreError> {
    let Some(url) = &rec.callback_url else { return Ok(()) };
    let key = worker.store.callback_key().await?;
    let secret = files::callback_secret(&key, &rec.account, &rec.import_id);
    let body = serde_json::to_vec(&summary(rec)).unwrap_or_default();
    let mut wait = FIRST_WAIT;
    let mut outcome = "failed";
    for attempt in 1..=ATTEMPTS {
        let signature = files::callback_signature(&secret, Timestamp::now().epoch_secs(), &body);
        match worker.callback.post(url, &signature, &body).await {
            Ok(status) if (200..300).contains(&status) => {
                outcome = "delivered";
                break;
            }
            Ok(status) if (400..500).contains(&status) && status != 408 && status != 429 => {
                tracing::warn!(import_id = rec.import_id, status, "callback refused; not retried");
                break;
            }
            Ok(status) => tracing::warn!(import_id = rec.import_id, status, attempt, "callback failed"),
            Err(e) => tracing::warn!(import_id = rec.import_id, error = e, attempt, "callback failed"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    worker.store.set_callback_status(rec, outcome).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "52.94.76.1", "2600:1f18::1", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn a_name_or_literal_of_a_private_address_is_never_called() {
        let sender = Sender::new(false);
        let err = sender.post("https://127.0.0.1:9/x", "t=1,v1=0", b"{}").await.unwrap_err();
        assert!(err.contains("not a public address"), "{err}");
        let err = sender.post("https://localhost:9/x", "t=1,v1=0", b"{}").await.unwrap_err();
        assert!(err.contains("no public address"), "{err}");
        let err = sender.post("http://8.8.8.8/x", "t=1,v1=0", b"{}").await.unwrap_err();
        assert!(!err.is_empty());
    }

    #[tokio::test]
    async fn an_endless_answer_is_read_only_to_its_bound() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let receiver = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0; 4096];
            let _ = socket.read(&mut request).await;
            socket.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await.unwrap();
            let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
            let mut sent = 0usize;
            // Until the worker hangs up, or 1 GiB: what it would have read in its 2 s.
            while sent < 1 << 30 && socket.write_all(chunk.as_bytes()).await.is_ok() {
                sent += 0x10000;
            }
            sent
        });
        assert_eq!(Sender::new(true).post(&url, "t=1,v1=0", b"{}").await, Ok(200));
        // Past 64 KiB read the worker drops the connection: what was sent then is what the
        // two sockets' buffers hold, a few MB at most.
        let sent = receiver.await.unwrap();
        assert!(sent < 64 << 20, "the receiver sent {sent} bytes before the worker hung up");
    }
}
