//! `pagecache mount` under real clients: std::fs, fio and sqlite3.
//!
//! Tests that need FUSE, fio or sqlite3 skip with a loud message when those
//! are missing, and fail instead when `PAGECACHE_REQUIRE_SYSTEM_TESTS=1`.

mod harness;

mod errors;
mod errseq;
mod fds;
mod fio;
mod floor;
mod latency;
mod owner;
mod postgres;
mod requests;
mod semantics;
mod sqlite;
mod unmount;
mod users;
