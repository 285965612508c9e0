//! `idenfy-app`: `serve` (production) or `dev` (self-contained demo).

use std::process::ExitCode;

use clap::{Parser, error::ErrorKind};
use idenfy_app::config::{CONFIG_EXIT_CODE, Cli, Command, ConfigError, LogFormat};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return command_line_refused(&error),
    };
    let log_format = cli.log_format();
    let json_logs = log_format == LogFormat::Json;
    // Every configuration problem (LOG_FORMAT, RUST_LOG, then the command's own) goes into
    // one list, reported once, with one exit status.
    let mut problems = cli.problems();
    if let Err(problem) = idenfy_app::telemetry::init(log_format) {
        problems.push(problem);
    }
    let result = match cli.command {
        Command::Serve(args) => match args.validate() {
            Ok(config) if problems.is_empty() => idenfy_app::serve::run(config).await,
            Ok(_) => Err(anyhow::Error::new(ConfigError(problems))),
            Err(ConfigError(mut own)) => {
                own.append(&mut problems);
                Err(anyhow::Error::new(ConfigError(own)))
            }
        },
        #[cfg(feature = "dev")]
        Command::Dev(args) if problems.is_empty() => idenfy_app::dev::run(args).await,
        #[cfg(feature = "dev")]
        Command::Dev(_) => Err(anyhow::Error::new(ConfigError(problems))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let code = if error.is::<ConfigError>() {
                ExitCode::from(CONFIG_EXIT_CODE)
            } else {
                ExitCode::FAILURE
            };
            if json_logs {
                // One JSON line like every other, for log pipelines that parse each line.
                tracing::error!(error = format!("{error:#}"), "idenfy-app stopped");
            } else {
                eprintln!("idenfy-app: {error:#}");
            }
            code
        }
    }
}

/// A command line clap refused (an unknown flag, no command; values never fail there): the
/// same exit status as a refused configuration, and a JSON line when JSON logs are asked
/// for. `--help` and `--version` print and exit 0 as usual.
fn command_line_refused(error: &clap::Error) -> ExitCode {
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        error.exit();
    }
    if wants_json_logs() {
        let _ = idenfy_app::telemetry::init(LogFormat::Json);
        tracing::error!(
            error = %error.render(),
            "idenfy-app stopped: invalid command line"
        );
    } else {
        let _ = error.print();
    }
    ExitCode::from(CONFIG_EXIT_CODE)
}

/// Whether `LOG_FORMAT` or `--log-format` asks for JSON, read directly: clap refused the
/// command line, so it has not parsed them.
fn wants_json_logs() -> bool {
    let json = |value: &str| value.trim().eq_ignore_ascii_case("json");
    let args: Vec<String> = std::env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    let flag = args.iter().enumerate().find_map(|(i, arg)| {
        if arg == "--log-format" {
            args.get(i + 1).map(|value| json(value))
        } else {
            arg.strip_prefix("--log-format=").map(json)
        }
    });
    flag.unwrap_or_else(|| std::env::var("LOG_FORMAT").is_ok_and(|value| json(&value)))
}
