//! What citybrain's tests share: golden files (checked-in expected figures,
//! rewritten with `UPDATE_GOLDEN=1` — say why in the commit), the twin's
//! test networks, and generated demand. For dev-dependencies only.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Whether this run rewrites golden files instead of checking them.
pub fn updating_goldens() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some()
}

fn read_golden(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write_golden(path: &Path, got: &Value) {
    // The diff, so that a rewrite is never silent.
    let old = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    match &old {
        None => eprintln!("golden {}: written anew", path.display()),
        Some(old) if old == got => {}
        Some(old) => {
            eprintln!("golden {} changed:", path.display());
            print_diff("", old, got);
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, serde_json::to_string_pretty(got).unwrap() + "\n").unwrap();
}

/// Prints, to stderr, every leaf of `old` and `new` that differs, by path.
fn print_diff(at: &str, old: &Value, new: &Value) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => print_diff(&format!("{at}.{k}"), v, w),
                    None => eprintln!("  {at}.{k}: {v} -> (gone)"),
                }
            }
            for (k, w) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
                eprintln!("  {at}.{k}: (new) -> {w}");
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                print_diff(&format!("{at}[{i}]"), v, w);
            }
        }
        (v, w) if v != w => eprintln!("  {at}: {v} -> {w}"),
        _ => {}
    }
}

/// `got` must equal the golden file at `path` exactly.
pub fn assert_golden(path: impl AsRef<Path>, got: &Value) {
    let path = path.as_ref();
    if updating_goldens() {
        return write_golden(path, got);
    }
    assert_eq!(
        got,
        &read_golden(path),
        "{} differs from its golden file; if intended, regenerate with UPDATE_GOLDEN=1, review the diff and say why",
        path.display()
    );
}

/// Every number of the golden object at `path` must be matched by `got`'s
/// within `relative` (of the golden value, at least of 1).
pub fn assert_golden_within(path: impl AsRef<Path>, got: &Value, relative: f64) {
    let path = path.as_ref();
    if updating_goldens() {
        return write_golden(path, got);
    }
    let want = read_golden(path);
    let want = want
        .as_object()
        .unwrap_or_else(|| panic!("{}: not an object", path.display()));
    for (k, w) in want {
        let w = w
            .as_f64()
            .unwrap_or_else(|| panic!("{}: {k} is not a number", path.display()));
        let g = got[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} missing from the figures"));
        assert!(
            (g - w).abs() <= relative * w.abs().max(1.0),
            "{k}: {g} against {w} in {} (UPDATE_GOLDEN=1 to accept, and say why)",
            path.display()
        );
    }
}

/// A file of the twin's test data (`crates/citybrain-sim/tests/data`).
pub fn sim_data(name: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../citybrain-sim/tests/data");
    root.join(name).display().to_string()
}

/// Flows of 180 veh/h between the outer edges of `grid3.net.xml` (a 3×3
/// netgenerate grid), in every direction, for `seconds`; written in `dir`.
pub fn grid_demand_file(dir: &tempfile::TempDir, seconds: usize) -> String {
    let reverse = |e: &str| format!("{}{}", &e[2..], &e[..2]);
    let edges = ["A0A1", "A2A1", "C0C1", "C2C1", "A0B0", "C0B0", "A2B2", "C2B2"];
    let mut s = String::from("<routes>\n");
    for (i, from) in edges.iter().enumerate() {
        for (j, to) in edges.iter().enumerate() {
            if i != j && from[2..] != to[..2] && (i + j) % 2 == 0 {
                s.push_str(&format!(
                    "  <flow id=\"f{i}_{j}\" begin=\"0\" end=\"{seconds}\" vehsPerHour=\"180\" from=\"{from}\" to=\"{to}\" departLane=\"best\" departSpeed=\"max\"/>\n",
                    to = reverse(to)
                ));
            }
        }
    }
    s.push_str("</routes>\n");
    let p = dir.path().join("grid.rou.xml");
    std::fs::write(&p, s).unwrap();
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goldens_compare_exactly_or_within_a_tolerance() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.json");
        write_golden(&p, &serde_json::json!({"a": 100.0, "b": 2}));
        assert_golden(&p, &serde_json::json!({"a": 100.0, "b": 2}));
        assert_golden_within(&p, &serde_json::json!({"a": 101.0, "b": 2.01}), 0.02);
        let off = std::panic::catch_unwind(|| assert_golden_within(&p, &serde_json::json!({"a": 103.0, "b": 2}), 0.02));
        assert!(off.is_err());
        let differs = std::panic::catch_unwind(|| assert_golden(&p, &serde_json::json!({"a": 100.0})));
        assert!(differs.is_err());
    }

    #[test]
    fn the_grid_demand_runs_between_outer_edges() {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(grid_demand_file(&dir, 900)).unwrap();
        assert!(text.contains("from=\"A0A1\" to=\"C1C0\""), "{text}");
        assert_eq!(text.matches("<flow").count(), 24);
        assert!(std::path::Path::new(&sim_data("grid3.net.xml")).exists());
    }
}
