//! The one way this crate makes an HTTP client (`reqwest`). reqwest is built with rustls but
//! without a crypto provider of its own choosing (`rustls-no-provider`): its default would be
//! aws-lc, a C library that every build, the arm64 cross build of the image included, would
//! have to compile. `builder` installs rustls's ring provider for the process first (once; the
//! bench's TLS uses ring too), then hands out reqwest's builder. A client made any other way
//! would panic on its first build for want of a provider, so every client comes from here.

use std::sync::Once;

static PROVIDER: Once = Once::new();

/// reqwest's `ClientBuilder`, with the process's TLS provider installed.
pub fn builder() -> reqwest::ClientBuilder {
    PROVIDER.call_once(|| {
        // Err: a provider was installed already (by a test harness, say): that one stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}

#[cfg(test)]
mod tests {
    /// The rule the module doc states, checked: no other file builds a reqwest client itself
    /// (it would panic without a provider where nothing called `builder` before).
    #[test]
    fn no_client_is_made_anywhere_else() {
        fn walk(dir: &std::path::Path, hits: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, hits);
                } else if p.extension().is_some_and(|x| x == "rs")
                    && !p.ends_with("src/http_client.rs")
                {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for pat in ["Client::builder()", "Client::new()", "ClientBuilder::new()"] {
                        if text.contains(&format!("reqwest::{pat}")) {
                            hits.push(format!("{}: reqwest::{pat}", p.display()));
                        }
                    }
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut hits = Vec::new();
        walk(&root.join("src"), &mut hits);
        walk(&root.join("tests"), &mut hits);
        assert!(
            hits.is_empty(),
            "use hearth::http_client::builder(): {hits:#?}"
        );
    }

    #[test]
    fn clients_build_and_speak_tls() {
        let client = super::builder().build().expect("a client");
        drop(client);
        // A second builder after the provider is in place.
        super::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .expect("a client that accepts any certificate");
    }
}
