//! The appeals' figures per department and for the whole city, kept in
//! `AppealMetrics` entities for the cockpit and the public board: open and
//! overdue now, answered on time, satisfaction, reopened, escalated.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use citybrain_appeals::{Appeal, Status};
use citybrain_hub::BatchOp;
use serde::Serialize;
use serde_json::{json, Value};

use crate::{Appeals, Error, Result, METRICS};

/// One department's figures (or the city's, `department` "city").
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DepartmentFigures {
    pub department: String,
    pub appeals: u64,
    pub open: u64,
    pub overdue: u64,
    pub answered: u64,
    /// Answered without passing the due time, of those answered.
    pub on_time_rate: Option<f64>,
    pub ratings: u64,
    pub satisfaction_mean: Option<f64>,
    /// Reopened at least once, of those answered.
    pub reopened_rate: Option<f64>,
    pub escalated: u64,
}

#[derive(Default)]
struct Tally {
    appeals: u64,
    open: u64,
    overdue: u64,
    answered: u64,
    on_time: u64,
    ratings: u64,
    stars: u64,
    reopened: u64,
    escalated: u64,
}

impl Tally {
    fn add(&mut self, a: &Appeal, now: DateTime<Utc>) {
        self.appeals += 1;
        let handling = a.status.is_handling();
        self.open += u64::from(handling);
        self.overdue += u64::from(handling && a.status != Status::AwaitingCitizen && now > a.due);
        if a.answered_at.is_some() {
            self.answered += 1;
            self.on_time += u64::from(!a.late);
            self.reopened += u64::from(a.reopened > 0);
        }
        if let Some(r) = &a.rating {
            self.ratings += 1;
            self.stars += u64::from(r.stars);
        }
        self.escalated += u64::from(a.escalation > 0);
    }

    fn figures(&self, department: &str) -> DepartmentFigures {
        let rate = |n: u64, of: u64| (of > 0).then(|| ((n as f64 / of as f64) * 1000.0).round() / 1000.0);
        DepartmentFigures {
            department: department.to_string(),
            appeals: self.appeals,
            open: self.open,
            overdue: self.overdue,
            answered: self.answered,
            on_time_rate: rate(self.on_time, self.answered),
            ratings: self.ratings,
            satisfaction_mean: (self.ratings > 0)
                .then(|| ((self.stars as f64 / self.ratings as f64) * 100.0).round() / 100.0),
            reopened_rate: rate(self.reopened, self.answered),
            escalated: self.escalated,
        }
    }
}

impl Appeals {
    /// Every department's figures and the city's, from all appeals.
    pub async fn figures(&self) -> Result<Vec<DepartmentFigures>> {
        let now = self.now();
        let q = self.all_query()?;
        let mut by_dept: BTreeMap<String, Tally> = BTreeMap::new();
        let mut city = Tally::default();
        let mut offset = 0;
        loop {
            let page = citybrain_store::Page {
                offset,
                limit: 1000,
                count: false,
            };
            let r = self.hub().query_entities(self.tenant_name(), &q, page).await?;
            for e in &r.entities {
                let a = self.read_appeal(e)?;
                by_dept.entry(a.department.clone()).or_default().add(&a, now);
                city.add(&a, now);
            }
            if r.entities.len() < 1000 || offset >= self.settings().max_appeals {
                break;
            }
            offset += 1000;
        }
        let mut out = vec![city.figures("city")];
        out.extend(by_dept.iter().map(|(d, t)| t.figures(d)));
        Ok(out)
    }

    /// Writes the figures as `AppealMetrics` entities.
    pub async fn refresh_metrics(&self) -> Result<Vec<DepartmentFigures>> {
        let figures = self.figures().await?;
        let now = self.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let items: Vec<Value> = figures
            .iter()
            .map(|f| {
                let v = serde_json::to_value(f).expect("figures serialise");
                let mut e = json!({
                    "id": format!("urn:ngsi-ld:{METRICS}:{}", f.department),
                    "type": METRICS,
                    "computedAt": {"type": "Property", "value": {"@type": "DateTime", "@value": now}},
                });
                for (k, x) in v.as_object().expect("an object") {
                    if !x.is_null() {
                        e[k] = json!({"type": "Property", "value": x});
                    }
                }
                e
            })
            .collect();
        let r = self
            .hub()
            .batch_write(
                self.tenant_name(),
                &items,
                self.ctx(),
                BatchOp::Upsert { replace: true },
            )
            .await?;
        if let Some(e) = r.errors.into_iter().next() {
            return Err(Error::Hub(e.error));
        }
        Ok(figures)
    }

    pub(crate) async fn metrics_loop(&self) {
        let mut last = u64::MAX;
        loop {
            if self.hub().is_closing() {
                return;
            }
            let changes = self.hub().entity_changes();
            if changes != last {
                if let Err(e) = self.refresh_metrics().await {
                    tracing::warn!("appeals metrics: {e}");
                }
                last = self.hub().entity_changes();
            }
            tokio::time::sleep(self.settings().metrics_every).await;
        }
    }
}
