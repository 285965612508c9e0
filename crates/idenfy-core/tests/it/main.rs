//! The integration tests of idenfy-core, one binary (see STYLE.md).

mod concurrency;
mod conformance;
mod creation;
mod money;
mod peers;
mod scenarios;
mod snapshots;
mod support;
mod weaknesses;
mod webhooks;
