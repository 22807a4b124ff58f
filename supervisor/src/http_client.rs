//! The one way this crate makes an HTTP client (`reqwest`). reqwest is built with rustls but
//! without a crypto provider of its own choosing (`rustls-no-provider`): its default would be
//! aws-lc, a C library that every build, the arm64 cross build of the image included, would
//! have to compile. `builder` installs rustls's ring provider for the process first (once; the
//! bench's TLS uses ring too), then hands out reqwest's builder. A client made any other way
//! would panic on its first build for want of a provider, so every client comes from here
//! (checked by `tests/architecture.rs`, which also lists the files allowed to use reqwest).

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
