//! lock-valkey's integration tests: one binary, one module per area.
//!
//! They run against a real Valkey (local `valkey-server`, a container, or wherever
//! `VALKEY_URL` points); `cargo xtask test` starts one. Without a server each test prints
//! why it skips, or fails when `CI`/`IDENFY_REQUIRE_SERVICES=1` is set. Every test uses its
//! own key prefix (`dev_services::unique_name`), so they run in parallel.
//!
//! To add tests, add a module file next to this one and a `mod` line below.

mod conformance;
mod lock;
mod smoke;
mod support;
mod tls;
