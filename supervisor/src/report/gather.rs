//! The IO that collects a month's [`Inputs`]: the month's energy and measured time from storage
//! (`power_hour`, kept forever), the members of the month from the directory, the board's class
//! from the device tree, Synapse's version from its unauthenticated federation version endpoint.

use std::path::Path;
use std::time::Duration;

use report_wire::Hardware;

use super::Inputs;
use crate::accounting::model::Period;
use crate::config::ReportConfig;
use crate::storage::Storage;

#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error("members: {0}")]
    Directory(#[from] crate::accounting::directory::DirectoryError),
    #[error("no randomness: {0}")]
    Random(getrandom::Error),
    #[error("the clock reads {0}, not a date")]
    Clock(i64),
    #[error("the outbox: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// The board's class from the device tree's model string ("Raspberry Pi 4 Model B Rev 1.4").
pub fn hardware_from_model(model: &str) -> Hardware {
    let m = model.trim_end_matches('\0');
    if m.starts_with("Raspberry Pi 5") || m.starts_with("Raspberry Pi Compute Module 5") {
        Hardware::Pi5
    } else if m.starts_with("Raspberry Pi 4") || m.starts_with("Raspberry Pi Compute Module 4") {
        Hardware::Pi4
    } else if m.starts_with("Raspberry Pi 3") || m.starts_with("Raspberry Pi Compute Module 3") {
        Hardware::Pi3
    } else {
        Hardware::Other
    }
}

/// The board's class under the system root `root` (`/` on the box); `other` without a device
/// tree (x86).
pub fn hardware(root: &Path) -> Hardware {
    std::fs::read_to_string(root.join("proc/device-tree/model"))
        .map(|m| hardware_from_model(&m))
        .unwrap_or(Hardware::Other)
}

/// Synapse's version from `GET {base}/_matrix/federation/v1/version` (no token needed); `None`
/// when it does not answer.
pub async fn synapse_version(base: &str) -> Option<String> {
    let api = crate::synapse_api::SynapseApi::new(base, Duration::from_secs(5));
    let a = api.get("/_matrix/federation/v1/version", None).await.ok()?;
    if !a.ok() {
        return None;
    }
    a.json()["server"]["version"].as_str().map(str::to_owned)
}

/// Everything but the version and the hardware, from storage, for `period` (a UTC month).
pub fn inputs(
    storage: &Storage,
    period: &Period,
    config: &ReportConfig,
    hardware: Hardware,
    synapse_version: Option<String>,
) -> Result<Inputs, GatherError> {
    let (measured_wh, measured_s) = storage.period_energy(period.start_s(), period.end_s())?;
    let members = crate::accounting::directory::members_for(storage.connection(), period)?
        .members()
        .len();
    Ok(Inputs {
        month: period.label().to_string(),
        month_hours: (period.end_s() - period.start_s()) as f64 / 3600.0,
        measured_wh,
        measured_s,
        hardware,
        members,
        synapse_version,
        supplier: config.supplier.clone(),
        epsilon: config.epsilon,
        id: report_wire::new_id().map_err(GatherError::Random)?,
    })
}

/// Which report a [`Preview`] shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Made and waiting in the outbox; its token is attached when it is sent.
    Draft,
    /// Made, its token attached: these are the bytes that go out.
    Ready,
    /// The month in progress, from its values so far (not made yet; its noise is drawn here and
    /// again when it is really made).
    SoFar,
}

/// The next report, as `hearth-supervisor report preview` prints it and the page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// The report, pretty JSON: exactly the bytes' content that will be sent (a made report), or
    /// the report the month would get if it were made now.
    pub json: String,
    /// The month it reports ("YYYY-MM").
    pub month: String,
    pub stage: Stage,
    /// `[report] enabled`.
    pub allowed: bool,
    /// The family has opted in.
    pub opted_in: bool,
}

impl Preview {
    /// Lines for the command line's stderr: whether it is sent, which report this is, and
    /// that it has no token yet.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.allowed {
            notes.push("reports are off ([report] enabled = false): nothing is sent".to_string());
        } else if !self.opted_in {
            notes.push("the family has not opted in: nothing is sent".to_string());
        }
        notes.push(match self.stage {
            Stage::Draft => format!(
                "the report of {} is made and waits to be sent; no token yet (one is attached when it is sent)",
                self.month
            ),
            Stage::Ready => format!("the report of {} is ready to be sent", self.month),
            Stage::SoFar => format!(
                "the report of {} so far (made in the first 3 days of the next month); no token yet (one is attached when it is sent)",
                self.month
            ),
        });
        notes
    }
}

/// The next report: the oldest one in the outbox not yet delivered; else the one of the month in
/// progress, from its values so far (its noise is drawn here and again when it is really made).
pub fn preview(
    storage: &Storage,
    config: &ReportConfig,
    hardware: Hardware,
    synapse_version: Option<String>,
    now_s: i64,
) -> Result<Preview, GatherError> {
    let conn = storage.connection();
    let sql = |source| crate::storage::StorageError::Sql {
        path: storage.path().to_path_buf(),
        source,
    };
    let opted_in = super::outbox::opted_in_at(conn).map_err(sql)?.is_some();
    let pending = super::outbox::all(conn)
        .map_err(sql)?
        .into_iter()
        .find(|r| r.state != "delivered");
    if let Some(row) = pending {
        let value: serde_json::Value = serde_json::from_str(&row.json).unwrap_or_default();
        return Ok(Preview {
            json: serde_json::to_string_pretty(&value).unwrap_or(row.json),
            stage: if row.state == "draft" {
                Stage::Draft
            } else {
                Stage::Ready
            },
            month: row.month,
            allowed: config.enabled,
            opted_in,
        });
    }
    let (label, _, _) = crate::storage::month_of(now_s).unwrap_or_default();
    let period = Period::parse_month(&label).map_err(|_| GatherError::Clock(now_s))?;
    let inputs = inputs(storage, &period, config, hardware, synapse_version)?;
    let draft = super::build(&inputs, report_wire::uniform_from_bits(random_u64()?));
    Ok(Preview {
        json: serde_json::to_string_pretty(&draft).unwrap_or_default(),
        month: label,
        stage: Stage::SoFar,
        allowed: config.enabled,
        opted_in,
    })
}

/// 64 bits from the OS's random source.
pub fn random_u64() -> Result<u64, GatherError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(GatherError::Random)?;
    Ok(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_classes() {
        for (model, hw) in [
            ("Raspberry Pi 4 Model B Rev 1.4\0", Hardware::Pi4),
            ("Raspberry Pi 5 Model B Rev 1.0\0", Hardware::Pi5),
            ("Raspberry Pi 3 Model B Plus Rev 1.3\0", Hardware::Pi3),
            ("Raspberry Pi Compute Module 4 Rev 1.1\0", Hardware::Pi4),
            ("Raspberry Pi Zero 2 W Rev 1.0\0", Hardware::Other),
            ("", Hardware::Other),
        ] {
            assert_eq!(hardware_from_model(model), hw, "{model:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(hardware(dir.path()), Hardware::Other);
        std::fs::create_dir_all(dir.path().join("proc/device-tree")).unwrap();
        std::fs::write(
            dir.path().join("proc/device-tree/model"),
            "Raspberry Pi 5 Model B Rev 1.0\0",
        )
        .unwrap();
        assert_eq!(hardware(dir.path()), Hardware::Pi5);
    }
}
