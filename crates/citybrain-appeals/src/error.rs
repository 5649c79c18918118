use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum AppealsError {
    /// A configuration file is wrong: the file, and what (with its line where known).
    #[error("{file}: {message}")]
    Config { file: String, message: String },
    /// The request is wrong (a bad field, a missing value).
    #[error("{0}")]
    Invalid(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Not in this state (answering a closed appeal, rating twice).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// The text index failed.
    #[error("text index: {0}")]
    Index(String),
}
