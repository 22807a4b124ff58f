//! RFC 9474 blind RSA tokens (RSABSSA-SHA384-PSS-Randomized, 2048-bit keys), through the
//! `blind-rsa-signatures` crate.
//!
//! The flow, and who sees what:
//! 1. the box draws a random 32-byte message and [`blind`]s it for the collector's public key; the
//!    message and the blinding secret stay in [`Blinding`], which never leaves the box (it is not
//!    serialisable);
//! 2. the box sends only [`BlindRequest::blinded`] (with its signed token request); the collector
//!    answers [`sign_blinded`] — it signs a value that is uniformly random to it;
//! 3. the box [`finalize`]s: the [`Token`] is the message, its randomizer and the unblinded
//!    signature. The collector has never seen any of these, so when a report carries the token it
//!    can check that *some* enrolled box got it ([`verify`]), not which one.
//!
//! The collector accepts each token's `msg` once: a token is a one-report ticket.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use blind_rsa_signatures::{
    BlindSignature, BlindingResult, DefaultRng, KeyPairSha384PSSRandomized, MessageRandomizer,
    Signature,
};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::{is_lower_hex, ParseError};

pub type PublicKey = blind_rsa_signatures::PublicKeySha384PSSRandomized;
pub type SecretKey = blind_rsa_signatures::SecretKeySha384PSSRandomized;

/// The modulus size of the collector's keys.
pub const KEY_BITS: usize = 2048;
/// Bytes of a token's message and randomizer.
pub const MSG_BYTES: usize = 32;

/// The token a report carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// Which collector key signed it: [`key_id`], 16 lower-case hex characters.
    pub key_id: String,
    /// The random message, base64url, 32 bytes. The collector accepts each once.
    pub msg: String,
    /// RFC 9474's message randomizer, base64url, 32 bytes (always present for the Randomized
    /// variant; optional on the wire so a deterministic variant could follow without a new schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub randomizer: Option<String>,
    /// The unblinded RSA-PSS signature, base64url (256 bytes for a 2048-bit key).
    pub sig: String,
}

impl Token {
    /// The formats of the fields (not the signature's validity: [`verify`]).
    pub fn check(&self) -> Result<(), ParseError> {
        let f = |field: &'static str, reason: &str| ParseError::Field {
            field,
            reason: reason.to_owned(),
        };
        if !is_lower_hex(&self.key_id, 16) {
            return Err(f("token.key_id", "expected 16 lower-case hex characters"));
        }
        if decode_len(&self.msg) != Some(MSG_BYTES) {
            return Err(f("token.msg", "expected 32 bytes, base64url"));
        }
        if let Some(r) = &self.randomizer {
            if decode_len(r) != Some(MSG_BYTES) {
                return Err(f("token.randomizer", "expected 32 bytes, base64url"));
            }
        }
        match decode_len(&self.sig) {
            Some(n) if (256..=512).contains(&n) => Ok(()),
            _ => Err(f(
                "token.sig",
                "expected a 2048..4096-bit signature, base64url",
            )),
        }
    }
}

fn decode_len(s: &str) -> Option<usize> {
    URL_SAFE_NO_PAD.decode(s).ok().map(|b| b.len())
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token key: {0}")]
    Key(blind_rsa_signatures::Error),
    #[error("not base64url: {0}")]
    Encoding(&'static str),
    #[error("blinding: {0}")]
    Blind(blind_rsa_signatures::Error),
    #[error("blind signature: {0}")]
    Sign(blind_rsa_signatures::Error),
    #[error("the collector's blind signature does not verify: {0}")]
    Finalize(blind_rsa_signatures::Error),
    #[error("no randomness: {0}")]
    Random(getrandom::Error),
}

/// A fresh 2048-bit key pair (the collector's; tests'). Takes a second or so.
pub fn generate_key() -> Result<(PublicKey, SecretKey), TokenError> {
    let kp =
        KeyPairSha384PSSRandomized::generate(&mut DefaultRng, KEY_BITS).map_err(TokenError::Key)?;
    Ok((kp.pk, kp.sk))
}

/// The public key's SubjectPublicKeyInfo DER, base64url (as [`crate::api::ReportKey`] carries it).
pub fn encode_public_key(pk: &PublicKey) -> Result<String, TokenError> {
    Ok(URL_SAFE_NO_PAD.encode(pk.to_der().map_err(TokenError::Key)?))
}

/// The inverse of [`encode_public_key`]; refuses keys other than 2048..4096 bits.
pub fn decode_public_key(b64: &str) -> Result<PublicKey, TokenError> {
    let der = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| TokenError::Encoding("public_key"))?;
    PublicKey::from_der(&der).map_err(TokenError::Key)
}

/// The key's id: the first 8 bytes of SHA-256 of its SubjectPublicKeyInfo DER, hex.
pub fn key_id(pk: &PublicKey) -> String {
    match pk.to_der() {
        Ok(der) => hex::encode(&sha2::Sha256::digest(&der)[..8]),
        // A parsed RSA key always encodes; an empty id matches no token.
        Err(_) => String::new(),
    }
}

/// What the box sends to have a token signed: only the blinded message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlindRequest {
    /// base64url.
    pub blinded: String,
}

/// The box's secret half of one token in the making: the message and the blinding. Deliberately
/// neither `Serialize` nor `Clone`: it is used once, by [`finalize`], and never leaves the box.
pub struct Blinding {
    key_id: String,
    msg: [u8; MSG_BYTES],
    result: BlindingResult,
}

impl std::fmt::Debug for Blinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blinding")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Client side: draws a fresh random message and blinds it for `pk`.
pub fn blind(pk: &PublicKey) -> Result<(BlindRequest, Blinding), TokenError> {
    let mut msg = [0u8; MSG_BYTES];
    getrandom::fill(&mut msg).map_err(TokenError::Random)?;
    let result = pk.blind(&mut DefaultRng, msg).map_err(TokenError::Blind)?;
    let request = BlindRequest {
        blinded: URL_SAFE_NO_PAD.encode(&result.blind_message.0),
    };
    Ok((
        request,
        Blinding {
            key_id: key_id(pk),
            msg,
            result,
        },
    ))
}

/// Server side: signs a blinded message (base64url) it cannot read; returns the blind signature,
/// base64url.
pub fn sign_blinded(sk: &SecretKey, blinded: &str) -> Result<String, TokenError> {
    let blinded = URL_SAFE_NO_PAD
        .decode(blinded)
        .map_err(|_| TokenError::Encoding("blinded"))?;
    let sig = sk.blind_sign(&blinded).map_err(TokenError::Sign)?;
    Ok(URL_SAFE_NO_PAD.encode(&sig.0))
}

/// Client side: unblinds the collector's answer into a token, checking it against `pk` (a
/// collector that signed with another key, or garbage, is caught here, not at the report).
pub fn finalize(pk: &PublicKey, blinding: Blinding, blind_sig: &str) -> Result<Token, TokenError> {
    let blind_sig = URL_SAFE_NO_PAD
        .decode(blind_sig)
        .map_err(|_| TokenError::Encoding("signature"))?;
    let sig = pk
        .finalize(&BlindSignature(blind_sig), &blinding.result, blinding.msg)
        .map_err(TokenError::Finalize)?;
    Ok(Token {
        key_id: blinding.key_id,
        msg: URL_SAFE_NO_PAD.encode(blinding.msg),
        randomizer: blinding
            .result
            .msg_randomizer
            .map(|r| URL_SAFE_NO_PAD.encode(r.0)),
        sig: URL_SAFE_NO_PAD.encode(&sig.0),
    })
}

/// Server side: whether `token` was signed by `pk` (its key id must match too).
pub fn verify(pk: &PublicKey, token: &Token) -> bool {
    if token.key_id != key_id(pk) {
        return false;
    }
    let Ok(msg) = URL_SAFE_NO_PAD.decode(&token.msg) else {
        return false;
    };
    let Ok(sig) = URL_SAFE_NO_PAD.decode(&token.sig) else {
        return false;
    };
    let randomizer = match &token.randomizer {
        None => None,
        Some(r) => match URL_SAFE_NO_PAD
            .decode(r)
            .ok()
            .and_then(|b| b.try_into().ok())
        {
            Some(bytes) => Some(MessageRandomizer(bytes)),
            None => return false,
        },
    };
    pk.verify(&Signature(sig), randomizer, msg).is_ok()
}
