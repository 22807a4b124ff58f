//! What the box and the edge say to each other before and inside the multiplexed session.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::key::{self, BoxKey};

/// The TLS application protocol of the tunnel (ALPN). The same listener serves the
/// cooperative's HTTP API under `http/1.1`.
pub const ALPN: &[u8] = b"hearth-tunnel/1";
/// RFC 5705 exporter label: the hello's signature covers keying material of this TLS session,
/// so a recorded hello is worth nothing on another connection.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-hearth-tunnel-hello";
/// The longest hello or verdict line.
pub const MAX_LINE: usize = 4096;
/// Protocol version in the hello.
pub const VERSION: u32 = 1;

/// The box's first line: its name, its public key and its signature of [`transcript`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    pub v: u32,
    pub name: String,
    /// base64url of the 32-byte Ed25519 public key.
    pub key: String,
    /// base64url of the 64-byte signature.
    pub sig: String,
}

/// The edge's answer to the hello.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a stream the edge opens is for: its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StreamKind {
    /// A TLS connection for the box's name (port 443 at the edge).
    Https = 1,
    /// Plain HTTP for the box's name (port 80 at the edge: ACME's http-01, redirects).
    Http = 2,
    /// The box's liveness check: 8 bytes out, the same 8 bytes back.
    Ping = 0x10,
}

impl StreamKind {
    pub fn from_byte(b: u8) -> Option<StreamKind> {
        match b {
            1 => Some(StreamKind::Https),
            2 => Some(StreamKind::Http),
            0x10 => Some(StreamKind::Ping),
            _ => None,
        }
    }
}

pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// What the box signs: the protocol, its name and this TLS session's exported secret.
pub fn transcript(name: &str, exporter: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(64 + name.len() + exporter.len());
    t.extend_from_slice(b"hearth-tunnel/1 hello\0");
    t.extend_from_slice(name.as_bytes());
    t.push(0);
    t.extend_from_slice(exporter);
    t
}

impl Hello {
    pub fn new(name: &str, key: &BoxKey, exporter: &[u8]) -> Hello {
        Hello {
            v: VERSION,
            name: name.to_owned(),
            key: encode(key.public()),
            sig: encode(key.sign(&transcript(name, exporter))),
        }
    }

    /// The public key, if the hello is well-formed and signed by it for this session.
    pub fn verified_key(&self, exporter: &[u8]) -> Result<Vec<u8>, &'static str> {
        if self.v != VERSION {
            return Err("unsupported protocol version");
        }
        if !valid_name(&self.name) {
            return Err("malformed name");
        }
        let public = decode(&self.key)
            .filter(|k| k.len() == key::PUBLIC_LEN)
            .ok_or("malformed key")?;
        let sig = decode(&self.sig).ok_or("malformed signature")?;
        if key::verify(&public, &transcript(&self.name, exporter), &sig) {
            Ok(public)
        } else {
            Err("the signature does not match the key")
        }
    }
}

/// A DNS name as hearth uses them: lower-case LDH labels of 1–63 characters, at least two
/// labels, at most 253 characters, no leading or trailing hyphen.
pub fn valid_name(name: &str) -> bool {
    name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Writes `value` as one JSON line.
pub async fn write_line<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    value: &T,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line).await?;
    w.flush().await
}

/// Reads one JSON line of at most [`MAX_LINE`] bytes, byte by byte: nothing after the newline
/// is consumed (the multiplexed session follows it on the same stream).
pub async fn read_line<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> std::io::Result<T> {
    let mut line = Vec::with_capacity(256);
    loop {
        let b = r.read_u8().await?;
        if b == b'\n' {
            break;
        }
        if line.len() >= MAX_LINE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "line too long",
            ));
        }
        line.push(b);
    }
    serde_json::from_slice(&line)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["nord.coop.example", "a.b", "x-1.hearth.test"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "single",
            "Nord.coop.example",
            "-a.b",
            "a-.b",
            "a..b",
            "a.b.",
            "a_b.c",
            &"a".repeat(64),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(!valid_name(&format!("{}.b", "a.".repeat(127))));
    }

    #[test]
    fn a_hello_is_bound_to_its_session_and_name() {
        let (key, _) = BoxKey::generate().unwrap();
        let hello = Hello::new("nord.coop.example", &key, b"session one");
        assert_eq!(hello.verified_key(b"session one").unwrap(), key.public());
        assert!(
            hello.verified_key(b"session two").is_err(),
            "replayed on another session"
        );
        let mut renamed = hello.clone();
        renamed.name = "sued.coop.example".into();
        assert!(
            renamed.verified_key(b"session one").is_err(),
            "the name is signed"
        );
        let mut other = hello.clone();
        let (other_key, _) = BoxKey::generate().unwrap();
        other.key = encode(other_key.public());
        assert!(other.verified_key(b"session one").is_err(), "another key");
    }

    #[tokio::test]
    async fn lines_stop_at_the_newline_and_refuse_long_ones() {
        let mut data: &[u8] = b"{\"ok\":true}\nrest";
        let v: Verdict = read_line(&mut data).await.unwrap();
        assert!(v.ok);
        assert_eq!(data, b"rest");
        let long = vec![b'a'; MAX_LINE + 10];
        let mut data: &[u8] = &long;
        assert!(read_line::<_, Verdict>(&mut data).await.is_err());
    }
}
