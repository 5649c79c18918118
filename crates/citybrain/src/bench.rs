//! `citybrain bench`: the CLI of the benchmarks in `citybrain-bench`.

use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// The NGSI-LD hub: batch upsert, PATCH, retrieve, query, notifications, vs raw SQLite.
    Hub(HubBench),
}

#[derive(Args, Clone)]
pub struct HubBench {
    /// Entities to load (and query over).
    #[arg(long, default_value_t = 100_000)]
    entities: usize,
    /// Entities per batch upsert.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds each timed phase runs.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Notification phase: changes per second to drive.
    #[arg(long, default_value_t = 1000)]
    notify_rate: u64,
}

pub async fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Hub(b) => {
            citybrain_bench::hub(citybrain_bench::HubBench {
                entities: b.entities,
                batch: b.batch,
                clients: b.clients,
                seconds: b.seconds,
                notify_rate: b.notify_rate,
            })
            .await
        }
    }
}
