//! The Understudy runtime's building blocks: configuration, the SQLite store, TLS with pinned
//! self-signed certificates, the wire framing, and the admin API's token and client.
//! The failover rules themselves live in `understudy-engine`; nothing here decides policy.

pub mod admin_auth;
pub mod config;
pub mod frame;
pub mod fsutil;
pub mod http_client;
pub mod store;
pub mod tls;
