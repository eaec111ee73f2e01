//! Live streaming: durable subscriptions and the in-memory index of them, who may subscribe to
//! a producer, the publisher that stamps and publishes producer messages, each producer's
//! history and settings, and stored producer data.

pub mod access;
pub mod data;
pub mod directory;
pub mod history;
pub mod policies;
pub mod publisher;
pub mod subscriptions;
