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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, detail = %self.detail, "request failed");
        }
        let body = json!({"type": self.type_uri, "title": self.title, "detail": self.detail});
        let mut r = (self.status, body.to_string()).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    }
}
