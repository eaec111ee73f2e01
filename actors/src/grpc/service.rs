//! The generated server glue of `nodegrid.registry.v1`; the messages are
//! `nodegrid_protocol::registry::grpc`'s.

#![allow(clippy::all, missing_docs, unreachable_pub)]

include!(concat!(env!("OUT_DIR"), "/nodegrid.registry.v1.rs"));
