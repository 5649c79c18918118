//! The shipped cockpits are valid; a broken definition is refused with the
//! field that is wrong; panels show what the entities say.

use citybrain_cockpit::definition::{parse, Aggregate, PanelKind};
use citybrain_cockpit::panel::{aggregate, evaluate, PanelData};
use proptest::prelude::*;
use serde_json::json;

fn dashboards() -> Vec<(String, String)> {
    let dir = format!("{}/../../dashboards", env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json") && !p.ends_with("schema.json"))
        .map(|p| (p.display().to_string(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn every_shipped_cockpit_is_valid_and_uses_its_file_name_as_uid() {
    let all = dashboards();
    assert!(all.len() >= 3, "{all:?}");
    for (path, text) in &all {
        let d = parse(text).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(path.ends_with(&format!("{}.json", d.uid)), "{path}: uid {}", d.uid);
    }
}

fn minimal() -> serde_json::Value {
    json!({
        "schemaVersion": 1, "uid": "t", "title": {"en": "T", "zh": "测"}, "tier": "street",
        "panels": [{"id": "a", "type": "kpi", "title": {"en": "A", "zh": "甲"},
                    "gridPos": {"x": 0, "y": 0, "w": 6, "h": 4},
                    "query": {"type": "OffStreetParking", "attr": "availableSpotNumber"}}]
    })
}

fn error_of(v: serde_json::Value) -> String {
    parse(&v.to_string()).unwrap_err().to_string()
}

#[test]
fn a_broken_definition_names_the_field() {
    assert!(parse(&minimal().to_string()).is_ok());
    let mut v = minimal();
    v["panels"][0]["gridPos"]["w"] = json!(30);
    assert!(error_of(v).starts_with("panels[0].gridPos.w: x + w = 30"));
    let mut v = minimal();
    v["panels"][0]["type"] = json!("pie");
    let e = error_of(v);
    assert!(e.starts_with("panels[0].type: unknown variant `pie`"), "{e}");
    let mut v = minimal();
    v["panels"][0]["colour"] = json!("red");
    let e = error_of(v);
    assert!(e.starts_with("panels[0].colour: unknown field `colour`"), "{e}");
    let mut v = minimal();
    v["panels"][0]["query"]["attr"] = serde_json::Value::Null;
    assert!(error_of(v).starts_with("panels[0].query.attr: an attribute is needed"));
    let mut v = minimal();
    v["panels"][0]["title"]["zh"] = json!("");
    assert!(error_of(v).starts_with("panels[0].title: needs both"));
    let mut v = minimal();
    v["panels"][0]["query"]["idPrefix"] = json!("urn:x:${district}:");
    assert!(error_of(v).contains("'${district}' names no variable"));
    let mut v = minimal();
    let second = v["panels"][0].clone();
    v["panels"].as_array_mut().unwrap().push(second);
    assert!(error_of(v).starts_with("panels[1].id: 'a' is used by another panel"));
    let mut v = minimal();
    let mut second = v["panels"][0].clone();
    second["id"] = json!("b");
    second["gridPos"]["x"] = json!(3);
    v["panels"].as_array_mut().unwrap().push(second);
    assert!(error_of(v).starts_with("panels[1].gridPos: overlaps panel 'a'"));
    let mut v = minimal();
    v["schemaVersion"] = json!(2);
    assert!(error_of(v).starts_with("schemaVersion: 2 is not supported"));
    let mut v = minimal();
    v["panels"][0]["type"] = json!("map");
    assert!(error_of(v).starts_with("panels[0].map: a map panel needs"));
    assert!(parse("{").unwrap_err().to_string().contains("EOF"));
}

#[test]
fn variables_must_offer_their_default_and_be_referenced_by_name() {
    let mut v = minimal();
    v["variables"] = json!([{"name": "district", "label": {"en": "District", "zh": "区"}, "default": "x",
                             "options": [{"value": "shangcheng", "label": {"en": "Shangcheng", "zh": "上城"}}]}]);
    assert!(error_of(v.clone()).starts_with("variables[0].default: must be one of the options"));
    v["variables"][0]["default"] = json!("shangcheng");
    v["panels"][0]["query"]["idPrefix"] = json!("urn:x:${district}:");
    let d = parse(&v.to_string()).unwrap();
    assert_eq!(d.variables[0].name, "district");
}

fn lots() -> Vec<serde_json::Value> {
    vec![
        json!({"id": "urn:ngsi-ld:OffStreetParking:d:a", "type": "OffStreetParking", "name": "A", "availableSpotNumber": 5,
               "location": {"type": "Point", "coordinates": [120.17, 30.26]}}),
        json!({"id": "urn:ngsi-ld:OffStreetParking:d:b", "type": "OffStreetParking", "name": "B", "availableSpotNumber": 12,
               "location": {"type": "Point", "coordinates": [120.18, 30.25]}}),
        json!({"id": "urn:ngsi-ld:OffStreetParking:e:c", "type": "OffStreetParking", "name": "C", "availableSpotNumber": 7}),
        json!({"id": "urn:ngsi-ld:TrafficFlowObserved:d:edge1", "type": "TrafficFlowObserved", "queueLength": 3}),
    ]
}

#[test]
fn panels_reduce_the_entities_they_read() {
    let mut v = minimal();
    v["panels"][0]["query"]["idPrefix"] = json!("urn:ngsi-ld:OffStreetParking:d:");
    let d = parse(&v.to_string()).unwrap();
    assert_eq!(
        evaluate(&d.panels[0], &[], &lots()),
        PanelData::Value {
            value: Some(17.0),
            matched: 2
        }
    );
    // Nothing matches: no value (not zero).
    assert_eq!(
        evaluate(&d.panels[0], &[], &[]),
        PanelData::Value {
            value: None,
            matched: 0
        }
    );
    let mut v = minimal();
    v["panels"][0]["type"] = json!("bar");
    v["panels"][0]["query"]["labelAttr"] = json!("name");
    let d = parse(&v.to_string()).unwrap();
    assert_eq!(
        evaluate(&d.panels[0], &[], &lots()),
        PanelData::Bars {
            labels: vec!["B".into(), "C".into(), "A".into()],
            values: vec![12.0, 7.0, 5.0]
        }
    );
    let mut v = minimal();
    v["panels"][0]["type"] = json!("map");
    v["panels"][0]["map"] = json!({"network": "hospital-district", "roadAttr": "queueLength",
                                    "pointType": "OffStreetParking", "pointAttr": "availableSpotNumber"});
    let d = parse(&v.to_string()).unwrap();
    assert_eq!(d.panels[0].kind, PanelKind::Map);
    let PanelData::Map { roads, points } = evaluate(&d.panels[0], &[], &lots()) else {
        panic!()
    };
    assert_eq!(roads, vec![("edge1".to_string(), 3.0)]);
    assert_eq!(points.len(), 2, "only lots with a place are drawn");
    assert_eq!(points[1].value, Some(12.0));
    // Only points under an id prefix.
    v["panels"][0]["map"]["pointIdPrefix"] = json!("urn:ngsi-ld:OffStreetParking:d:b");
    let d = parse(&v.to_string()).unwrap();
    let PanelData::Map { points, .. } = evaluate(&d.panels[0], &[], &lots()) else {
        panic!()
    };
    assert_eq!(points.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["B"]);
}

#[test]
fn variables_select_the_entities() {
    let mut v = minimal();
    v["variables"] = json!([{"name": "district", "label": {"en": "District", "zh": "区"}, "default": "d",
                             "options": [{"value": "d", "label": {"en": "D", "zh": "丁"}}, {"value": "e", "label": {"en": "E", "zh": "戊"}}]}]);
    v["panels"][0]["query"]["idPrefix"] = json!("urn:ngsi-ld:OffStreetParking:${district}:");
    let d = parse(&v.to_string()).unwrap();
    let value = |district: &str| match evaluate(&d.panels[0], &[("district".into(), district.into())], &lots()) {
        PanelData::Value { value, .. } => value,
        other => panic!("{other:?}"),
    };
    assert_eq!(value("d"), Some(17.0));
    assert_eq!(value("e"), Some(7.0));
}

#[test]
fn aggregates() {
    let xs = [3.0, 1.0, 2.0];
    assert_eq!(aggregate(Aggregate::Sum, &xs, 3), Some(6.0));
    assert_eq!(aggregate(Aggregate::Avg, &xs, 3), Some(2.0));
    assert_eq!(aggregate(Aggregate::Min, &xs, 3), Some(1.0));
    assert_eq!(aggregate(Aggregate::Max, &xs, 3), Some(3.0));
    assert_eq!(aggregate(Aggregate::Count, &[], 4), Some(4.0));
    assert_eq!(aggregate(Aggregate::Max, &[], 0), None);
}

proptest! {
    /// Whatever the bytes, the checker answers (never panics).
    #[test]
    fn parse_never_panics(s in ".{0,400}") {
        let _ = parse(&s);
    }

    /// Mutating one number of a valid definition never panics either.
    #[test]
    fn odd_numbers_never_panic(x in any::<u32>(), y in any::<u32>(), w in any::<u32>(), h in any::<u32>()) {
        let mut v = minimal();
        v["panels"][0]["gridPos"] = json!({"x": x, "y": y, "w": w, "h": h});
        let _ = parse(&v.to_string());
    }
}

/// The schema for editors says what the checker reads: the same fields.
#[test]
fn the_schema_names_exactly_the_fields_the_checker_reads() {
    let path = format!("{}/../../dashboards/schema.json", env!("CARGO_MANIFEST_DIR"));
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v["properties"].as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    // A definition using every field, serialized back: its keys are the model's.
    let full = json!({
        "schemaVersion": 1, "uid": "t", "title": {"en": "T", "zh": "测"}, "tier": "street",
        "description": {"en": "d", "zh": "d"},
        "variables": [{"name": "v", "label": {"en": "V", "zh": "V"}, "default": "a",
                       "options": [{"value": "a", "label": {"en": "A", "zh": "A"}}]}],
        "panels": [{"id": "a", "type": "gauge", "title": {"en": "A", "zh": "甲"}, "unit": "x", "max": 3.0, "windowS": 60,
                    "thresholds": [{"value": 1.0, "color": "red"}],
                    "gridPos": {"x": 0, "y": 0, "w": 6, "h": 4},
                    "map": {"network": "hospital-district", "roadAttr": "a", "roadIdPrefix": "b", "pointType": "c", "pointAttr": "d"},
                    "query": {"type": "T", "idPrefix": "p", "attr": "a", "aggregate": "sum", "labelAttr": "n", "columns": ["c"]}}]
    });
    let d = parse(&full.to_string()).unwrap();
    let back = serde_json::to_value(&d).unwrap();
    let model = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&schema), model(&back));
    assert_eq!(keys(&schema["$defs"]["panel"]), model(&back["panels"][0]));
    assert_eq!(
        keys(&schema["$defs"]["panel"]["properties"]["query"]),
        model(&back["panels"][0]["query"])
    );
    assert_eq!(
        keys(&schema["$defs"]["panel"]["properties"]["map"]),
        model(&back["panels"][0]["map"])
    );
}

/// The binary's built-in cockpits are exactly the shipped files.
#[test]
fn the_built_in_list_names_every_shipped_file() {
    let src = std::fs::read_to_string(format!(
        "{}/../citybrain-cockpit-web/src/lib.rs",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    for (path, _) in dashboards() {
        let name = std::path::Path::new(&path)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            src.contains(&format!("dashboards/{name}")),
            "{name} is not built into the binary"
        );
    }
}

#[test]
fn an_alerts_panel_may_narrow_its_alerts_by_id() {
    let mut v = minimal();
    v["panels"][0] = json!({"id": "al", "type": "alerts", "title": {"en": "A", "zh": "警"},
        "gridPos": {"x": 0, "y": 0, "w": 6, "h": 4}, "query": {"type": "Alert", "idPrefix": "urn:ngsi-ld:Alert:citybrain:hospital-"}});
    let d = parse(&v.to_string()).unwrap();
    let es = vec![
        json!({"id": "urn:ngsi-ld:Alert:citybrain:hospital-lot-full:zju1:1", "type": "Alert", "severity": "medium", "status": "open"}),
        json!({"id": "urn:ngsi-ld:Alert:citybrain:approach-queue-surge:e1_0:2", "type": "Alert", "severity": "medium", "status": "open"}),
    ];
    let PanelData::Alerts { alerts } = evaluate(&d.panels[0], &[], &es) else {
        panic!()
    };
    assert_eq!(alerts.len(), 1);
    assert!(alerts[0].id.contains("hospital-lot-full"));
}

#[test]
fn a_map_may_place_points_by_network_coordinates() {
    let mut v = minimal();
    v["panels"][0]["type"] = json!("map");
    v["panels"][0]["map"] = json!({"network": "signal-corridor", "pointType": "Vehicle",
                                    "pointAttr": "speed", "pointPositionAttr": "networkPosition"});
    let d = parse(&v.to_string()).unwrap();
    let vehicles = vec![
        json!({"id": "urn:ngsi-ld:Vehicle:c:ambulance:priority", "type": "Vehicle", "name": "with priority",
               "speed": 62.5, "networkPosition": [3500.0, -4.8]}),
        // Not on the road (no position): not drawn.
        json!({"id": "urn:ngsi-ld:Vehicle:c:ambulance:none", "type": "Vehicle", "speed": 0}),
    ];
    let PanelData::Map { points, .. } = evaluate(&d.panels[0], &[], &vehicles) else {
        panic!()
    };
    assert_eq!(points.len(), 1);
    assert_eq!(
        (points[0].lon, points[0].lat, points[0].value),
        (3500.0, -4.8, Some(62.5))
    );
    assert_eq!(points[0].name, "with priority");
}

#[test]
fn a_query_may_keep_only_entities_with_given_values() {
    let mut v = minimal();
    v["panels"][0]["query"] = json!({"type": "Alert", "aggregate": "count", "where": {"status": "open"}});
    let d = parse(&v.to_string()).unwrap();
    let alerts = vec![
        json!({"id": "urn:a:1", "type": "Alert", "status": "open"}),
        json!({"id": "urn:a:2", "type": "Alert", "status": "closed"}),
        json!({"id": "urn:a:3", "type": "Alert", "status": "open"}),
        json!({"id": "urn:a:4", "type": "Alert"}),
    ];
    assert_eq!(
        evaluate(&d.panels[0], &[], &alerts),
        PanelData::Value {
            value: Some(2.0),
            matched: 2
        }
    );
    // Values may come from variables, and need not be strings.
    v["panels"][0]["query"]["where"] = json!({"status": "${s}"});
    v["variables"] = json!([{"name": "s", "label": {"en": "S", "zh": "S"}, "default": "closed",
                              "options": [{"value": "closed", "label": {"en": "c", "zh": "c"}}]}]);
    let d = parse(&v.to_string()).unwrap();
    let vars = vec![("s".to_string(), "closed".to_string())];
    assert!(matches!(
        evaluate(&d.panels[0], &vars, &alerts),
        PanelData::Value { matched: 1, .. }
    ));
    v["panels"][0]["query"]["where"] = json!({"n": 3});
    let d = parse(&v.to_string()).unwrap();
    let ns = vec![
        json!({"id": "urn:a:1", "type": "Alert", "n": 3}),
        json!({"id": "urn:a:2", "type": "Alert", "n": 4}),
    ];
    assert!(matches!(
        evaluate(&d.panels[0], &vars, &ns),
        PanelData::Value { matched: 1, .. }
    ));
}

fn cascade() -> serde_json::Value {
    let t = |s: &str| json!({"en": s, "zh": s});
    let mut v = minimal();
    v["variables"] = json!([
        {"name": "district", "label": t("D"), "default": "d1",
         "options": [{"value": "d1", "label": t("d1")}, {"value": "d2", "label": t("d2")}]},
        {"name": "street", "label": t("S"), "default": "s1", "dependsOn": "district",
         "options": [{"value": "s1", "label": t("s1"), "parent": "d1"}, {"value": "s2", "label": t("s2"), "parent": "d1"},
                     {"value": "s3", "label": t("s3"), "parent": "d2"}]},
        {"name": "lot", "label": t("L"), "default": "l1", "dependsOn": "street",
         "options": [{"value": "l1", "label": t("l1"), "parent": "s1"}, {"value": "l2", "label": t("l2"), "parent": "s2"},
                     {"value": "l3", "label": t("l3"), "parent": "s3"}, {"value": "l4", "label": t("l4"), "parent": "s3"}]}
    ]);
    v["panels"][0]["query"]["idPrefix"] = json!("urn:x:${district}:${street}:${lot}");
    v
}

#[test]
fn variables_narrow_each_other_district_street_lot() {
    use citybrain_cockpit::definition::resolve_variables;
    use std::collections::HashMap;
    let d = parse(&cascade().to_string()).unwrap();
    let given = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    };
    let values = |r: Vec<(String, String)>| r.into_iter().map(|(_, v)| v).collect::<Vec<_>>();
    assert_eq!(values(resolve_variables(&d, &given(&[])).unwrap()), ["d1", "s1", "l1"]);
    // Choosing another district: its first street and that street's first lot.
    assert_eq!(
        values(resolve_variables(&d, &given(&[("district", "d2")])).unwrap()),
        ["d2", "s3", "l3"]
    );
    assert_eq!(
        values(resolve_variables(&d, &given(&[("district", "d2"), ("lot", "l4")])).unwrap()),
        ["d2", "s3", "l4"]
    );
    let e = resolve_variables(&d, &given(&[("street", "s2"), ("lot", "l1")])).unwrap_err();
    assert_eq!(e, "variable lot: 'l1' is not under street 's2'");
    let e = resolve_variables(&d, &given(&[("lot", "l9")])).unwrap_err();
    assert_eq!(e, "variable lot: 'l9' is not one of its options");
}

#[test]
fn a_broken_cascade_names_the_field() {
    let mut v = cascade();
    v["variables"][2]["dependsOn"] = json!("nothing");
    assert_eq!(error_of(v), "variables[2].dependsOn: 'nothing' is no earlier variable");
    let mut v = cascade();
    v["variables"][1]["options"][2]["parent"] = json!("d9");
    assert_eq!(
        error_of(v),
        "variables[1].options[2].parent: must be one of the values of 'district'"
    );
    let mut v = cascade();
    v["variables"][0]["options"][0]["parent"] = json!("x");
    assert_eq!(
        error_of(v),
        "variables[0].options[0].parent: only options of a variable with dependsOn have a parent"
    );
    let mut v = cascade();
    v["variables"][2]["options"][1]["parent"] = json!("s1");
    assert_eq!(error_of(v), "variables[2].options: no option under street 's2'");
    let mut v = cascade();
    v["panels"][0]["query"]["where"] = json!({"street": "${road}"});
    assert_eq!(
        error_of(v),
        "panels[0].query.where.street: '${road}' names no variable of this cockpit"
    );
}

#[test]
fn a_table_labels_each_column_or_none() {
    let mut v = minimal();
    v["panels"][0]["type"] = json!("table");
    v["panels"][0]["query"] = json!({"type": "OffStreetParking", "columns": ["name", "availableSpotNumber"],
                                     "columnLabels": [{"en": "Lot", "zh": "停车场"}]});
    assert_eq!(
        error_of(v.clone()),
        "panels[0].query.columnLabels: 1 labels for 2 columns"
    );
    v["panels"][0]["query"]["columnLabels"] = json!([{"en": "Lot", "zh": "停车场"}, {"en": "Free", "zh": "空位"}]);
    assert!(parse(&v.to_string()).is_ok());
}

#[test]
fn a_map_point_links_to_the_next_tier() {
    let mut v = minimal();
    v["variables"] = json!([{"name": "d", "label": {"en": "D", "zh": "D"}, "default": "hd",
                              "options": [{"value": "hd", "label": {"en": "hd", "zh": "hd"}}]}]);
    v["panels"][0]["type"] = json!("map");
    v["panels"][0]["map"] = json!({"network": "hospital-district", "pointType": "OffStreetParking",
                                    "pointLink": "/cockpit/street?district=${d}&street={street}&lot={id}"});
    let d = parse(&v.to_string()).unwrap();
    let lots = vec![
        json!({"id": "urn:ngsi-ld:OffStreetParking:hd:mall_west", "type": "OffStreetParking",
                           "street": "zhong shan&x", "location": {"type": "Point", "coordinates": [120.17, 30.26]}}),
    ];
    let vars = vec![("d".to_string(), "hd".to_string())];
    let PanelData::Map { points, .. } = evaluate(&d.panels[0], &vars, &lots) else {
        panic!()
    };
    assert_eq!(
        points[0].link.as_deref(),
        Some("/cockpit/street?district=hd&street=zhong%20shan%26x&lot=mall_west"),
        "values are encoded"
    );
    for bad in [
        "https://elsewhere.example/x",
        "//elsewhere.example/x",
        "javascript:alert(1)",
        "/\\\\evil",
    ] {
        v["panels"][0]["map"]["pointLink"] = json!(bad);
        assert!(
            error_of(v.clone()).starts_with("panels[0].map.pointLink: a path on this server"),
            "{bad}"
        );
    }
}
