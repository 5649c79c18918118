//! Temporal representation of entities (clauses 4.5.7–4.5.19, 5.7.3): the
//! history of attribute instances, time filters, and the normalized,
//! `temporalValues` and `aggregatedValues` renderings.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::context::TermMap;
use crate::error::{NgsiError, Result};
use crate::model::{kind_of, main_value, Attr};
use crate::render::{self, RenderOptions};
use crate::time::{self, Timestamp};

/// One recorded attribute instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub attr: String,
    pub instance_id: String,
    pub dataset_id: Option<String>,
    pub observed_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub modified_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
    pub value: Attr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeProperty {
    #[default]
    ObservedAt,
    CreatedAt,
    ModifiedAt,
    DeletedAt,
}

impl TimeProperty {
    pub fn parse(s: &str) -> Result<TimeProperty> {
        Ok(match s {
            "observedAt" => TimeProperty::ObservedAt,
            "createdAt" => TimeProperty::CreatedAt,
            "modifiedAt" => TimeProperty::ModifiedAt,
            "deletedAt" => TimeProperty::DeletedAt,
            o => {
                return Err(NgsiError::bad_data(format!(
                    "timeproperty '{o}' is not observedAt, createdAt, modifiedAt or deletedAt"
                )))
            }
        })
    }

    /// The instance's time on this axis. An instance without `observedAt`
    /// falls back to the time it was recorded, so sensors that send no
    /// observation time still have a history.
    pub fn of(self, i: &Instance) -> Option<Timestamp> {
        match self {
            TimeProperty::ObservedAt => Some(i.observed_at.unwrap_or(i.modified_at)),
            TimeProperty::CreatedAt => Some(i.created_at),
            TimeProperty::ModifiedAt => Some(i.modified_at),
            TimeProperty::DeletedAt => i.deleted_at,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TimeProperty::ObservedAt => "observedAt",
            TimeProperty::CreatedAt => "createdAt",
            TimeProperty::ModifiedAt => "modifiedAt",
            TimeProperty::DeletedAt => "deletedAt",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeRel {
    Before,
    After,
    Between,
}

/// The temporal part of a request.
#[derive(Debug, Clone, Default)]
pub struct TemporalQuery {
    pub timerel: Option<(TimeRel, Timestamp, Option<Timestamp>)>,
    pub timeproperty: TimeProperty,
    pub last_n: Option<usize>,
}

impl TemporalQuery {
    pub fn new(
        timerel: Option<&str>,
        time_at: Option<&str>,
        end_time_at: Option<&str>,
        timeproperty: Option<&str>,
        last_n: Option<&str>,
    ) -> Result<Self> {
        let timeproperty = timeproperty.map(TimeProperty::parse).transpose()?.unwrap_or_default();
        let last_n = match last_n {
            None => None,
            Some(s) => Some(
                s.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| NgsiError::bad_data(format!("lastN '{s}' is not a positive integer")))?,
            ),
        };
        let timerel = match timerel {
            None => None,
            Some(r) => {
                let rel = match r {
                    "before" => TimeRel::Before,
                    "after" => TimeRel::After,
                    "between" => TimeRel::Between,
                    o => {
                        return Err(NgsiError::bad_data(format!(
                            "timerel '{o}' is not before, after or between"
                        )))
                    }
                };
                let at = time::parse_field(
                    "timeAt",
                    time_at.ok_or_else(|| NgsiError::bad_data("timerel needs timeAt"))?,
                )?;
                let end = match (rel, end_time_at) {
                    (TimeRel::Between, Some(e)) => {
                        let e = time::parse_field("endTimeAt", e)?;
                        if e <= at {
                            return Err(NgsiError::bad_data("endTimeAt must be after timeAt"));
                        }
                        Some(e)
                    }
                    (TimeRel::Between, None) => return Err(NgsiError::bad_data("timerel=between needs endTimeAt")),
                    _ => None,
                };
                Some((rel, at, end))
            }
        };
        Ok(TemporalQuery {
            timerel,
            timeproperty,
            last_n,
        })
    }

    /// The [from, to) interval the query selects, open ends as None.
    pub fn bounds(&self) -> (Option<Timestamp>, Option<Timestamp>) {
        match self.timerel {
            None => (None, None),
            Some((TimeRel::Before, t, _)) => (None, Some(t)),
            Some((TimeRel::After, t, _)) => (Some(t), None),
            Some((TimeRel::Between, t, e)) => (Some(t), e),
        }
    }

    pub fn contains(&self, i: &Instance) -> bool {
        let Some(t) = self.timeproperty.of(i) else {
            return false;
        };
        let (from, to) = self.bounds();
        from.is_none_or(|f| t >= f) && to.is_none_or(|e| t < e)
    }
}

/// Which representation to produce.
#[derive(Debug, Clone, Default)]
pub enum TemporalFormat {
    #[default]
    Normalized,
    TemporalValues,
    Aggregated {
        methods: Vec<AggrMethod>,
        period_s: Option<f64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggrMethod {
    TotalCount,
    DistinctCount,
    Sum,
    Avg,
    Min,
    Max,
    Stddev,
    Sumsq,
}

impl AggrMethod {
    pub const ALL: [AggrMethod; 8] = [
        AggrMethod::TotalCount,
        AggrMethod::DistinctCount,
        AggrMethod::Sum,
        AggrMethod::Avg,
        AggrMethod::Min,
        AggrMethod::Max,
        AggrMethod::Stddev,
        AggrMethod::Sumsq,
    ];

    pub fn parse_list(s: &str) -> Result<Vec<AggrMethod>> {
        s.split(',')
            .map(|m| {
                Ok(match m.trim() {
                    "totalCount" => AggrMethod::TotalCount,
                    "distinctCount" => AggrMethod::DistinctCount,
                    "sum" => AggrMethod::Sum,
                    "avg" => AggrMethod::Avg,
                    "min" => AggrMethod::Min,
                    "max" => AggrMethod::Max,
                    "stddev" => AggrMethod::Stddev,
                    "sumsq" => AggrMethod::Sumsq,
                    o => {
                        return Err(NgsiError::bad_data(format!(
                        "aggrMethods: '{o}' is not one of totalCount, distinctCount, sum, avg, min, max, stddev, sumsq"
                    )))
                    }
                })
            })
            .collect()
    }

    pub fn name(self) -> &'static str {
        match self {
            AggrMethod::TotalCount => "totalCount",
            AggrMethod::DistinctCount => "distinctCount",
            AggrMethod::Sum => "sum",
            AggrMethod::Avg => "avg",
            AggrMethod::Min => "min",
            AggrMethod::Max => "max",
            AggrMethod::Stddev => "stddev",
            AggrMethod::Sumsq => "sumsq",
        }
    }
}

fn plural_member(kind: &str) -> &'static str {
    match kind {
        "Relationship" => "objects",
        "LanguageProperty" => "languageMaps",
        "VocabProperty" => "vocabs",
        "JsonProperty" => "jsons",
        "ListProperty" => "valueLists",
        "ListRelationship" => "objectLists",
        _ => "values",
    }
}

/// Renders one entity's history. `attrs` maps expanded names to instances in
/// ascending time order (already filtered and truncated by the caller).
pub fn render_entity(
    id: &str,
    types: &[String],
    attrs: &BTreeMap<String, Vec<Instance>>,
    ctx: &TermMap,
    opts: &RenderOptions,
    format: &TemporalFormat,
    tq: &TemporalQuery,
) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), Value::String(id.into()));
    let t: Vec<Value> = types.iter().map(|t| Value::String(ctx.compact(t))).collect();
    out.insert("type".into(), if t.len() == 1 { t[0].clone() } else { Value::Array(t) });
    for (name, list) in attrs {
        if list.is_empty() {
            continue;
        }
        let key = ctx.compact(name);
        let kind = kind_of(&list[0].value).to_string();
        let v = match format {
            TemporalFormat::Normalized => Value::Array(
                list.iter()
                    .map(|i| {
                        let mut r = render::instance(
                            &i.value,
                            ctx,
                            &RenderOptions {
                                format: render::Format::Normalized,
                                ..opts.clone()
                            },
                        );
                        if let Value::Object(m) = &mut r {
                            m.insert("instanceId".into(), Value::String(i.instance_id.clone()));
                            if opts.sys_attrs {
                                m.insert("createdAt".into(), Value::String(time::format(&i.created_at)));
                                m.insert("modifiedAt".into(), Value::String(time::format(&i.modified_at)));
                            }
                            if let Some(d) = &i.deleted_at {
                                m.insert("deletedAt".into(), Value::String(time::format(d)));
                            }
                        }
                        r
                    })
                    .collect(),
            ),
            TemporalFormat::TemporalValues => {
                let pairs: Vec<Value> = list
                    .iter()
                    .filter_map(|i| {
                        let t = tq.timeproperty.of(i)?;
                        Some(json!([
                            main_value(&i.value).cloned().unwrap_or(Value::Null),
                            time::format(&t)
                        ]))
                    })
                    .collect();
                let mut m = Map::new();
                m.insert("type".into(), Value::String(kind.clone()));
                m.insert(plural_member(&kind).into(), Value::Array(pairs));
                Value::Object(m)
            }
            TemporalFormat::Aggregated { methods, period_s } => {
                let mut m = Map::new();
                m.insert("type".into(), Value::String(kind.clone()));
                for (method, buckets) in aggregate(list, methods, *period_s, tq) {
                    m.insert(method.name().into(), Value::Array(buckets));
                }
                Value::Object(m)
            }
        };
        out.insert(key, v);
    }
    Value::Object(out)
}

/// Aggregates instances into periods: `[[value, startAt, endAt], ...]` per method.
pub fn aggregate(
    list: &[Instance],
    methods: &[AggrMethod],
    period_s: Option<f64>,
    tq: &TemporalQuery,
) -> Vec<(AggrMethod, Vec<Value>)> {
    let timed: Vec<(Timestamp, &Instance)> = list.iter().filter_map(|i| Some((tq.timeproperty.of(i)?, i))).collect();
    let (Some(first), Some(last)) = (timed.first().map(|t| t.0), timed.last().map(|t| t.0)) else {
        return methods.iter().map(|m| (*m, Vec::new())).collect();
    };
    // Periods are aligned to timeAt (GS CIM 009 V1.8.1, 4.5.19 / 5.7.3):
    // after/between start there; before counts back from it. Each period
    // ends at its start plus the duration; with no duration there is one
    // period over the whole window (up to the last instance when open).
    let (from, to) = tq.bounds();
    let mut buckets: Vec<(Timestamp, Timestamp, Vec<&Instance>)> = Vec::new();
    match period_s.map(|p| chrono::Duration::milliseconds((p * 1000.0).round().max(1.0) as i64)) {
        None => {
            let start = from.unwrap_or(first);
            let end = to.unwrap_or(last);
            let items = timed
                .iter()
                .filter(|(t, _)| *t >= start && (*t < end || (to.is_none() && *t == end)))
                .map(|(_, i)| *i)
                .collect();
            buckets.push((start, end, items));
        }
        Some(period) => {
            let start = match (from, to) {
                (Some(f), _) => f,
                (None, Some(t)) => {
                    let behind = (t - first).num_milliseconds().max(0);
                    let n = (behind + period.num_milliseconds() - 1) / period.num_milliseconds();
                    t - period * (n as i32)
                }
                (None, None) => first,
            };
            let end = to.unwrap_or(last + chrono::Duration::milliseconds(1));
            let mut b_start = start;
            // Bounded: at most 100k periods, so a tiny period over a long range cannot hang.
            while b_start < end && buckets.len() < 100_000 {
                let b_end = b_start + period;
                buckets.push((b_start, b_end, Vec::new()));
                b_start = b_end;
            }
            for (t, i) in &timed {
                if *t < end {
                    if let Some(b) = buckets.iter_mut().find(|b| *t >= b.0 && *t < b.1) {
                        b.2.push(i);
                    }
                }
            }
        }
    }
    methods
        .iter()
        .map(|m| {
            let rows = buckets
                .iter()
                .filter(|b| !b.2.is_empty())
                .map(|(s, e, items)| json!([apply(*m, items), time::format(s), time::format(e)]))
                .collect();
            (*m, rows)
        })
        .collect()
}

fn apply(m: AggrMethod, items: &[&Instance]) -> Value {
    let values: Vec<&Value> = items.iter().filter_map(|i| main_value(&i.value)).collect();
    let nums: Vec<f64> = values
        .iter()
        .filter_map(|v| match v {
            Value::Number(n) => n.as_f64(),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            _ => None,
        })
        .collect();
    let num = |x: f64| {
        serde_json::Number::from_f64(x)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    };
    match m {
        AggrMethod::TotalCount => json!(values.len()),
        AggrMethod::DistinctCount => {
            let set: HashSet<String> = values.iter().map(|v| v.to_string()).collect();
            json!(set.len())
        }
        AggrMethod::Sum => num(nums.iter().sum()),
        AggrMethod::Sumsq => num(nums.iter().map(|x| x * x).sum()),
        AggrMethod::Avg if nums.is_empty() => Value::Null,
        AggrMethod::Avg => num(nums.iter().sum::<f64>() / nums.len() as f64),
        AggrMethod::Stddev if nums.is_empty() => Value::Null,
        AggrMethod::Stddev => {
            let mean = nums.iter().sum::<f64>() / nums.len() as f64;
            num((nums.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / nums.len() as f64).sqrt())
        }
        AggrMethod::Min | AggrMethod::Max => {
            if !nums.is_empty() {
                let it = nums.iter().copied();
                num(if m == AggrMethod::Min {
                    it.fold(f64::INFINITY, f64::min)
                } else {
                    it.fold(f64::NEG_INFINITY, f64::max)
                })
            } else {
                // Strings (e.g. date-times) compare lexicographically.
                let mut s: Vec<&str> = values.iter().filter_map(|v| v.as_str()).collect();
                s.sort();
                let pick = if m == AggrMethod::Min { s.first() } else { s.last() };
                pick.map(|x| Value::String(x.to_string())).unwrap_or(Value::Null)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(v: f64, t: &str) -> Instance {
        let ts = time::parse(t).unwrap();
        Instance {
            attr: "a".into(),
            instance_id: format!("urn:i:{t}"),
            dataset_id: None,
            observed_at: Some(ts),
            created_at: ts,
            modified_at: ts,
            deleted_at: None,
            value: json!({"type":"Property","value":v}).as_object().unwrap().clone(),
        }
    }

    #[test]
    fn aggregation_by_period() {
        let list = vec![
            inst(1.0, "2026-01-01T00:10:00Z"),
            inst(3.0, "2026-01-01T00:50:00Z"),
            inst(10.0, "2026-01-01T01:10:00Z"),
        ];
        let tq = TemporalQuery::new(
            Some("between"),
            Some("2026-01-01T00:00:00Z"),
            Some("2026-01-01T02:00:00Z"),
            None,
            None,
        )
        .unwrap();
        let out = aggregate(&list, &AggrMethod::ALL, Some(3600.0), &tq);
        let get = |m: AggrMethod| out.iter().find(|(x, _)| *x == m).unwrap().1.clone();
        assert_eq!(
            get(AggrMethod::Avg)[0],
            json!([2.0, "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"])
        );
        assert_eq!(get(AggrMethod::Sum)[1][0], json!(10.0));
        assert_eq!(get(AggrMethod::TotalCount)[0][0], json!(2));
        assert_eq!(get(AggrMethod::Max)[0][0], json!(3.0));
        assert_eq!(get(AggrMethod::Min)[0][0], json!(1.0));
        assert_eq!(get(AggrMethod::Sumsq)[0][0], json!(10.0));
        assert_eq!(get(AggrMethod::Stddev)[0][0], json!(1.0));
        assert_eq!(get(AggrMethod::DistinctCount)[0][0], json!(2));
    }

    #[test]
    fn time_filters() {
        let tq = TemporalQuery::new(Some("before"), Some("2026-01-01T00:30:00Z"), None, None, None).unwrap();
        assert!(tq.contains(&inst(1.0, "2026-01-01T00:10:00Z")));
        assert!(!tq.contains(&inst(1.0, "2026-01-01T00:40:00Z")));
        assert!(TemporalQuery::new(Some("between"), Some("2026-01-01T00:30:00Z"), None, None, None).is_err());
        assert!(TemporalQuery::new(Some("whenever"), Some("2026-01-01T00:30:00Z"), None, None, None).is_err());
        assert!(TemporalQuery::new(None, None, None, None, Some("0")).is_err());
        assert!(AggrMethod::parse_list("avg,median").is_err());
    }
}
