//! The types a policy declares for its inputs and parameters, and the values
//! of those types. CEL itself is dynamically typed; these are what the load
//! check holds every clause to.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use serde_json::Value as Json;

/// A declared type.
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    Bool,
    Int,
    Double,
    String,
    /// A calendar date (CEL sees a timestamp at midnight UTC).
    Date,
    List(Box<Ty>),
    /// A record with named fields: the element of a list of related entities.
    Record(Arc<Vec<(String, Ty)>>),
}

impl Ty {
    /// Parses `bool`, `int`, `double`, `string`, `date` and `list<T>`.
    pub fn parse(text: &str) -> Result<Ty, String> {
        let t = text.trim();
        Ok(match t {
            "bool" => Ty::Bool,
            "int" => Ty::Int,
            "double" => Ty::Double,
            "string" => Ty::String,
            "date" => Ty::Date,
            _ => match t.strip_prefix("list<").and_then(|r| r.strip_suffix('>')) {
                Some(inner) => Ty::List(Box::new(Ty::parse(inner)?)),
                None => {
                    return Err(format!(
                        "unknown type '{t}': use bool, int, double, string, date or list<T>"
                    ))
                }
            },
        })
    }

    pub fn is_numeric(&self) -> bool {
        matches!(self, Ty::Int | Ty::Double)
    }

    pub fn field(&self, name: &str) -> Option<(usize, &Ty)> {
        match self {
            Ty::Record(fields) => fields
                .iter()
                .enumerate()
                .find(|(_, (n, _))| n == name)
                .map(|(i, (_, t))| (i, t)),
            _ => None,
        }
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Bool => f.write_str("bool"),
            Ty::Int => f.write_str("int"),
            Ty::Double => f.write_str("double"),
            Ty::String => f.write_str("string"),
            Ty::Date => f.write_str("date"),
            Ty::List(t) => write!(f, "list<{t}>"),
            Ty::Record(fields) => {
                f.write_str("{")?;
                for (i, (n, t)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{n}: {t}")?;
                }
                f.write_str("}")
            }
        }
    }
}

/// A value of a declared type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Double(f64),
    String(Arc<str>),
    Date(NaiveDate),
    List(Arc<Vec<Value>>),
    /// Field values in the order of the record type's fields.
    Record(Arc<Vec<Value>>),
}

impl Value {
    /// Reads a value of type `ty` from JSON (or YAML turned into JSON). Dates
    /// are `YYYY-MM-DD`, or a date-time whose first ten characters are one;
    /// a whole double is accepted for an int, an int for a double.
    pub fn from_json(ty: &Ty, json: &Json) -> Result<Value, String> {
        let bad = || format!("expected {ty}, found {json}");
        Ok(match ty {
            Ty::Bool => Value::Bool(json.as_bool().ok_or_else(bad)?),
            Ty::Int => match json {
                Json::Number(n) if n.is_i64() => Value::Int(n.as_i64().ok_or_else(bad)?),
                Json::Number(n) => {
                    let f = n.as_f64().ok_or_else(bad)?;
                    if f.fract() != 0.0 || f.abs() > 9.0e15 {
                        return Err(format!("expected a whole number, found {f}"));
                    }
                    Value::Int(f as i64)
                }
                _ => return Err(bad()),
            },
            Ty::Double => Value::Double(json.as_f64().ok_or_else(bad)?),
            Ty::String => Value::String(json.as_str().ok_or_else(bad)?.into()),
            Ty::Date => Value::Date(parse_date(json.as_str().ok_or_else(bad)?)?),
            Ty::List(inner) => Value::List(Arc::new(
                json.as_array()
                    .ok_or_else(bad)?
                    .iter()
                    .map(|v| Value::from_json(inner, v))
                    .collect::<Result<_, _>>()?,
            )),
            Ty::Record(fields) => {
                let obj = json.as_object().ok_or_else(bad)?;
                if let Some(k) = obj.keys().find(|k| !fields.iter().any(|(n, _)| n == *k)) {
                    return Err(format!("unknown field '{k}' for {ty}"));
                }
                Value::Record(Arc::new(
                    fields
                        .iter()
                        .map(|(n, t)| match obj.get(n) {
                            Some(v) => Value::from_json(t, v).map_err(|e| format!("{n}: {e}")),
                            None => Err(format!("missing field '{n}'")),
                        })
                        .collect::<Result<_, _>>()?,
                ))
            }
        })
    }

    /// Whether the value is of type `ty`.
    pub fn conforms(&self, ty: &Ty) -> bool {
        match (self, ty) {
            (Value::Bool(_), Ty::Bool)
            | (Value::Int(_), Ty::Int)
            | (Value::Double(_), Ty::Double)
            | (Value::String(_), Ty::String)
            | (Value::Date(_), Ty::Date) => true,
            (Value::List(items), Ty::List(inner)) => items.iter().all(|v| v.conforms(inner)),
            (Value::Record(vals), Ty::Record(fields)) => {
                vals.len() == fields.len() && vals.iter().zip(fields.iter()).all(|(v, (_, t))| v.conforms(t))
            }
            _ => false,
        }
    }

    /// The value as JSON, for decisions and explanations.
    pub fn to_json(&self, ty: &Ty) -> Json {
        match (self, ty) {
            (Value::Bool(b), _) => Json::Bool(*b),
            (Value::Int(i), _) => Json::from(*i),
            (Value::Double(d), _) => serde_json::Number::from_f64(*d).map(Json::Number).unwrap_or(Json::Null),
            (Value::String(s), _) => Json::String(s.to_string()),
            (Value::Date(d), _) => Json::String(d.to_string()),
            (Value::List(items), Ty::List(inner)) => Json::Array(items.iter().map(|v| v.to_json(inner)).collect()),
            (Value::Record(vals), Ty::Record(fields)) => Json::Object(
                fields
                    .iter()
                    .zip(vals.iter())
                    .map(|((n, t), v)| (n.clone(), v.to_json(t)))
                    .collect(),
            ),
            (Value::List(items), _) | (Value::Record(items), _) => {
                Json::Array(items.iter().map(|v| v.to_json(&Ty::String)).collect())
            }
        }
    }

    /// The value for the CEL interpreter.
    pub fn to_cel(&self, ty: &Ty) -> cel::Value {
        match (self, ty) {
            (Value::Bool(b), _) => cel::Value::Bool(*b),
            (Value::Int(i), _) => cel::Value::Int(*i),
            (Value::Double(d), _) => cel::Value::Float(*d),
            (Value::String(s), _) => cel::Value::String(Arc::new(s.to_string())),
            (Value::Date(d), _) => cel::Value::Timestamp(date_to_timestamp(*d)),
            (Value::List(items), Ty::List(inner)) => {
                cel::Value::List(Arc::new(items.iter().map(|v| v.to_cel(inner)).collect()))
            }
            (Value::Record(vals), Ty::Record(fields)) => {
                let map: HashMap<String, cel::Value> = fields
                    .iter()
                    .zip(vals.iter())
                    .map(|((n, t), v)| (n.clone(), v.to_cel(t)))
                    .collect();
                cel::Value::Map(map.into())
            }
            (Value::List(items), _) | (Value::Record(items), _) => {
                cel::Value::List(Arc::new(items.iter().map(|v| v.to_cel(&Ty::Int)).collect()))
            }
        }
    }

    /// Reads back what the CEL interpreter computed for a clause of type `ty`.
    pub fn from_cel(ty: &Ty, value: &cel::Value) -> Result<Value, String> {
        Ok(match (ty, value) {
            (Ty::Bool, cel::Value::Bool(b)) => Value::Bool(*b),
            (Ty::Int, cel::Value::Int(i)) => Value::Int(*i),
            (Ty::Double, cel::Value::Float(d)) => Value::Double(*d),
            (Ty::String, cel::Value::String(s)) => Value::String(s.as_str().into()),
            (Ty::Date, cel::Value::Timestamp(t)) => Value::Date(t.date_naive()),
            (Ty::List(inner), cel::Value::List(items)) => Value::List(Arc::new(
                items
                    .iter()
                    .map(|v| Value::from_cel(inner, v))
                    .collect::<Result<_, _>>()?,
            )),
            (Ty::Record(fields), cel::Value::Map(map)) => Value::Record(Arc::new(
                fields
                    .iter()
                    .map(|(n, t)| {
                        let key = cel::objects::Key::String(Arc::new(n.clone()));
                        match map.map.get(&key) {
                            Some(v) => Value::from_cel(t, v),
                            None => Err(format!("missing field {n}")),
                        }
                    })
                    .collect::<Result<_, _>>()?,
            )),
            _ => return Err(format!("expected {ty}, the interpreter gave {value:?}")),
        })
    }
}

/// `YYYY-MM-DD`, or a date-time starting with one (its date is taken as written).
pub fn parse_date(text: &str) -> Result<NaiveDate, String> {
    let head = text.get(..10).unwrap_or(text);
    NaiveDate::parse_from_str(head, "%Y-%m-%d").map_err(|_| format!("'{text}' is not a date (YYYY-MM-DD)"))
}

pub(crate) fn date_to_timestamp(d: NaiveDate) -> chrono::DateTime<chrono::FixedOffset> {
    d.and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .fixed_offset()
}

/// Completed years from `from` to `to` (floor; negative when `to` is earlier):
/// someone born on 29 February completes a year on 1 March in common years.
pub fn years_between(from: NaiveDate, to: NaiveDate) -> i64 {
    let months = months_between(from, to);
    months.div_euclid(12)
}

/// Completed months from `from` to `to` (floor): a month is completed on the
/// same day-of-month, or on the first day of the next month when that day
/// does not exist in it.
pub fn months_between(from: NaiveDate, to: NaiveDate) -> i64 {
    let months = (to.year() as i64 - from.year() as i64) * 12 + to.month() as i64 - from.month() as i64;
    if to.day() < from.day() {
        months - 1
    } else {
        months
    }
}

/// Days from `from` to `to` (negative when `to` is earlier).
pub fn days_between(from: NaiveDate, to: NaiveDate) -> i64 {
    (to - from).num_days()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    #[test]
    fn completed_years_count_a_birthday_on_its_day() {
        assert_eq!(years_between(d("1998-01-01"), d("2016-01-01")), 18);
        assert_eq!(years_between(d("1998-01-02"), d("2016-01-01")), 17);
        assert_eq!(years_between(d("2000-02-29"), d("2001-02-28")), 0);
        assert_eq!(years_between(d("2000-02-29"), d("2001-03-01")), 1);
        assert_eq!(years_between(d("2016-01-02"), d("2016-01-01")), -1);
        assert_eq!(months_between(d("2016-01-31"), d("2016-02-29")), 0);
        assert_eq!(months_between(d("2016-01-31"), d("2016-03-01")), 1);
        assert_eq!(days_between(d("2016-01-01"), d("2016-03-01")), 60);
    }

    #[test]
    fn types_parse_and_print() {
        for t in [
            "bool",
            "int",
            "double",
            "string",
            "date",
            "list<int>",
            "list<list<date>>",
        ] {
            assert_eq!(Ty::parse(t).unwrap().to_string(), t);
        }
        assert!(Ty::parse("float").unwrap_err().contains("unknown type 'float'"));
    }

    #[test]
    fn values_read_from_json_by_type() {
        assert_eq!(Value::from_json(&Ty::Int, &serde_json::json!(3.0)), Ok(Value::Int(3)));
        assert!(Value::from_json(&Ty::Int, &serde_json::json!(3.5)).is_err());
        assert_eq!(
            Value::from_json(&Ty::Date, &serde_json::json!("2016-01-01T10:00:00Z")),
            Ok(Value::Date(d("2016-01-01")))
        );
        assert!(Value::from_json(&Ty::Bool, &serde_json::json!("yes"))
            .unwrap_err()
            .contains("expected bool"));
    }
}
