//! Time on the wire: RFC 3339 / ISO 8601 in UTC, millisecond precision.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

use crate::error::{NgsiError, Result};

pub type Timestamp = DateTime<Utc>;

/// Formats in UTC as `2026-11-26T10:00:00Z`, or `2026-11-26T10:00:00.250Z`
/// when there are milliseconds: the shortest RFC 3339 form, as clients
/// write it (the spec's examples carry no padded `.000`).
pub fn format(t: &Timestamp) -> String {
    let f = if t.timestamp_subsec_millis() == 0 {
        SecondsFormat::Secs
    } else {
        SecondsFormat::Millis
    };
    t.to_rfc3339_opts(f, true)
}

/// Parses an RFC 3339 date-time (any offset, converted to UTC).
pub fn parse(s: &str) -> Option<Timestamp> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| {
            // Accept a bare date-time without offset as UTC, like most brokers do.
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
}

/// True for a full RFC 3339 date-time (with `Z` or an offset).
pub fn is_rfc3339(s: &str) -> bool {
    DateTime::parse_from_rfc3339(s).is_ok()
}

/// Parses a date-time or reports which field held what.
pub fn parse_field(field: &str, s: &str) -> Result<Timestamp> {
    parse(s).ok_or_else(|| {
        NgsiError::bad_data(format!(
            "{field}: '{s}' is not an ISO 8601 date-time (e.g. 2026-11-26T10:00:00Z)"
        ))
    })
}

/// True if the text looks like an ISO 8601 date (used by q to compare dates as dates).
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// Parses an ISO 8601 duration such as `PT1H`, `P1D`, `PT15M30S`, `P1W` into seconds.
/// Months and years are taken as 30 and 365 days (NGSI-LD aggregation periods).
pub fn parse_duration_secs(s: &str) -> Option<f64> {
    let rest = s.strip_prefix('P')?;
    let (date_part, time_part) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut total = 0.0;
    let mut any = false;
    let mut num = String::new();
    for c in date_part.chars() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match c {
            'Y' => 365.0 * 86400.0,
            'M' => 30.0 * 86400.0,
            'W' => 7.0 * 86400.0,
            'D' => 86400.0,
            _ => return None,
        };
        any = true;
    }
    if !num.is_empty() {
        return None;
    }
    if let Some(t) = time_part {
        if t.is_empty() {
            return None;
        }
        for c in t.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
                continue;
            }
            let n: f64 = num.parse().ok()?;
            num.clear();
            total += n * match c {
                'H' => 3600.0,
                'M' => 60.0,
                'S' => 1.0,
                _ => return None,
            };
            any = true;
        }
        if !num.is_empty() {
            return None;
        }
    }
    any.then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("PT1H"), Some(3600.0));
        assert_eq!(parse_duration_secs("P1DT1M"), Some(86460.0));
        assert_eq!(parse_duration_secs("PT0.5S"), Some(0.5));
        assert_eq!(parse_duration_secs("P"), None);
        assert_eq!(parse_duration_secs("PT"), None);
        assert_eq!(parse_duration_secs("1H"), None);
    }

    #[test]
    fn datetimes_round_trip_in_utc() {
        let t = parse("2026-11-26T11:00:00+01:00").unwrap();
        assert_eq!(format(&t), "2026-11-26T10:00:00Z");
        assert!(parse("yesterday").is_none());
        assert!(parse("2026-11-26T10:00:00").is_some());
    }
}
