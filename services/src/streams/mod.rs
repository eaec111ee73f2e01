//! Live streaming: durable subscriptions and the in-memory index of them, and the publisher
//! that stamps and publishes producer messages.

pub mod publisher;
pub mod subscriptions;
