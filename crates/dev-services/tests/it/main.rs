//! dev-services' integration tests: one binary, one module per area.
//!
//! To add tests, add a module file next to this one and a `mod` line below.

mod valkey_control;
