//! The deliverer: POSTs queued notifications, acknowledges them in the
//! outbox when the receiver answered 2xx, and retries failures with
//! exponential backoff until the retry window closes. Pending rows are
//! reloaded at start-up, so a restart loses nothing (at-least-once).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, Semaphore};

use crate::{now, Hub, Result};

/// Concurrent POSTs in flight.
const MAX_IN_FLIGHT: usize = 128;

#[derive(Debug, Clone)]
pub(crate) struct Job {
    seq: i64,
    tenant: String,
    subscription: String,
    payload: Arc<str>,
    attempts: u32,
    first_try: Instant,
}

impl Job {
    pub(crate) fn new(seq: i64, tenant: String, subscription: String, payload: Arc<str>, attempts: u32) -> Self {
        Job {
            seq,
            tenant,
            subscription,
            payload,
            attempts,
            first_try: Instant::now(),
        }
    }
}

pub(crate) async fn spawn(hub: Hub, mut rx: mpsc::UnboundedReceiver<Job>) -> Result<()> {
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<i64>();
    // Acks are batched: one write per burst instead of one per notification.
    let store = hub.store().clone();
    tokio::spawn(async move {
        let mut batch = Vec::new();
        while let Some(seq) = ack_rx.recv().await {
            batch.push(seq);
            while let Ok(more) = ack_rx.try_recv() {
                batch.push(more);
                if batch.len() >= 1024 {
                    break;
                }
            }
            if let Err(error) = store.ack_notifications(&batch).await {
                tracing::error!(%error, "could not acknowledge delivered notifications; they may be sent again");
            }
            batch.clear();
        }
    });
    let pending = hub.store().pending_notifications(1_000_000).await?;
    if !pending.is_empty() {
        tracing::info!(count = pending.len(), "resuming delivery of queued notifications");
    }
    let tx = hub.inner.deliver_tx.clone();
    for p in pending {
        let _ = tx.send(Job::new(
            p.seq,
            p.tenant,
            p.subscription_id,
            Arc::from(p.payload),
            p.attempts,
        ));
    }
    let weak = Arc::downgrade(&hub.inner);
    drop(hub);
    tokio::spawn(async move {
        let gate = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        while let Some(job) = rx.recv().await {
            let Some(inner) = weak.upgrade() else { return };
            let hub = Hub { inner };
            let Ok(permit) = gate.clone().acquire_owned().await else {
                return;
            };
            let ack = ack_tx.clone();
            tokio::spawn(async move {
                deliver(hub, job, ack).await;
                drop(permit);
            });
        }
    });
    Ok(())
}

async fn deliver(hub: Hub, job: Job, ack: mpsc::UnboundedSender<i64>) {
    let Some(sub) = hub.subscription(&job.tenant, &job.subscription) else {
        // Subscription deleted meanwhile: its queue went with it.
        let _ = ack.send(job.seq);
        return;
    };
    let env: Value = match serde_json::from_str(&job.payload) {
        Ok(v) => v,
        Err(error) => {
            tracing::error!(seq = job.seq, %error, "corrupt queued notification dropped");
            let _ = ack.send(job.seq);
            return;
        }
    };
    let url = env.get("endpoint").and_then(Value::as_str).unwrap_or_default();
    let mut req = hub.inner.http.post(url);
    if let Some(ms) = sub.compiled.timeout_ms {
        req = req.timeout(Duration::from_millis(ms));
    }
    if let Some(Value::Object(h)) = env.get("headers") {
        for (k, v) in h {
            if let Some(v) = v.as_str() {
                req = req.header(k.as_str(), v);
            }
        }
    }
    let body = env.get("body").map(|b| b.to_string()).unwrap_or_default();
    let started = Instant::now();
    let outcome = req.body(body).send().await;
    let ok = matches!(&outcome, Ok(r) if r.status().is_success());
    sub.record(ok, now());
    metrics::histogram!("citybrain_hub_notification_seconds").record(started.elapsed().as_secs_f64());
    if ok {
        metrics::counter!("citybrain_hub_notifications_sent_total").increment(1);
        let _ = ack.send(job.seq);
        return;
    }
    metrics::counter!("citybrain_hub_notifications_failed_total").increment(1);
    let why = match outcome {
        Ok(r) => format!("HTTP {}", r.status()),
        Err(e) => e.to_string(),
    };
    let cfg = hub.config();
    if job.first_try.elapsed() >= cfg.notify_retry_window {
        tracing::warn!(subscription = %job.subscription, seq = job.seq, %why, "notification dropped after its retry window");
        let _ = ack.send(job.seq);
        return;
    }
    let attempts = job.attempts + 1;
    let backoff = Duration::from_millis(250u64.saturating_mul(1u64 << attempts.min(16)))
        .min(cfg.notify_max_backoff)
        .max(Duration::from_millis(sub.compiled.cooldown_ms.unwrap_or(0)));
    tracing::debug!(subscription = %job.subscription, attempts, ?backoff, %why, "notification failed; will retry");
    let next_ms = chrono::Utc::now().timestamp_millis() + backoff.as_millis() as i64;
    if let Err(error) = hub.store().retry_notification(job.seq, attempts, next_ms).await {
        tracing::warn!(%error, "could not record the retry");
    }
    let tx = hub.inner.deliver_tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(backoff).await;
        let _ = tx.send(Job { attempts, ..job });
    });
}
