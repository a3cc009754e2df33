//! Hostile import files through the import worker: each ends `completed` or `failed` with a
//! reason, at a cost bounded by what the file holds, and with the worker's memory bounded
//! whatever the file's size.
//!
//! `make test` runs each file at `HOSTILE_MB` = 4 (outcomes and costs). `make hostile-imports`
//! runs each test in a process of its own at 100 MB and prints its `HOSTILE` line: outcome,
//! requests, write units and the worker's peak memory (the process's high-water mark after the
//! import, less before it; the file is written to disk and uploaded from there, never held).

use std::io::Write;

use integration_tests::*;
use serde_json::{Value, json};

const CRM: &str = r#"{"name": "CRM", "userIdentifierProperty": "Email",
  "properties": [{"path": "Type", "name": "Customer_Type", "type": "String"},
                 {"path": "Vip", "name": "Vip", "type": "Boolean"}]}"#;

fn megabytes() -> usize {
    std::env::var("HOSTILE_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(4)
}

struct Ran {
    status: Value,
    requests: usize,
    wcu: f64,
    file_bytes: u64,
}

/// Writes the file with `write` (to disk), imports it as `format`, and runs legs to the end.
async fn run(kind: &str, format: &str, write: impl FnOnce(&mut dyn Write)) -> Ran {
    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let (integration, _) = create_integration(&stack, &auth, CRM).await;
    let path = format!("/public/v1/integrations/{integration}/imports");
    let a =
        call_app(&stack.imports_app(), &auth, "POST", &path, Some(&json!({"format": format}).to_string()))
            .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let id = a.body["importId"].as_str().unwrap().to_string();
    let file = std::env::temp_dir().join(format!("hostile-{kind}-{id}"));
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        write(&mut out);
        out.flush().unwrap();
    }
    let file_bytes = std::fs::metadata(&file).unwrap().len();
    let key = files::upload_key(&stack.account, &integration, &id);
    let body = aws_sdk_s3::primitives::ByteStream::from_path(&file).await.unwrap();
    stack.files.client().put_object().bucket(stack.files.bucket()).key(&key).body(body).send().await.unwrap();
    let _ = std::fs::remove_file(&file);

    let (rss_before, units_before) = (peak_rss_mb(), stack.units());
    stack.counter.reset();
    let marker = format!("{key}{}", files::RESUME_SUFFIX);
    let mut next = key.clone();
    for leg in 0..100 {
        let answer =
            import_worker::handle(&stack.import_worker(600), upload_event(&format!("m-{leg}"), &next)).await;
        assert!(answer.batch_item_failures.is_empty(), "{kind}: {answer:?}");
        next = marker.clone();
        let s = call_app(&stack.imports_app(), &auth, "GET", &format!("{path}/{id}"), None).await.body;
        if s["status"] == "completed" || s["status"] == "failed" {
            let requests = stack.counter.take().len();
            let wcu = (stack.units() - units_before).wcu;
            let rss = peak_rss_mb() - rss_before;
            println!(
                "HOSTILE kind={kind} file_mb={:.1} status={} failure={:?} rows={} accepted={} rejected={} \
                 requests={requests} wcu={wcu:.1} rss_peak_delta_mb={rss:.1}",
                file_bytes as f64 / 1e6,
                s["status"],
                s["failure"].as_str().unwrap_or(""),
                s["rowsRead"],
                s["accepted"],
                s["rejected"],
            );
            return Ran { status: s, requests, wcu, file_bytes };
        }
    }
    panic!("{kind}: not ended after 100 legs");
}

fn repeat(out: &mut dyn Write, unit: &[u8], bytes: usize) {
    let block = unit.repeat((64 * 1024 / unit.len()).max(1));
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len());
        out.write_all(&block[..n]).unwrap();
        left -= n;
    }
}

/// Requests (and write units: each write is of the import's small record) a file may cost that
/// writes no user: the slot, the lease, a checkpoint per 8 MiB page, the end, and the reads
/// around them.
fn bounded_cost(r: &Ran) -> usize {
    20 + 4 * (r.file_bytes as usize / (8 << 20))
}

#[tokio::test]
async fn a_file_of_commas_fails_at_the_field_bound() {
    let r = run("commas", "csv", |out| {
        out.write_all(b"Email\n").unwrap();
        repeat(out, b",", megabytes() << 20);
    })
    .await;
    assert_eq!(r.status["status"], "failed");
    assert!(r.status["failure"].as_str().unwrap().contains("more than 16384 fields"), "{}", r.status);
    assert!(
        r.requests <= bounded_cost(&r) && r.wcu <= bounded_cost(&r) as f64,
        "{} requests, {} WCU",
        r.requests,
        r.wcu
    );
}

#[tokio::test]
async fn a_file_of_line_ends_completes_with_no_rows() {
    let r = run("newlines", "ndjson", |out| repeat(out, b"\n", megabytes() << 20)).await;
    assert_eq!((r.status["status"].as_str(), r.status["rowsRead"].as_i64()), (Some("completed"), Some(0)));
    assert!(
        r.requests <= bounded_cost(&r) && r.wcu <= bounded_cost(&r) as f64,
        "{} requests, {} WCU",
        r.requests,
        r.wcu
    );
    let r = run("newlines-csv", "csv", |out| repeat(out, b"\r\n", megabytes() << 20)).await;
    assert_eq!(r.status["status"], "failed", "no header: {}", r.status);
}

#[tokio::test]
async fn a_huge_cell_on_every_row_is_rejected_row_by_row_with_a_bounded_report() {
    let cell = "x".repeat(1_000_000);
    let rows = megabytes();
    let r = run("huge-cells", "csv", |out| {
        out.write_all(b"Email,Vip\n").unwrap();
        for i in 0..rows {
            writeln!(out, "u{i}@x.com,{cell}").unwrap();
        }
    })
    .await;
    assert_eq!(r.status["status"], "completed");
    assert_eq!(r.status["rejected"].as_u64(), Some(rows as u64));
    let (code, report) = http("GET", r.status["errorsUrl"].as_str().unwrap(), Vec::new()).await;
    assert_eq!(code, 200);
    assert!(report.len() < 300 * (rows + 1), "{} bytes of report for {rows} rows", report.len());
}

#[tokio::test]
async fn a_header_of_300_kb_completes() {
    let r = run("wide-header", "csv", |out| {
        writeln!(out, "Email,Type,{}", "H".repeat(300 * 1024)).unwrap();
        for i in 0..1000 {
            writeln!(out, "u{i}@x.com,t,z").unwrap();
        }
    })
    .await;
    assert_eq!((r.status["status"].as_str(), r.status["accepted"].as_i64()), (Some("completed"), Some(1000)));
}

#[tokio::test]
async fn bytes_that_are_not_utf8_mid_file_fail_it_after_the_rows_before() {
    let r = run("bad-utf8", "csv", |out| {
        out.write_all(b"Email,Type\n").unwrap();
        for i in 0..100 {
            writeln!(out, "u{i}@x.com,t").unwrap();
        }
        out.write_all(b"bad@x.com,\xff\xfe\n").unwrap();
        out.write_all(b"late@x.com,t\n").unwrap();
    })
    .await;
    assert_eq!(r.status["status"], "failed");
    assert!(r.status["failure"].as_str().unwrap().contains("UTF-8"), "{}", r.status);
}

#[tokio::test]
async fn a_bom_and_cr_only_line_ends_are_read_as_rows() {
    let r = run("bom-cr", "csv", |out| {
        out.write_all(b"\xEF\xBB\xBFEmail,Type\r").unwrap();
        for i in 0..100 {
            write!(out, "u{i}@x.com,t\r").unwrap();
        }
    })
    .await;
    assert_eq!((r.status["status"].as_str(), r.status["accepted"].as_i64()), (Some("completed"), Some(100)));
}

/// Uploads are read as they are: a gzip file is bytes, not a CSV (no decompression, so no
/// bomb can expand).
#[tokio::test]
async fn a_compressed_file_is_not_expanded() {
    // A gzip member header, then bytes that are not text.
    let r = run("gzip", "csv", |out| {
        out.write_all(&[0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0x03]).unwrap();
        repeat(out, &[0xed, 0xc1, 0x01, 0x0d, 0x00, 0x00, 0x00, 0xc2], 100 * 1024);
    })
    .await;
    assert_eq!(r.status["status"], "failed");
    assert!(r.file_bytes < 200 * 1024);
}
