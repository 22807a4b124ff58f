//! The outside-in check's wire format, shared by the box (which asks) and the cooperative
//! (which connects back to the box's name and answers): `POST /api/v1/check` on the control
//! listener with a [`CheckRequest`] signed by the box's key, answered by a [`CheckReport`].

use serde::{Deserialize, Serialize};

use crate::key::BoxKey;
use crate::proto;

/// The signature covers this, the name and the request's time.
const CONTEXT: &str = "hearth-check/1";
/// How far the request's time may be from the cooperative's clock.
pub const MAX_SKEW_S: i64 = 300;

/// What the box sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    pub name: String,
    /// Unix seconds.
    pub at: i64,
    /// base64url Ed25519 signature of [`transcript`].
    pub sig: String,
}

impl CheckRequest {
    /// A request for `name` at `at` (unix seconds), signed with the box's key.
    pub fn signed(key: &BoxKey, name: &str, at: i64) -> CheckRequest {
        CheckRequest {
            name: name.to_owned(),
            at,
            sig: proto::encode(key.sign(&transcript(name, at))),
        }
    }
}

/// What is signed: the context, the name and the time, NUL-separated.
pub fn transcript(name: &str, at: i64) -> Vec<u8> {
    format!("{CONTEXT}\0{name}\0{at}").into_bytes()
}

/// What the cooperative saw, step by step; it stops at the first failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub name: String,
    /// Unix seconds.
    pub checked_at: i64,
    pub resolves: bool,
    pub addresses: Vec<String>,
    pub tls_ok: bool,
    /// Unix seconds: the end of the certificate's validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_not_after: Option<i64>,
    pub matrix_ok: bool,
    /// The first thing that went wrong, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CheckReport {
    /// Reachable as a phone would reach it: resolves, valid TLS for the name, Matrix answers.
    pub fn reachable(&self) -> bool {
        self.resolves && self.tls_ok && self.matrix_ok
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_signed_request_verifies_only_for_its_name_and_time() {
        let (key, _) = BoxKey::generate().unwrap();
        let r = CheckRequest::signed(&key, "nord.coop.test", 1_700_000_000);
        let sig = proto::decode(&r.sig).unwrap();
        let public = key.public();
        assert!(crate::key::verify(
            &public,
            &transcript("nord.coop.test", 1_700_000_000),
            &sig
        ));
        assert!(!crate::key::verify(
            &public,
            &transcript("sued.coop.test", 1_700_000_000),
            &sig
        ));
        assert!(!crate::key::verify(
            &public,
            &transcript("nord.coop.test", 1_700_000_001),
            &sig
        ));
    }
}
