//! The fuzz targets' harness on stable (`make test`): every file of the seed corpus
//! (`fuzz/seeds/<target>/`) and every input a fuzzer ever crashed on goes through the same
//! code paths and checks as under `make fuzz` (see fuzz/README.md).

#[path = "../../../fuzz/src/lib.rs"]
mod harness;

use std::path::PathBuf;

fn seeds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds")
}

/// Runs every seed of `target` through its harness.
fn replay(target: &str) {
    let dir = seeds_dir().join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{target}: only {} seeds", files.len());
    for file in files {
        let data = std::fs::read(&file).expect("a seed file");
        let run = std::panic::catch_unwind(|| harness::run(target, &data));
        assert!(run.is_ok(), "{target}: {} fails", file.display());
    }
}

#[test]
fn user_data_seeds() {
    replay("user_data");
}

#[test]
fn segment_seeds() {
    replay("segment");
}

#[test]
fn token_request_seeds() {
    replay("token_request");
}

#[test]
fn jwt_verify_seeds() {
    replay("jwt_verify");
}

#[test]
fn import_rows_seeds() {
    replay("import_rows");
}

#[test]
fn every_target_has_seeds() {
    for target in harness::TARGETS {
        assert!(seeds_dir().join(target).is_dir(), "no fuzz/seeds/{target}");
    }
}

// Inputs the fuzzers crashed on, each also a file of fuzz/seeds/<target>/.

/// `user_data`, 2026-11-23, after 57 s (506,630 runs): a Number whose magnitude was judged
/// through an f64 let a zero with an exponent past i64 through (and `1e-400`, which an f64
/// rounds to 0); DynamoDB refuses both, so the write would have failed after validation.
#[test]
fn user_data_number_magnitude_is_read_from_the_text() {
    use domain::integration::AttrType;
    use domain::user_data::typed;
    use serde_json::json;

    harness::user_data(
        br#"{"data": [{"user.id": "n", "n": "0000000027777777"}, {"user": {"id": "p"}, "n": "0e12600000000000000000000000000000"}]}"#,
    );
    for refused in ["0e12600000000000000000000000000000", "1e-400", "0.1e-130", "10e125", "0e126"] {
        let reason = typed(AttrType::Number, json!(refused)).expect_err(refused);
        assert!(reason.to_string().contains("outside the storable range"), "{refused}: {reason}");
    }
    for kept in ["0", "1e-130", "9.9999999999999999999999999999999999999e125", "-12.50", "0e-130"] {
        assert!(typed(AttrType::Number, json!(kept)).is_ok(), "{kept}");
    }
}
