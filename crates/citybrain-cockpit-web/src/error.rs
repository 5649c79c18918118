//! What can go wrong in the cockpits, one kind per cause.

use std::path::PathBuf;

use citybrain_cockpit::definition::CheckError;
use citybrain_ngsild::NgsiError;

#[derive(Debug, thiserror::Error)]
pub enum CockpitError {
    /// A rules folder or file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A rules file was refused whole; the error names the field at fault.
    #[error("{file}: {source}")]
    Rules {
        file: String,
        #[source]
        source: CheckError,
    },
    /// The hub failed or refused a read the cockpit made.
    #[error("reading the hub: {0}")]
    Hub(#[from] NgsiError),
}
