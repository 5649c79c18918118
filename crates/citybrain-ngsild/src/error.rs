//! NGSI-LD error kinds (ETSI GS CIM 009, clause 5.5.2). The HTTP layer maps a
//! kind to a status code; this crate only knows the vocabulary.

use std::fmt;

/// The problem types NGSI-LD defines, plus the plain HTTP ones we need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    InvalidRequest,
    BadRequestData,
    AlreadyExists,
    OperationNotSupported,
    ResourceNotFound,
    InternalError,
    TooComplexQuery,
    TooManyResults,
    LdContextNotAvailable,
    NonexistentTenant,
    NoMultiTenantSupport,
    /// Request entity too large (body or batch over the configured limit).
    PayloadTooLarge,
    /// A concurrent writer changed the entity first; retried by the hub.
    Conflict,
    /// The database is locked by another process (503; retry later).
    StorageBusy,
    /// The disk is full or the database reached its size limit (507).
    StorageFull,
}

impl ErrorKind {
    pub fn type_uri(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest",
            ErrorKind::BadRequestData => "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
            ErrorKind::AlreadyExists => "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists",
            ErrorKind::OperationNotSupported => "https://uri.etsi.org/ngsi-ld/errors/OperationNotSupported",
            ErrorKind::ResourceNotFound => "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound",
            ErrorKind::InternalError => "https://uri.etsi.org/ngsi-ld/errors/InternalError",
            ErrorKind::TooComplexQuery => "https://uri.etsi.org/ngsi-ld/errors/TooComplexQuery",
            ErrorKind::TooManyResults => "https://uri.etsi.org/ngsi-ld/errors/TooManyResults",
            ErrorKind::LdContextNotAvailable => "https://uri.etsi.org/ngsi-ld/errors/LdContextNotAvailable",
            ErrorKind::NonexistentTenant => "https://uri.etsi.org/ngsi-ld/errors/NonexistentTenant",
            ErrorKind::NoMultiTenantSupport => "https://uri.etsi.org/ngsi-ld/errors/NoMultiTenantSupport",
            ErrorKind::PayloadTooLarge => "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest",
            ErrorKind::Conflict => "https://uri.etsi.org/ngsi-ld/errors/InternalError",
            ErrorKind::StorageBusy => "urn:citybrain:problem:storage-busy",
            ErrorKind::StorageFull => "urn:citybrain:problem:storage-full",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "Invalid request",
            ErrorKind::BadRequestData => "Bad request data",
            ErrorKind::AlreadyExists => "Already exists",
            ErrorKind::OperationNotSupported => "Operation not supported",
            ErrorKind::ResourceNotFound => "Resource not found",
            ErrorKind::InternalError => "Internal error",
            ErrorKind::TooComplexQuery => "Too complex query",
            ErrorKind::TooManyResults => "Too many results",
            ErrorKind::LdContextNotAvailable => "@context not available",
            ErrorKind::NonexistentTenant => "Nonexistent tenant",
            ErrorKind::NoMultiTenantSupport => "No multi-tenant support",
            ErrorKind::PayloadTooLarge => "Payload too large",
            ErrorKind::Conflict => "Concurrent modification",
            ErrorKind::StorageBusy => "Storage busy",
            ErrorKind::StorageFull => "Storage full",
        }
    }
}

/// An error with its NGSI-LD kind and a human-readable detail naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct NgsiError {
    pub kind: ErrorKind,
    pub detail: String,
}

impl fmt::Display for NgsiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.title(), self.detail)
    }
}

impl NgsiError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        NgsiError {
            kind,
            detail: detail.into(),
        }
    }
    pub fn bad_data(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequestData, detail)
    }
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceNotFound, detail)
    }
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InternalError, detail)
    }
    pub fn too_complex(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::TooComplexQuery, detail)
    }
}

pub type Result<T, E = NgsiError> = std::result::Result<T, E>;
