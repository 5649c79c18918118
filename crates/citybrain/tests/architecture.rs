//! Architecture invariants, checked: what each crate must not depend on.

fn manifest(krate: &str) -> String {
    let path = format!("{}/../{krate}/Cargo.toml", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn deps(krate: &str) -> Vec<String> {
    let text = manifest(krate);
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_deps = l == "[dependencies]";
            continue;
        }
        if in_deps {
            if let Some((name, _)) = l.split_once('=') {
                out.push(name.trim().trim_end_matches(".workspace").to_string());
            }
        }
    }
    out
}

/// What a pure domain crate must not use: HTTP, SQL, an async runtime.
const NO_IO: &[&str] = &["axum", "tokio", "rusqlite", "reqwest", "sqlx", "tower", "hyper"];
/// The twin's crates additionally know nothing of the hub.
const TWIN: &[&str] = &[
    "axum",
    "tokio",
    "rusqlite",
    "reqwest",
    "sqlx",
    "tower",
    "hyper",
    "citybrain-hub",
];

#[test]
fn domain_crates_know_no_http_sql_or_runtime() {
    let rules: &[(&str, &[&str])] = &[
        ("citybrain-ngsild", NO_IO),
        ("citybrain-store", NO_IO),
        ("citybrain-hub", &["axum", "rusqlite", "sqlx", "tower", "hyper"]),
        ("citybrain-store-sqlite", &["axum", "reqwest", "tower", "hyper"]),
        ("citybrain-net", TWIN),
        ("citybrain-sim", TWIN),
        ("citybrain-scenarios", TWIN),
        ("citybrain-cockpit", TWIN),
    ];
    for (krate, banned) in rules {
        let d = deps(krate);
        for b in *banned {
            assert!(
                !d.iter().any(|x| x == b),
                "{krate} must not depend on {b} (see ARCHITECTURE.md)"
            );
        }
    }
}

#[test]
fn only_the_api_crate_speaks_http_server() {
    for krate in [
        "citybrain-ngsild",
        "citybrain-store",
        "citybrain-hub",
        "citybrain-store-sqlite",
    ] {
        assert!(!deps(krate).iter().any(|d| d == "axum"), "{krate} uses axum");
    }
    assert!(deps("citybrain-api").iter().any(|d| d == "axum"));
}
