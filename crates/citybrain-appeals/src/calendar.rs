//! Due times: calendar hours, or working days on the city's calendar
//! (weekends and public holidays off, make-up working days on, as the
//! State Council publishes them each year).

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use serde::{Deserialize, Serialize};

/// A service level: how long a department has to answer. Written
/// `{hours: 24}` or `{working_days: 3}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SlaSpec", into = "SlaSpec")]
pub enum Sla {
    /// Calendar hours, nights and holidays included (policy questions: 24 h).
    Hours(u32),
    /// Working days on the calendar (3 by default).
    WorkingDays(u32),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlaSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hours: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    working_days: Option<u32>,
}

impl TryFrom<SlaSpec> for Sla {
    type Error = String;
    fn try_from(s: SlaSpec) -> Result<Sla, String> {
        match (s.hours, s.working_days) {
            (Some(h), None) => Ok(Sla::Hours(h)),
            (None, Some(d)) => Ok(Sla::WorkingDays(d)),
            _ => Err("an SLA is {hours: N} or {working_days: N}".into()),
        }
    }
}

impl From<Sla> for SlaSpec {
    fn from(s: Sla) -> SlaSpec {
        match s {
            Sla::Hours(h) => SlaSpec {
                hours: Some(h),
                working_days: None,
            },
            Sla::WorkingDays(d) => SlaSpec {
                hours: None,
                working_days: Some(d),
            },
        }
    }
}

impl fmt::Display for Sla {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sla::Hours(h) => write!(f, "{h} h"),
            Sla::WorkingDays(d) => write!(f, "{d} working day{}", if *d == 1 { "" } else { "s" }),
        }
    }
}

/// The working-day calendar of one city.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkCalendar {
    /// The city's time zone, as an offset (China: +08:00, no daylight saving).
    pub offset: FixedOffset,
    /// Public holidays that fall on weekdays (or any day: listed days are off).
    pub holidays: BTreeSet<NaiveDate>,
    /// Weekend days worked instead (调休).
    pub workdays: BTreeSet<NaiveDate>,
    /// The years the lists cover; outside them only weekends are off.
    pub years: BTreeSet<i32>,
}

impl Default for WorkCalendar {
    fn default() -> Self {
        WorkCalendar {
            offset: FixedOffset::east_opt(8 * 3600).expect("+08:00"),
            holidays: BTreeSet::new(),
            workdays: BTreeSet::new(),
            years: BTreeSet::new(),
        }
    }
}

impl WorkCalendar {
    pub fn is_working_day(&self, d: NaiveDate) -> bool {
        if self.workdays.contains(&d) {
            return true;
        }
        if self.holidays.contains(&d) {
            return false;
        }
        !matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
    }

    /// Whether the calendar lists the holidays of `t`'s year.
    pub fn covers(&self, t: DateTime<Utc>) -> bool {
        self.years.contains(&t.with_timezone(&self.offset).year())
    }

    fn local_midnight(&self, d: NaiveDate) -> DateTime<Utc> {
        self.offset
            .from_local_datetime(&d.and_time(NaiveTime::MIN))
            .single()
            .expect("a fixed offset has one local time")
            .with_timezone(&Utc)
    }

    /// When an SLA started at `start` falls due. Working days: the same
    /// local time on the n-th working day after the day of filing; filed on
    /// a day off, the next working day counts whole (so 3 working days
    /// from a Saturday end when Wednesday does).
    pub fn due(&self, start: DateTime<Utc>, sla: Sla) -> DateTime<Utc> {
        match sla {
            Sla::Hours(h) => start + Duration::hours(i64::from(h)),
            Sla::WorkingDays(n) => {
                let local = start.with_timezone(&self.offset);
                let filed_on = local.date_naive();
                // A broken calendar (no working day for years) must not spin.
                let next_working = |mut d: NaiveDate| {
                    for _ in 0..3660 {
                        d = d.succ_opt().expect("a next day");
                        if self.is_working_day(d) {
                            break;
                        }
                    }
                    d
                };
                if self.is_working_day(filed_on) {
                    let time_of_day = start - self.local_midnight(filed_on);
                    let mut day = filed_on;
                    for _ in 0..n {
                        day = next_working(day);
                    }
                    self.local_midnight(day) + time_of_day
                } else {
                    // The first working day counts whole: due when the
                    // n-th working day from it ends.
                    let mut day = next_working(filed_on);
                    for _ in 1..n {
                        day = next_working(day);
                    }
                    self.local_midnight(day.succ_opt().expect("a next day"))
                }
            }
        }
    }

    /// Working days between two instants, counted by local dates (for reports).
    pub fn working_days_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        let (mut d, end) = (
            from.with_timezone(&self.offset).date_naive(),
            to.with_timezone(&self.offset).date_naive(),
        );
        let mut n = 0;
        while d < end {
            d = d.succ_opt().expect("a next day");
            n += i64::from(self.is_working_day(d));
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn calendar() -> WorkCalendar {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        WorkCalendar {
            // National Day week: 1–7 Oct off, Sunday 11 Oct worked (illustrative).
            holidays: (1..=7).map(|k| d(&format!("2026-10-0{k}"))).collect(),
            workdays: [d("2026-10-11")].into_iter().collect(),
            years: [2026].into_iter().collect(),
            ..WorkCalendar::default()
        }
    }

    #[test]
    fn hours_run_through_nights_and_holidays() {
        let c = calendar();
        assert_eq!(
            c.due(at("2026-10-01T10:00:00+08:00"), Sla::Hours(24)),
            at("2026-10-02T10:00:00+08:00")
        );
    }

    #[test]
    fn working_days_skip_weekends_and_holidays_and_count_make_up_days() {
        let c = calendar();
        // Tuesday 29 Sep 15:00 + 3 working days: Wed 30 Sep, (holiday week), Thu 8, Fri 9 Oct.
        assert_eq!(
            c.due(at("2026-09-29T15:00:00+08:00"), Sla::WorkingDays(3)),
            at("2026-10-09T15:00:00+08:00")
        );
        // Friday 9 Oct + 1: Sunday 11 Oct is a make-up working day.
        assert_eq!(
            c.due(at("2026-10-09T09:30:00+08:00"), Sla::WorkingDays(1)),
            at("2026-10-11T09:30:00+08:00")
        );
    }

    #[test]
    fn filed_on_a_day_off_the_count_starts_with_the_next_working_day() {
        let c = WorkCalendar::default();
        // Saturday 5 Dec 2026 → Monday 7 Dec 00:00 + 3 → Thursday 10 Dec 00:00 (end of Wednesday).
        assert_eq!(
            c.due(at("2026-12-05T20:00:00+08:00"), Sla::WorkingDays(3)),
            at("2026-12-10T00:00:00+08:00")
        );
        assert_eq!(
            c.working_days_between(at("2026-12-05T20:00:00+08:00"), at("2026-12-10T00:00:00+08:00")),
            4
        );
    }
}
