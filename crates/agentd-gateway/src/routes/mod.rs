//! HTTP handlers, one file per API surface; `chat.rs` holds the call path both chat APIs share.

pub mod admin;
pub mod anthropic;
pub mod chat;
pub mod control;
pub mod extract;
pub mod openai;
pub mod ops;
