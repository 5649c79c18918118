//! The audit log's writer: entries from every request are gathered and
//! appended in one transaction (group commit), and each caller waits for
//! its entries to be on disk before it answers — an access that could not
//! be recorded is not granted.

use citybrain_ngsild::NgsiError;
use citybrain_store::audit::{AuditEntry, AuditRecord};
use tokio::sync::{mpsc, oneshot};

use crate::{Hub, Result};

/// Requests waiting for the writer, at most.
const QUEUE: usize = 4096;
/// Entries per transaction, at most.
const BATCH: usize = 1024;

pub(crate) type Job = (Vec<AuditEntry>, oneshot::Sender<std::result::Result<(), String>>);

pub(crate) fn spawn(store: std::sync::Arc<dyn citybrain_store::Store>) -> mpsc::Sender<Job> {
    let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut jobs = vec![first];
            let mut n = jobs[0].0.len();
            while n < BATCH {
                match rx.try_recv() {
                    Ok(j) => {
                        n += j.0.len();
                        jobs.push(j);
                    }
                    Err(_) => break,
                }
            }
            let entries: Vec<AuditEntry> = jobs.iter().flat_map(|(e, _)| e.iter().cloned()).collect();
            let result = store.append_audit(entries).await.map(|_| ()).map_err(|e| e.to_string());
            if let Err(e) = &result {
                tracing::error!(error = %e, "the audit log could not be written; the accesses are refused");
            }
            for (_, reply) in jobs {
                let _ = reply.send(result.clone());
            }
        }
    });
    tx
}

impl Hub {
    /// Appends entries to the audit log; returns once they are committed.
    pub async fn audit(&self, entries: Vec<AuditEntry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        let failed = |what: &str| NgsiError::internal(format!("audit log: {what}"));
        self.inner
            .audit_tx
            .send((entries, tx))
            .await
            .map_err(|_| failed("the writer has stopped"))?;
        rx.await
            .map_err(|_| failed("the writer has stopped"))?
            .map_err(|e| failed(&e))
    }

    /// Audit records after `after`, in order (for the verifier and `/api/audit`).
    pub async fn audit_records(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        Ok(self.inner.store.audit_records(after, limit).await?)
    }

    /// The latest accesses to a person's or enterprise's records, newest first.
    pub async fn audit_for_subject(&self, subject: &str, limit: usize) -> Result<Vec<AuditRecord>> {
        Ok(self.inner.store.audit_for_subject(subject, limit).await?)
    }
}
