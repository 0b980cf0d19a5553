//! Black-box tests of the running service: each test starts the real
//! `analyzer` binary on a random port with its own data dir (and database)
//! and drives it over HTTP. Scenarios marked so run on SQLite and on
//! PostgreSQL.

mod backup;
mod bad_input;
mod cache;
mod cache_fleet;
mod cli;
mod collections;
mod console;
mod contract;
mod export;
mod faults;
mod frontend;
mod fuzz;
mod infra;
mod isolation;
mod journey;
mod keys;
mod layout;
mod ledger;
mod lifecycle;
mod limits;
mod metadata;
mod offboarding;
mod openai;
mod operations;
mod qdrant;
mod secrets;
mod serving;
mod telemetry;
mod tokens;
mod uploads;
