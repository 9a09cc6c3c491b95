//! Access control: who is calling (htpasswd Basic authentication) and what they may do.
//!
//! `api` asks this layer; this layer knows nothing of routes or storage.

pub mod htpasswd;
