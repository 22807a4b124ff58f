//! The box's Ed25519 key: made on the box, never leaves it; the cooperative only learns the
//! public half at enrolment.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair};

/// Length of an Ed25519 public key.
pub const PUBLIC_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not an Ed25519 key in PKCS#8 ({reason})")]
    Invalid { path: String, reason: String },
    #[error("no random numbers from the system")]
    Random,
}

pub struct BoxKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for BoxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoxKey")
            .field("public", &crate::proto::encode(self.public()))
            .finish()
    }
}

impl BoxKey {
    /// A new key; `pkcs8` is what [`BoxKey::load_or_create`] stores.
    pub fn generate() -> Result<(BoxKey, Vec<u8>), KeyError> {
        let doc =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Random)?;
        let pkcs8 = doc.as_ref().to_vec();
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| KeyError::Random)?;
        Ok((BoxKey { pair }, pkcs8))
    }

    pub fn from_pkcs8(bytes: &[u8], path: &str) -> Result<BoxKey, KeyError> {
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes)
            .map(|pair| BoxKey { pair })
            .map_err(|e| KeyError::Invalid {
                path: path.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Reads the key at `path`, or makes one there (mode 0600, never over an existing file or
    /// through a symlink: `O_EXCL`).
    pub fn load_or_create(path: &Path) -> Result<BoxKey, KeyError> {
        let shown = path.display().to_string();
        let io = |source| KeyError::Io {
            path: shown.clone(),
            source,
        };
        match fs::read(path) {
            Ok(bytes) => return BoxKey::from_pkcs8(&bytes, &shown),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let (key, pkcs8) = BoxKey::generate()?;
        // The whole name plus ".new" (with_extension would make key.1 and key.2 share key.new).
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".new");
        let tmp = std::path::PathBuf::from(tmp);
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(&pkcs8)
            .and_then(|()| f.sync_all())
            .map_err(io)?;
        drop(f);
        fs::rename(&tmp, path).map_err(io)?;
        Ok(key)
    }

    pub fn public(&self) -> [u8; PUBLIC_LEN] {
        let mut out = [0u8; PUBLIC_LEN];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

/// Whether `sig` is `public`'s signature of `message`.
pub fn verify(public: &[u8], message: &[u8], sig: &[u8]) -> bool {
    public.len() == PUBLIC_LEN
        && signature::UnparsedPublicKey::new(&signature::ED25519, public)
            .verify(message, sig)
            .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_and_refuses_others() {
        let (a, _) = BoxKey::generate().unwrap();
        let (b, _) = BoxKey::generate().unwrap();
        let sig = a.sign(b"hello");
        assert!(verify(&a.public(), b"hello", &sig));
        assert!(!verify(&b.public(), b"hello", &sig));
        assert!(!verify(&a.public(), b"hellO", &sig));
        assert!(!verify(&a.public()[..31], b"hello", &sig));
    }

    #[test]
    fn a_stored_key_is_the_same_key_after_a_restart_and_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tunnel.key");
        let first = BoxKey::load_or_create(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = BoxKey::load_or_create(&path).unwrap();
        assert_eq!(first.public(), again.public());
    }

    #[test]
    fn a_damaged_key_file_is_an_error_naming_the_file_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tunnel.key");
        fs::write(&path, b"not a key").unwrap();
        let err = BoxKey::load_or_create(&path).unwrap_err().to_string();
        assert!(
            err.contains("tunnel.key") && err.contains("not an Ed25519 key"),
            "{err}"
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            b"not a key",
            "the file must stay as it was"
        );
    }
}
