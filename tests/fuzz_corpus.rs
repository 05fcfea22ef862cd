//! Replays the fuzz corpora on stable, without libFuzzer: every committed seed under
//! `fuzz/corpus/<target>/` and every kept crash under `fuzz/regressions/<target>/` goes
//! through the same oracle the fuzz target runs (`ringo::fuzz_api`). The `conn` replay
//! starts a real server, as the target does.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Once;

use ringo::fuzz_api::{self, chunked, conn, decode, head, router};

/// The corpus and regression files of `target`, sorted.
fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files: Vec<PathBuf> = ["corpus", "regressions"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(root.join(dir).join(target)).ok())
        .flatten()
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| !n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    files
}

/// Runs `check` on every input of `target`; fails naming each file that breaks it.
fn replay(target: &str, check: impl Fn(&[u8]) -> Result<(), String>) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no corpus for {target}");
    let mut failures = Vec::new();
    for f in &files {
        let data = std::fs::read(f).expect("readable corpus file");
        match catch_unwind(AssertUnwindSafe(|| check(&data))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("{}: {e}", f.display())),
            Err(_) => failures.push(format!("{}: panicked", f.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {target} inputs fail:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

fn count_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(fuzz_api::count_panics);
}

#[test]
fn conn_corpus() {
    count_panics();
    let before = fuzz_api::panics_seen();
    let target = conn::target();
    replay("conn", |data| target.run(data));
    target.health().expect("the server still answers");
    assert_eq!(fuzz_api::panics_seen(), before, "something panicked (the engine caught it)");
}

#[test]
fn router_corpus() {
    count_panics();
    replay("router", router::run);
}

#[test]
fn decode_corpus() {
    count_panics();
    replay("decode", decode::run);
}

/// The decoder agrees exactly with the strict RFC 9112 §7.1 reference (the seeds hold
/// the cases the old decoder was lenient on), whatever the cuts.
#[test]
fn chunked_corpus_strict() {
    count_panics();
    replay("chunked", |data| chunked::run(data, true));
}

/// The head parser's fast path answers as the general path does, on every seed and its
/// prefixes.
#[test]
fn head_corpus() {
    count_panics();
    replay("head", head::run);
}
