//! Integration tests of idenfy-app: the HTTP API in-process, log hygiene, and an end-to-end
//! run of three `idenfy-app serve` processes against real MongoDB-protocol and Valkey servers.

mod config;
mod connections;
mod cors;
mod e2e;
mod faults;
mod http;
mod logs;
mod openapi;
mod overload;
mod scrape;
mod support;
mod webhooks;
