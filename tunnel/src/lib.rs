//! The tunnel between a hearth box and the cooperative's edge (ARCHITECTURE.md, "The relay").
//!
//! A box behind any router dials out one TLS connection to the edge (ALPN [`proto::ALPN`]) and
//! proves with its Ed25519 key, bound to that TLS session, that it owns its name
//! ([`proto::Hello`]). The connection then carries a yamux session ([`mux`]): for every
//! connection a phone or another server opens to the box's name, the edge opens a stream whose
//! first byte says which of the box's listeners it is for ([`proto::StreamKind`]), followed by
//! the PROXY protocol header and the client's bytes, still TLS-encrypted end to end. The box
//! pings the edge over its own short streams to notice a dead path within seconds.
//!
//! [`client`] is the box's side, [`edge`] the edge's; the cooperative's crate adds the name
//! table, the listeners and the routing.

pub mod check;
pub mod client;
pub mod edge;
pub mod fleet;
pub mod key;
pub mod mux;
pub mod proto;
