//! A release's manifest (`manifest.json`) and its minisign signature (`manifest.json.minisig`).
//!
//! The signature covers the manifest's exact bytes; the manifest names each payload's size and
//! SHA-256, so one verified signature vouches for every byte written to a slot. Nothing is read
//! from a manifest before its signature verifies against the key the image carries.

use minisign_verify::{PublicKey, Signature};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The manifest's format; a box refuses formats it does not know.
pub const FORMAT: u32 = 1;
/// The largest manifest a box reads (a manifest is a few hundred bytes).
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// The release, `MAJOR.MINOR.PATCH` (semver).
    pub version: String,
    /// `YYYY-MM-DD`.
    pub released: String,
    /// Release notes, shown on the page before and after the update.
    pub notes: Notes,
    /// The root slot's ext4 image, zstd-compressed.
    pub root: Payload,
    /// The firmware slot's files (kernel, initrd, device trees, config.txt, cmdline.txt) as a
    /// zstd-compressed tar.
    pub firmware: Payload,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notes {
    pub en: String,
    pub de: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    /// The file's name, beside the manifest (no directories).
    pub file: String,
    /// Bytes to download (compressed).
    pub download_size: u64,
    /// Bytes once decompressed: what is written.
    pub size: u64,
    /// SHA-256 of the decompressed bytes, lowercase hex.
    pub sha256: String,
    /// The root image only: the byte ranges `[offset, length]` its file system uses, in order
    /// and apart (the bundle reads them with dumpe2fs). Only these are written to the slot;
    /// the rest is free space to ext4, never read whatever the slot holds there, so an update
    /// writes the card about as much as the release holds, not the slot's whole size. Absent:
    /// everything is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<Vec<[u64; 2]>>,
}

/// The most ranges a manifest may list (the bundle merges gaps under 1 MiB: a root slot of a
/// few GiB has tens of them).
pub const MAX_USED_RANGES: usize = 2000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// The key in the image cannot be read: a broken image, not a bad release.
    Key(String),
    /// The signature file cannot be parsed.
    SignatureFormat(String),
    /// The signature does not verify with the image's key.
    BadSignature,
    TooLarge(usize),
    /// Verified, but not a manifest this box understands (field, problem).
    Invalid(String),
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(e) => write!(f, "the image's update key cannot be read: {e}"),
            Self::SignatureFormat(e) => {
                write!(f, "manifest.json.minisig: not a minisign signature: {e}")
            }
            Self::BadSignature => write!(
                f,
                "manifest.json.minisig: the signature does not verify with this box's update key"
            ),
            Self::TooLarge(n) => write!(f, "manifest.json: {n} bytes, more than a manifest can be"),
            Self::Invalid(e) => write!(f, "manifest.json: {e}"),
        }
    }
}

impl std::error::Error for ManifestError {}

/// Checks `signature` over `bytes` with `public_key` (minisign's `.pub` text or its base64 line),
/// then parses and checks the manifest. Nothing of the manifest is trusted before this returns.
pub fn verify(bytes: &[u8], signature: &str, public_key: &str) -> Result<Manifest, ManifestError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge(bytes.len()));
    }
    let key = if public_key.contains("untrusted comment") {
        PublicKey::decode(public_key.trim())
    } else {
        PublicKey::from_base64(public_key.trim())
    }
    .map_err(|e| ManifestError::Key(format!("{e:?}")))?;
    let sig = Signature::decode(signature.trim())
        .map_err(|e| ManifestError::SignatureFormat(format!("{e:?}")))?;
    key.verify(bytes, &sig, false)
        .map_err(|_| ManifestError::BadSignature)?;
    let manifest: Manifest =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Invalid(e.to_string()))?;
    manifest.check()?;
    Ok(manifest)
}

impl Manifest {
    fn check(&self) -> Result<(), ManifestError> {
        let bad = |field: &str, why: &str| Err(ManifestError::Invalid(format!("{field}: {why}")));
        if self.format != FORMAT {
            return bad(
                "format",
                &format!("{} (this box reads format {FORMAT})", self.format),
            );
        }
        if semver::Version::parse(&self.version).is_err() {
            return bad(
                "version",
                &format!("'{}' is not MAJOR.MINOR.PATCH", self.version),
            );
        }
        if chrono::NaiveDate::parse_from_str(&self.released, "%Y-%m-%d").is_err() {
            return bad(
                "released",
                &format!("'{}' is not YYYY-MM-DD", self.released),
            );
        }
        for (name, p) in [("root", &self.root), ("firmware", &self.firmware)] {
            let plain = !p.file.is_empty()
                && p.file
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                && !p.file.starts_with('.');
            if !plain {
                return bad(
                    &format!("{name}.file"),
                    &format!("'{}' is not a plain file name", p.file),
                );
            }
            if p.sha256.len() != 64
                || !p
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return bad(&format!("{name}.sha256"), "not 64 lowercase hex digits");
            }
            if p.size == 0 || p.download_size == 0 {
                return bad(&format!("{name}.size"), "zero");
            }
            if let Some(used) = &p.used {
                if name != "root" {
                    return bad(
                        &format!("{name}.used"),
                        "only the root image has used ranges",
                    );
                }
                if used.is_empty() || used.len() > MAX_USED_RANGES {
                    return bad(
                        &format!("{name}.used"),
                        &format!("{} ranges (1 to {MAX_USED_RANGES})", used.len()),
                    );
                }
                let mut end = 0u64;
                for (i, &[offset, length]) in used.iter().enumerate() {
                    let stop = offset.checked_add(length);
                    let first_not_at_start = i == 0 && offset != 0;
                    if length == 0
                        || offset < end
                        || first_not_at_start
                        || stop.is_none_or(|s| s > p.size)
                    {
                        return bad(
                            &format!("{name}.used[{i}]"),
                            &format!(
                                "[{offset}, {length}] is empty, out of order, overlapping, past the image's {} bytes, or the first not at 0",
                                p.size
                            ),
                        );
                    }
                    end = stop.unwrap_or(end);
                }
            }
        }
        Ok(())
    }

    /// Whether this release is newer than `running` (a version that does not parse is older
    /// than any release: a box with a broken version string can still be mended).
    pub fn newer_than(&self, running: &str) -> bool {
        let Ok(new) = semver::Version::parse(&self.version) else {
            return false;
        };
        match semver::Version::parse(running) {
            Ok(old) => new > old,
            Err(_) => true,
        }
    }
}
