//! Every input the fuzzers kept (fuzz/regressions/<target>/: crashes once
//! found, and seeds) runs through its target on every `cargo test`.

use std::path::Path;

#[test]
fn every_kept_input_runs_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
    let mut ran = 0;
    for (name, target) in citybrain_fuzz::TARGETS {
        let dir = root.join(name);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for f in entries {
            let path = f.unwrap().path();
            if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            let r = std::panic::catch_unwind(|| target(&data));
            assert!(r.is_ok(), "{} panics on {}", name, path.display());
            ran += 1;
        }
    }
    assert!(ran >= citybrain_fuzz::TARGETS.len(), "only {ran} kept inputs");
}
