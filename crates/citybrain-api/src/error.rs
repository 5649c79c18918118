//! The one place where error kinds become HTTP statuses and ProblemDetails
//! bodies (RFC 7807, NGSI-LD type URIs, `application/json` as NGSI-LD asks).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use citybrain_ngsild::{ErrorKind, NgsiError};
use serde_json::json;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub type_uri: &'static str,
    pub title: &'static str,
    pub detail: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::BadRequestData => StatusCode::BAD_REQUEST,
        ErrorKind::AlreadyExists => StatusCode::CONFLICT,
        ErrorKind::OperationNotSupported => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::ResourceNotFound | ErrorKind::NonexistentTenant => StatusCode::NOT_FOUND,
        ErrorKind::InternalError | ErrorKind::Conflict => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::TooComplexQuery | ErrorKind::TooManyResults => StatusCode::FORBIDDEN,
        ErrorKind::LdContextNotAvailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::NoMultiTenantSupport => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::StorageBusy => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
    }
}

impl From<NgsiError> for ApiError {
    fn from(e: NgsiError) -> Self {
        ApiError {
            status: status_of(e.kind),
            type_uri: e.kind.type_uri(),
            title: e.kind.title(),
            detail: e.detail,
        }
    }
}

impl From<citybrain_store::StoreError> for ApiError {
    fn from(e: citybrain_store::StoreError) -> Self {
        NgsiError::from(e).into()
    }
}

impl ApiError {
    pub fn http(status: StatusCode, detail: impl Into<String>) -> Self {
        let (type_uri, title) = match status {
            StatusCode::METHOD_NOT_ALLOWED => (
                "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest",
                "Method not allowed",
            ),
            StatusCode::NOT_ACCEPTABLE => ("https://uri.etsi.org/ngsi-ld/errors/InvalidRequest", "Not acceptable"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest",
                "Unsupported media type",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest",
                "Payload too large",
            ),
            StatusCode::NOT_FOUND => (
                "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound",
                "Resource not found",
            ),
            StatusCode::BAD_REQUEST => ("https://uri.etsi.org/ngsi-ld/errors/BadRequestData", "Bad request data"),
            _ => ("https://uri.etsi.org/ngsi-ld/errors/InternalError", "Internal error"),
        };
        ApiError {
            status,
            type_uri,
            title,
            detail: detail.into(),
        }
    }
}

impl ApiError {
    /// 401: no or bad credentials (NGSI-LD defines no type for it; ours is a URN).
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            type_uri: "urn:citybrain:problem:unauthenticated",
            title: "Authentication needed",
            detail: detail.into(),
        }
    }

    /// 403: the caller is known and may not do this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::FORBIDDEN,
            type_uri: "urn:citybrain:problem:forbidden",
            title: "Not allowed",
            detail: detail.into(),
        }
    }

    /// 429: over the caller's rate limit.
    pub fn too_many(detail: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            type_uri: "urn:citybrain:problem:too-many-requests",
            title: "Too many requests",
            detail: detail.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut detail = self.detail;
        if self.status.is_server_error() {
            let reference = next_reference();
            tracing::error!(status = %self.status, reference, detail = %detail, "request failed");
            // A failure inside the server is told in the log, with its cause
            // (a storage message names files, tables and SQL); the client gets
            // the reference to it. Other 5xx (a context that cannot be fetched,
            // no multi-tenancy) say what the client can act on.
            if self.status == StatusCode::INTERNAL_SERVER_ERROR {
                detail = format!("the server failed; its log has the cause under reference {reference}");
            }
        }
        let body = json!({"type": self.type_uri, "title": self.title, "detail": detail});
        let mut r = (self.status, body.to_string()).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    }
}

/// A number per server failure, to find it in the log.
fn next_reference() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use citybrain_ngsild::{ErrorKind, NgsiError};

    async fn body(e: ApiError) -> (StatusCode, serde_json::Value) {
        let r = e.into_response();
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn a_server_failure_tells_the_client_a_reference_not_the_storage_message() {
        let e = NgsiError::new(ErrorKind::InternalError, "sqlite: disk I/O error in table entities");
        let (status, b) = body(e.into()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let detail = b["detail"].as_str().unwrap();
        assert!(!detail.contains("sqlite") && !detail.contains("entities"), "{detail}");
        assert!(detail.contains("reference"), "{detail}");
        assert_eq!(b["type"], "https://uri.etsi.org/ngsi-ld/errors/InternalError");
    }

    #[tokio::test]
    async fn client_errors_and_actionable_5xx_keep_their_detail() {
        let (status, b) = body(NgsiError::new(ErrorKind::BadRequestData, "q: bad term").into()).await;
        assert_eq!(
            (status, b["detail"].as_str()),
            (StatusCode::BAD_REQUEST, Some("q: bad term"))
        );
        let (status, b) =
            body(NgsiError::new(ErrorKind::LdContextNotAvailable, "https://x/ctx: timed out").into()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(b["detail"], "https://x/ctx: timed out");
        let (status, b) = body(ApiError::http(StatusCode::BAD_REQUEST, "no such variable")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(b["type"], "https://uri.etsi.org/ngsi-ld/errors/BadRequestData");
    }
}
