//! The Understudy runtime's building blocks: configuration, the SQLite store, TLS with pinned
//! self-signed certificates, the wire framing, and the admin API's token and client.
//! The failover rules themselves live in `understudy-engine`; nothing here decides policy.

mod admin;
pub mod admin_auth;
mod alerts;
mod allowlist;
pub mod checks;
pub mod config;
mod docs;
pub mod follow;
pub mod forward;
pub mod frame;
pub mod fsutil;
mod group_commit;
pub mod hooks;
pub mod http_client;
pub mod invite;
pub mod limits;
pub mod logsafe;
mod mailbox;
mod metrics;
mod net;
mod procgroup;
pub mod receiver;
mod retention;
pub mod runtime;
pub mod series;
pub mod store;
pub mod tls;
pub mod wire;

pub use runtime::{admin_client, init, InitOptions, InitReport, Node, NodeError, Role};
