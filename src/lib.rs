//! docker-registry: a private container image registry served as a native system daemon.
//!
//! The crate is layered, and layers only look down:
//! `api` (HTTP) → `registry` (names, digests, manifests, blobs, uploads, tags) → `storage`
//! (the driver trait and its backends). `config` turns the files and the environment our users
//! already write into one [`config::Config`]; `server` wires everything from it.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod events;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod registry;
pub mod server;
pub mod storage;
