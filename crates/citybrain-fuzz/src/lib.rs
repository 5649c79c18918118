//! # citybrain-fuzz — what the fuzzers feed hostile input to
//!
//! One function per fuzz target: the input languages citybrain accepts from
//! outside (NGSI-LD entity bodies, subscriptions, the q / scopeQ / type /
//! orderBy languages, geometries, SUMO network and route files, the
//! data-sharing policy, cockpit definitions). Each takes arbitrary bytes and
//! must return — an error is fine, a panic, a hang or unbounded memory is a
//! bug. `fuzz/` (cargo-fuzz, nightly) drives them; `tests/regressions.rs`
//! replays every input in `fuzz/regressions/<target>/` on stable, so a crash
//! once found stays fixed.

#![forbid(unsafe_code)]

use citybrain_ngsild::input::{parse_entity, InputLimits, Mode};
use citybrain_ngsild::TermMap;
use serde_json::Value;

/// A fuzz target's body: any bytes in, nothing out (a panic is the finding).
pub type Target = fn(&[u8]);

/// The targets, by the name of their folder in fuzz/regressions/.
pub const TARGETS: &[(&str, Target)] = &[
    ("ngsild_entity", ngsild_entity),
    ("ngsild_subscription", ngsild_subscription),
    ("query_languages", query_languages),
    ("geometry", geometry),
    ("sumo_xml", sumo_xml),
    ("policy", policy),
    ("cockpit", cockpit),
];

fn json(data: &[u8]) -> Option<Value> {
    serde_json::from_slice(data).ok()
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// An entity body, created and merged, then rendered back.
pub fn ngsild_entity(data: &[u8]) {
    let Some(v) = json(data) else { return };
    let ctx = TermMap::core();
    let limits = InputLimits::default();
    for mode in [Mode::Create, Mode::Merge] {
        if let Ok(f) = parse_entity(&v, &ctx, &limits, mode) {
            if let Ok(e) = f.into_entity(chrono::DateTime::UNIX_EPOCH) {
                let o = citybrain_ngsild::render::RenderOptions::default();
                let _ = citybrain_ngsild::render::entity(&e, &ctx, &o);
            }
        }
    }
}

/// A subscription document.
pub fn ngsild_subscription(data: &[u8]) {
    let Some(Value::Object(m)) = json(data) else { return };
    let _ = citybrain_ngsild::subscription::compile(&m, &TermMap::core(), 10_000);
}

/// q, scopeQ, type expressions and orderBy, each parsed from the same text,
/// and a parsed q evaluated on an entity.
pub fn query_languages(data: &[u8]) {
    let Some(s) = text(data) else { return };
    if s.len() > 4096 {
        return; // the API's own limit on an expression
    }
    let ctx = TermMap::core();
    if let Ok(q) = citybrain_ngsild::q::Query::parse(s, &ctx) {
        let mut e =
            citybrain_ngsild::Entity::new("urn:x".into(), vec!["T".into()], vec![], chrono::DateTime::UNIX_EPOCH);
        e.attrs.insert(
            ctx.expand("a"),
            vec![serde_json::json!({"type": "Property", "value": 1})
                .as_object()
                .cloned()
                .unwrap_or_default()],
        );
        let _ = q.eval(&e);
    }
    let _ = citybrain_ngsild::scope::ScopeQuery::parse(s);
    let _ = citybrain_ngsild::selector::TypeExpr::parse(s, &ctx);
    let _ = citybrain_ngsild::order::OrderBy::parse(s, &ctx);
    let _ = citybrain_ngsild::geo::GeoRel::parse(s);
}

/// A GeoJSON geometry.
pub fn geometry(data: &[u8]) {
    let Some(v) = json(data) else { return };
    let _ = citybrain_ngsild::geo::parse_geometry(&v, 10_000);
}

const GRID: &str = include_str!("../../citybrain-net/tests/data/grid3.net.xml");

/// A SUMO network; and the same bytes as routes and additionals on a known network.
pub fn sumo_xml(data: &[u8]) {
    let Some(s) = text(data) else { return };
    static NET: std::sync::OnceLock<Option<citybrain_net::Network>> = std::sync::OnceLock::new();
    let _ = citybrain_net::sumo::read_net_str("fuzz.net.xml", s);
    if let Some(net) = NET.get_or_init(|| citybrain_net::sumo::read_net_str("grid3.net.xml", GRID).ok()) {
        if let Ok(add) = citybrain_sim::additional::Additional::read_str(net, "fuzz.add.xml", s) {
            let _ = citybrain_sim::demand::Demand::read_str_with(net, &add, "fuzz.rou.xml", s);
        }
        let _ = citybrain_sim::demand::Demand::read_str(net, "fuzz.rou.xml", s);
    }
}

/// A data-sharing policy, and what it opens to each role.
pub fn policy(data: &[u8]) {
    let Some(s) = text(data) else { return };
    if let Ok(p) = citybrain_trust::policy::Policy::parse(s, "fuzz.json") {
        let officer = citybrain_trust::Principal {
            actor: "fuzz".into(),
            role: citybrain_trust::Role::Officer,
            departments: p.departments().map(|(k, _)| k.to_string()).collect(),
            subject: Some("urn:x".into()),
            tenants: vec![String::new()],
        };
        let _ = p.visibility(&officer);
        let _ = p.may_write(&officer, &["T".to_string()], ["a"]);
    }
}

/// A cockpit definition.
pub fn cockpit(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let _ = citybrain_cockpit::parse(s);
}
