//! The services cockpit's figures, as hub entities (`ServiceMetrics`, one
//! per service and bundle and one for the city): applications, the share
//! decided automatically, time to decision, visits avoided (each decision
//! made online saves the visits the paper procedure needed, per the
//! catalog's `counter_visits`), benefits granted. Recomputed from the
//! records themselves, so they survive restarts and never drift.

use std::collections::BTreeMap;

use citybrain_ngsild::render::{self, RenderOptions};
use citybrain_rules::gather::attribute;
use serde_json::{json, Value};

use crate::entity::{prop, time, APPLICATION, GRANT, INSTANCE, METRICS};
use crate::{Result, Services};

#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceFigures {
    pub applications: u64,
    pub decided: u64,
    pub decided_automatically: u64,
    pub in_review: u64,
    /// Applications: submission to decision.
    pub median_seconds_to_decision: Option<f64>,
    /// Bundles: start to the last step (a triggered one waits for its confirmation).
    pub median_seconds_to_finish: Option<f64>,
    pub visits_avoided: u64,
    pub benefits_granted: u64,
    pub amount_granted: f64,
    pub bundles_started: u64,
    pub bundles_completed: u64,
    pub bundles_overdue: u64,
    #[serde(skip)]
    seconds: Vec<f64>,
    #[serde(skip)]
    finish_seconds: Vec<f64>,
}

fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[v.len() / 2])
}

impl ServiceFigures {
    fn share_automatic(&self) -> f64 {
        if self.decided == 0 {
            0.0
        } else {
            self.decided_automatically as f64 / self.decided as f64
        }
    }

    fn finish(&mut self) {
        self.median_seconds_to_decision = median(&mut self.seconds);
        self.median_seconds_to_finish = median(&mut self.finish_seconds);
    }

    fn add(&mut self, o: &ServiceFigures) {
        self.applications += o.applications;
        self.decided += o.decided;
        self.decided_automatically += o.decided_automatically;
        self.in_review += o.in_review;
        self.visits_avoided += o.visits_avoided;
        self.benefits_granted += o.benefits_granted;
        self.amount_granted += o.amount_granted;
        self.bundles_started += o.bundles_started;
        self.bundles_completed += o.bundles_completed;
        self.bundles_overdue += o.bundles_overdue;
        self.seconds.extend(&o.seconds);
        self.finish_seconds.extend(&o.finish_seconds);
    }
}

impl Services {
    /// The figures per service or bundle id, and `all` for the city.
    pub async fn figures(&self) -> Result<BTreeMap<String, ServiceFigures>> {
        let terms = self.terms().clone();
        // Only the attributes counted are rendered (not the records' explanations).
        let only = |names: &[&str]| RenderOptions {
            attrs: Some(names.iter().map(|n| terms.expand(n)).collect()),
            ..RenderOptions::default()
        };
        let apps = only(&["service", "status", "automatic", "secondsToDecision"]);
        let grants = only(&["service", "amount"]);
        let insts = only(&["bundle", "status", "breached", "secondsToFinish"]);
        let cat = &self.inner.catalog;
        let mut by: BTreeMap<String, ServiceFigures> = BTreeMap::new();
        let s = |v: &Value, k: &str| {
            attribute(v, k)
                .and_then(|x| x.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        for e in self.all_of(APPLICATION).await? {
            let n = render::entity(&e, &terms, &apps);
            let service = s(&n, "service");
            let visits = cat.services.get(&service).map(|x| x.counter_visits).unwrap_or(0);
            let f = by.entry(service).or_default();
            f.applications += 1;
            match s(&n, "status").as_str() {
                "in_review" => f.in_review += 1,
                "incomplete" => {}
                _ => {
                    f.decided += 1;
                    if attribute(&n, "automatic") == Some(Value::Bool(true)) {
                        f.decided_automatically += 1;
                        f.visits_avoided += visits as u64;
                    }
                    if let Some(x) = attribute(&n, "secondsToDecision").and_then(|v| v.as_f64()) {
                        f.seconds.push(x);
                    }
                }
            }
        }
        for e in self.all_of(GRANT).await? {
            let n = render::entity(&e, &terms, &grants);
            let service = s(&n, "service");
            let visits = cat.services.get(&service).map(|x| x.counter_visits).unwrap_or(0);
            let f = by.entry(service).or_default();
            f.benefits_granted += 1;
            f.visits_avoided += visits as u64;
            f.amount_granted += attribute(&n, "amount").and_then(|v| v.as_f64()).unwrap_or(0.0);
        }
        for e in self.all_of(INSTANCE).await? {
            let n = render::entity(&e, &terms, &insts);
            let bundle = s(&n, "bundle");
            let visits = cat.bundles.get(&bundle).map(|x| x.counter_visits).unwrap_or(0);
            let f = by.entry(bundle).or_default();
            f.bundles_started += 1;
            if attribute(&n, "breached") == Some(Value::Bool(true)) {
                f.bundles_overdue += 1;
            }
            if s(&n, "status") == "completed" {
                f.bundles_completed += 1;
                f.visits_avoided += visits as u64;
                if let Some(x) = attribute(&n, "secondsToFinish").and_then(|v| v.as_f64()) {
                    f.finish_seconds.push(x);
                }
            }
        }
        let mut all = ServiceFigures::default();
        for f in by.values_mut() {
            all.add(f);
            f.finish();
        }
        all.finish();
        by.insert("all".into(), all);
        Ok(by)
    }

    /// Writes the figures as `ServiceMetrics` entities.
    pub async fn refresh_metrics(&self) -> Result<()> {
        let now = self.now();
        let items: Vec<Value> = self
            .figures()
            .await?
            .into_iter()
            .map(|(id, f)| {
                let mut e = json!({
                    "id": format!("urn:ngsi-ld:{METRICS}:{id}"), "type": METRICS,
                    "service": prop(id),
                    "applications": prop(f.applications),
                    "decided": prop(f.decided),
                    "decidedAutomatically": prop(f.decided_automatically),
                    "shareAutomatic": prop(f.share_automatic()),
                    "inReview": prop(f.in_review),
                    "visitsAvoided": prop(f.visits_avoided),
                    "benefitsGranted": prop(f.benefits_granted),
                    "amountGranted": prop(f.amount_granted),
                    "bundlesStarted": prop(f.bundles_started),
                    "bundlesCompleted": prop(f.bundles_completed),
                    "bundlesOverdue": prop(f.bundles_overdue),
                    "computed": time(now),
                });
                if let Some(m) = f.median_seconds_to_decision {
                    e["medianSecondsToDecision"] = prop(m);
                }
                if let Some(m) = f.median_seconds_to_finish {
                    e["medianSecondsToFinish"] = prop(m);
                }
                e
            })
            .collect();
        self.commit(items).await
    }

    pub(crate) async fn metrics_loop(&self) {
        let mut last = u64::MAX;
        let mut first = true;
        loop {
            // At once on start, so the cockpit has its figures from the first page.
            if !std::mem::take(&mut first) {
                tokio::time::sleep(self.inner.settings.metrics_every).await;
            }
            if self.inner.hub.is_closing() {
                return;
            }
            // Our own metrics write counts as a change; compare after it.
            let changes = self.inner.hub.entity_changes();
            if changes == last {
                continue;
            }
            if let Err(e) = self.refresh_metrics().await {
                tracing::warn!("services metrics: {e}");
            }
            last = self.inner.hub.entity_changes();
        }
    }
}
