//! Who is asking: page sessions, roles, CSRF tokens and the sign-in rate limiter.
//!
//! A session is created when Synapse accepted a member's password (`signin`). It lives in
//! memory only: a restart of the supervisor signs everyone out, and nothing about sessions is
//! written to the SD card. The cookie carries 32 random bytes; the map is keyed by their
//! SHA-256, so the table itself holds no usable cookie. Each session has its own CSRF token,
//! which every state-changing request must echo (`X-CSRF-Token` header or `csrf` form field).
//!
//! Roles (PRODUCT §6): a server admin (Synapse's admin flag, asked at sign-in) sees every
//! member; a household admin (the `household_admin` table, read at each request so a change
//! applies at once) sees the members of that household; a member sees their own figures.
//!
//! The limiter counts sign-in attempts in token buckets: per address, and per account at that
//! address for browsers without the remembered-device cookie; never per account alone, so that
//! guesses from elsewhere cannot lock the owner out. An attempt takes its tokens when it is let
//! through (no check-then-take race); a successful sign-in gives them back. Addresses are only
//! ever held as a keyed hash (HMAC with a key drawn at start), never as text, never written
//! anywhere; buckets are forgotten once full again. The device cookie is an HMAC of the account
//! with a key kept in a file ([`device_key`]), so a restart does not forget the devices.

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The session cookie.
pub const COOKIE: &str = "hearth_session";
/// The remembered-device cookie: this browser signed in as this member before (see [`Limiter`]).
pub const DEVICE_COOKIE: &str = "hearth_device";

/// A session expires this long after its last use…
pub const IDLE: Duration = Duration::from_secs(2 * 3600);
/// …and at the latest this long after sign-in.
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);
/// At most this many sessions; the oldest goes first (a family has a handful).
pub const MAX_SESSIONS: usize = 1000;

type HmacSha256 = hmac::Hmac<Sha256>;

/// 32 bytes from the OS's random source, as hex.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    // getrandom fails only without any OS entropy source, which Linux always has.
    if getrandom::fill(&mut b).is_err() {
        tracing::error!("no random source: sessions cannot be created safely");
        // Fall back to a value that no cookie can match (its hash is never stored as a key
        // of a session the caller could learn).
        return String::new();
    }
    hex::encode(b)
}

fn key_of(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equal in constant time (the length is not secret).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    ServerAdmin,
    HouseholdAdmin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ServerAdmin => "server_admin",
            Role::HouseholdAdmin => "household_admin",
            Role::Member => "member",
        }
    }
}

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    /// Synapse's admin flag at sign-in.
    pub server_admin: bool,
    pub csrf: String,
    pub created: Instant,
    pub last_seen: Instant,
}

impl Session {
    pub fn expires(&self) -> Instant {
        (self.last_seen + IDLE).min(self.created + ABSOLUTE)
    }
}

/// The live sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    /// A new session for `user_id`; returns the cookie value and the session.
    pub fn create(&self, user_id: &str, server_admin: bool) -> Option<(String, Session)> {
        let token = random_token();
        let csrf = random_token();
        if token.is_empty() || csrf.is_empty() {
            return None;
        }
        let now = Instant::now();
        let s = Session {
            user_id: user_id.to_string(),
            server_admin,
            csrf,
            created: now,
            last_seen: now,
        };
        let mut map = self.lock();
        map.retain(|_, v| v.expires() > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, v)| v.last_seen).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(key_of(&token), s.clone());
        Some((token, s))
    }

    /// The session of a cookie value, touched; `None` when unknown or expired (then removed).
    pub fn get(&self, token: &str) -> Option<Session> {
        let key = key_of(token);
        let now = Instant::now();
        let mut map = self.lock();
        let s = map.get_mut(&key)?;
        if s.expires() <= now {
            map.remove(&key);
            return None;
        }
        s.last_seen = now;
        Some(s.clone())
    }

    /// Sign out.
    pub fn remove(&self, token: &str) -> Option<Session> {
        self.lock().remove(&key_of(token))
    }

    /// Sign `user_id` out everywhere (their account was deactivated or its password reset).
    pub fn remove_user(&self, user_id: &str) -> usize {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, s| s.user_id != user_id);
        before - map.len()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Whether the request reached us over HTTPS (a TLS proxy in front says so): then cookies are
/// `Secure`.
pub fn over_https(headers: &axum::http::HeaderMap, configured: bool) -> bool {
    configured
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// `Set-Cookie` for a session (or, with `max_age` 0, its removal).
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// A token bucket of allowed failures.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Limits of the sign-in limiter.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failed attempts allowed at once…
    pub burst: f64,
    /// …and one more each this often.
    pub refill: Duration,
}

/// Attempts per address, whatever the account: a guesser at one address is stopped after a
/// few tries. Several members may share an address (a household behind one router), so this
/// one is wider than the next.
pub const PER_ADDRESS: Limits = Limits {
    burst: 20.0,
    refill: Duration::from_secs(30),
};
/// Attempts per account from one address, for browsers without the remembered-device cookie.
/// Keyed on the account and the address together: guesses from elsewhere do not hold the owner
/// up at their own address, and a browser that carries the device cookie is held by
/// [`PER_ADDRESS`] only. There is deliberately no bucket per account alone: that one would let
/// anyone lock the owner out.
pub const PER_ACCOUNT_AT_ADDRESS: Limits = Limits {
    burst: 10.0,
    refill: Duration::from_secs(60),
};

/// Why an attempt is refused before Synapse is asked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limited {
    /// Whether it was the account's bucket at this address (else the address's).
    pub account: bool,
    pub retry_after: Duration,
}

/// The sign-in limiter (see the module docs).
pub struct Limiter {
    /// Keys the address buckets: drawn at start, never stored.
    key: [u8; 32],
    /// Signs the remembered-device cookies: kept across restarts ([`device_key`]).
    device_key: [u8; 32],
    address: Limits,
    account: Limits,
    buckets: Mutex<HashMap<[u8; 32], Bucket>>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").finish_non_exhaustive()
    }
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(PER_ADDRESS, PER_ACCOUNT_AT_ADDRESS)
    }
}

/// The account part of a sign-in name, lower case: `@Alice:example.org` and `alice` are one
/// account for the limiter.
pub fn account_key(name: &str) -> String {
    let n = name.trim();
    let n = n.strip_prefix('@').unwrap_or(n);
    let local = n.split(':').next().unwrap_or(n);
    local.to_lowercase()
}

/// An address as the limiter counts it: IPv4 as it is, IPv6 by its /64 (one customer's
/// network; anyone with one address has 2^64 of them).
fn address_text(addr: Option<IpAddr>) -> String {
    match addr.map(|a| a.to_canonical()) {
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(a) => a.to_string(),
        None => String::new(),
    }
}

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    if getrandom::fill(&mut key).is_err() {
        tracing::error!("no random source for the sign-in limiter's key");
    }
    key
}

/// The remembered-device cookies' key from `path`, created (32 random bytes, mode 0600) the
/// first time, so that the cookies outlive a restart of the supervisor. The key is never
/// logged; errors name the file only.
pub fn device_key(path: &std::path::Path) -> Result<[u8; 32], String> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let at = path.display();
    match std::fs::read(path) {
        Ok(bytes) => {
            let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                format!("{at}: not a key (expected 32 bytes, found {})", bytes.len())
            })?;
            let mode = std::fs::metadata(path)
                .map_err(|e| format!("{at}: {e}"))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| format!("{at}: cannot make it private: {e}"))?;
            }
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| format!("no random source: {e}"))?;
            // Written whole under another name, then renamed: a crash leaves no half key.
            let tmp = path.with_extension("new");
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| format!("{}: cannot create: {e}", tmp.display()))?;
            f.write_all(&key)
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("{}: cannot write: {e}", tmp.display()))?;
            std::fs::rename(&tmp, path).map_err(|e| format!("{at}: cannot create: {e}"))?;
            Ok(key)
        }
        Err(e) => Err(format!("{at}: cannot read: {e}")),
    }
}

impl Limiter {
    /// A limiter whose device cookies last as long as this process (tests; see
    /// [`Limiter::with_device_key`]).
    pub fn new(address: Limits, account: Limits) -> Limiter {
        Limiter {
            key: random_key(),
            device_key: random_key(),
            address,
            account,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The same limiter signing device cookies with `key` (from [`device_key`]).
    pub fn with_device_key(mut self, key: [u8; 32]) -> Limiter {
        self.device_key = key;
        self
    }

    fn mac_with(key: &[u8; 32], kind: &str, value: &str) -> [u8; 32] {
        let mut mac =
            <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn mac(&self, kind: &str, value: &str) -> [u8; 32] {
        Self::mac_with(&self.key, kind, value)
    }

    /// The buckets an attempt draws from: the address's, and without the device cookie the
    /// account's at this address.
    fn keys(
        &self,
        addr: Option<IpAddr>,
        name: &str,
        remembered: bool,
    ) -> Vec<([u8; 32], Limits, bool)> {
        let address = address_text(addr);
        let mut keys = vec![(self.mac("addr", &address), self.address, false)];
        if !remembered {
            let both = format!("{}\0{address}", account_key(name));
            keys.push((self.mac("user@addr", &both), self.account, true));
        }
        keys
    }

    fn level(b: Option<&Bucket>, limits: Limits, now: Instant) -> f64 {
        b.map_or(limits.burst, |b| {
            let refilled = now.duration_since(b.at).as_secs_f64() / limits.refill.as_secs_f64();
            (b.tokens + refilled).min(limits.burst)
        })
    }

    fn wait(tokens: f64, limits: Limits) -> Duration {
        limits.refill.mul_f64((1.0 - tokens).max(0.0)) + Duration::from_secs(1)
    }

    /// May this attempt go to Synapse? If so, it has taken its token from each of its buckets
    /// already (under one lock: many attempts at once cannot all pass), and a successful
    /// sign-in gives them back ([`Limiter::give_back`]). `remembered`: the browser carries a
    /// valid device cookie for this account.
    pub fn check(&self, addr: Option<IpAddr>, name: &str, remembered: bool) -> Result<(), Limited> {
        let now = Instant::now();
        let keys = self.keys(addr, name, remembered);
        let mut map = self.lock();
        let mut levels = Vec::with_capacity(keys.len());
        for (key, limits, account) in &keys {
            let level = Self::level(map.get(key), *limits, now);
            if level < 1.0 {
                return Err(Limited {
                    account: *account,
                    retry_after: Self::wait(level, *limits),
                });
            }
            levels.push(level);
        }
        if map.len() > 10_000 {
            // Forget the buckets that are full again (judged by the slower refill).
            let slow = if self.address.refill >= self.account.refill {
                self.address
            } else {
                self.account
            };
            map.retain(|_, b| Self::level(Some(b), slow, now) < slow.burst);
        }
        for ((key, _, _), level) in keys.into_iter().zip(levels) {
            map.insert(
                key,
                Bucket {
                    tokens: level - 1.0,
                    at: now,
                },
            );
        }
        Ok(())
    }

    /// The attempt [`Limiter::check`] let through was a wrong password (its tokens stay
    /// taken). Returns true when its buckets are empty now (the moment worth an audit entry;
    /// the refused attempts after it are not).
    pub fn failed(&self, addr: Option<IpAddr>, name: &str) -> bool {
        let now = Instant::now();
        let map = self.lock();
        self.keys(addr, name, false).iter().any(|(key, limits, _)| {
            map.get(key)
                .is_some_and(|b| Self::level(Some(b), *limits, now) < 1.0)
        })
    }

    /// The attempt [`Limiter::check`] let through was no wrong password (it signed in, or
    /// Synapse did not judge it): its tokens go back.
    pub fn give_back(&self, addr: Option<IpAddr>, name: &str, remembered: bool) {
        let now = Instant::now();
        let mut map = self.lock();
        for (key, limits, _) in self.keys(addr, name, remembered) {
            if let Some(b) = map.get_mut(&key) {
                b.tokens = (Self::level(Some(b), limits, now) + 1.0).min(limits.burst);
                b.at = now;
            }
        }
    }

    /// The device cookie for a member who just signed in: valid as long as the device key.
    pub fn device_cookie(&self, user_id: &str) -> String {
        format!(
            "{}.{}",
            hex::encode(user_id.as_bytes()),
            hex::encode(Self::mac_with(&self.device_key, "device", user_id))
        )
    }

    /// Whether `cookie` is a device cookie made with this limiter's device key for the account
    /// `name`.
    pub fn remembers(&self, cookie: Option<&str>, name: &str) -> bool {
        let Some((user_hex, mac_hex)) = cookie.and_then(|c| c.split_once('.')) else {
            return false;
        };
        let Some(user_id) = hex::decode(user_hex)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
        else {
            return false;
        };
        account_key(&user_id) == account_key(name)
            && same(
                mac_hex,
                &hex::encode(Self::mac_with(&self.device_key, "device", &user_id)),
            )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Bucket>> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_is_found_by_its_cookie_and_expires_when_idle_or_old() {
        let s = Sessions::default();
        let (token, session) = s.create("@alice:example.org", false).unwrap();
        assert_eq!(token.len(), 64);
        assert_ne!(token, session.csrf);
        assert_eq!(s.get(&token).unwrap().user_id, "@alice:example.org");
        assert!(s.get("nope").is_none());
        assert!(
            s.get(&session.csrf).is_none(),
            "the CSRF token is no cookie"
        );

        // Used every hour: alive until the absolute limit.
        for _ in 0..11 {
            tokio::time::advance(Duration::from_secs(3600)).await;
            assert!(s.get(&token).is_some());
        }
        tokio::time::advance(Duration::from_secs(3601)).await;
        assert!(s.get(&token).is_none(), "12 hours after sign-in it is over");
        assert!(s.is_empty());

        // Idle for longer than IDLE: gone.
        let (token, _) = s.create("@bob:example.org", false).unwrap();
        tokio::time::advance(IDLE + Duration::from_secs(1)).await;
        assert!(s.get(&token).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn signing_out_ends_the_session_and_the_table_is_bounded() {
        let s = Sessions::default();
        let (token, _) = s.create("@alice:example.org", true).unwrap();
        assert!(s.remove(&token).is_some());
        assert!(s.get(&token).is_none());
        let mut first = None;
        for i in 0..MAX_SESSIONS + 5 {
            let (t, _) = s.create(&format!("@u{i}:example.org"), false).unwrap();
            first.get_or_insert(t);
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.get(&first.unwrap()).is_none(), "the oldest went first");
    }

    #[test]
    fn cookies_are_read_from_any_cookie_header_and_written_strict() {
        let mut h = axum::http::HeaderMap::new();
        h.append("cookie", "lang=de; hearth_session=abc".parse().unwrap());
        h.append("cookie", "other=1".parse().unwrap());
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "other"), Some("1"));
        assert_eq!(cookie(&h, "hearth"), None);
        let c = set_cookie(COOKIE, "abc", IDLE, false);
        assert_eq!(
            c,
            "hearth_session=abc; Path=/; Max-Age=7200; HttpOnly; SameSite=Strict"
        );
        assert!(set_cookie(COOKIE, "abc", IDLE, true).ends_with("; Secure"));
        assert!(!over_https(&h, false));
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(over_https(&h, false));
    }

    #[tokio::test(start_paused = true)]
    async fn a_guesser_is_held_per_address_and_per_account_there_and_let_go_in_time() {
        let l = Limiter::default();
        let name = "alice";
        for i in 0..10 {
            assert!(l.check(ip("10.0.0.9"), name, false).is_ok(), "attempt {i}");
            l.failed(ip("10.0.0.9"), name);
        }
        let held = l.check(ip("10.0.0.9"), name, false).unwrap_err();
        assert!(held.account, "alice at this address");
        assert!(held.retry_after <= Duration::from_secs(61));
        // Another address, same account: not held (no bucket per account alone)…
        assert!(l.check(ip("10.0.0.7"), "@Alice:example.org", false).is_ok());
        // …and other accounts from the guesser's address, until the address is used up.
        for i in 0..10 {
            assert!(
                l.check(ip("10.0.0.9"), &format!("u{i}"), false).is_ok(),
                "u{i}"
            );
        }
        let held = l.check(ip("10.0.0.9"), "bob", false).unwrap_err();
        assert!(!held.account, "the address's bucket");
        // The owner's browser (device cookie) elsewhere is not held; the guesser's address
        // stays held even with a (stolen) device cookie.
        let device = l.device_cookie("@alice:example.org");
        assert!(l.remembers(Some(&device), name));
        assert!(l.check(ip("10.0.0.8"), name, true).is_ok());
        assert!(l.check(ip("10.0.0.9"), name, true).is_err());
        // A minute later one more try is allowed.
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(l.check(ip("10.0.0.9"), name, false).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_take_their_token_when_let_through_and_a_sign_in_gives_it_back() {
        let l = Limiter::default();
        // Twenty attempts in flight at once (none has failed yet): only the burst goes on.
        let through = (0..20)
            .filter(|_| l.check(ip("10.0.0.9"), "alice", false).is_ok())
            .count();
        assert_eq!(through, 10);
        // A successful sign-in costs nothing.
        let l = Limiter::default();
        for _ in 0..100 {
            l.check(ip("10.0.0.3"), "alice", false).unwrap();
            l.give_back(ip("10.0.0.3"), "alice", false);
        }
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let l = Limiter::default();
        for i in 0..20 {
            assert!(l
                .check(ip(&format!("2001:db8:1:2::{i:x}")), &format!("u{i}"), false)
                .is_ok());
        }
        assert!(l.check(ip("2001:db8:1:2:ffff::1"), "v", false).is_err());
        assert!(l.check(ip("2001:db8:1:3::1"), "v", false).is_ok());
        // An IPv4 peer seen as IPv6 (a dual-stack socket) is the IPv4 address.
        for i in 0..20 {
            assert!(l
                .check(ip("::ffff:10.1.1.1"), &format!("u{i}"), false)
                .is_ok());
        }
        assert!(l.check(ip("10.1.1.1"), "v", false).is_err());
    }

    #[test]
    fn device_cookies_are_bound_to_their_account_and_the_device_key() {
        let l = Limiter::default();
        let c = l.device_cookie("@alice:example.org");
        assert!(l.remembers(Some(&c), "@alice:example.org"));
        assert!(l.remembers(Some(&c), "ALICE"));
        assert!(!l.remembers(Some(&c), "bob"));
        assert!(!l.remembers(None, "alice"));
        assert!(!l.remembers(Some("616c696365.00"), "alice"));
        let forged = format!(
            "{}.{}",
            hex::encode("@bob:example.org"),
            c.split_once('.').unwrap().1
        );
        assert!(
            !l.remembers(Some(&forged), "bob"),
            "the MAC covers the account"
        );
        assert!(
            !Limiter::default().remembers(Some(&c), "alice"),
            "another key, another cookie"
        );
    }

    #[test]
    fn the_device_key_is_created_once_private_and_survives_a_restart() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device_key");
        let key = device_key(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), key);
        // The supervisor restarts: the same key, so the browser is still remembered.
        let before = Limiter::default().with_device_key(key);
        let cookie = before.device_cookie("@alice:example.org");
        let after = Limiter::default().with_device_key(device_key(&path).unwrap());
        assert!(after.remembers(Some(&cookie), "alice"));
        // A key file others may read is made private.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        device_key(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A damaged file is an error naming the file, not a new key that forgets everyone
        // silently, and never shows the key.
        std::fs::write(&path, b"short").unwrap();
        let e = device_key(&path).unwrap_err();
        assert!(e.starts_with(&path.display().to_string()), "{e}");
        assert!(!e.contains(&hex::encode(key)));
    }

    #[test]
    fn the_limiter_keeps_no_address_in_the_clear() {
        let l = Limiter::default();
        l.check(ip("192.168.178.23"), "alice", false).unwrap();
        // Neither as text nor as its four bytes (the keys print as byte lists).
        let dump = format!("{:?}", l.buckets.lock().unwrap());
        assert!(!dump.contains("192.168.178.23"));
        assert!(!dump.contains("192, 168, 178, 23"));
        assert_eq!(
            l.buckets.lock().unwrap().len(),
            2,
            "one address bucket, one account-at-address bucket"
        );
        assert!(!format!("{l:?}").contains("192"));
    }

    #[test]
    fn account_keys_fold_the_forms_of_one_name() {
        assert_eq!(account_key("@Alice:example.org"), "alice");
        assert_eq!(account_key(" alice "), "alice");
        assert_eq!(account_key("alice:other"), "alice");
    }
}
