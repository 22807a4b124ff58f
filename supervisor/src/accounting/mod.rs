//! Accounting: who caused how much of the measured energy, and what it costs (PRODUCT §5).
//!
//! `accesslog` (the crate `hearth-accesslog`) reads Synapse's access-log lines into per-minute request weights, `members`
//! reads the Members file, `model` is the normative model as pure code (no IO, no clock: it is
//! given every input), `statement` is its output as the JSON of §5. `directory` is the member
//! directory in the database: accounts synced from Synapse, households, media per member.

/// The access-log parser is its own crate (`accesslog/`, pure std), shared with the fuzz target.
pub use hearth_accesslog as accesslog;
pub mod directory;
pub mod inputs;
pub mod members;
pub mod model;
pub mod statement;
