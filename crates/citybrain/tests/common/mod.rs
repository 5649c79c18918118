//! What the end-to-end test files share.

use std::io::{BufRead, BufReader};
use std::process::Child;

/// Reads the child's stdout until the server prints its address; returns it
/// (`http://127.0.0.1:PORT`).
pub fn listening(child: &mut Child) -> String {
    let out = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(out).lines() {
        let line = line.expect("server stdout");
        if let Some(u) = line.strip_prefix("citybrain listening on ") {
            return u.to_string();
        }
    }
    panic!("the server ended before printing its address");
}
