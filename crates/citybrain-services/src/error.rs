//! The services crate's one error type.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A catalog or bundle file is wrong: where, and what.
    #[error("{}:{line}: {message}", file.display())]
    File {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Definitions that do not fit together (an unknown policy, two files with one id).
    #[error("{0}")]
    Catalog(String),
    /// The request does not fit the state it is made in (a review of a step
    /// that waits for none, a confirmation by someone else).
    #[error("{0}")]
    Conflict(String),
    /// The actor may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The request itself is wrong.
    #[error("{0}")]
    Invalid(String),
}

impl ServiceError {
    pub fn at(file: &Path, line: usize, message: impl Into<String>) -> Self {
        ServiceError::File {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

/// The first line (1-based) of `text` holding `needle`, or 1: where an
/// error about a key found after parsing points.
pub(crate) fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or(1)
}

/// serde_yaml_ng's error with its line, as ours.
pub(crate) fn yaml_error(file: &Path, e: &serde_yaml_ng::Error) -> ServiceError {
    let line = e.location().map(|l| l.line()).unwrap_or(1);
    ServiceError::at(file, line, e.to_string())
}

/// Reads one definition file, refusing what is too large to be one.
pub(crate) fn read_file(path: &Path, max: u64) -> Result<String, ServiceError> {
    let io = |source| ServiceError::Io {
        file: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > max {
        return Err(ServiceError::at(
            path,
            1,
            format!("file of {len} bytes is above the limit of {max}"),
        ));
    }
    std::fs::read_to_string(path).map_err(io)
}

/// `duration` as in `30m`, `4h`, `2d` (humantime), named in errors by `what`.
pub(crate) fn parse_duration(what: &str, s: &str) -> Result<chrono::Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{what}: '{s}' is not a duration like 30m, 4h or 2d ({e})"))?;
    chrono::Duration::from_std(d).map_err(|_| format!("{what}: '{s}' is too long"))
}
