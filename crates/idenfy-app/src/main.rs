//! `idenfy-app`: `serve` (production) or `dev` (self-contained demo).

use std::process::ExitCode;

use clap::Parser;
use idenfy_app::config::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_logs = matches!(cli.log_format, idenfy_app::config::LogFormat::Json);
    idenfy_app::telemetry::init(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => match args.validate() {
            Ok(config) => idenfy_app::serve::run(config).await,
            Err(error) => Err(anyhow::Error::new(error)),
        },
        #[cfg(feature = "dev")]
        Command::Dev(args) => idenfy_app::dev::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if json_logs => {
            // One JSON line like every other, for log pipelines that parse each line.
            tracing::error!(error = format!("{error:#}"), "idenfy-app stopped");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("idenfy-app: {error:#}");
            ExitCode::FAILURE
        }
    }
}
