//! The daemon's side of accounting: everything that reads the world for the pure model in
//! `accounting/`.
//!
//! - `members.rs`: [`members::MemberSource`], who the members of a period are.

pub mod members;
