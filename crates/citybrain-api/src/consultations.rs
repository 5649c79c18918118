//! Public consultations on draft policies over HTTP
//! (`/api/v1/consultations…`): drafts and their comments are public (the
//! comments redacted, their authors never shown), commenting and
//! supporting need an account, departments publish, answer and conclude.
//! The domain decides who may do what.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use citybrain_appeals::consultation::{Comment, Consultation, Draft, Section, Stage};
use citybrain_appeals_hub::CommentAction;
use serde_json::{json, Value};

use crate::appeals::{appeals, page_of};
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Ngsi};
use crate::respond::plain;
use crate::services::actor;
use crate::AppState;

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::http(StatusCode::BAD_REQUEST, m)
}

fn to_value(v: impl serde::Serialize) -> ApiResult<Value> {
    serde_json::to_value(v).map_err(|e| ApiError::http(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// A consultation as listed: the draft's head, its stage and its figures.
fn head(c: &Consultation, now: DateTime<Utc>) -> Value {
    json!({
        "id": c.id,
        "title": c.draft.title,
        "summary": c.draft.summary,
        "department": c.draft.department,
        "policy": c.draft.policy,
        "opens": c.draft.opens,
        "closes": c.draft.closes,
        "stage": c.stage(now).as_str(),
        "comments": c.comments,
        "conclusion": c.conclusion,
    })
}

/// GET /api/v1/consultations — `?stage=upcoming|open|closed|concluded&department=`.
pub async fn list(State(s): State<AppState>, n: Ngsi) -> ApiResult<Response> {
    let svc = appeals(&s)?;
    let stage = n
        .params
        .get("stage")
        .map(|x| Stage::parse(x).ok_or_else(|| bad(format!("stage '{x}': one of upcoming, open, closed, concluded"))))
        .transpose()?;
    let (offset, limit) = page_of(&n)?;
    let (list, total) = svc
        .consultations(stage, n.params.get("department"), offset, limit)
        .await?;
    let now = svc.now();
    Ok(plain(
        StatusCode::OK,
        json!({"total": total, "consultations": list.iter().map(|c| head(c, now)).collect::<Vec<_>>()}),
    ))
}

/// What a department posts to publish a draft.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Publish {
    id: String,
    title: String,
    summary: String,
    department: String,
    #[serde(default)]
    policy: Option<String>,
    sections: Vec<Section>,
    opens: DateTime<Utc>,
    closes: DateTime<Utc>,
}

/// POST /api/v1/consultations — a department publishes a draft for comment.
pub async fn publish(State(s): State<AppState>, n: Ngsi, JsonBody(b): JsonBody) -> ApiResult<Response> {
    let svc = appeals(&s)?;
    let p: Publish = serde_json::from_value(b).map_err(|e| bad(format!("the consultation: {e}")))?;
    if let Some(id) = &p.policy {
        if s.policies.get(id).is_none() {
            return Err(bad(format!("policy '{id}' is not one of the city's policies")));
        }
    }
    let draft = Draft {
        title: p.title,
        summary: p.summary,
        department: p.department,
        policy: p.policy,
        sections: p.sections,
        opens: p.opens,
        closes: p.closes,
    };
    let c = svc.publish(&p.id, draft, &actor(&n)).await?;
    Ok(plain(StatusCode::CREATED, to_value(&c)?))
}

/// GET /api/v1/consultations/{id} — the draft, its stage and figures so far.
pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let svc = appeals(&s)?;
    let c = svc
        .consultation(&id)
        .await?
        .ok_or_else(|| ApiError::http(StatusCode::NOT_FOUND, format!("no consultation {id}")))?;
    let mut v = head(&c, svc.now());
    v["sections"] = to_value(&c.draft.sections)?;
    v["publishedAt"] = json!(c.published_at);
    v["tally"] = to_value(svc.tally(&id).await?)?;
    Ok(plain(StatusCode::OK, v))
}

/// What staff of the consulting department see of a comment: the public
/// view, and whether and why it is hidden or held (with its text, to moderate).
fn staff_view(c: &Comment) -> ApiResult<Value> {
    let mut v = to_value(c.public())?;
    v["hidden"] = json!(c.hidden);
    v["hiddenReason"] = json!(c.hidden_reason);
    v["held"] = json!(c.held);
    if c.held || c.hidden {
        v["originalText"] = json!(c.text);
    }
    Ok(v)
}

/// GET /api/v1/consultations/{id}/comments — `?section=&offset=&limit=`;
/// staff of the department add `hidden=true` to see hidden ones too.
pub async fn comments(State(s): State<AppState>, n: Ngsi, Path(id): Path<String>) -> ApiResult<Response> {
    let svc = appeals(&s)?;
    let c = svc
        .consultation(&id)
        .await?
        .ok_or_else(|| ApiError::http(StatusCode::NOT_FOUND, format!("no consultation {id}")))?;
    let staff = c.may_answer(&actor(&n), svc.config());
    let with_hidden = n.params.bool("hidden")?;
    if with_hidden && !staff {
        return Err(ApiError::forbidden(format!(
            "only {} sees the hidden comments",
            c.draft.department
        )));
    }
    let (offset, limit) = page_of(&n)?;
    let (list, total) = svc
        .comments(&id, n.params.get("section"), with_hidden, offset, limit)
        .await?;
    let items = list
        .iter()
        .map(|c| if staff { staff_view(c) } else { to_value(c.public()) })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(plain(StatusCode::OK, json!({"total": total, "comments": items})))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewComment {
    #[serde(default)]
    section: Option<String>,
    text: String,
}

/// POST /api/v1/consultations/{id}/comments — `{"text": …, "section": …}` (signed in).
pub async fn comment(
    State(s): State<AppState>,
    n: Ngsi,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> ApiResult<Response> {
    let svc = appeals(&s)?;
    let c: NewComment = serde_json::from_value(b).map_err(|e| bad(format!("the comment: {e}")))?;
    let made = svc.comment(&id, c.section.as_deref(), &c.text, &actor(&n)).await?;
    Ok(plain(StatusCode::CREATED, to_value(made.public())?))
}

/// POST /api/v1/consultations/{id}/comments/{seq}/actions — `{"action":
/// "answer", "text", "adoption": "adopted" | "partly_adopted" |
/// "not_adopted" | "noted"}`, `support`, `report`, or `moderate` (`hide`, `reason`).
pub async fn comment_action(
    State(s): State<AppState>,
    n: Ngsi,
    Path((id, seq)): Path<(String, String)>,
    JsonBody(b): JsonBody,
) -> ApiResult<Response> {
    let svc = appeals(&s)?;
    let seq: u32 = seq
        .parse()
        .map_err(|_| bad(format!("comment '{seq}': a comment's number, like 12")))?;
    let action: CommentAction = serde_json::from_value(b).map_err(|e| bad(format!("the action: {e}")))?;
    let by = actor(&n);
    let c = svc.comment_action(&id, seq, action, &by).await?;
    let consultation = svc.consultation(&id).await?;
    let staff = consultation.is_some_and(|x| x.may_answer(&by, svc.config()));
    Ok(plain(
        StatusCode::OK,
        if staff { staff_view(&c)? } else { to_value(c.public())? },
    ))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Conclude {
    outcome: String,
}

/// POST /api/v1/consultations/{id}/conclude — `{"outcome": …}`: after the
/// period, once every visible comment is answered.
pub async fn conclude(
    State(s): State<AppState>,
    n: Ngsi,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> ApiResult<Response> {
    let svc = appeals(&s)?;
    let c: Conclude = serde_json::from_value(b).map_err(|e| bad(format!("the conclusion: {e}")))?;
    let done = svc.conclude(&id, &c.outcome, &actor(&n)).await?;
    Ok(plain(StatusCode::OK, head(&done, svc.now())))
}
