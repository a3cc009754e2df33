//! The fuzz targets' harness on stable (`make test`): every file of the seed corpus
//! (`fuzz/seeds/<target>/`) and every input a fuzzer ever crashed on goes through the same
//! code paths and checks as under `make fuzz` (see fuzz/README.md).

#[path = "../../fuzz/src/lib.rs"]
mod harness;

use std::path::PathBuf;

fn seeds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds")
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
fn every_target_has_seeds() {
    for target in harness::TARGETS {
        assert!(seeds_dir().join(target).is_dir(), "no fuzz/seeds/{target}");
    }
}
