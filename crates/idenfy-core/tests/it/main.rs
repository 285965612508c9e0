//! The integration tests of idenfy-core, one binary (one link step, one process to run).

mod concurrency;
mod conformance;
mod creation;
mod limits;
mod money;
mod peers;
mod scenarios;
mod snapshots;
mod support;
mod weaknesses;
mod webhooks;
