//! The page's static files, compiled into the binary: one style sheet, one small script, the
//! icon. Each is served under a URL that carries a hash of its content
//! (`/assets/app.3f2a9c1b0d.css`), so browsers may keep it for a year: a new build with a
//! changed file has a new URL. Nothing is fetched from anywhere else (no fonts, no CDN).

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    Css,
    Js,
    Icon,
}

impl Asset {
    pub const ALL: [Asset; 3] = [Asset::Css, Asset::Js, Asset::Icon];

    /// `(stem, extension, content type, body)`.
    fn source(self) -> (&'static str, &'static str, &'static str, &'static [u8]) {
        match self {
            Asset::Css => (
                "app",
                "css",
                "text/css; charset=utf-8",
                include_bytes!("assets/app.css"),
            ),
            Asset::Js => (
                "app",
                "js",
                "text/javascript; charset=utf-8",
                include_bytes!("assets/app.js"),
            ),
            Asset::Icon => (
                "icon",
                "svg",
                "image/svg+xml",
                include_bytes!("assets/icon.svg"),
            ),
        }
    }

    /// The URL to link to, with the content hash.
    pub fn url(self) -> &'static str {
        &URLS[self as usize]
    }
}

/// The hashed URLs, computed once.
static URLS: LazyLock<[String; 3]> = LazyLock::new(|| {
    Asset::ALL.map(|a| {
        let (stem, ext, _, body) = a.source();
        let hash = hex::encode(Sha256::digest(body));
        format!("/assets/{stem}.{}.{ext}", &hash[..10])
    })
});

/// A year: the URL changes whenever the content does.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// `GET /assets/{file}`: only the current hashed names; anything else is 404.
pub async fn serve(Path(file): Path<String>) -> Response {
    let found = Asset::ALL
        .into_iter()
        .find(|a| a.url().strip_prefix("/assets/") == Some(file.as_str()));
    match found {
        Some(a) => {
            let (_, _, ctype, body) = a.source();
            (
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
                    (header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE)),
                ],
                body,
            )
                .into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
            "no such asset\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_a_content_hash_and_differ_per_file() {
        let css = Asset::Css.url();
        assert!(
            css.starts_with("/assets/app.") && css.ends_with(".css"),
            "{css}"
        );
        let hash = css
            .trim_start_matches("/assets/app.")
            .trim_end_matches(".css");
        assert_eq!(hash.len(), 10);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(Asset::Css.url(), Asset::Js.url());
        assert!(Asset::Icon.url().ends_with(".svg"));
    }
}
