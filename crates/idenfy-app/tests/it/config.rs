//! Start-up configuration, through the real binary: every problem (values that are not of
//! their type, ranges, missing variables, URL schemes, `RUST_LOG`) listed at once with one
//! exit status, secrets never shown, `--help` and `--version` unchanged.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use idenfy_app::config::CONFIG_EXIT_CODE;

use crate::support::TOKEN;

/// A complete, valid configuration whose MongoDB never answers (nothing listens on port 1):
/// on its own it passes validation and then fails to start, with status 1.
const VALID: &[(&str, &str)] = &[
    ("MONGODB_URI", "mongodb://127.0.0.1:1/idserver"),
    ("VALKEY_URL", "redis://127.0.0.1:1"),
    ("IDENFY_API_KEY", "api-key-value"),
    ("IDENFY_API_SECRET", "api-secret-value"),
    ("IDENFY_WEBHOOK_SIGNING_KEY", "signing-key-value"),
    ("INTERNAL_SERVICE_TOKEN", TOKEN),
    ("LISTEN_ADDR", "127.0.0.1:0"),
];

struct Run {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// The `  - ...` lines of a refused configuration.
    fn problems(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter_map(|line| line.strip_prefix("  - "))
            .collect()
    }
}

/// Runs `idenfy-app <args>` with exactly `env` (and a throwaway DATA_DIR).
fn idenfy_app(args: &[&str], env: &[(&str, &str)]) -> Run {
    let data_dir = std::env::temp_dir().join(dev_services::unique_name("config-data"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_idenfy-app"))
        .args(args)
        .env_clear()
        .env("DATA_DIR", &data_dir)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn idenfy-app");
    // Only a guard against a process that unexpectedly starts serving.
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("idenfy-app {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    let _ = std::fs::remove_dir_all(&data_dir);
    Run {
        status: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `VALID` with `changes` (an empty value removes the variable).
fn with(changes: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut env: Vec<_> = VALID
        .iter()
        .copied()
        .filter(|(name, _)| !changes.iter().any(|(changed, _)| changed == name))
        .collect();
    env.extend(
        changes
            .iter()
            .copied()
            .filter(|(_, value)| !value.is_empty()),
    );
    env
}

fn assert_problem(run: &Run, expected: &str) {
    assert!(
        run.problems().iter().any(|p| p.starts_with(expected)),
        "{expected:?} not among the problems:\n{}",
        run.stderr
    );
}

#[test]
fn type_errors_and_other_problems_are_listed_together_with_one_exit_status() {
    let run = idenfy_app(
        &["serve"],
        &with(&[
            ("RECREATION_CAP", "-1"),
            ("POLL_INTERVAL_MS", "abc"),
            ("LISTEN_ADDR", "localhost"),
            ("MONGODB_URI", ""),
            ("IDENFY_API_SECRET", ""),
            ("INTERNAL_SERVICE_TOKEN", "short"),
            ("LOCK_TTL_MS", "70000"),
        ]),
    );
    assert_eq!(
        run.status,
        Some(i32::from(CONFIG_EXIT_CODE)),
        "{}",
        run.output()
    );
    assert_eq!(
        run.stderr.matches("invalid configuration:").count(),
        1,
        "one report: {}",
        run.stderr
    );
    for expected in [
        "RECREATION_CAP must be a whole number between 1 and 30 (recreations), got \"-1\"",
        "POLL_INTERVAL_MS must be a whole number between 1 and 86400000 (milliseconds), got \
         \"abc\"",
        "LISTEN_ADDR must be an IP address and port",
        "MONGODB_URI is required",
        "IDENFY_API_SECRET is required",
        "INTERNAL_SERVICE_TOKEN must be at least 32 characters",
        "LOCK_TTL_MS=70000 must not exceed CLAIM_TTL_MS=60000",
    ] {
        assert_problem(&run, expected);
    }
    assert_eq!(run.problems().len(), 7, "{}", run.stderr);

    // A type error alone and a semantic problem alone exit with that same status.
    for change in [("MAX_CONNECTIONS", "many"), ("IDENFY_THEME", " ")] {
        let run = idenfy_app(&["serve"], &with(&[change]));
        assert_eq!(
            run.status,
            Some(i32::from(CONFIG_EXIT_CODE)),
            "{}",
            run.output()
        );
        assert_eq!(run.problems().len(), 1, "{}", run.stderr);
        assert!(run.problems()[0].starts_with(change.0), "{}", run.stderr);
    }
}

#[test]
fn out_of_range_values_are_refused() {
    let run = idenfy_app(
        &["serve"],
        &with(&[
            ("IDENFY_EXPIRY_TIME", "2592001"),
            ("IDENFY_SESSION_LENGTH", "59"),
            ("RECREATION_CAP", "0"),
            ("MAX_UNKNOWN_MINT_OUTCOMES", "0"),
            ("CLAIM_TTL_MS", "86400001"),
            ("PERSIST_RETRY_MS", "0"),
            ("UNKNOWN_MINT_BACKOFF_MS", "18446744073709551616"),
            ("POLL_INTERVAL_MS", "0"),
            ("MONGODB_MAX_POOL_SIZE", "1001"),
        ]),
    );
    assert_eq!(
        run.status,
        Some(i32::from(CONFIG_EXIT_CODE)),
        "{}",
        run.output()
    );
    for expected in [
        "IDENFY_EXPIRY_TIME must be a whole number between 60 and 2592000 (seconds), got 2592001",
        "IDENFY_SESSION_LENGTH must be a whole number between 60 and 3600 (seconds), got 59",
        "RECREATION_CAP must be a whole number between 1 and 30 (recreations), got 0",
        "MAX_UNKNOWN_MINT_OUTCOMES must be a whole number between 1 and 30",
        "CLAIM_TTL_MS must be a whole number between 1 and 86400000 (milliseconds), got 86400001",
        "PERSIST_RETRY_MS must be a whole number between 1 and 86400000 (milliseconds), got 0",
        "UNKNOWN_MINT_BACKOFF_MS must be a whole number between 0 and 86400000 (milliseconds), \
         got \"18446744073709551616\"",
        "POLL_INTERVAL_MS must be a whole number between 1 and 86400000 (milliseconds), got 0",
        "MONGODB_MAX_POOL_SIZE must be a whole number between 1 and 1000",
    ] {
        assert_problem(&run, expected);
    }
    assert_eq!(run.problems().len(), 9, "{}", run.stderr);
}

#[test]
fn bad_url_schemes_are_refused_without_showing_the_values() {
    const SECRETS: [&str; 3] = ["s3cr3t-mongo-pw", "v4lkey-pw", "db.internal.example"];
    for format in ["text", "json"] {
        let run = idenfy_app(
            &["serve"],
            &with(&[
                (
                    "MONGODB_URI",
                    "postgresql://admin:s3cr3t-mongo-pw@db.internal.example/idserver",
                ),
                ("VALKEY_URL", "https://:v4lkey-pw@db.internal.example:6379"),
                ("IDENFY_BASE_URL", "ftp://ivs.idenfy.com"),
                ("CORS_ALLOWED_ORIGINS", "https://app.example.com/"),
                ("LOG_FORMAT", format),
            ]),
        );
        assert_eq!(
            run.status,
            Some(i32::from(CONFIG_EXIT_CODE)),
            "{}",
            run.output()
        );
        let output = run.output();
        for expected in [
            "MONGODB_URI must start with one of mongodb://, mongodb+srv://",
            "VALKEY_URL must start with one of redis://, rediss://, valkey://, valkeys://",
            "IDENFY_BASE_URL must start with one of https://, http://",
            "CORS_ALLOWED_ORIGINS: \\\"https://app.example.com/\\\" is not an origin",
        ] {
            let expected = if format == "text" {
                expected.replace("\\\"", "\"")
            } else {
                expected.to_owned()
            };
            assert!(output.contains(&expected), "{format}: {expected}\n{output}");
        }
        for secret in SECRETS {
            assert!(
                !output.contains(secret),
                "{format}: {secret} shown:\n{output}"
            );
        }
    }
}

#[test]
fn an_invalid_rust_log_is_refused_naming_it() {
    let run = idenfy_app(&["serve"], &with(&[("RUST_LOG", "info,idenfy_app=loud")]));
    assert_eq!(
        run.status,
        Some(i32::from(CONFIG_EXIT_CODE)),
        "{}",
        run.output()
    );
    assert_eq!(run.problems().len(), 1, "{}", run.stderr);
    assert!(
        run.problems()[0].starts_with("RUST_LOG is not a valid log filter: "),
        "{}",
        run.stderr
    );
    // Listed with the others, for `dev` too.
    let run = idenfy_app(&["serve"], &[("RUST_LOG", "=!")]);
    assert_problem(&run, "MONGODB_URI is required");
    assert_problem(&run, "RUST_LOG is not a valid log filter");
    let run = idenfy_app(&["dev"], &[("RUST_LOG", "[{"), ("LOG_FORMAT", "yaml")]);
    assert_eq!(
        run.status,
        Some(i32::from(CONFIG_EXIT_CODE)),
        "{}",
        run.output()
    );
    assert_problem(&run, "RUST_LOG is not a valid log filter");
    assert_problem(&run, "LOG_FORMAT must be text or json, got \"yaml\"");
}

/// RUST_LOG unset, blank (both: the default filter) or valid is accepted: the process goes
/// on to connect, and fails only then (MongoDB does not answer), with status 1.
#[test]
fn a_valid_configuration_with_rust_log_unset_or_valid_is_accepted() {
    for rust_log in [None, Some(""), Some("warn,idenfy_app=info")] {
        let mut env = with(&[("LOG_FORMAT", "json")]);
        env.extend(rust_log.map(|value| ("RUST_LOG", value)));
        let run = idenfy_app(&["serve"], &env);
        assert_eq!(run.status, Some(1), "{rust_log:?}: {}", run.output());
        assert!(
            !run.stderr.contains("invalid configuration"),
            "{rust_log:?}: {}",
            run.stderr
        );
        let last: serde_json::Value =
            serde_json::from_str(run.stderr.lines().last().expect("a line")).expect("JSON line");
        assert_eq!(last["level"], "ERROR", "{}", run.stderr);
        assert!(
            last["fields"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("MONGODB_URI") || e.contains("MongoDB")),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn json_logs_report_the_problems_as_one_json_line() {
    let run = idenfy_app(
        &["serve"],
        &with(&[
            ("LOG_FORMAT", "json"),
            ("RECREATION_CAP", "x"),
            ("VALKEY_URL", ""),
        ]),
    );
    assert_eq!(
        run.status,
        Some(i32::from(CONFIG_EXIT_CODE)),
        "{}",
        run.output()
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    let line: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON");
    assert_eq!(line["level"], "ERROR");
    let error = line["fields"]["error"].as_str().expect("error field");
    assert!(
        error.contains("RECREATION_CAP must be a whole number"),
        "{error}"
    );
    assert!(error.contains("VALKEY_URL is required"), "{error}");
}

#[test]
fn help_and_version_work_and_an_unknown_flag_exits_with_the_same_status() {
    let help = idenfy_app(&["serve", "--help"], &[]);
    assert_eq!(help.status, Some(0), "{}", help.output());
    for flag in [
        "--recreation-cap",
        "--cors-allowed-origins",
        "[env: POLL_INTERVAL_MS=",
    ] {
        assert!(help.stdout.contains(flag), "{flag}: {}", help.stdout);
    }
    let version = idenfy_app(&["--version"], &[]);
    assert_eq!(version.status, Some(0), "{}", version.output());
    assert!(
        version.stdout.starts_with("idenfy-app "),
        "{}",
        version.stdout
    );

    let unknown = idenfy_app(&["serve", "--bogus"], &[]);
    assert_eq!(
        unknown.status,
        Some(i32::from(CONFIG_EXIT_CODE)),
        "{}",
        unknown.output()
    );
    assert!(unknown.stderr.contains("--bogus"), "{}", unknown.stderr);
    let unknown = idenfy_app(&["serve", "--bogus"], &[("LOG_FORMAT", "json")]);
    assert_eq!(
        unknown.status,
        Some(i32::from(CONFIG_EXIT_CODE)),
        "{}",
        unknown.output()
    );
    let line: serde_json::Value =
        serde_json::from_str(unknown.stderr.trim()).expect("one JSON line");
    assert!(
        line["fields"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("--bogus")),
        "{line}"
    );
}
