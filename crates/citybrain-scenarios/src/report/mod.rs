//! What a scenario study reports: per-policy summaries over seeds, as a text
//! table, JSON lines and a self-contained HTML page. The binary only chooses
//! which to print or write.

pub mod corridor;
pub mod hospital;
pub mod html;
