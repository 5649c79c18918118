//! A caller's own account: who looked at my records, and why
//! (`/api/me/accesses`); and the administrator's page through the audit
//! log (`/api/audit`).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use citybrain_store::audit::AuditRecord;
use citybrain_trust::Caller;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::respond::plain;
use crate::AppState;

/// Most records one page returns.
const MAX_PAGE: usize = 1000;

#[derive(Deserialize)]
pub struct PageParams {
    after: Option<u64>,
    limit: Option<usize>,
}

fn limit(l: Option<usize>) -> ApiResult<usize> {
    match l.unwrap_or(100) {
        0 => Err(ApiError::http(StatusCode::BAD_REQUEST, "limit must be at least 1")),
        n if n > MAX_PAGE => Err(ApiError::http(
            StatusCode::BAD_REQUEST,
            format!("limit is at most {MAX_PAGE}"),
        )),
        n => Ok(n),
    }
}

fn record_json(r: &AuditRecord, with_chain: bool) -> Value {
    let entry: Value = serde_json::from_str(&r.doc).unwrap_or(Value::Null);
    if with_chain {
        json!({"seq": r.seq, "entry": entry, "prevHash": r.prev_hash, "hash": r.hash})
    } else {
        json!({"seq": r.seq, "at": entry["at"], "who": entry["actor"], "role": entry["role"],
               "departments": entry.get("departments").cloned().unwrap_or(json!([])),
               "action": entry["action"], "what": entry["resource"],
               "records": entry.get("entities").cloned().unwrap_or(json!([])),
               "purpose": entry.get("purpose").cloned().unwrap_or(Value::Null)})
    }
}

/// GET /api/me/accesses — the latest accesses to the caller's own records.
pub async fn my_accesses(
    State(s): State<AppState>,
    Query(p): Query<PageParams>,
    Extension(c): Extension<Arc<Caller>>,
) -> ApiResult<Response> {
    let Some(subject) = c.principal.subject.clone() else {
        return Err(ApiError::http(
            StatusCode::NOT_FOUND,
            "this caller acts for no person or enterprise, so no records are theirs",
        ));
    };
    let n = limit(p.limit)?;
    let rs = s.hub.audit_for_subject(&subject, n).await?;
    Ok(plain(
        StatusCode::OK,
        json!({"subject": subject, "accesses": rs.iter().map(|r| record_json(r, false)).collect::<Vec<_>>()}),
    ))
}

/// GET /api/audit?after=SEQ&limit=N — the log itself, with its chain.
pub async fn audit_log(State(s): State<AppState>, Query(p): Query<PageParams>) -> ApiResult<Response> {
    let n = limit(p.limit)?;
    let rs = s.hub.audit_records(p.after.unwrap_or(0), n).await?;
    Ok(plain(
        StatusCode::OK,
        Value::Array(rs.iter().map(|r| record_json(r, true)).collect()),
    ))
}
