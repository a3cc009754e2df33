//! The console's browser tests' tools: a test-only HTTP server that serves a [`Stack`]'s
//! functions in-process on their production paths (what API Gateway does on AWS), and a small
//! WebDriver client for Debian's `chromedriver` (W3C WebDriver over plain HTTP/JSON: a few
//! commands need no client crate).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the walk waits for the page: generous, because it shares the local server with
/// the whole suite, which a heavy test can hold for seconds (CI runs saw pages not yet shown
/// after 10 s).
const PATIENCE: Duration = Duration::from_secs(30);

use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::{Served, Service, Stack, event};

/// Every HTTP function of the stack, as API Gateway routes to them.
pub struct Apps {
    token: Served<token::App>,
    integrations: Served<integrations::App>,
    user_data: Served<user_data::App>,
    segments: Served<segments::App>,
    imports: Served<imports::App>,
    console: Served<console::App>,
}

impl Apps {
    pub fn new(stack: &Stack) -> Self {
        Self {
            token: stack.token_app(),
            integrations: stack.integrations_app(),
            user_data: stack.user_data_app(),
            segments: stack.segments_app(),
            imports: stack.imports_app(),
            console: stack.served(console::App::new),
        }
    }

    /// The function whose route table serves the path (any method), as the router does.
    async fn serve(&self, req: Request, segments: &[String]) -> Response<Body> {
        fn owns<S: Service>(segments: &[String]) -> bool {
            !matches!(edge::front::routes::find(S::ROUTES, "", segments), Err(edge::front::Miss::Path))
        }
        use edge::front::serve;
        if owns::<console::App>(segments) {
            serve(&self.console, req).await
        } else if owns::<token::App>(segments) {
            serve(&self.token, req).await
        } else if owns::<imports::App>(segments) {
            serve(&self.imports, req).await
        } else if owns::<integrations::App>(segments) {
            serve(&self.integrations, req).await
        } else if owns::<segments::App>(segments) {
            serve(&self.segments, req).await
        } else {
            serve(&self.user_data, req).await
        }
    }
}

/// Serves `apps` on 127.0.0.1 (HTTP/1.1, keep-alive); returns the base URL.
pub async fn serve(apps: Apps) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let apps = Arc::new(apps);
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let apps = apps.clone();
            tokio::spawn(async move {
                let _ = connection(&apps, conn).await;
            });
        }
    });
    url
}

async fn connection(apps: &Apps, conn: tokio::net::TcpStream) -> std::io::Result<()> {
    let (read, mut write) = conn.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, target) =
            (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("/").to_string());
        let mut headers: Vec<(String, String)> = Vec::new();
        loop {
            let mut h = String::new();
            read.read_line(&mut h).await?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let len = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        read.read_exact(&mut body).await?;
        // API Gateway moves cookies out of the headers into the event's own list.
        let cookies: Vec<String> = headers
            .iter()
            .filter(|(k, _)| k == "cookie")
            .flat_map(|(_, v)| v.split(';').map(|c| c.trim().to_string()))
            .collect();
        let plain: Vec<(&str, &str)> =
            headers.iter().filter(|(k, _)| k != "cookie").map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let text = String::from_utf8_lossy(&body);
        let mut ev = event(&method, &target, &plain, (!body.is_empty()).then_some(text.as_ref()));
        if !cookies.is_empty() {
            ev["cookies"] = json!(cookies);
        }
        let req = crate::request(&ev);
        let segments = edge::http::request::split_path(target.split('?').next().unwrap_or("/"));
        let resp = apps.serve(req, &segments).await;
        let mut out = format!("HTTP/1.1 {}\r\n", resp.status());
        for (k, v) in resp.headers() {
            out.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or("")));
        }
        let bytes = resp.body().as_ref().to_vec();
        out.push_str(&format!("content-length: {}\r\n\r\n", bytes.len()));
        write.write_all(out.as_bytes()).await?;
        write.write_all(&bytes).await?;
        write.flush().await?;
        if headers.iter().any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close")) {
            return Ok(());
        }
    }
}

/// A raw HTTP/1.1 request to the test server: (status, headers as lines, body).
pub fn raw_http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<String>, String) {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    conn.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status =
        lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, lines.map(str::to_string).collect(), body.to_string())
}

/// `chromedriver` driving a headless Debian Chromium; the process ends with the value.
pub struct Driver {
    child: Child,
    base: String,
    session: String,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
    _profile: TempDir,
}

/// A directory removed when dropped (the browser's fresh profile).
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Driver {
    pub async fn start() -> Self {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        assert!(
            std::path::Path::new(&driver).exists() && std::path::Path::new(&chromium).exists(),
            "the console's browser tests need Debian's chromium and chromium-driver: `make test` installs them"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let profile =
            TempDir(std::env::temp_dir().join(format!("console-chromium-{}", uuid::Uuid::new_v4().simple())));
        let mut driver = Self { child, base, session: String::new(), client, _profile: profile };
        let deadline = Instant::now() + Duration::from_secs(20);
        while driver.raw("GET", "/status", None).await.is_none() {
            assert!(Instant::now() < deadline, "chromedriver did not answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", driver._profile.0.display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}});
        let v = driver.raw("POST", "/session", Some(caps)).await.expect("a browser session");
        driver.session =
            v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_string();
        driver
    }

    async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Option<Value> {
        use http_body_util::BodyExt;
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(bytes)))
            .unwrap();
        let resp = self.client.request(req).await.ok()?;
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice(&body).ok()
    }

    /// One command of this session; panics on a WebDriver error.
    pub async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let body = if method == "GET" || method == "DELETE" { None } else { Some(body) };
        let v = self
            .raw(method, &format!("/session/{}{path}", self.session), body)
            .await
            .expect("chromedriver answers");
        if v["value"]["error"].is_string() {
            panic!("WebDriver {method} {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({"url": url})).await;
    }

    pub async fn try_find(&self, css: &str) -> Option<String> {
        let v = self
            .raw(
                "POST",
                &format!("/session/{}/element", self.session),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        v["value"][ELEMENT].as_str().map(str::to_string)
    }

    /// The element matching `css`, waiting up to [`PATIENCE`] for it.
    pub async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(e) = self.try_find(css).await {
                return e;
            }
            if Instant::now() > deadline {
                panic!(
                    "no element {css} within {PATIENCE:?}; page text: {}\nbrowser log: {:?}",
                    self.page_text().await,
                    self.logs().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/clear"), json!({})).await;
        self.cmd("POST", &format!("/element/{e}/value"), json!({"text": text})).await;
    }

    /// Chooses a local file in an `<input type=file>`.
    pub async fn type_into_file(&self, css: &str, path: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/value"), json!({"text": path})).await;
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/click"), json!({})).await;
    }

    /// The rendered text of the first element matching `css` (waiting up to [`PATIENCE`] for one).
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await;
        self.text_now(css).await.unwrap_or_default()
    }

    /// Read by a script, so that a page re-rendering meanwhile cannot leave a stale reference.
    async fn text_now(&self, css: &str) -> Option<String> {
        let v = self
            .script(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : null",
                json!([css]),
            )
            .await;
        v.as_str().map(str::to_string)
    }

    /// Waits up to [`PATIENCE`] until the text of `css` contains `want`; returns it.
    pub async fn wait_text(&self, css: &str, want: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let t = self.text_now(css).await.unwrap_or_default();
            if t.contains(want) {
                return t;
            }
            if Instant::now() > deadline {
                panic!("{css} never showed {want:?}; it shows {t:?}; browser log: {:?}", self.logs().await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn page_text(&self) -> String {
        self.script("return document.body ? document.body.innerText : ''", json!([]))
            .await
            .as_str()
            .unwrap_or("")
            .into()
    }

    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", json!({"script": script, "args": args})).await
    }

    pub async fn async_script(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/async", json!({"script": script, "args": args})).await
    }

    pub async fn cookies(&self) -> Vec<Value> {
        self.cmd("GET", "/cookie", json!({})).await.as_array().cloned().unwrap_or_default()
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd("POST", "/window/rect", json!({"width": width, "height": height})).await;
    }

    /// A PNG of the viewport, written to `dir/name.png`.
    pub async fn screenshot(&self, dir: &std::path::Path, name: &str) {
        use base64::Engine;
        let v = self.cmd("GET", "/screenshot", json!({})).await;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// The browser's console messages since the last call (errors from CSP refusals included).
    pub async fn logs(&self) -> Vec<String> {
        let v = self
            .raw("POST", &format!("/session/{}/se/log", self.session), Some(json!({"type": "browser"})))
            .await;
        v.and_then(|v| v["value"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|e| e["message"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
