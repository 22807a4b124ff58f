//! The cooperative's own pages (legal position, content policy, who can access data) from
//! Markdown, rendered safely: raw HTML is shown as text, never passed through; links keep only
//! `http(s):`, `mailto:` and relative targets, images only relative ones (the site loads
//! nothing from elsewhere). The same rules as the box's pages (supervisor's
//! `transparency/about.rs`).

use pulldown_cmark::{html, Event, LinkType, Options, Parser, Tag, TagEnd};

fn allowed(dest: &str, image: bool) -> bool {
    let d = dest.trim();
    let lower = d.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("mailto:")
    {
        return !image;
    }
    let head = d.split(['/', '?', '#']).next().unwrap_or("");
    !head.contains(':') && !d.starts_with("//") && !d.starts_with("\\\\")
}

/// Markdown → (first `#` heading's text, safe HTML).
pub fn render(markdown: &str) -> (Option<String>, String) {
    let opts = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let mut title: Option<String> = None;
    let mut in_title = false;
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
        title.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()),
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_html_and_foreign_targets_never_pass() {
        let (title, html) = render(
            "# Recht\n\n<script>alert(1)</script>\n\n<img src=x onerror=y()> \
             [js](javascript:alert(1)) [ok](https://example.org/) [rel](/pages/access) \
             ![t](https://tracker.example/p.gif)",
        );
        assert_eq!(title.as_deref(), Some("Recht"));
        assert!(
            !html.contains("<script") && !html.contains("<img src=x"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("javascript:alert(1)\""), "{html}");
        assert!(!html.contains("tracker.example/p.gif\""), "{html}");
        assert!(html.contains("href=\"https://example.org/\""), "{html}");
        assert!(html.contains("href=\"/pages/access\""), "{html}");
    }
}
