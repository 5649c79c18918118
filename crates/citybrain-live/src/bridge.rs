//! The twin ↔ hub loop every live scenario shares.
//!
//! The twin steps on its own OS thread (the engine is synchronous), paced so
//! that simulated time runs `speedup` times faster than real time. Every
//! `period_s` of simulated time it hands a snapshot to the publisher (a
//! tokio task), which writes the entities that changed to the hub, then
//! reads the controllers' input back from the hub into the shared view. The
//! twin waits for that read-back before its next publication, so the
//! controllers never act on data older than one period, however busy the
//! machine (a queue of snapshots would let the twin run ahead).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use citybrain_hub::{BatchOp, Hub, RequestContext};
use citybrain_ngsild::model::Entity;
use serde_json::Value;
use tokio::sync::mpsc;

/// A scenario that can run live: it starts days, one per seed.
pub trait Scenario: Send + 'static {
    /// What one publication is made from.
    type Snapshot: Send + 'static;
    /// One day of the scenario on the twin.
    type Day<'a>: Day<Snapshot = Self::Snapshot>
    where
        Self: 'a;
    /// Starts the day drawn with `seed`.
    fn day(&self, seed: u64) -> Result<Self::Day<'_>, String>;
}

/// One day on the twin (possibly several engines side by side).
pub trait Day {
    type Snapshot;
    /// Simulated time, s.
    fn time(&self) -> f64;
    fn finished(&self) -> bool;
    /// One engine step (the controllers read the shared view here).
    fn step(&mut self);
    /// What the sensors read now.
    fn snapshot(&mut self) -> Self::Snapshot;
}

/// What a scenario's sensors publish and what its controllers read back.
pub trait Sensors: Send + Sync + 'static {
    type Snapshot: Send + 'static;
    /// The controllers' input, as the hub holds it.
    type View: Send + Sync + 'static;
    /// One publication: groups of entities written in turn.
    fn entities(&self, snapshot: &Self::Snapshot, now: DateTime<Utc>) -> Vec<Publication>;
    /// The entity type (expanded IRI) the controllers read back.
    fn read_type(&self) -> String;
    /// The view from every entity of that type the hub holds.
    fn read(&self, entities: Vec<Entity>) -> Self::View;
}

/// Entities written in one batch.
pub struct Publication {
    pub entities: Vec<Value>,
    /// Each entity replaces the stored one whole (attributes not sent are
    /// removed) rather than being merged into it.
    pub replace: bool,
}

/// How the twin runs.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Simulated seconds between publications.
    pub period_s: f64,
    /// Simulated time over real time.
    pub speedup: f64,
    /// The first day's seed; each next day takes the next.
    pub seed: u64,
    /// The first day is run ahead, unpaced and unpublished, to this
    /// simulated time (s): a demo opens at the peak, not on empty roads.
    pub start_at_s: Option<f64>,
}

/// Starts the twin and the publisher; they run until the process ends (or
/// the hub closes), each day followed by the next seed's. `name` is for logs.
pub fn start<T, S>(
    hub: Hub,
    name: &'static str,
    pacing: Pacing,
    scenario: T,
    sensors: S,
    view: Arc<RwLock<S::View>>,
) -> std::io::Result<()>
where
    T: Scenario,
    S: Sensors<Snapshot = T::Snapshot>,
{
    let (tx, mut rx) = mpsc::channel::<T::Snapshot>(1);
    let (read_tx, read_rx) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name(format!("twin {name}"))
        .spawn(move || run_twin(&scenario, name, pacing, tx, read_rx))?;
    tokio::spawn(async move {
        let mut last: HashMap<String, Value> = HashMap::new();
        while let Some(snapshot) = rx.recv().await {
            for p in sensors.entities(&snapshot, citybrain_hub::clock::now()) {
                publish_changed(&hub, &mut last, p.entities, p.replace, name).await;
            }
            match hub.entities_of_type("", &sensors.read_type(), usize::MAX).await {
                Ok(entities) => *view.write().unwrap_or_else(|e| e.into_inner()) = sensors.read(entities),
                // Reads cut off by the shutdown are no news.
                Err(e) if !hub.is_closing() => {
                    tracing::warn!(error = %e, "live {name}: reading back from the hub failed")
                }
                Err(_) => {}
            }
            let _ = read_tx.try_send(());
        }
    });
    Ok(())
}

fn run_twin<T: Scenario>(
    scenario: &T,
    name: &str,
    pacing: Pacing,
    tx: mpsc::Sender<T::Snapshot>,
    read_back: std::sync::mpsc::Receiver<()>,
) {
    let mut awaiting_read = false;
    let mut seed = pacing.seed;
    loop {
        let mut day = match scenario.day(seed) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "live {name}: the twin cannot start");
                return;
            }
        };
        if let Some(at) = pacing.start_at_s.filter(|_| seed == pacing.seed) {
            while day.time() < at && !day.finished() {
                day.step();
            }
        }
        let started = Instant::now();
        let t0 = day.time();
        let mut next_publish = t0;
        while !day.finished() {
            day.step();
            if day.time() >= next_publish {
                next_publish += pacing.period_s;
                if awaiting_read && read_back.recv().is_err() {
                    return; // the server is shutting down
                }
                let snapshot = day.snapshot();
                if tx.blocking_send(snapshot).is_err() {
                    return;
                }
                awaiting_read = true;
            }
            let due = Duration::from_secs_f64((day.time() - t0) / pacing.speedup.max(1e-3));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        seed += 1;
    }
}

/// Writes the entities whose readings changed since the last call (the
/// observation times aside: `dateObserved`, `simulatedTime`), so the hub's
/// history grows with the traffic, not with the clock.
pub async fn publish_changed(hub: &Hub, last: &mut HashMap<String, Value>, all: Vec<Value>, replace: bool, what: &str) {
    let items: Vec<Value> = all
        .into_iter()
        .filter(|e| {
            let id = e["id"].as_str().unwrap_or_default().to_string();
            let mut key = e.clone();
            if let Some(o) = key.as_object_mut() {
                o.remove("dateObserved");
                o.remove("simulatedTime");
            }
            last.insert(id, key.clone()) != Some(key)
        })
        .collect();
    if items.is_empty() {
        return;
    }
    match hub
        .batch_write("", &items, &RequestContext::core(), BatchOp::Upsert { replace })
        .await
    {
        Ok(r) if !r.errors.is_empty() => {
            tracing::warn!(error = %r.errors[0].error, "live {what}: an entity was refused")
        }
        // Writes cut off by the shutdown are no news.
        Err(e) if !hub.is_closing() => tracing::warn!(error = %e, "live {what}: publishing failed"),
        _ => {}
    }
}

/// Rounds to one decimal, as the sensors report.
pub(crate) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use citybrain_hub::HubConfig;
    use citybrain_ngsild::model::main_value;
    use citybrain_store_sqlite::{Durability, SqliteStore};
    use serde_json::json;

    /// A counter "twin": it publishes its step count every second of
    /// simulated time and records, at each snapshot, what the view held.
    struct Counter {
        seen: Arc<RwLock<Vec<(u64, u64)>>>,
        view: Arc<RwLock<u64>>,
    }

    struct CounterDay<'a> {
        t: u64,
        of: &'a Counter,
    }

    impl Scenario for Counter {
        type Snapshot = u64;
        type Day<'a> = CounterDay<'a>;
        fn day(&self, _seed: u64) -> Result<CounterDay<'_>, String> {
            Ok(CounterDay { t: 0, of: self })
        }
    }

    impl Day for CounterDay<'_> {
        type Snapshot = u64;
        fn time(&self) -> f64 {
            self.t as f64
        }
        fn finished(&self) -> bool {
            self.t >= 20
        }
        fn step(&mut self) {
            self.t += 1;
        }
        fn snapshot(&mut self) -> u64 {
            let view = *self.of.view.read().unwrap();
            self.of.seen.write().unwrap().push((self.t, view));
            // Every second snapshot repeats the one before (unchanged reading).
            self.t / 2 * 2
        }
    }

    struct CounterSensors;

    impl Sensors for CounterSensors {
        type Snapshot = u64;
        type View = u64;
        fn entities(&self, s: &u64, now: DateTime<Utc>) -> Vec<Publication> {
            vec![Publication {
                entities: vec![json!({
                    "id": "urn:ngsi-ld:Counter:c",
                    "type": "Counter",
                    "dateObserved": {"type": "Property", "value": now.to_rfc3339()},
                    "n": {"type": "Property", "value": s},
                })],
                replace: false,
            }]
        }
        fn read_type(&self) -> String {
            format!("{}Counter", crate::DEFAULT_CONTEXT)
        }
        fn read(&self, entities: Vec<Entity>) -> u64 {
            entities
                .first()
                .and_then(|e| e.attrs.get(&format!("{}n", crate::DEFAULT_CONTEXT)))
                .and_then(|i| i.first())
                .and_then(|a| main_value(a).and_then(Value::as_u64))
                .unwrap_or(0)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_twin_waits_for_each_read_back_and_unchanged_readings_are_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("t.db"), Durability::Normal).unwrap();
        let hub = Hub::start(Arc::new(store), HubConfig::default()).await.unwrap();
        let view = Arc::new(RwLock::new(0u64));
        let seen = Arc::new(RwLock::new(Vec::new()));
        let counter = Counter {
            seen: seen.clone(),
            view: view.clone(),
        };
        let pacing = Pacing {
            period_s: 1.0,
            speedup: 1000.0,
            seed: 1,
            start_at_s: None,
        };
        start(hub.clone(), "counter", pacing, counter, CounterSensors, view.clone()).unwrap();
        // One day is 20 simulated s = 20 ms at this speed-up; wait for two.
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.read().unwrap().len() < 40 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let seen = seen.read().unwrap().clone();
        assert!(seen.len() >= 40, "{seen:?}");
        // From the second snapshot on, the view holds exactly what the
        // previous snapshot published: the twin waited for its read-back.
        for w in seen.windows(2).take(19) {
            let (prev_t, _) = w[0];
            let (_, view_now) = w[1];
            assert_eq!(view_now, prev_t / 2 * 2, "{seen:?}");
        }
    }

    #[tokio::test]
    async fn only_entities_whose_readings_changed_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("t.db"), Durability::Normal).unwrap();
        let hub = Hub::start(Arc::new(store), HubConfig::default()).await.unwrap();
        let mut last = HashMap::new();
        let reading = |n: u64, at: &str| {
            json!({"id": "urn:ngsi-ld:Counter:c", "type": "Counter",
                   "dateObserved": {"type": "Property", "value": at},
                   "n": {"type": "Property", "value": n}})
        };
        let modified = || async {
            let e = hub.entities_of_type("", &CounterSensors.read_type(), 10).await.unwrap();
            (e[0].modified_at, CounterSensors.read(e))
        };
        publish_changed(&hub, &mut last, vec![reading(1, "a")], false, "test").await;
        let first = modified().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        // Same reading at a later observation time: nothing written.
        publish_changed(&hub, &mut last, vec![reading(1, "b")], false, "test").await;
        assert_eq!(modified().await, first);
        publish_changed(&hub, &mut last, vec![reading(2, "c")], false, "test").await;
        let after = modified().await;
        assert_eq!(after.1, 2);
        assert_ne!(after.0, first.0);
    }
}
