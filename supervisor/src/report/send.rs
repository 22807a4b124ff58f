//! The sender: makes the month's report when it is due, keeps a few blind tokens, and delivers
//! the outbox to the cooperative's collector.
//!
//! One pass ([`Sender::pass`]) at a time, woken when something is due (at most every
//! [`IDLE`]) or when the family opts in. Each pass:
//! 1. makes last month's report at its stored random second (`outbox::tick`);
//! 2. with the box enrolled at the cooperative (`relay.toml`: its name and Ed25519 key), keeps
//!    [`STOCK`] unused tokens of the collector's current key. The regular refill happens at the
//!    box's own random moment between the 6th and the 25th of a month — never in the first days,
//!    when reports are sent, so a token request says nothing about which report is whose;
//! 3. attaches a token to each due draft and posts it (200 or 409: delivered; anything else:
//!    retried after `[report] retry_s`, doubling to 12 h). A draft that finds no token (the
//!    first report after opting in, a collector that rotated its key) fetches tokens and then
//!    waits `token_wait_s` plus up to twice that at random before it is sent, for the same
//!    reason.
//!
//! What the collector can still see is the connection's source address; it keeps none
//! (cooperative/README.md). A relay between box and collector (Oblivious HTTP, RFC 9458) would
//! hide it from the collector's network too; hearth does not have one.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_tunnel::key::BoxKey;
use report_wire::api::{
    tokens_transcript, ReportKey, TokenRequest, TokenResponse, REPORTS_PATH, REPORT_KEY_PATH,
    REPORT_TOKENS_PATH,
};
use report_wire::token;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{gather, outbox};
use crate::config::ReportConfig;
use crate::storage::Storage;
use crate::tunnel::RelayConfig;

/// Unused tokens the box keeps: three months' reports while the collector cannot sign.
pub const STOCK: usize = 3;
/// The longest sleep between passes.
pub const IDLE: Duration = Duration::from_secs(600);
/// The collector's key is looked up again after a day (sooner when it refuses ours).
const KEY_MAX_AGE_S: i64 = 86_400;
/// The regular refill's window in a month: from the 6th, over 20 days.
const REFILL_FROM_S: i64 = 5 * 86_400;
const REFILL_SPREAD_S: i64 = 20 * 86_400;

const KEY: &str = "report_key";
const KEY_AT: &str = "report_key_at";
const REFILL_OFFSET: &str = "token_refill_offset";
const REFILL_RETRY_AT: &str = "token_refill_retry_at";
const REFILL_FAILURES: &str = "token_refill_failures";

/// The sender's inputs, all fixed at start.
pub struct Sender {
    pub storage: Arc<Mutex<Storage>>,
    pub config: ReportConfig,
    /// `relay.toml`: the box's name under the cooperative's domain, its key, the API.
    pub relay_config: PathBuf,
    pub synapse_url: String,
    /// The system's root, for the board's model.
    pub root: PathBuf,
}

/// A uniform draw in (0, 1) from the OS's random source.
pub fn os_uniform() -> Result<f64, String> {
    gather::random_u64()
        .map(report_wire::uniform_from_bits)
        .map_err(|e| e.to_string())
}

use crate::tunnel::{error_chain, unix_now};

/// Runs passes until `stop`; `wake` starts one at once (the family just opted in).
pub async fn run(sender: Sender, wake: Arc<Notify>, stop: CancellationToken) {
    loop {
        let sleep = match sender.pass(unix_now(), &mut os_uniform).await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!("reports: {e}");
                IDLE
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = wake.notified() => {}
            _ = stop.cancelled() => return,
        }
    }
}

type Res<T> = Result<T, String>;

impl Sender {
    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Storage) -> rusqlite::Result<T> + Send + 'static,
    ) -> Res<T> {
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = storage
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut s).map_err(|e| format!("the outbox: {e}"))
        })
        .await
        .map_err(|e| format!("the outbox: {e}"))?
    }

    /// One pass at wall-clock `now_s`; returns how long to sleep before the next.
    pub async fn pass(
        &self,
        now_s: i64,
        draw: &mut (dyn FnMut() -> Res<f64> + Send),
    ) -> Res<Duration> {
        if !self.config.enabled {
            return Ok(IDLE);
        }
        let month = outbox::month_to_report(now_s).map(|p| p.label().to_string());
        let (opted, made, due_at) = self
            .db(move |s| {
                let c = s.connection();
                let opted = outbox::opted_in_at(c)?;
                let (made, due_at) = match &month {
                    Some(m) => (outbox::get(c, m)?.is_some(), outbox::scheduled(c, m)?),
                    None => (true, None),
                };
                Ok((opted, made, due_at))
            })
            .await?;
        if opted.is_none() {
            return Ok(IDLE);
        }
        let mut wake = now_s + IDLE.as_secs() as i64;

        // 1. Last month's report, at its random second.
        if !made {
            match due_at {
                Some(at) if now_s < at => wake = wake.min(at),
                _ => self.make(now_s, draw, &mut wake).await?,
            }
        }

        // 2. and 3. Tokens and delivery need the box's name at the cooperative.
        let relay = match RelayConfig::load(&self.relay_config) {
            Ok(r) => r,
            Err(e) => {
                let why = if self.relay_config.exists() {
                    format!("the relay's configuration: {e:#}")
                } else {
                    "not sent: the box has no name under the cooperative's domain (reports need its enrolment)".to_string()
                };
                self.hold_due(now_s, &why).await?;
                return Ok(until(now_s, wake));
            }
        };
        let (due, stock_any, refill_at, retry_at) = {
            let draw_offset = draw()?;
            self.db(move |s| {
                let c = s.connection();
                let offset = match outbox::setting(c, REFILL_OFFSET)?.and_then(|v| v.parse().ok()) {
                    Some(o) => o,
                    None => {
                        let o = REFILL_FROM_S + (draw_offset * REFILL_SPREAD_S as f64) as i64;
                        outbox::set_setting(c, REFILL_OFFSET, &o.to_string())?;
                        o
                    }
                };
                let start = crate::storage::month_of(now_s)
                    .map(|m| m.1)
                    .unwrap_or(now_s);
                let retry: i64 = outbox::setting(c, REFILL_RETRY_AT)?
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                Ok((
                    outbox::due(c, now_s)?,
                    outbox::unused_tokens_any(c)?,
                    start + offset,
                    retry,
                ))
            })
            .await?
        };
        let refill_due = stock_any < STOCK && now_s >= refill_at && now_s >= retry_at;
        if due.is_empty() && !refill_due {
            if stock_any < STOCK && now_s < refill_at {
                wake = wake.min(refill_at);
            }
            return self.next_wake(now_s, wake).await;
        }

        let client = crate::tunnel::api_client(relay.ca.as_deref(), Duration::from_secs(30))
            .map_err(|e| format!("{e:#}"))?;
        let api = relay.api_url();
        let key = match self.current_key(&client, &api, now_s).await {
            Ok(k) => k,
            Err(e) => {
                for row in due.iter().filter(|r| r.state == "draft") {
                    self.failed(&row.month, now_s, &e).await?;
                }
                self.refill_failed(now_s).await?;
                for row in due.iter().filter(|r| r.state != "draft") {
                    self.deliver(&client, &api, &row.month, &row.json, now_s)
                        .await?;
                }
                return self.next_wake(now_s, wake).await;
            }
        };
        let key_id = key.0.key_id.clone();
        let kid = key_id.clone();
        let stock = self
            .db(move |s| outbox::unused_tokens(s.connection(), &kid))
            .await?;
        // Tokens fetched in this pass, by the refill: a draft does not take one of them now
        // either (the wait below), or the report would follow its token within seconds.
        let mut fetched_now = false;
        if stock < STOCK && now_s >= refill_at && now_s >= retry_at {
            match self
                .fetch_tokens(&client, &api, &relay, &key, STOCK - stock, now_s)
                .await
            {
                Ok(n) => {
                    fetched_now = n > 0;
                    tracing::info!("reports: {n} tokens for the collector's key {key_id}")
                }
                Err(e) => {
                    tracing::warn!("reports: tokens: {e}");
                    self.refill_failed(now_s).await?;
                }
            }
        }

        for row in due {
            if row.state == "draft" && fetched_now && self.config.token_wait_s > 0 {
                self.wait_after_fetch(&row.month, now_s, draw).await?;
                continue;
            }
            let json = if row.state == "draft" {
                match self.attach(&row.month, &key_id).await? {
                    Some(json) => json,
                    None => {
                        match self
                            .fetch_tokens(&client, &api, &relay, &key, STOCK, now_s)
                            .await
                        {
                            Err(e) => {
                                self.failed(&row.month, now_s, &format!("tokens: {e}"))
                                    .await?;
                                continue;
                            }
                            Ok(_) if self.config.token_wait_s > 0 => {
                                self.wait_after_fetch(&row.month, now_s, draw).await?;
                                continue;
                            }
                            Ok(_) => match self.attach(&row.month, &key_id).await? {
                                Some(json) => json,
                                None => continue,
                            },
                        }
                    }
                }
            } else {
                row.json.clone()
            };
            self.deliver(&client, &api, &row.month, &json, now_s)
                .await?;
        }
        self.next_wake(now_s, wake).await
    }

    /// A draft whose token was just fetched waits `token_wait_s` plus up to twice that at
    /// random before it is sent, so the collector cannot match the two by their timing.
    async fn wait_after_fetch(
        &self,
        month: &str,
        now_s: i64,
        draw: &mut (dyn FnMut() -> Res<f64> + Send),
    ) -> Res<()> {
        let wait = self.config.token_wait_s;
        let at = now_s + wait + (draw()? * 2.0 * wait as f64) as i64;
        let month = month.to_string();
        self.db(move |s| {
            outbox::postpone(
                s.connection(),
                &month,
                at,
                "waits a while after its token was fetched, so the two cannot be matched",
            )
        })
        .await
    }

    /// Makes last month's report, if the schedule says so (`tick` decides, under the outbox's
    /// rules).
    async fn make(
        &self,
        now_s: i64,
        draw: &mut (dyn FnMut() -> Res<f64> + Send),
        wake: &mut i64,
    ) -> Res<()> {
        let version = gather::synapse_version(&self.synapse_url).await;
        let hardware = gather::hardware(&self.root);
        let (schedule_draw, noise_draw) = (draw()?, draw()?);
        let config = self.config.clone();
        let storage = self.storage.clone();
        let tick = tokio::task::spawn_blocking(move || {
            let s = storage
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            outbox::tick::<gather::GatherError>(s.connection(), now_s, schedule_draw, |period| {
                let inputs = gather::inputs(&s, period, &config, hardware, version)?;
                Ok(super::build(&inputs, noise_draw))
            })
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("making the report: {e}"))?;
        match tick {
            outbox::Tick::Waiting { due_at, .. } => *wake = (*wake).min(due_at),
            outbox::Tick::Made { month } => {
                tracing::info!("reports: the report of {month} is made")
            }
            outbox::Tick::NotOptedIn | outbox::Tick::AlreadyMade { .. } => {}
        }
        Ok(())
    }

    /// Due reports that cannot be sent now wait an idle interval, with the reason for the page.
    async fn hold_due(&self, now_s: i64, why: &str) -> Res<()> {
        let why = why.to_string();
        self.db(move |s| {
            let c = s.connection();
            for row in outbox::due(c, now_s)? {
                outbox::postpone(c, &row.month, now_s + IDLE.as_secs() as i64, &why)?;
            }
            Ok(())
        })
        .await
    }

    async fn next_wake(&self, now_s: i64, wake: i64) -> Res<Duration> {
        let next = self
            .db(|s| outbox::next_attempt(s.connection()))
            .await?
            .unwrap_or(wake);
        Ok(until(now_s, wake.min(next)))
    }

    async fn failed(&self, month: &str, now_s: i64, error: &str) -> Res<()> {
        tracing::warn!("reports: the report of {month}: {error}");
        let (month, error, first) = (month.to_string(), error.to_string(), self.config.retry_s);
        self.db(move |s| outbox::mark_failed(s.connection(), &month, now_s, &error, first))
            .await
            .map(|_| ())
    }

    /// A refill that failed waits like a report does (from `retry_s`, doubling to 12 h).
    async fn refill_failed(&self, now_s: i64) -> Res<()> {
        let first = self.config.retry_s;
        self.db(move |s| {
            let c = s.connection();
            let n: u32 = outbox::setting(c, REFILL_FAILURES)?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
                + 1;
            outbox::set_setting(c, REFILL_FAILURES, &n.to_string())?;
            let at = now_s + outbox::backoff_s(first, n);
            outbox::set_setting(c, REFILL_RETRY_AT, &at.to_string())
        })
        .await
    }

    async fn attach(&self, month: &str, key_id: &str) -> Res<Option<String>> {
        let (month, key_id) = (month.to_string(), key_id.to_string());
        self.db(move |s| {
            Ok(
                match outbox::attach_token(s.connection_mut(), &month, &key_id)? {
                    Some(_) => outbox::get(s.connection(), &month)?.map(|r| r.json),
                    None => None,
                },
            )
        })
        .await
    }

    /// The collector's current token key: the stored one while it is younger than a day.
    async fn current_key(
        &self,
        client: &reqwest::Client,
        api: &str,
        now_s: i64,
    ) -> Res<(ReportKey, token::PublicKey)> {
        let stored = self
            .db(|s| {
                let c = s.connection();
                Ok((outbox::setting(c, KEY)?, outbox::setting(c, KEY_AT)?))
            })
            .await?;
        if let (Some(json), Some(at)) = stored {
            let fresh = at
                .parse::<i64>()
                .is_ok_and(|at| (0..KEY_MAX_AGE_S).contains(&(now_s - at)));
            if let (true, Ok(key)) = (fresh, serde_json::from_str::<ReportKey>(&json)) {
                if let Ok(pk) = token::decode_public_key(&key.public_key) {
                    return Ok((key, pk));
                }
            }
        }
        let resp = client
            .get(format!("{api}{REPORT_KEY_PATH}"))
            .send()
            .await
            .map_err(|e| format!("the collector at {api}: {}", error_chain(&e)))?;
        let (status, body) = (resp.status(), resp.text().await.unwrap_or_default());
        if !status.is_success() {
            return Err(format!("the collector's key ({status}): {}", reason(&body)));
        }
        let key: ReportKey =
            serde_json::from_str(&body).map_err(|e| format!("the collector's key: {e}"))?;
        let pk = token::decode_public_key(&key.public_key)
            .map_err(|e| format!("the collector's key: {e}"))?;
        if token::key_id(&pk) != key.key_id {
            return Err("the collector's key: its key_id is not the key's".into());
        }
        let json = serde_json::to_string(&key).map_err(|e| e.to_string())?;
        self.db(move |s| {
            let c = s.connection();
            outbox::set_setting(c, KEY, &json)?;
            outbox::set_setting(c, KEY_AT, &now_s.to_string())
        })
        .await?;
        Ok((key, pk))
    }

    /// Asks the collector to sign `n` blinded tokens; keeps the unblinded ones. Returns how many.
    async fn fetch_tokens(
        &self,
        client: &reqwest::Client,
        api: &str,
        relay: &RelayConfig,
        key: &(ReportKey, token::PublicKey),
        n: usize,
        now_s: i64,
    ) -> Res<usize> {
        let bytes = std::fs::read(&relay.key)
            .map_err(|e| format!("the box's key {}: {e}", relay.key.display()))?;
        let box_key = BoxKey::from_pkcs8(&bytes, &relay.key.display().to_string())
            .map_err(|e| e.to_string())?;
        let (mut blinded, mut blindings) = (Vec::new(), Vec::new());
        for _ in 0..n.clamp(1, report_wire::api::MAX_BLINDED_PER_REQUEST) {
            let (request, blinding) = token::blind(&key.1).map_err(|e| e.to_string())?;
            blinded.push(request.blinded);
            blindings.push(blinding);
        }
        let transcript = tokens_transcript(&relay.name, now_s, &key.0.key_id, &blinded);
        let request = TokenRequest {
            name: relay.name.clone(),
            at: now_s,
            sig: hearth_tunnel::proto::encode(box_key.sign(&transcript)),
            key_id: key.0.key_id.clone(),
            blinded,
        };
        let resp = client
            .post(format!("{api}{REPORT_TOKENS_PATH}"))
            .json(&request)
            .send()
            .await
            .map_err(|e| format!("the collector at {api}: {}", error_chain(&e)))?;
        let (status, body) = (resp.status(), resp.text().await.unwrap_or_default());
        if status == reqwest::StatusCode::BAD_REQUEST {
            // Perhaps a new key: look it up again next time.
            self.db(|s| outbox::set_setting(s.connection(), KEY_AT, "0"))
                .await?;
        }
        if !status.is_success() {
            return Err(format!(
                "the collector refused to sign ({status}): {}",
                reason(&body)
            ));
        }
        let answer: TokenResponse =
            serde_json::from_str(&body).map_err(|e| format!("the collector's tokens: {e}"))?;
        if answer.signatures.len() != blindings.len() {
            return Err(format!(
                "the collector signed {} of {} tokens",
                answer.signatures.len(),
                blindings.len()
            ));
        }
        let tokens = blindings
            .into_iter()
            .zip(&answer.signatures)
            .map(|(b, sig)| token::finalize(&key.1, b, sig))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the collector's tokens: {e}"))?;
        let count = tokens.len();
        self.db(move |s| {
            outbox::store_tokens(s.connection_mut(), &tokens, now_s)?;
            let c = s.connection();
            outbox::set_setting(c, REFILL_FAILURES, "0")?;
            outbox::set_setting(c, REFILL_RETRY_AT, "0")
        })
        .await?;
        Ok(count)
    }

    /// Posts a ready report: 200 stored, 409 stored before (a retry whose answer was lost).
    async fn deliver(
        &self,
        client: &reqwest::Client,
        api: &str,
        month: &str,
        json: &str,
        now_s: i64,
    ) -> Res<()> {
        let sent = client
            .post(format!("{api}{REPORTS_PATH}"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json.to_string())
            .send()
            .await;
        let outcome = match sent {
            Err(e) => Err(format!("the collector at {api}: {}", error_chain(&e))),
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                if status.is_success() || status == reqwest::StatusCode::CONFLICT {
                    Ok(())
                } else {
                    Err(format!(
                        "the collector refused it ({status}): {}",
                        reason(&body)
                    ))
                }
            }
        };
        match outcome {
            Ok(()) => {
                tracing::info!("reports: the report of {month} is delivered");
                let month = month.to_string();
                self.db(move |s| outbox::mark_delivered(s.connection(), &month, now_s))
                    .await
            }
            Err(e) => self.failed(month, now_s, &e).await,
        }
    }
}

fn until(now_s: i64, at: i64) -> Duration {
    Duration::from_secs((at - now_s).clamp(1, IDLE.as_secs() as i64) as u64)
}

fn reason(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

#[cfg(test)]
mod tests;
