//! A time series panel's past, read from the hub's temporal store when its
//! feed starts: a cockpit opened (or a variable chosen) late still shows the
//! window before it, and a restarted server shows what it had shown.
//!
//! The series is rebuilt the way the live feed computes it: at each sample
//! time every matching entity counts with its latest value at that time
//! (carried forward from its last change), and the values are reduced by the
//! panel's aggregate. Changes are placed by their `modifiedAt`.

use citybrain_cockpit::definition::Panel;
use citybrain_cockpit::panel::{aggregate, matching};
use citybrain_hub::{Hub, TemporalRequest};
use citybrain_ngsild::model::main_value;
use citybrain_ngsild::temporal::TemporalQuery;
use serde_json::Value;

use crate::CockpitError;

/// Most entities whose history one panel reads.
pub const MAX_ENTITIES: usize = 300;
/// Most points a rebuilt window holds.
pub const MAX_POINTS: u64 = 240;

/// RFC 3339 UTC, to the millisecond, of a time in ms since the epoch.
pub(crate) fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One entity's values of `attr_iri` from just before `from_ms` to now, as
/// (ms, value), oldest first.
async fn changes(hub: &Hub, id: &str, attr_iri: &str, from_ms: u64) -> Result<Vec<(u64, f64)>, CockpitError> {
    let at = rfc3339(from_ms);
    let read = |tq: TemporalQuery, aggregate: bool| TemporalRequest {
        attrs: Some(vec![attr_iri.to_string()]),
        tq,
        limit: None,
        aggregate,
    };
    let before = TemporalQuery::new(Some("before"), Some(&at), None, Some("modifiedAt"), Some("1"))?;
    let within = TemporalQuery::new(Some("after"), Some(&at), None, Some("modifiedAt"), None)?;
    let mut out = Vec::new();
    for (tq, all) in [(before, false), (within, true)] {
        let t = hub.temporal_retrieve("", id, &read(tq, all)).await?;
        for i in t.attrs.into_values().flatten() {
            let v = main_value(&i.value).and_then(|v| match v {
                Value::Number(n) => n.as_f64(),
                Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
                _ => None,
            });
            if let Some(v) = v.filter(|v| v.is_finite()) {
                out.push((i.modified_at.timestamp_millis().max(0) as u64, v));
            }
        }
    }
    out.sort_by_key(|(t, _)| *t);
    Ok(out)
}

/// The panel's series over its window ending at `now_ms`, sampled every
/// `step_ms` or coarser (empty when the panel reads nothing stored).
pub async fn series(
    hub: &Hub,
    p: &Panel,
    vars: &[(String, String)],
    entities: &[Value],
    now_ms: u64,
    step_ms: u64,
) -> Vec<(u64, Option<f64>)> {
    let (Some(q), Some(window_s)) = (&p.query, p.window_s.or(Some(600))) else {
        return Vec::new();
    };
    let Some(attr) = &q.attr else {
        return Vec::new();
    };
    let window_ms = window_s as u64 * 1000;
    let from = now_ms.saturating_sub(window_ms);
    let step = step_ms.max(window_ms / MAX_POINTS).max(1);
    let attr_iri = format!("{}{attr}", crate::DEFAULT_CONTEXT);
    let mut per_entity = Vec::new();
    for e in matching(q, vars, entities).into_iter().take(MAX_ENTITIES) {
        let Some(id) = e["id"].as_str() else { continue };
        match changes(hub, id, &attr_iri, from).await {
            Ok(c) if !c.is_empty() => per_entity.push(c),
            Ok(_) => {}
            Err(err) => tracing::debug!(%id, error = %err, "cockpit history: not read"),
        }
    }
    if per_entity.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cursor = vec![0usize; per_entity.len()];
    let mut t = from;
    while t < now_ms {
        let mut values = Vec::with_capacity(per_entity.len());
        for (c, pos) in per_entity.iter().zip(cursor.iter_mut()) {
            while *pos < c.len() && c[*pos].0 <= t {
                *pos += 1;
            }
            if *pos > 0 {
                values.push(c[*pos - 1].1);
            }
        }
        if !values.is_empty() {
            let n = values.len();
            out.push((t, aggregate(q.aggregate, &values, n)));
        }
        t += step;
    }
    out
}
