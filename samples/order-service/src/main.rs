//! The order service sample: `POST /orders` → Orders → Billing (charges a
//! payment provider over HTTP, writes the invoice blob) → Shipping, exactly
//! once end to end, in one process or as separate ones sharing one SQLite
//! file. `order-service soak` proves it under SIGKILL. See README.md.

mod api;
mod backend;
mod billing;
mod config;
mod messages;
mod metrics;
mod orders;
mod payments;
mod serve;
mod shipping;
mod soak;
mod telemetry;
mod wiring;

use std::process::ExitCode;

use clap::Parser;

use config::{Cli, Command};
use telemetry::Telemetry;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let role = match cli.command {
        Some(Command::Soak(_)) => "soak",
        None => cli.serve.role.name(),
    };
    let telemetry = match Telemetry::init(&cli.common, role) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("order-service: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(Command::Soak(args)) => soak::run(args, cli.common).await,
        None => serve::serve(cli.serve, cli.common).await.map(|()| true),
    };
    telemetry.shutdown().await;
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("order-service: {e:#}");
            ExitCode::FAILURE
        }
    }
}
