//! The rules crate's one error type.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// A policy or test file is wrong: where, and what.
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
    /// Two policies of one set disagree, or a name is unknown.
    #[error("{0}")]
    Set(String),
    /// A batch's table does not fit the policy.
    #[error("{0}")]
    Table(String),
}

impl RulesError {
    pub fn at(file: &Path, line: usize, message: String) -> Self {
        RulesError::File {
            file: file.to_path_buf(),
            line,
            message,
        }
    }

    pub fn io(file: &Path, source: std::io::Error) -> Self {
        RulesError::Io {
            file: file.to_path_buf(),
            source,
        }
    }
}
