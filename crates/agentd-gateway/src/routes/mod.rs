//! HTTP handlers, one file per API surface; `chat.rs` holds the call path both chat APIs share.

pub mod admin;
pub(crate) mod anthropic;
pub(crate) mod chat;
pub(crate) mod extract;
pub(crate) mod openai;
pub(crate) mod ops;
pub(crate) mod reports;
pub mod tenants;
