//! The Members file (PRODUCT §4): who pays, grouped into households (a family, a club).
//!
//! ```toml
//! [[household]]
//! id = "mueller"
//! name = "Familie Müller"
//!
//! [[member]]
//! user_id = "@alice:example.org"
//! household = "mueller"
//! joined = 2026-11-15T00:00:00Z   # optional, RFC 3339 (a TOML datetime or a string)
//! left = 2026-12-01T00:00:00Z     # optional
//! ```
//!
//! A member without `joined` has always been one; without `left`, still is. Errors are one line,
//! `file:line: member[2].household: unknown household "x"`, with 1-based table numbers.

use crate::config::{line_of_offset, ConfigError};
use serde::Deserialize;
use std::path::Path;
use toml::Spanned;

/// A family or a club: one bill for several people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Household {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// A Matrix user id, `@local:server`.
    pub user_id: String,
    /// The id of the member's household.
    pub household: String,
    /// Member since (Unix seconds); `None`: since always.
    pub joined_s: Option<i64>,
    /// Member until (Unix seconds, exclusive); `None`: still a member.
    pub left_s: Option<i64>,
}

impl Member {
    /// Whether the member counts in the UTC minute starting at `minute_s`: their membership
    /// overlaps that minute (someone who joins at 10:00:30 counts from the 10:00 minute on).
    pub fn present_in(&self, minute_s: i64) -> bool {
        self.joined_s.is_none_or(|j| j < minute_s + 60) && self.left_s.is_none_or(|l| l > minute_s)
    }
}

/// A member's position in [`Members::members`] (sorted by user id); per-minute weights use it
/// so that a month of inputs carries no strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberIdx(pub u32);

/// Households sorted by id, members sorted by user id; every member's household exists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Members {
    households: Vec<Household>,
    members: Vec<Member>,
}

impl Members {
    /// Build and check (the rules of the file, without line numbers).
    pub fn new(households: Vec<Household>, members: Vec<Member>) -> Result<Members, String> {
        let mut known: Vec<&str> = Vec::with_capacity(households.len());
        for (n, h) in households.iter().enumerate() {
            let at = |key: &str, m: String| format!("household[{}].{key}: {m}", n + 1);
            check_household_id(&h.id).map_err(|m| at("id", m))?;
            if known.contains(&h.id.as_str()) {
                return Err(at("id", format!("duplicate household {:?}", h.id)));
            }
            known.push(&h.id);
        }
        let mut seen: Vec<&str> = Vec::with_capacity(members.len());
        for (n, m) in members.iter().enumerate() {
            let at = |key: &str, msg: String| format!("member[{}].{key}: {msg}", n + 1);
            check_user_id(&m.user_id).map_err(|e| at("user_id", e))?;
            if seen.contains(&m.user_id.as_str()) {
                return Err(at("user_id", format!("duplicate member {:?}", m.user_id)));
            }
            seen.push(&m.user_id);
            if !known.contains(&m.household.as_str()) {
                return Err(at(
                    "household",
                    format!("unknown household {:?}", m.household),
                ));
            }
            if let (Some(j), Some(l)) = (m.joined_s, m.left_s) {
                if l <= j {
                    return Err(at("left", "is not after joined".into()));
                }
            }
        }
        let (mut households, mut members) = (households, members);
        households.sort_by(|a, b| a.id.cmp(&b.id));
        members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        if u32::try_from(members.len()).is_err() {
            return Err("too many members".into());
        }
        Ok(Members {
            households,
            members,
        })
    }

    /// Read and check a Members file.
    pub fn load(path: &Path) -> Result<Members, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    pub fn parse(file: &str, text: &str) -> Result<Members, ConfigError> {
        let err = |span: Option<std::ops::Range<usize>>, key: Option<String>, message: String| {
            ConfigError {
                file: file.to_string(),
                line: span.map(|s| line_of_offset(text, s.start)),
                key,
                message,
            }
        };
        let raw: RawMembers = toml::from_str(text)
            .map_err(|e| err(e.span(), None, e.message().trim().replace('\n', " ")))?;

        let mut households = Vec::with_capacity(raw.household.len());
        let mut ids: Vec<&Spanned<String>> = Vec::new();
        for (n, h) in raw.household.iter().enumerate() {
            let h = h.get_ref();
            let key = |k: &str| Some(format!("household[{}].{k}", n + 1));
            check_household_id(h.id.get_ref()).map_err(|m| err(Some(h.id.span()), key("id"), m))?;
            if ids.iter().any(|i| i.get_ref() == h.id.get_ref()) {
                return Err(err(
                    Some(h.id.span()),
                    key("id"),
                    format!("duplicate household {:?}", h.id.get_ref()),
                ));
            }
            ids.push(&h.id);
            households.push(Household {
                id: h.id.get_ref().clone(),
                name: h.name.get_ref().clone(),
            });
        }

        let mut members = Vec::with_capacity(raw.member.len());
        let mut users: Vec<&str> = Vec::new();
        for (n, m) in raw.member.iter().enumerate() {
            let m = m.get_ref();
            let key = |k: &str| Some(format!("member[{}].{k}", n + 1));
            let user = m.user_id.get_ref();
            check_user_id(user).map_err(|e| err(Some(m.user_id.span()), key("user_id"), e))?;
            if users.contains(&user.as_str()) {
                return Err(err(
                    Some(m.user_id.span()),
                    key("user_id"),
                    format!("duplicate member {user:?}"),
                ));
            }
            users.push(user);
            if !ids.iter().any(|i| i.get_ref() == m.household.get_ref()) {
                return Err(err(
                    Some(m.household.span()),
                    key("household"),
                    format!("unknown household {:?}", m.household.get_ref()),
                ));
            }
            let instant = |v: &Option<Spanned<toml::Value>>, k: &str| -> Result<_, ConfigError> {
                v.as_ref()
                    .map(|v| instant_s(v.get_ref()).map_err(|e| err(Some(v.span()), key(k), e)))
                    .transpose()
            };
            let joined_s = instant(&m.joined, "joined")?;
            let left_s = instant(&m.left, "left")?;
            if let (Some(j), Some(l), Some(span)) = (joined_s, left_s, m.left.as_ref()) {
                if l <= j {
                    return Err(err(
                        Some(span.span()),
                        key("left"),
                        "is not after joined".into(),
                    ));
                }
            }
            members.push(Member {
                user_id: user.clone(),
                household: m.household.get_ref().clone(),
                joined_s,
                left_s,
            });
        }
        // Everything `new` checks was checked above with a line; this only sorts.
        Members::new(households, members).map_err(|m| err(None, None, m))
    }

    /// Households, sorted by id.
    pub fn households(&self) -> &[Household] {
        &self.households
    }

    /// Members, sorted by user id; `MemberIdx(n)` is `members()[n]`.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn get(&self, idx: MemberIdx) -> Option<&Member> {
        self.members.get(idx.0 as usize)
    }

    /// The index of a member by user id; `None` for anyone who is not a member (unauthenticated
    /// requests, appservices, the supervisor's own user).
    pub fn index(&self, user_id: &str) -> Option<MemberIdx> {
        self.members
            .binary_search_by(|m| m.user_id.as_str().cmp(user_id))
            .ok()
            .map(|i| MemberIdx(i as u32))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMembers {
    #[serde(default)]
    household: Vec<Spanned<RawHousehold>>,
    #[serde(default)]
    member: Vec<Spanned<RawMember>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHousehold {
    id: Spanned<String>,
    name: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    user_id: Spanned<String>,
    household: Spanned<String>,
    joined: Option<Spanned<toml::Value>>,
    left: Option<Spanned<toml::Value>>,
}

/// An RFC 3339 instant with an offset, written as a TOML datetime or a string.
fn instant_s(v: &toml::Value) -> Result<i64, String> {
    let text = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) => d.to_string(),
        other => return Err(format!("{other} is not an RFC 3339 instant")),
    };
    chrono::DateTime::parse_from_rfc3339(&text)
        .map(|d| d.timestamp())
        .map_err(|_| {
            format!("{text:?} is not an RFC 3339 instant with an offset, such as \"2026-11-01T00:00:00Z\"")
        })
}

pub(crate) fn check_household_id(id: &str) -> Result<(), String> {
    if !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not an id; allowed letters, digits, \".\", \"_\", \"-\""
        ))
    }
}

/// A Matrix user id, `@localpart:server_name` (the spec's grammar, with historical localparts:
/// any printable ASCII but `:`), at most 255 bytes.
pub fn check_user_id(id: &str) -> Result<(), String> {
    let bad = || format!("{id:?} is not a Matrix user id such as \"@alice:example.org\"");
    let rest = id.strip_prefix('@').ok_or_else(bad)?;
    let (local, server) = rest.split_once(':').ok_or_else(bad)?;
    if id.len() > 255
        || local.is_empty()
        || !local.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        || !valid_server_name(server)
    {
        return Err(bad());
    }
    Ok(())
}

/// `host[:port]`, host a DNS name, IPv4 address or `[IPv6]` literal.
fn valid_server_name(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty()
            || !v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b":.".contains(&b))
        {
            return false;
        }
        match after {
            "" => ("x", None),
            p => match p.strip_prefix(':') {
                Some(p) => ("x", Some(p)),
                None => return false,
            },
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b));
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[household]]
id = "mueller"
name = "Familie Müller"

[[household]]
id = "chess-club"
name = "Schachclub"

[[member]]
user_id = "@bob:example.org"
household = "mueller"
joined = 2026-11-15T12:00:00Z

[[member]]
user_id = "@alice:example.org"
household = "mueller"

[[member]]
user_id = "@carol:example.org"
household = "chess-club"
joined = "2026-11-01T00:00:00+01:00"
left = "2026-11-20T00:00:00Z"
"#;

    fn err(text: &str) -> String {
        match Members::parse("members.toml", text) {
            Ok(m) => panic!("expected an error, got {m:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_good_file_is_read_and_sorted() {
        let m = Members::parse("members.toml", GOOD).unwrap();
        let ids: Vec<_> = m.households().iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["chess-club", "mueller"]);
        let users: Vec<_> = m.members().iter().map(|m| m.user_id.as_str()).collect();
        assert_eq!(
            users,
            [
                "@alice:example.org",
                "@bob:example.org",
                "@carol:example.org"
            ]
        );
        assert_eq!(m.index("@bob:example.org"), Some(MemberIdx(1)));
        assert_eq!(m.index("@hearth:example.org"), None);
        let bob = m.get(MemberIdx(1)).unwrap();
        assert_eq!(bob.joined_s, Some(1_794_744_000)); // 2026-11-15T12:00:00Z
        let carol = m.get(MemberIdx(2)).unwrap();
        assert_eq!(carol.joined_s, Some(1_793_487_600)); // 2026-10-31T23:00:00Z
        assert_eq!(carol.left_s, Some(1_795_132_800));
        assert_eq!(m.households()[1].name, "Familie Müller");
    }

    #[test]
    fn presence_is_by_overlapping_minute() {
        let m = Member {
            user_id: "@a:b".into(),
            household: "h".into(),
            joined_s: Some(630),
            left_s: Some(720),
        };
        assert!(!m.present_in(540));
        assert!(m.present_in(600)); // joined at 10:30 into this minute
        assert!(m.present_in(660));
        assert!(!m.present_in(720)); // left at its start
    }

    #[test]
    fn errors_name_file_line_table_and_key() {
        let h = "[[household]]\nid = \"h\"\nname = \"H\"\n";
        let cases = [
            (
                format!("{h}[[member]]\nuser_id = \"@a:x.org\"\nhousehold = \"h\"\n[[member]]\nuser_id = \"@b:x.org\"\nhousehold = \"x\"\n"),
                "members.toml:9: member[2].household: unknown household \"x\"",
            ),
            (
                format!("{h}[[member]]\nuser_id = \"@a:x.org\"\nhousehold = \"h\"\n[[member]]\nuser_id = \"@a:x.org\"\nhousehold = \"h\"\n"),
                "members.toml:8: member[2].user_id: duplicate member \"@a:x.org\"",
            ),
            (
                format!("{h}[[household]]\nid = \"h\"\nname = \"Again\"\n"),
                "members.toml:5: household[2].id: duplicate household \"h\"",
            ),
            (
                format!("{h}[[member]]\nuser_id = \"alice\"\nhousehold = \"h\"\n"),
                "members.toml:5: member[1].user_id: \"alice\" is not a Matrix user id",
            ),
            (
                format!("{h}[[member]]\nuser_id = \"@alice:\"\nhousehold = \"h\"\n"),
                "members.toml:5: member[1].user_id: \"@alice:\" is not a Matrix user id",
            ),
            (
                format!("{h}[[member]]\nuser_id = \"@a:x.org\"\nhousehold = \"h\"\nrole = \"admin\"\n"),
                "members.toml:7: unknown field `role`",
            ),
            (
                format!("{h}[[member]]\nuser_id = \"@a:x.org\"\nhousehold = \"h\"\njoined = \"yesterday\"\n"),
                "members.toml:7: member[1].joined: \"yesterday\" is not an RFC 3339 instant",
            ),
            (
                format!("{h}[[member]]\nuser_id = \"@a:x.org\"\nhousehold = \"h\"\njoined = 2026-11-01T00:00:00\n"),
                "members.toml:7: member[1].joined: \"2026-11-01T00:00:00\" is not an RFC 3339 instant with an offset",
            ),
            (
                format!("{h}[[member]]\nuser_id = \"@a:x.org\"\nhousehold = \"h\"\njoined = 2026-11-02T00:00:00Z\nleft = 2026-11-01T00:00:00Z\n"),
                "members.toml:8: member[1].left: is not after joined",
            ),
            (
                "[[household]]\nid = \"Familie Müller\"\nname = \"x\"\n".to_string(),
                "members.toml:2: household[1].id: \"Familie Müller\" is not an id",
            ),
            (
                "[[household]]\nid = \"h\"\n".to_string(),
                "members.toml:1: missing field `name`",
            ),
            (
                "[[housholds]]\nid = \"h\"\n".to_string(),
                "members.toml:1: unknown field `housholds`",
            ),
        ];
        for (text, want) in cases {
            let got = err(&text);
            assert!(
                got.starts_with(want),
                "for {text:?}\n got: {got}\nwant: {want}…"
            );
            assert!(!got.contains('\n'), "one line: {got:?}");
        }
    }

    #[test]
    fn user_ids_follow_the_matrix_grammar() {
        for ok in [
            "@alice:example.org",
            "@a.b_c=d-e/f+g:matrix.example.org:8448",
            "@Old.Style:localhost",
            "@x:[::1]:8448",
            "@x:192.168.1.2",
        ] {
            assert_eq!(check_user_id(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "@",
            "alice:example.org",
            "@alice",
            "@:example.org",
            "@al ice:example.org",
            "@alice:exa mple.org",
            "@alice:example.org:port",
            "@alice:[::1",
            "#room:example.org",
        ] {
            assert!(check_user_id(bad).is_err(), "{bad}");
        }
        assert!(check_user_id(&format!("@{}:x.org", "a".repeat(260))).is_err());
    }

    #[test]
    fn new_checks_the_same_rules() {
        let h = vec![Household {
            id: "h".into(),
            name: "H".into(),
        }];
        let m = |u: &str, hh: &str| Member {
            user_id: u.into(),
            household: hh.into(),
            joined_s: None,
            left_s: None,
        };
        assert_eq!(
            Members::new(h.clone(), vec![m("@a:x", "nope")]).unwrap_err(),
            "member[1].household: unknown household \"nope\""
        );
        assert!(Members::new(h.clone(), vec![m("@a:x", "h"), m("@a:x", "h")]).is_err());
        assert!(Members::new(h, vec![m("@b:x", "h"), m("@a:x", "h")]).is_ok());
    }

    #[test]
    fn unreadable_file_is_named() {
        let e = Members::load(Path::new("/nonexistent/members.toml")).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("/nonexistent/members.toml: cannot read"));
    }
}
