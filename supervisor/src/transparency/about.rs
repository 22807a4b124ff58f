//! "What you are getting into": Markdown pages the operator can rewrite (PRODUCT §1; the seed
//! asks for the business model compared with WhatsApp, Telegram and Signal, the legal position
//! in Germany, and how forbidden content is handled and who decides).
//!
//! Each page has a template in German and English shipped in the binary
//! (`supervisor/pages/<lang>/<name>.md`). The operator overrides one with
//! `<pages_dir>/<lang>/<name>.md` (`[transparency] pages_dir`, default `/etc/hearth/pages`).
//! Which text a visitor gets, in order:
//! 1. the operator's file in the visitor's language;
//! 2. the operator's file in another language (their words about this server beat a generic
//!    template; the page says which language it is in);
//! 3. the shipped template in the visitor's language.
//!
//! An operator file that exists but cannot be read (permissions, not UTF-8, a directory) is an
//! error on the page naming the file; the template is not shown in its place, since it may say
//! something the operator meant to correct.
//!
//! Rendering: `pulldown-cmark` (CommonMark, tables, strikethrough). Raw HTML is escaped, shown
//! as text, never passed through; links and images keep only `http(s):`, `mailto:` (links) and
//! relative targets, others become plain text.

use pulldown_cmark::{html, Event, LinkType, Options, Parser, Tag, TagEnd};
use std::path::{Path, PathBuf};

/// The default directory of the operator's pages.
pub const DEFAULT_DIR: &str = "/etc/hearth/pages";

/// The pages, in the order the index lists them.
pub const PAGES: [&str; 3] = ["business-model", "legal", "content"];

/// The languages templates exist in (`http::i18n::Lang` codes).
pub const LANGS: [&str; 2] = ["de", "en"];

/// The shipped template of `name` in `lang`.
pub fn template(lang: &str, name: &str) -> Option<&'static str> {
    Some(match (lang, name) {
        ("de", "business-model") => include_str!("../../pages/de/business-model.md"),
        ("de", "legal") => include_str!("../../pages/de/legal.md"),
        ("de", "content") => include_str!("../../pages/de/content.md"),
        ("en", "business-model") => include_str!("../../pages/en/business-model.md"),
        ("en", "legal") => include_str!("../../pages/en/legal.md"),
        ("en", "content") => include_str!("../../pages/en/content.md"),
        _ => return None,
    })
}

/// Where a page's text came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The operator's file in the visitor's language.
    Operator(PathBuf),
    /// The operator's file in another language (its code).
    OperatorOtherLanguage(PathBuf, &'static str),
    /// The template shipped with hearth.
    Template,
}

/// One page, ready for the page frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AboutPage {
    pub name: &'static str,
    /// The text of the first heading (the name when there is none).
    pub title: String,
    /// Safe HTML; empty when `error` is set.
    pub html: String,
    pub source: Source,
    /// The operator's file exists but cannot be read.
    pub error: Option<String>,
}

/// The page `name` for a visitor reading `lang`; `None` for a name that is no page.
pub fn load(dir: &Path, lang: &str, name: &str) -> Option<AboutPage> {
    let name = *PAGES.iter().find(|p| **p == name)?;
    let lang = *LANGS.iter().find(|l| **l == lang)?;
    let others = LANGS.iter().copied().filter(|l| *l != lang);
    let candidates = std::iter::once((lang, true)).chain(others.map(|l| (l, false)));
    for (l, own) in candidates {
        let path = dir.join(l).join(format!("{name}.md"));
        let source = if own {
            Source::Operator(path.clone())
        } else {
            Source::OperatorOtherLanguage(path.clone(), l)
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                return Some(match String::from_utf8(bytes) {
                    Ok(text) => page(name, &text, source),
                    Err(e) => failed(name, &path, &format!("not UTF-8 text ({e})"), source),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Some(failed(name, &path, &e.to_string(), source)),
        }
    }
    let text = template(lang, name)?;
    Some(page(name, text, Source::Template))
}

fn page(name: &'static str, text: &str, source: Source) -> AboutPage {
    let (title, html) = render(text);
    AboutPage {
        name,
        title: title.unwrap_or_else(|| name.to_string()),
        html,
        source,
        error: None,
    }
}

fn failed(name: &'static str, path: &Path, why: &str, source: Source) -> AboutPage {
    tracing::warn!(file = %path.display(), "operator page cannot be read: {why}");
    AboutPage {
        name,
        title: name.to_string(),
        html: String::new(),
        source,
        error: Some(format!("{}: cannot be read: {why}", path.display())),
    }
}

/// A link or image target the page may carry: `http(s):` (and `mailto:` for links), or a
/// relative one (no scheme at all).
fn allowed(dest: &str, image: bool) -> bool {
    let d = dest.trim();
    let lower = d.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return !image; // the page's policy loads images from this server only
    }
    if lower.starts_with("mailto:") {
        return !image;
    }
    // Relative: no scheme before the first `/`, `?` or `#`; not protocol-relative (`//host`).
    let head = d.split(['/', '?', '#']).next().unwrap_or("");
    !head.contains(':') && !d.starts_with("//") && !d.starts_with("\\\\")
}

/// Markdown → (first heading's text, safe HTML).
pub fn render(markdown: &str) -> (Option<String>, String) {
    let opts = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let mut title: Option<String> = None;
    let mut in_title = false;
    // A dropped link or image: its end tag is dropped too (they do not nest in CommonMark,
    // but an image may sit inside a link, so keep a stack).
    let mut dropped: Vec<bool> = Vec::new();
    let events = Parser::new_ext(markdown, opts).filter_map(|ev| match ev {
        Event::Html(h) | Event::InlineHtml(h) => Some(Event::Text(h)),
        Event::Start(Tag::Heading { level, .. }) => {
            if title.is_none() && level == pulldown_cmark::HeadingLevel::H1 {
                in_title = true;
                title = Some(String::new());
            }
            Some(ev)
        }
        Event::End(TagEnd::Heading(_)) => {
            in_title = false;
            Some(ev)
        }
        Event::Text(ref t) | Event::Code(ref t) => {
            if in_title {
                if let Some(s) = title.as_mut() {
                    s.push_str(t);
                }
            }
            Some(ev)
        }
        Event::Start(Tag::Link {
            link_type,
            ref dest_url,
            ..
        }) => {
            // An e-mail autolink (`<a@b.org>`) becomes `mailto:`.
            let ok = link_type == LinkType::Email || allowed(dest_url, false);
            dropped.push(!ok);
            ok.then_some(ev)
        }
        Event::Start(Tag::Image { ref dest_url, .. }) => {
            let ok = allowed(dest_url, true);
            dropped.push(!ok);
            ok.then_some(ev)
        }
        Event::End(TagEnd::Link) | Event::End(TagEnd::Image) => {
            (!dropped.pop().unwrap_or(false)).then_some(ev)
        }
        other => Some(other),
    });
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut out, events);
    (
        title
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()),
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn raw_html_is_shown_as_text_never_passed_through() {
        let (_, html) = render(
            "# Hi\n\n<script>alert(1)</script>\n\nText with <b onclick=\"x()\">inline</b> html.\n\n<div>\nblock\n</div>\n",
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<b "), "{html}");
        assert!(
            html.contains("&lt;b onclick=&quot;x()&quot;&gt;inline&lt;/b&gt;")
                || html.contains("&lt;b onclick=\"x()\"&gt;inline&lt;/b&gt;"),
            "{html}"
        );
        assert!(!html.contains("<div"), "{html}");
    }

    #[test]
    fn links_keep_only_web_mail_and_relative_targets() {
        let (_, html) = render(
            "[web](https://example.org/a) [mail](mailto:a@example.org) [rel](/access) [frag](#top) \
             [js](javascript:alert(1)) [JS](JavaScript:alert(1)) [data](data:text/html,x) \
             [proto](//evil.example/) <javascript:alert(2)> <https://auto.example/> \
             ![img](/assets/x.png) ![ext](https://tracker.example/p.gif)",
        );
        for ok in [
            "href=\"https://example.org/a\"",
            "href=\"mailto:a@example.org\"",
            "href=\"/access\"",
            "href=\"#top\"",
            "href=\"https://auto.example/\"",
            "src=\"/assets/x.png\"",
        ] {
            assert!(html.contains(ok), "{ok} in {html}");
        }
        for bad in [
            "javascript:",
            "JavaScript:",
            "data:",
            "//evil",
            "tracker.example/p.gif\"",
        ] {
            assert!(!html.contains(&format!("href=\"{bad}")), "{bad} in {html}");
            assert!(!html.contains(&format!("src=\"{bad}")), "{bad} in {html}");
        }
        assert!(!html.contains("src=\"https://tracker"), "{html}");
        // The words of a dropped link stay, as text.
        assert!(html.contains("js") && html.contains("proto"));
    }

    #[test]
    fn the_title_is_the_first_top_heading() {
        assert_eq!(
            render("Intro\n\n# The `legal` position\n\n# Second\n")
                .0
                .as_deref(),
            Some("The legal position")
        );
        assert_eq!(render("## Only a subheading\n").0, None);
    }

    #[test]
    fn operator_files_override_templates_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Nothing from the operator: the template in the visitor's language.
        let p = load(d, "de", "legal").unwrap();
        assert_eq!(p.source, Source::Template);
        assert!(p.html.contains("<h1>"), "{}", p.html);
        assert_eq!(
            Some(p.html.as_str()),
            Some(render(template("de", "legal").unwrap()).1.as_str())
        );
        assert_ne!(
            load(d, "en", "legal").unwrap().html,
            p.html,
            "English differs"
        );

        // The operator wrote German only: German visitors get it, English visitors too
        // (marked as German), rather than a template that may contradict it.
        std::fs::create_dir_all(d.join("de")).unwrap();
        std::fs::write(
            d.join("de/legal.md"),
            "# Unsere Rechtslage\n\nVerein X e.V.\n",
        )
        .unwrap();
        let de = load(d, "de", "legal").unwrap();
        assert_eq!(de.source, Source::Operator(d.join("de/legal.md")));
        assert_eq!(de.title, "Unsere Rechtslage");
        let en = load(d, "en", "legal").unwrap();
        assert_eq!(
            en.source,
            Source::OperatorOtherLanguage(d.join("de/legal.md"), "de")
        );
        assert!(en.html.contains("Verein X e.V."));
        // Their English file wins for English visitors.
        std::fs::create_dir_all(d.join("en")).unwrap();
        std::fs::write(d.join("en/legal.md"), "# Our legal position\n").unwrap();
        assert_eq!(load(d, "en", "legal").unwrap().title, "Our legal position");
        // Other pages still come from the templates.
        assert_eq!(load(d, "en", "content").unwrap().source, Source::Template);
        // Not a page, not a language.
        assert!(load(d, "en", "../secrets").is_none());
        assert!(load(d, "fr", "legal").is_none());
    }

    #[test]
    fn an_unreadable_operator_file_is_an_error_naming_it_not_the_template() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("en")).unwrap();
        // Not UTF-8.
        std::fs::write(d.join("en/content.md"), b"# Ok\n\xff\xfe\n").unwrap();
        let p = load(d, "en", "content").unwrap();
        assert!(p.html.is_empty());
        let e = p.error.unwrap();
        assert!(
            e.contains("en/content.md: cannot be read: not UTF-8"),
            "{e}"
        );
        // A directory where the file should be.
        std::fs::create_dir_all(d.join("en/legal.md")).unwrap();
        let p = load(d, "en", "legal").unwrap();
        assert!(p.error.unwrap().contains("en/legal.md: cannot be read"));
        // No read permission (meaningless as root, who reads anything).
        let f = d.join("en/business-model.md");
        std::fs::write(&f, "# x\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o000)).unwrap();
        if std::fs::read(&f).is_err() {
            assert!(load(d, "en", "business-model").unwrap().error.is_some());
        }
    }

    #[test]
    fn every_template_exists_has_a_title_and_no_raw_html() {
        for lang in LANGS {
            for name in PAGES {
                let t = template(lang, name).unwrap();
                let (title, html) = render(t);
                assert!(title.is_some(), "{lang}/{name}: a # heading");
                assert!(
                    !t.contains('<') || !html.contains("&lt;"),
                    "{lang}/{name}: raw HTML"
                );
                assert!(html.len() > 500, "{lang}/{name}: says something");
            }
        }
    }
}
