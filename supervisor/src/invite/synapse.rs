//! The account calls the page makes with the supervisor's own admin token
//! (`health::probe::TOKEN_USES` names each for the access page): whoami (the server's name),
//! whether an account exists, creating one (never over an existing account), deactivating one
//! and resetting its password. Every answered call about a person is an `admin_api_call` audit
//! entry about them, handed to the caller in `calls` to append with the rest of the request's
//! entries.

use crate::audit::{Action, Actor, NewEntry};
use crate::health::probe::{endpoint, AdminToken};
use crate::synapse_api::{segment, Method, SynapseApi};
use serde_json::{json, Value};
use std::time::Duration;

/// Why a call did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("no admin token yet (first boot still running?)")]
    NoToken,
    #[error("the account exists already")]
    Exists,
    #[error("no such account")]
    NotFound,
    /// Synapse refused or did not answer usefully (logged, not shown).
    #[error("Synapse: {0}")]
    Failed(String),
}

/// The admin calls about accounts, with the supervisor's token.
pub struct AccountAdmin {
    api: SynapseApi,
    token: String,
}

impl AccountAdmin {
    pub fn new(base: &str, token: &AdminToken) -> Result<AccountAdmin, AdminError> {
        let token = token.get().ok_or(AdminError::NoToken)?;
        Ok(AccountAdmin {
            api: SynapseApi::new(base, Duration::from_secs(30)),
            token,
        })
    }

    /// The homeserver's `server_name`: the part after `:` of the token's own user id.
    pub async fn server_name(&self) -> Result<String, AdminError> {
        let me = self
            .api
            .get(endpoint::WHOAMI, Some(&self.token))
            .await
            .map_err(failed)?
            .json();
        me["user_id"]
            .as_str()
            .and_then(|id| id.split_once(':'))
            .map(|(_, s)| s.to_string())
            .ok_or_else(|| AdminError::Failed(format!("whoami: {me}")))
    }

    async fn call(
        &self,
        method: Method,
        prefix: &str,
        user_id: &str,
        body: Option<Value>,
        calls: &mut Vec<NewEntry>,
    ) -> Result<(u16, String), AdminError> {
        let path = format!("{prefix}{}", segment(user_id));
        let res = self
            .api
            .call(method, &path, Some(&self.token), body.as_ref())
            .await
            .map_err(failed)?;
        let status = res.status;
        calls.push(
            NewEntry::new(Actor::System, Action::AdminApiCall)
                .about(user_id)
                .detail("endpoint", format!("{method} {prefix}{{user_id}}"))
                .detail("status", status),
        );
        if matches!(status, 401 | 403) {
            return Err(AdminError::Failed(format!(
                "HTTP {status}: the admin token was refused"
            )));
        }
        Ok((status, res.body))
    }

    /// Whether `user_id` exists (deactivated accounts too: their names stay taken).
    pub async fn exists(
        &self,
        user_id: &str,
        calls: &mut Vec<NewEntry>,
    ) -> Result<bool, AdminError> {
        let (status, text) = self
            .call(Method::Get, endpoint::USER, user_id, None, calls)
            .await?;
        match status {
            200 => Ok(true),
            404 => Ok(false),
            s => Err(AdminError::Failed(format!("GET user: HTTP {s}: {text}"))),
        }
    }

    /// Create `user_id` (not an admin) with `password`. `PUT` would change an existing
    /// account, so it is asked first; the caller serialises sign-ups so that nothing comes
    /// between the question and the creation from this page.
    pub async fn create(
        &self,
        user_id: &str,
        password: &str,
        calls: &mut Vec<NewEntry>,
    ) -> Result<(), AdminError> {
        self.create_account(user_id, password, false, calls).await
    }

    /// [`create`](Self::create), as a server admin when `admin` (the first account, `/setup`).
    pub async fn create_account(
        &self,
        user_id: &str,
        password: &str,
        admin: bool,
        calls: &mut Vec<NewEntry>,
    ) -> Result<(), AdminError> {
        if self.exists(user_id, calls).await? {
            return Err(AdminError::Exists);
        }
        let local = user_id
            .strip_prefix('@')
            .and_then(|r| r.split(':').next())
            .unwrap_or(user_id);
        let (status, text) = self
            .call(
                Method::Put,
                endpoint::USER,
                user_id,
                Some(json!({"password": password, "admin": admin, "displayname": local})),
                calls,
            )
            .await?;
        match status {
            201 => Ok(()),
            s => Err(AdminError::Failed(format!("PUT user: HTTP {s}: {text}"))),
        }
    }

    /// Deactivate `user_id` (`erase: false`: their messages stay readable for the others).
    pub async fn deactivate(
        &self,
        user_id: &str,
        calls: &mut Vec<NewEntry>,
    ) -> Result<(), AdminError> {
        let (status, text) = self
            .call(
                Method::Post,
                endpoint::DEACTIVATE,
                user_id,
                Some(json!({"erase": false})),
                calls,
            )
            .await?;
        match status {
            200 => Ok(()),
            404 => Err(AdminError::NotFound),
            s => Err(AdminError::Failed(format!("deactivate: HTTP {s}: {text}"))),
        }
    }

    /// Set `user_id`'s password and log out all their devices.
    pub async fn reset_password(
        &self,
        user_id: &str,
        password: &str,
        calls: &mut Vec<NewEntry>,
    ) -> Result<(), AdminError> {
        let (status, text) = self
            .call(
                Method::Post,
                endpoint::RESET_PASSWORD,
                user_id,
                Some(json!({"new_password": password, "logout_devices": true})),
                calls,
            )
            .await?;
        match status {
            200 => Ok(()),
            404 => Err(AdminError::NotFound),
            s => Err(AdminError::Failed(format!(
                "reset_password: HTTP {s}: {text}"
            ))),
        }
    }
}

fn failed(e: crate::synapse_api::Unreached) -> AdminError {
    AdminError::Failed(e.0)
}
