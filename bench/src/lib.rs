//! natsbench: natsd against Go nats-server, side by side, over raw TCP.
//!
//! Architecture, one file per concern:
//! - [`proto`]: the MSG frame scanner and pre-encoded PUB batches (the hot path, no allocation);
//! - [`tally`]: sequence-number bitmaps that prove every message arrived exactly once;
//! - [`flow`]: the end-to-end window that keeps publishers from making slow consumers;
//! - [`conn`], [`publisher`], [`subscriber`], [`reqrep`]: the client connections and their threads;
//! - [`server`]: starting/stopping the servers under test; [`refserver`]: finding nats-server;
//! - [`slowcons`]: checks that slow-consumer protection is still on;
//! - [`procfs`]: RSS, CPU time and machine facts from /proc;
//! - [`scenario`]: the scenarios and running one; [`suite`]: runs × scenarios × servers;
//! - [`report`] and [`stats`]: medians, ratios, targets, Markdown and JSON.

pub mod conn;
pub mod flow;
pub mod procfs;
pub mod proto;
pub mod publisher;
pub mod refserver;
pub mod report;
pub mod reqrep;
pub mod scenario;
pub mod server;
pub mod slowcons;
pub mod stats;
pub mod subscriber;
pub mod suite;
pub mod tally;
