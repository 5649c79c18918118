//! Property tests for the query languages and geo predicates.

use citybrain_ngsild::geo::{build, GeoQuery, GeoRel};
use citybrain_ngsild::input::{parse_entity, InputLimits, Mode};
use citybrain_ngsild::q::Query;
use citybrain_ngsild::scope::ScopeQuery;
use citybrain_ngsild::{time, Entity, TermMap};
use proptest::prelude::*;
use serde_json::json;

fn entity(a: i64, b: i64, name: &str) -> Entity {
    let v = json!({"id": "urn:x:1", "type": "T", "a": a, "b": b, "name": name});
    parse_entity(&v, &TermMap::core(), &InputLimits::default(), Mode::Create)
        .unwrap()
        .into_entity(time::parse("2026-01-01T00:00:00Z").unwrap())
        .unwrap()
}

/// A random q expression with its meaning as a Rust closure over (a, b).
#[derive(Debug, Clone)]
enum Expr {
    Cmp(&'static str, &'static str, i64),
    Range(&'static str, i64, i64),
    List(&'static str, Vec<i64>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

impl Expr {
    fn text(&self) -> String {
        match self {
            Expr::Cmp(attr, op, n) => format!("{attr}{op}{n}"),
            Expr::Range(attr, lo, hi) => format!("{attr}=={lo}..{hi}"),
            Expr::List(attr, ns) => format!(
                "{attr}=={}",
                ns.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")
            ),
            Expr::And(x, y) => format!("({};{})", x.text(), y.text()),
            Expr::Or(x, y) => format!("({}|{})", x.text(), y.text()),
        }
    }
    fn eval(&self, a: i64, b: i64) -> bool {
        let v = |attr: &str| if attr == "a" { a } else { b };
        match self {
            Expr::Cmp(attr, op, n) => {
                let x = v(attr);
                match *op {
                    "==" => x == *n,
                    "!=" => x != *n,
                    ">" => x > *n,
                    ">=" => x >= *n,
                    "<" => x < *n,
                    _ => x <= *n,
                }
            }
            Expr::Range(attr, lo, hi) => (*lo..=*hi).contains(&v(attr)),
            Expr::List(attr, ns) => ns.contains(&v(attr)),
            Expr::And(x, y) => x.eval(a, b) && y.eval(a, b),
            Expr::Or(x, y) => x.eval(a, b) || y.eval(a, b),
        }
    }
}

fn expr() -> impl Strategy<Value = Expr> {
    let attr = prop_oneof![Just("a"), Just("b")];
    let op = prop_oneof![Just("=="), Just("!="), Just(">"), Just(">="), Just("<"), Just("<=")];
    let leaf = prop_oneof![
        (attr.clone(), op, -50i64..50).prop_map(|(a, o, n)| Expr::Cmp(a, o, n)),
        (attr.clone(), -50i64..50, 0i64..40).prop_map(|(a, lo, w)| Expr::Range(a, lo, lo + w)),
        (attr, prop::collection::vec(-50i64..50, 1..5)).prop_map(|(a, ns)| Expr::List(a, ns)),
    ];
    leaf.prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(x, y)| Expr::And(Box::new(x), Box::new(y))),
            (inner.clone(), inner).prop_map(|(x, y)| Expr::Or(Box::new(x), Box::new(y))),
        ]
    })
}

proptest! {
    #[test]
    fn q_parser_never_panics(s in ".{0,120}") {
        let _ = Query::parse(&s, &TermMap::core());
        let _ = ScopeQuery::parse(&s);
    }

    #[test]
    fn q_parser_never_panics_on_query_like_text(s in "[a-z0-9=!<>~;|().,\\[\\]\"#/+ -]{0,60}") {
        let _ = Query::parse(&s, &TermMap::core());
        let _ = ScopeQuery::parse(&s);
    }

    #[test]
    fn q_evaluation_matches_its_meaning(e in expr(), a in -60i64..60, b in -60i64..60) {
        let q = Query::parse(&e.text(), &TermMap::core()).unwrap();
        prop_assert_eq!(q.eval(&entity(a, b, "n")), e.eval(a, b), "q = {}", e.text());
    }

    #[test]
    fn string_equality_round_trips(s in "[A-Za-z0-9 _.:-]{1,20}") {
        let q = Query::parse(&format!("name=={}", serde_json::to_string(&s).unwrap()), &TermMap::core()).unwrap();
        prop_assert!(q.eval(&entity(0, 0, &s)));
        let q = Query::parse("name==\"\u{1}never\"", &TermMap::core()).unwrap();
        prop_assert!(!q.eval(&entity(0, 0, &s)));
    }

    #[test]
    fn point_in_rectangle(x in -170.0f64..170.0, y in -80.0f64..80.0, px in -179.0f64..179.0, py in -89.0f64..89.0, w in 0.5f64..9.0, h in 0.5f64..9.0) {
        let rect = json!([[[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]]]);
        let poly = build("Polygon", &rect, 100).unwrap();
        let p = build("Point", &json!([px, py]), 1).unwrap();
        // Stay clear of the boundary, where floating point decides.
        let margin = 1e-6;
        let on_edge = ((px - x).abs() < margin) || ((px - x - w).abs() < margin) || ((py - y).abs() < margin) || ((py - y - h).abs() < margin);
        prop_assume!(!on_edge);
        let inside = px > x && px < x + w && py > y && py < y + h;
        let q = |rel| GeoQuery::new(rel, poly.clone(), "l".into()).unwrap();
        prop_assert_eq!(q(GeoRel::Within).test(&p), inside);
        prop_assert_eq!(q(GeoRel::Intersects).test(&p), inside);
        prop_assert_eq!(q(GeoRel::Disjoint).test(&p), !inside);
    }

    #[test]
    fn near_is_monotone_and_symmetric(ax in -179.0f64..179.0, ay in -80.0f64..80.0, dx in -0.5f64..0.5, dy in -0.5f64..0.5, d in 1.0f64..100_000.0) {
        let a = build("Point", &json!([ax, ay]), 1).unwrap();
        let b = build("Point", &json!([(ax + dx).clamp(-180.0, 180.0), ay + dy]), 1).unwrap();
        let near = |from: &citybrain_ngsild::geo::GeoGeometry<f64>, max: f64| GeoQuery::new(GeoRel::Near { max_distance: Some(max), min_distance: None }, from.clone(), "l".into()).unwrap();
        let ab = near(&a, d).test(&b);
        prop_assert_eq!(ab, near(&b, d).test(&a), "distance is symmetric");
        if ab {
            prop_assert!(near(&a, d * 2.0).test(&b), "a larger maxDistance still matches");
        }
        let far = GeoQuery::new(GeoRel::Near { max_distance: None, min_distance: Some(d) }, a.clone(), "l".into()).unwrap();
        let dist = citybrain_ngsild::geo::distance_m(&b, &match &a { citybrain_ngsild::geo::GeoGeometry::Point(p) => *p, _ => unreachable!() });
        prop_assume!((dist - d).abs() > 1e-6);
        prop_assert_eq!(far.test(&b), !ab, "min and max distance split at d");
    }

    #[test]
    fn scope_subtree_matches_descendants(segs in prop::collection::vec("[a-z]{1,5}", 1..5), extra in prop::collection::vec("[a-z]{1,5}", 0..3)) {
        let base = format!("/{}", segs.join("/"));
        let mut full = segs.clone();
        full.extend(extra.iter().cloned());
        let scope = format!("/{}", full.join("/"));
        let subtree = format!("{base}/#");
        prop_assert!(ScopeQuery::parse(&subtree).unwrap().matches(std::slice::from_ref(&scope)));
        prop_assert_eq!(ScopeQuery::parse(&base).unwrap().matches(std::slice::from_ref(&scope)), extra.is_empty());
        let one_level = format!("{base}/+");
        prop_assert_eq!(ScopeQuery::parse(&one_level).unwrap().matches(&[scope]), extra.len() == 1);
    }
}
