//! Integration tests for idenfy-sim: the iDenfy API, lifecycle, webhooks, faults, hosted page, admin.

mod admin;
mod api;
mod faults;
mod hosted;
mod lifecycle;
mod support;
mod webhooks;
