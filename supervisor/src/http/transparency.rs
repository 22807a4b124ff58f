//! "Who can access the data" (`/access`, `/api/v1/access`) and "what you are getting into"
//! (`/about`, `/about/{name}`). The model is [`crate::transparency`]'s; these handlers read the
//! collector's file and the operator's pages (small local files) and the database part the
//! daemon keeps in memory, never the database.

use super::i18n::{self, fill, Lang};
use super::pages::{html, Frame, LangLink, Page};
use super::AppState;
use crate::transparency::about::{self, Source, PAGES};
use crate::transparency::access::{self, Access};
use crate::transparency::inventory::Password;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Local};

#[derive(Debug)]
pub struct AccountRow {
    pub name: String,
    pub uid: u32,
    pub login: String,
    pub password: &'static str,
    /// `bad` for a password state worth a second look (empty).
    pub password_class: &'static str,
    pub groups: String,
}

#[derive(Debug)]
pub struct KeyRow {
    pub key_type: String,
    pub fingerprint: String,
    pub comment: String,
    pub options: &'static str,
}

#[derive(Debug)]
pub struct KeyFileView {
    pub caption: String,
    pub keys: Vec<KeyRow>,
}

#[derive(Debug)]
pub struct AdminRow {
    pub user_id: String,
    pub role: String,
}

#[derive(Debug)]
pub struct UseRow {
    pub what: String,
    pub call: String,
    pub audited: &'static str,
    pub calls: String,
}

#[derive(Template)]
#[template(path = "access.html")]
pub struct AccessPage {
    pub frame: Frame,
    /// The inventory's state in words when it is not there (or stale).
    pub os_note: Option<String>,
    pub os_note_class: &'static str,
    pub gathered: Option<String>,
    pub accounts: Option<Vec<AccountRow>>,
    pub sudoers: Vec<(String, bool)>,
    pub ssh: Vec<String>,
    pub key_files: Vec<KeyFileView>,
    pub problems: Vec<String>,
    pub admins_note: Option<String>,
    pub admins: Vec<AdminRow>,
    pub synced: Option<String>,
    pub calls_heading: String,
    pub uses: Vec<UseRow>,
    pub other_calls: Vec<(String, u64)>,
    pub counts_note: Option<String>,
}

fn local(rfc3339: &str) -> String {
    DateTime::parse_from_rfc3339(rfc3339)
        .map(|d| d.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// The page's words for the model.
pub fn access_view(a: &Access, lang: Lang, now: DateTime<Local>) -> AccessPage {
    let tr = lang.t().tr;
    let yes_no = |b: bool| if b { tr.yes } else { tr.no };
    let inv = a.os.inventory.as_ref();
    let os_note = match a.os.state {
        "missing" => Some(tr.os_missing.to_string()),
        "bad" => Some(fill(tr.os_bad, &[a.os.message.as_deref().unwrap_or("")])),
        _ if a.os.stale => inv.map(|i| fill(tr.os_stale, &[&local(&i.gathered_at)])),
        _ => None,
    };
    let accounts = inv.map(|i| {
        i.accounts
            .iter()
            .map(|acc| {
                let mut groups = acc.admin_groups.join(", ");
                if acc.uid == 0 {
                    groups = if groups.is_empty() {
                        tr.root_note.to_string()
                    } else {
                        format!("{}; {groups}", tr.root_note)
                    };
                }
                AccountRow {
                    name: acc.name.clone(),
                    uid: acc.uid,
                    login: format!("{} ({})", yes_no(acc.login_shell), acc.shell),
                    password: tr.password(match acc.password {
                        Password::Set => "set",
                        Password::Locked => "locked",
                        Password::Empty => "empty",
                        Password::Unknown => "unknown",
                    }),
                    password_class: if acc.password == Password::Empty {
                        "bad"
                    } else {
                        ""
                    },
                    groups,
                }
            })
            .collect()
    });
    let mut ssh = Vec::new();
    let mut key_files = Vec::new();
    if let Some(i) = inv {
        let s = &i.ssh;
        if !s.configured {
            ssh.push(tr.ssh_not_installed.to_string());
        } else {
            ssh.push(
                if s.enabled {
                    tr.ssh_enabled
                } else {
                    tr.ssh_disabled
                }
                .to_string(),
            );
            ssh.push(
                if s.password_authentication {
                    tr.ssh_passwords_yes
                } else {
                    tr.ssh_passwords_no
                }
                .to_string(),
            );
            ssh.push(fill(tr.ssh_root, &[&s.permit_root_login]));
            if let Some(c) = &s.authorized_keys_command {
                ssh.push(fill(tr.ssh_command, &[c]));
            }
            if s.match_blocks {
                ssh.push(tr.ssh_match.to_string());
            }
        }
        for f in &s.key_files {
            key_files.push(KeyFileView {
                caption: fill(tr.keys_file, &[&f.path, &f.accounts.join(", ")]),
                keys: f
                    .keys
                    .iter()
                    .map(|k| KeyRow {
                        key_type: k.key_type.clone(),
                        fingerprint: k.fingerprint.clone(),
                        comment: k.comment.clone(),
                        options: yes_no(k.options),
                    })
                    .collect(),
            });
        }
    }
    let admins_note = match a.synapse_admins.state {
        "not_read" => Some(tr.synapse_not_read.to_string()),
        "error" => Some(fill(
            tr.synapse_error,
            &[a.synapse_admins.message.as_deref().unwrap_or("")],
        )),
        _ if a.synapse_admins.admins.is_empty() => Some(tr.synapse_none.to_string()),
        _ => None,
    };
    let admins = a
        .synapse_admins
        .admins
        .iter()
        .map(|ad| AdminRow {
            user_id: ad.user_id.clone(),
            role: match ad.not_member.as_deref() {
                None => tr.admin_member.to_string(),
                Some(crate::accounting::directory::SUPERVISOR_ACCOUNT) => {
                    tr.admin_supervisor.to_string()
                }
                Some(why) => fill(tr.admin_other, &[why]),
            },
        })
        .collect();
    let uses = a
        .admin_token
        .uses
        .iter()
        .map(|u| UseRow {
            what: tr.token_use(u.id).to_string(),
            call: format!("{} {}", u.method, u.path),
            audited: tr.audited(u.audited),
            calls: u.calls.map_or("–".into(), |n| n.to_string()),
        })
        .collect();
    AccessPage {
        frame: Frame::new(lang, Page::Access, now),
        os_note_class: if a.os.state == "ok" { "note" } else { "alert" },
        os_note,
        gathered: inv.map(|i| local(&i.gathered_at)),
        accounts,
        sudoers: inv.map_or_else(Vec::new, |i| {
            i.sudoers_d
                .iter()
                .map(|f| (f.name.clone(), !f.read_by_sudo))
                .collect()
        }),
        ssh,
        key_files,
        problems: inv.map_or_else(Vec::new, |i| {
            i.problems.iter().map(ToString::to_string).collect()
        }),
        admins_note,
        admins,
        synced: a
            .synapse_admins
            .synced_at
            .as_deref()
            .map(|s| fill(tr.synced, &[&local(s)])),
        calls_heading: fill(tr.col_calls, &[&a.admin_token.window_days.to_string()]),
        uses,
        other_calls: a.admin_token.other_calls.clone(),
        counts_note: a
            .admin_token
            .message
            .as_deref()
            .map(|m| fill(tr.counts_missing, &[m])),
    }
}

fn model(s: &AppState) -> Access {
    let db = s.transparency.db.get();
    access::access(
        &s.transparency.access_file,
        db.as_ref(),
        crate::clock::utc_now(),
    )
}

/// `GET /access`: who can technically access the data.
pub async fn access_page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let lang = i18n::of_request(&headers);
    let mut page = access_view(&model(&s), lang, crate::clock::local_now());
    page.frame.account = super::pages::account_of(&s, &headers);
    html(lang, page.render())
}

/// `GET /api/v1/access`: the same, as data.
pub async fn access_json(State(s): State<AppState>) -> Json<Access> {
    Json(model(&s))
}

#[derive(Debug)]
pub struct AboutLink {
    pub href: String,
    pub title: String,
}

#[derive(Template)]
#[template(path = "about.html")]
pub struct AboutIndex {
    pub frame: Frame,
    pub pages: Vec<AboutLink>,
}

#[derive(Template)]
#[template(path = "about_page.html")]
pub struct AboutView {
    pub frame: Frame,
    pub title: String,
    /// Safe HTML from `transparency::about::render` (raw HTML escaped, links filtered).
    pub body: String,
    pub note: Option<String>,
    pub error: Option<String>,
}

/// `GET /about`: the list of pages.
pub async fn about_index(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let lang = i18n::of_request(&headers);
    let pages = PAGES
        .iter()
        .filter_map(|name| about::load(&s.transparency.pages_dir, lang.code(), name))
        .map(|p| AboutLink {
            href: format!("/about/{}", p.name),
            title: p.title,
        })
        .collect();
    let mut frame = Frame::new(lang, Page::About, crate::clock::local_now());
    frame.account = super::pages::account_of(&s, &headers);
    let page = AboutIndex { frame, pages };
    html(lang, page.render())
}

/// `GET /about/{name}`: one page, the operator's or the template.
pub async fn about_page(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let lang = i18n::of_request(&headers);
    let tr = lang.t().tr;
    let Some(p) = about::load(&s.transparency.pages_dir, lang.code(), &name) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no page {name:?}; there are {}\n", PAGES.join(", ")),
        )
            .into_response();
    };
    let note = match &p.source {
        Source::Template => Some(tr.about_template_note.to_string()),
        Source::OperatorOtherLanguage(_, code) => {
            Lang::from_code(code).map(|l| fill(tr.about_other_language, &[l.t().language_name]))
        }
        Source::Operator(_) => None,
    };
    let mut frame = Frame::new(lang, Page::About, crate::clock::local_now());
    frame.account = super::pages::account_of(&s, &headers);
    frame.title = tr.about_title;
    // The switch comes back to this page, not the index.
    let path = format!("/about/{}", p.name);
    frame.langs = i18n::ALL
        .into_iter()
        .filter(|l| *l != lang)
        .map(|l| LangLink {
            href: format!("/lang/{}?next={path}", l.code()),
            code: l.code(),
            label: l.t().language_name,
            title: l.t().switch_title,
        })
        .collect();
    let view = AboutView {
        frame,
        error: p.error.as_deref().map(|e| fill(tr.about_error, &[e])),
        title: p.title,
        body: p.html,
        note,
    };
    html(lang, view.render())
}

#[cfg(test)]
mod tests;
