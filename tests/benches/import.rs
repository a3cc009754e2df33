//! Benchmark: a bulk import of `IMPORT_BENCH_ROWS` rows (default 100,000) of
//! `IMPORT_BENCH_ROW_BYTES` (default 800: the item each row makes is just under 1 KB, one write
//! unit; 100,000 rows is an 80 MB file) through the import worker, against the local server
//! named by `AWS_ENDPOINT_URL_DYNAMODB` (run it with `make bench-import`, which starts one and
//! compares with boto3's batch_writer writing the same items). Without that variable it does
//! nothing.
//!
//! The file is written to disk and uploaded from there, so this process never holds it: its
//! peak RSS after the import, minus before, is the worker's own. Output, `key=value` lines:
//!
//! ```text
//! ours_rows=... secs=... ours_rows_per_s=...
//! requests total=... BatchWriteItem=... (ceil(rows/25)=...) other=...
//! wcu_per_row=... rcu_per_row=...
//! rss_before_mb=... rss_peak_mb=... file_mb=...
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use integration_tests::*;

fn local_endpoint() -> Option<String> {
    let url = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").ok().filter(|v| !v.is_empty())?;
    if url.contains("://127.0.0.1") || url.contains("://localhost") {
        Some(url)
    } else {
        eprintln!("error: AWS_ENDPOINT_URL_DYNAMODB={url} is not a local server; refusing to run");
        std::process::exit(2);
    }
}

/// CPU seconds this process has used (user + system), from /proc/self/stat.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line: 11 and 12 counted from after ")". Ticks
    // of 1/100 s (CLK_TCK on Linux).
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main]
async fn main() {
    let Some(endpoint) = local_endpoint() else {
        println!("skipped: AWS_ENDPOINT_URL_DYNAMODB is not set (run `make bench-import`)");
        return;
    };
    let env =
        |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let rows = env("IMPORT_BENCH_ROWS", 100_000);
    let row_bytes = env("IMPORT_BENCH_ROW_BYTES", 800).max(60);
    eprintln!("import: {rows} rows of ~{row_bytes} bytes against {endpoint}");

    let stack = Stack::new().await;
    let auth = stack.bearer(ALL_SCOPES).await;
    let definition = r#"{"name": "bench", "userIdentifierProperty": "Email",
      "properties": [{"path": "Type", "name": "Customer_Type", "type": "String"},
                     {"path": "Notes", "name": "Notes", "type": "String"},
                     {"path": "Seats", "name": "Seats", "type": "Number"}]}"#;
    let (integration, _) = create_integration(&stack, &auth, definition).await;
    let path = format!("/public/v1/integrations/{integration}/imports");
    let a = call_app(&stack.imports_app(), &auth, "POST", &path, Some(r#"{"format": "csv"}"#)).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let import_id = a.body["importId"].as_str().unwrap().to_string();

    // ~row_bytes per row; the item adds ~190 bytes of key and attribute names.
    let file_path = std::env::temp_dir().join(format!("bench-import-{import_id}.csv"));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file_path).unwrap());
        writeln!(f, "Email,Type,Notes,Seats").unwrap();
        let notes = "n".repeat(row_bytes - 60);
        for i in 0..rows {
            writeln!(f, "user{i}@bench.example,type{},{notes},{i}", i % 7).unwrap();
        }
    }
    let file_mb = std::fs::metadata(&file_path).unwrap().len() as f64 / 1e6;
    let key = files::upload_key(&stack.account, &integration, &import_id);
    let body = aws_sdk_s3::primitives::ByteStream::from_path(&file_path).await.unwrap();
    stack.files.client().put_object().bucket(stack.files.bucket()).key(&key).body(body).send().await.unwrap();
    let _ = std::fs::remove_file(&file_path);

    let rss_before = peak_rss_mb();
    let units_before = stack.units();
    stack.counter.reset();
    let event = upload_event("bench", &key);
    let worker = stack.import_worker(3600);
    let (start, cpu_start) = (Instant::now(), cpu_secs());
    let answer = import_worker::handle(&worker, event).await;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu_start;
    let ops = stack.counter.take();
    let units = stack.units() - units_before;
    let rss_peak = peak_rss_mb();
    assert!(answer.batch_item_failures.is_empty());

    let mut by_op: BTreeMap<String, usize> = BTreeMap::new();
    for op in ops {
        *by_op.entry(op).or_default() += 1;
    }
    let total: usize = by_op.values().sum();
    let batches = by_op.get("BatchWriteItem").copied().unwrap_or(0);
    let detail: Vec<String> = by_op.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("ours_rows={rows} secs={secs:.2} ours_rows_per_s={:.1}", rows as f64 / secs);
    // The worker's own CPU (reading, judging, signing and sending requests): what bounds its
    // rate once DynamoDB answers faster than the local server does.
    println!("cpu_secs={cpu:.2} rows_per_cpu_s={:.0}", rows as f64 / cpu);
    println!(
        "requests total={total} BatchWriteItem={batches} (ceil(rows/25)={}) other={} [{}]",
        rows.div_ceil(25),
        total - batches,
        detail.join(" ")
    );
    println!("wcu_per_row={:.4} rcu_per_row={:.6}", units.wcu / rows as f64, units.rcu / rows as f64);
    println!("rss_before_mb={rss_before:.1} rss_peak_mb={rss_peak:.1} file_mb={file_mb:.1}");
    // A fresh token: a long import outlives the first one.
    let auth = stack.bearer(ALL_SCOPES).await;
    let a = call_app(&stack.imports_app(), &auth, "GET", &format!("{path}/{import_id}"), None).await;
    assert_eq!(a.body["status"], "completed", "{}", a.body);
    assert_eq!(a.body["accepted"].as_u64(), Some(rows as u64), "{}", a.body);
    // Per-key load as the meter saw it (units multiplied by the server's scale factor).
    let m = meter();
    let top = &m["keys"][0];
    println!(
        "meter scale={} throttled={} busiest_key={} busiest_key_peak_wcu_per_s={}",
        m["scale"], m["throttled"], top["pk"], top["peak_wcu_per_s"]
    );
}
