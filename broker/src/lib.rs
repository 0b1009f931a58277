//! natsd: a small, fast broker for the core NATS protocol.
//!
//! Layout (one file per concern):
//! - `parser`  — the client protocol parser, a byte-at-a-time state machine that slices payloads;
//! - `sublist` — the subject trie with `*`/`>` wildcards, queue groups and a match cache;
//! - `client`  — one connection: reading, dispatch, the batched outbound buffer, keepalive;
//! - `server`  — the listener, shared state, INFO, shutdown, lame duck mode;
//! - `options` — every setting with its default; `conf` — the nats-server config file format;
//! - `cli`     — nats-server's command-line flags; `log` — nats-server's log lines;
//! - `signals` — SIGTERM/SIGHUP/SIGUSR1/SIGUSR2 handling and `--signal`.

pub mod cli;
pub mod client;
pub mod conf;
pub mod log;
pub mod options;
pub mod parser;
pub mod server;
pub mod signals;
pub mod sublist;
