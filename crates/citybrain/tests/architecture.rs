//! Architecture invariants, checked against `cargo metadata`: every crate of
//! the workspace has a rule here, may use only the citybrain crates below it
//! (no arrow runs back up) and none of the I/O its floor must not know.

use std::collections::BTreeMap;

use serde_json::Value;

/// Each workspace crate's normal (not dev) dependencies, from `cargo metadata`.
fn workspace() -> BTreeMap<String, Vec<String>> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap_or_default().to_string())
                .collect();
            (p["name"].as_str().unwrap_or_default().to_string(), deps)
        })
        .collect()
}

/// HTTP, SQL and an async runtime: what a pure domain crate must not use.
const IO: &[&str] = &[
    "axum",
    "tokio",
    "rusqlite",
    "tokio-postgres",
    "deadpool-postgres",
    "reqwest",
    "sqlx",
    "tower",
    "hyper",
];
const HTTP_SERVER: &[&str] = &["axum", "tower", "hyper"];
const SQL: &[&str] = &["rusqlite", "sqlx", "tokio-postgres", "deadpool-postgres"];

/// Per crate: the citybrain crates it may use, and the outside ones it must not.
struct Rule {
    krate: &'static str,
    may_use: &'static [&'static str],
    banned: &'static [&'static [&'static str]],
}

const RULES: &[Rule] = &[
    // The hub's floors.
    Rule {
        krate: "citybrain-ngsild",
        may_use: &[],
        banned: &[IO],
    },
    Rule {
        krate: "citybrain-store",
        may_use: &["citybrain-ngsild"],
        banned: &[IO],
    },
    Rule {
        krate: "citybrain-store-sqlite",
        may_use: &["citybrain-ngsild", "citybrain-store"],
        banned: &[HTTP_SERVER, &["reqwest"]],
    },
    Rule {
        krate: "citybrain-store-postgres",
        may_use: &["citybrain-ngsild", "citybrain-store"],
        banned: &[HTTP_SERVER, &["reqwest", "rusqlite"]],
    },
    Rule {
        krate: "citybrain-hub",
        may_use: &["citybrain-ngsild", "citybrain-store"],
        banned: &[HTTP_SERVER, SQL],
    },
    // Who may do what: pure, no I/O (the API asks it, the store keeps tokens).
    Rule {
        krate: "citybrain-trust",
        may_use: &["citybrain-ngsild"],
        banned: &[IO],
    },
    // Rules as code: pure, no I/O (services decide with it, the binary loads files).
    Rule {
        krate: "citybrain-rules",
        may_use: &[],
        banned: &[IO],
    },
    // Digital government's domain: pure (the services-hub keeps its state).
    Rule {
        krate: "citybrain-services",
        may_use: &["citybrain-rules"],
        banned: &[IO],
    },
    // The services over the hub: state, timers and outbox as hub entities.
    Rule {
        krate: "citybrain-services-hub",
        may_use: &[
            "citybrain-hub",
            "citybrain-ngsild",
            "citybrain-rules",
            "citybrain-services",
            "citybrain-store",
        ],
        banned: &[HTTP_SERVER, SQL],
    },
    // Appeals (诉求响应): pure; it speaks of actors as the services do.
    Rule {
        krate: "citybrain-appeals",
        may_use: &["citybrain-services"],
        banned: &[IO],
    },
    // The appeals over the hub: appeals, updates, timers and metrics as hub entities.
    Rule {
        krate: "citybrain-appeals-hub",
        may_use: &[
            "citybrain-appeals",
            "citybrain-hub",
            "citybrain-ngsild",
            "citybrain-services",
            "citybrain-store",
        ],
        banned: &[HTTP_SERVER, SQL],
    },
    // The synthetic city the services' demo and benchmarks draw on: pure.
    Rule {
        krate: "citybrain-synthcity",
        may_use: &[],
        banned: &[IO],
    },
    Rule {
        krate: "citybrain-api",
        may_use: &[
            "citybrain-appeals",
            "citybrain-appeals-hub",
            "citybrain-ngsild",
            "citybrain-store",
            "citybrain-hub",
            "citybrain-rules",
            "citybrain-services",
            "citybrain-services-hub",
            "citybrain-trust",
        ],
        banned: &[SQL],
    },
    // The twin's floors know nothing of the hub, HTTP, SQL or a runtime.
    Rule {
        krate: "citybrain-net",
        may_use: &[],
        banned: &[IO],
    },
    Rule {
        krate: "citybrain-sim",
        may_use: &["citybrain-net"],
        banned: &[IO],
    },
    // The City Brain's control layer reads an Observation; it knows no hub.
    Rule {
        krate: "citybrain-control",
        may_use: &["citybrain-net", "citybrain-sim"],
        banned: &[IO],
    },
    Rule {
        krate: "citybrain-scenarios",
        may_use: &["citybrain-control", "citybrain-net", "citybrain-sim"],
        banned: &[IO],
    },
    Rule {
        krate: "citybrain-cockpit",
        may_use: &[],
        banned: &[IO],
    },
    // Where the halves meet: through the hub's API, never its SQL.
    Rule {
        krate: "citybrain-cockpit-web",
        may_use: &[
            "citybrain-api",
            "citybrain-cockpit",
            "citybrain-hub",
            "citybrain-ngsild",
            "citybrain-net",
            "citybrain-scenarios",
            "citybrain-trust",
        ],
        banned: &[SQL],
    },
    Rule {
        krate: "citybrain-live",
        may_use: &[
            "citybrain-control",
            "citybrain-control",
            "citybrain-hub",
            "citybrain-ngsild",
            "citybrain-net",
            "citybrain-sim",
            "citybrain-scenarios",
        ],
        banned: &[HTTP_SERVER, SQL, &["reqwest"]],
    },
    // The benchmark measures the backends against the raw databases.
    Rule {
        krate: "citybrain-bench",
        may_use: &[
            "citybrain-api",
            "citybrain-appeals",
            "citybrain-appeals-hub",
            "citybrain-hub",
            "citybrain-rules",
            "citybrain-services",
            "citybrain-services-hub",
            "citybrain-store",
            "citybrain-store-postgres",
            "citybrain-store-sqlite",
            "citybrain-synthcity",
        ],
        banned: &[],
    },
    // The fuzz targets' bodies: the input languages, nothing that does I/O.
    Rule {
        krate: "citybrain-fuzz",
        may_use: &[
            "citybrain-cockpit",
            "citybrain-net",
            "citybrain-ngsild",
            "citybrain-sim",
            "citybrain-trust",
        ],
        banned: &[IO],
    },
    // What the tests share; a dev-dependency only (checked below).
    Rule {
        krate: "citybrain-testkit",
        may_use: &[],
        banned: &[IO],
    },
    // The binary wires everything.
    Rule {
        krate: "citybrain",
        may_use: &[
            "citybrain-api",
            "citybrain-appeals",
            "citybrain-appeals-hub",
            "citybrain-bench",
            "citybrain-cockpit",
            "citybrain-cockpit-web",
            "citybrain-control",
            "citybrain-hub",
            "citybrain-live",
            "citybrain-net",
            "citybrain-ngsild",
            "citybrain-rules",
            "citybrain-scenarios",
            "citybrain-services",
            "citybrain-services-hub",
            "citybrain-sim",
            "citybrain-synthcity",
            "citybrain-trust",
            "citybrain-store",
            "citybrain-store-postgres",
            "citybrain-store-sqlite",
        ],
        banned: &[],
    },
];

#[test]
fn every_crate_has_a_rule_and_keeps_to_its_floor() {
    let ws = workspace();
    for name in ws.keys() {
        assert!(
            RULES.iter().any(|r| r.krate == name),
            "{name} has no rule in tests/architecture.rs: say which crates it may use"
        );
    }
    for rule in RULES {
        let deps = ws
            .get(rule.krate)
            .unwrap_or_else(|| panic!("{} has a rule but is not in the workspace", rule.krate));
        for d in deps {
            if d.starts_with("citybrain") {
                assert!(
                    rule.may_use.contains(&d.as_str()),
                    "{} must not depend on {d} (see ARCHITECTURE.md)",
                    rule.krate
                );
            }
            assert!(
                !rule.banned.iter().any(|b| b.contains(&d.as_str())),
                "{} must not depend on {d} (see ARCHITECTURE.md)",
                rule.krate
            );
        }
    }
}

#[test]
fn only_the_api_and_cockpit_web_crates_serve_http() {
    let ws = workspace();
    let servers: Vec<&str> = ws
        .iter()
        .filter(|(name, deps)| name.as_str() != "citybrain" && deps.iter().any(|d| d == "axum"))
        .map(|(name, _)| name.as_str())
        .collect();
    // The benchmark serves the API crate's router on a local port.
    assert_eq!(servers, ["citybrain-api", "citybrain-bench", "citybrain-cockpit-web"]);
}

#[test]
fn the_test_kit_is_never_a_normal_dependency() {
    for (name, deps) in workspace() {
        assert!(
            !deps.iter().any(|d| d == "citybrain-testkit"),
            "{name} depends on the test kit outside its tests"
        );
    }
}
