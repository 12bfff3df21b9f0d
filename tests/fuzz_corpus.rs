//! Replays every fuzz corpus file (`fuzz/corpus/<target>/*`) through the same invariant checks
//! the libFuzzer targets run (`fuzz/checks.rs`), so CI covers the corpus on stable Rust.
//! See docs/FUZZING.md.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

#[allow(dead_code)]
#[path = "../fuzz/checks.rs"]
mod checks;

fn replay(target: &str) {
    let (_, check) = checks::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no fuzz target {target}"));
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {}: {e}", dir.display()))
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
    files.retain(|p| p.is_file());
    files.sort();
    assert!(
        !files.is_empty(),
        "corpus directory {} is empty",
        dir.display()
    );
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} corpus files fail (reproduce with `cargo fuzz run {target} <file>`):\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn every_target_has_a_corpus_and_a_test() {
    let names: Vec<&str> = checks::TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "resp_frame",
            "resp_command",
            "stream_scanner",
            "rdb_transfer",
            "link_frame",
            "log_record",
            "config",
            "rdb_objects"
        ]
    );
}

#[test]
fn resp_frame() {
    replay("resp_frame");
}

#[test]
fn resp_command() {
    replay("resp_command");
}

#[test]
fn stream_scanner() {
    replay("stream_scanner");
}

#[test]
fn rdb_transfer() {
    replay("rdb_transfer");
}

#[test]
fn link_frame() {
    replay("link_frame");
}

#[test]
fn log_record() {
    replay("log_record");
}

#[test]
fn config() {
    replay("config");
}

#[test]
fn rdb_objects() {
    replay("rdb_objects");
}
