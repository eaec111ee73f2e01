//! The streaming protocol: WebSocket frames between producers, consumers and the server, the
//! subscription REST bodies, and the admin view of live connections.
//!
//! Text frames are JSON; binary frames are MessagePack maps with the same field names. The
//! server answers each connection in the encoding the client last used. Motience devices send
//! `{"type":"data","payload":…}` and read `{"type":"ack","subscriberCount":N}`; the extra
//! fields (`seq`, `id`) extend that shape without breaking it.
//!
//! # Layout
//!
//! [`client`] (frames from clients), [`server`] (frames from the server), [`wire`] (encodings,
//! error codes), [`close`] (close codes), [`lenient_id`] (ids as Motience sends them), [`rest`]
//! (the REST bodies of subscriptions and connections), [`history`] (the REST bodies of
//! history, stored data, publishing and per-producer settings). Everything is re-exported here.

pub mod client;
pub mod close;
pub mod history;
pub mod lenient_id;
pub mod rest;
pub mod server;
#[cfg(test)]
mod tests;
pub mod wire;

pub use self::client::{ClientFrame, FrameRefusal, MAX_CLIENT_ID_BYTES, MAX_EPOCH_BYTES};
pub use self::history::*;
pub use self::rest::*;
pub use self::server::{DataFrame, ServerFrame};
pub use self::wire::{Encoding, FrameError, StreamErrorCode, encode_frame};
pub use crate::json_errors::{describe_json_path_error, plain_message};
