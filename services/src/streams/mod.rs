//! Live streaming: durable subscriptions and the in-memory index of them, who may subscribe to
//! a producer, and the publisher that stamps and publishes producer messages.

pub mod access;
pub mod publisher;
pub mod subscriptions;
