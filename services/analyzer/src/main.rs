//! The `analyzer` binary: parse the command line and run it.

use std::process::ExitCode;

use clap::Parser as _;

#[global_allocator]
static ALLOCATOR: analyzer::Allocator = analyzer::Allocator;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = analyzer::cli::Cli::parse();
    match analyzer::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
