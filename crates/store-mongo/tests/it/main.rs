//! store-mongo's integration tests: one binary, one module per area.
//!
//! They run against a real MongoDB-protocol server (wherever `MONGODB_URI` points, else the
//! one `cargo xtask services up` recorded). `cargo xtask test` runs this suite twice: on
//! mongo-java-server (atomic writes, the path production takes on MongoDB) and on FerretDB
//! (serialised writes). Without a server each test
//! prints why it skips, or fails when `CI`/`IDENFY_REQUIRE_SERVICES=1` is set. Every test
//! uses its own database (`dev_services::unique_name`), so they run in parallel.
//!
//! To add tests, add a module file next to this one and a `mod` line below.

mod conformance;
mod id_server_fixture;
mod money;
mod operations;
mod replicas;
mod smoke;
mod support;
