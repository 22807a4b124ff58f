//! s_i, the Matrix service's share of the busy CPU time in minute i (PRODUCT §5): Synapse, its
//! workers and its PostgreSQL against everything the CPUs did.
//!
//! Sampled at each wall-clock minute boundary; the share of the minute that just ended is
//! `Δ(Matrix CPU time) / Δ(busy CPU time)`, clamped to 0..=1, and `None` (counted as 1) when
//! it cannot be known: the first sample (no baseline), a missed boundary (the interval was not
//! about a minute), an unreadable source, or a CPU that did nothing.
//!
//! - Busy time: `/proc/stat`'s first line, `user + nice + system + irq + softirq + steal`
//!   (guest time is already inside user), in USER_HZ ticks: 100 per second, the kernel's fixed
//!   ABI for /proc on every architecture this runs on (arm64, x86_64), whatever CONFIG_HZ is.
//! - Matrix time, systemd: each watched unit's cgroup v2 `cpu.stat` `usage_usec`
//!   (`/sys/fs/cgroup/system.slice/<unit>/cpu.stat`; an instance of a template unit such as
//!   `postgresql@17-main.service` lives in `system-postgresql.slice/`). Everything the unit
//!   ran, workers and PostgreSQL backends included.
//! - Matrix time, process backend: the child's process group from `/proc/<pid>/stat`,
//!   `utime + stime + cutime + cstime` of every process whose `pgrp` is the child's (children
//!   reaped inside the group are in their reaper's `cutime/cstime`).
//!
//! The arithmetic ([`parse_proc_stat_busy`], [`parse_cpu_stat_usage`], [`parse_pid_stat`],
//! [`Counters`], [`share`]) is pure; [`CpuReader`] reads the files under a root that tests
//! replace with a fake tree (as `device.rs` does with sysfs).

use super::SharedPending;
use crate::clock::wall_ms_now;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// /proc's clock tick (USER_HZ), in µs.
const TICK_US: u64 = 10_000;

/// Busy ticks since boot from `/proc/stat`.
pub fn parse_proc_stat_busy(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse::<u64>().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    if v.len() < 4 {
        return None;
    }
    Some(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// `usage_usec` from a cgroup v2 `cpu.stat`.
pub fn parse_cpu_stat_usage(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

/// The fields of `/proc/<pid>/stat` the share needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidStat {
    pub pgrp: i32,
    /// utime + stime + cutime + cstime, ticks.
    pub cpu_ticks: u64,
    /// Start time after boot, ticks: with the pid, it names the process (pids are reused).
    pub start_ticks: u64,
}

/// `/proc/<pid>/stat`; the command name (field 2) may hold spaces and parentheses, so fields
/// are counted from the last `)`.
pub fn parse_pid_stat(text: &str) -> Option<PidStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state): field n is f[n - 3].
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(PidStat {
        pgrp: f.get(2)?.parse().ok()?,
        cpu_ticks: num(14)? + num(15)? + num(16)? + num(17)?,
        start_ticks: num(22)?,
    })
}

/// `part / busy`, clamped to 0..=1; `None` when the CPUs were not busy at all.
pub fn share(part_us: u64, busy_us: u64) -> Option<f64> {
    (busy_us > 0).then(|| (part_us as f64 / busy_us as f64).clamp(0.0, 1.0))
}

/// Cumulative counters by name (a unit, a process) → the growth since the previous reading.
/// A counter seen for the first time counts from zero (it started since); one that went back
/// was restarted and counts from zero; one that vanished adds nothing.
#[derive(Debug, Default, Clone)]
pub struct Counters<K> {
    prev: HashMap<K, u64>,
}

impl<K: std::hash::Hash + Eq + Clone> Counters<K> {
    pub fn delta(&mut self, now: impl IntoIterator<Item = (K, u64)>) -> u64 {
        let mut sum = 0u64;
        let mut next = HashMap::new();
        for (k, v) in now {
            let d = match self.prev.get(&k) {
                Some(&p) if v >= p => v - p,
                _ => v,
            };
            sum = sum.saturating_add(d);
            next.insert(k, v);
        }
        self.prev = next;
        sum
    }
}

/// Whose CPU time is the Matrix service's.
#[derive(Clone)]
pub enum Scope {
    /// systemd units (Synapse, its workers, its PostgreSQL), by cgroup.
    Units(Vec<String>),
    /// A process group (the process backend's child); the function answers its current pgid.
    ProcessGroup(Arc<dyn Fn() -> Option<i32> + Send + Sync>),
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Units(u) => f.debug_tuple("Units").field(u).finish(),
            Scope::ProcessGroup(_) => f.write_str("ProcessGroup"),
        }
    }
}

/// The cgroup directory of a system unit, relative to `/sys/fs/cgroup/system.slice`.
pub fn unit_cgroup(unit: &str) -> String {
    match unit.split_once('@') {
        // systemd puts instances of `a-b@.service` into `system-a\x2db.slice`.
        Some((prefix, _)) => format!("system-{}.slice/{unit}", prefix.replace('-', "\\x2d")),
        None => unit.to_string(),
    }
}

/// Reads the counters under `root` (`/` on the appliance) and turns two readings into a share.
#[derive(Debug)]
pub struct CpuReader {
    root: PathBuf,
    scope: Scope,
    busy_prev: Option<u64>,
    units: Counters<String>,
    procs: Counters<ProcKey>,
    baseline: bool,
}

impl CpuReader {
    pub fn new(root: impl Into<PathBuf>, scope: Scope) -> Self {
        Self {
            root: root.into(),
            scope,
            busy_prev: None,
            units: Counters::default(),
            procs: Counters::default(),
            baseline: false,
        }
    }

    /// Read now; the share since the previous reading (`None` on the first, or when anything
    /// needed could not be read: then the next reading starts a new baseline).
    pub fn sample(&mut self) -> Result<Option<f64>, String> {
        let busy = match self.busy_us() {
            Ok(b) => b,
            Err(e) => {
                self.baseline = false;
                return Err(e);
            }
        };
        let part = match self.matrix_us() {
            Ok(p) => p,
            Err(e) => {
                self.baseline = false;
                return Err(e);
            }
        };
        let prev = self.busy_prev.replace(busy);
        let had_baseline = std::mem::replace(&mut self.baseline, true);
        match prev {
            Some(p) if had_baseline && busy >= p => Ok(share(part, busy - p)),
            _ => Ok(None),
        }
    }

    /// Forget the baseline (the interval since the last reading was not a minute).
    pub fn reset(&mut self) {
        self.baseline = false;
    }

    fn busy_us(&self) -> Result<u64, String> {
        let p = self.root.join("proc/stat");
        let text = read(&p)?;
        parse_proc_stat_busy(&text)
            .map(|t| t * TICK_US)
            .ok_or_else(|| format!("{}: no cpu line", p.display()))
    }

    /// Growth of the Matrix service's counters since the previous reading, µs.
    fn matrix_us(&mut self) -> Result<u64, String> {
        match &self.scope {
            Scope::Units(units) => {
                let slice = self.root.join("sys/fs/cgroup/system.slice");
                if !slice.is_dir() {
                    return Err(format!("{}: no cgroup v2 system slice", slice.display()));
                }
                let mut now = Vec::with_capacity(units.len());
                for unit in units {
                    let p = slice.join(unit_cgroup(unit)).join("cpu.stat");
                    // A unit that is not running has no cgroup: it used no CPU.
                    if let Ok(text) = std::fs::read_to_string(&p) {
                        let usage = parse_cpu_stat_usage(&text)
                            .ok_or_else(|| format!("{}: no usage_usec", p.display()))?;
                        now.push((unit.clone(), usage));
                    }
                }
                Ok(self.units.delta(now))
            }
            Scope::ProcessGroup(pgid) => {
                let now = match pgid() {
                    Some(g) => group_ticks(&self.root.join("proc"), g)?,
                    None => Vec::new(),
                };
                Ok(self.procs.delta(now).saturating_mul(TICK_US))
            }
        }
    }
}

fn read(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// A process: its pid and start time (pids are reused).
type ProcKey = (i32, u64);

/// `((pid, start), cpu ticks)` of every process in group `pgid`.
fn group_ticks(proc: &Path, pgid: i32) -> Result<Vec<(ProcKey, u64)>, String> {
    let dir = std::fs::read_dir(proc).map_err(|e| format!("{}: {e}", proc.display()))?;
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // A process may exit between the listing and the read.
        let Ok(text) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(s) = parse_pid_stat(&text) {
            if s.pgrp == pgid {
                out.push(((pid, s.start_ticks), s.cpu_ticks));
            }
        }
    }
    Ok(out)
}

/// Sample at every wall-clock minute boundary until cancelled; each share goes into
/// `pending` under the minute that just ended.
pub async fn run(mut reader: CpuReader, pending: SharedPending, token: CancellationToken) {
    let mut warned = false;
    let mut last: Option<tokio::time::Instant> = None;
    loop {
        let now_ms = wall_ms_now();
        // Just after the next boundary.
        let next_ms = (now_ms.div_euclid(60_000) + 1) * 60_000 + 200;
        let wait = Duration::from_millis(u64::try_from(next_ms - now_ms).unwrap_or(60_000));
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let at = tokio::time::Instant::now();
        // A minute on the monotonic clock since the last reading, or the share means nothing.
        let about_a_minute = last.is_some_and(|l| {
            let d = at.duration_since(l);
            d >= Duration::from_secs(50) && d <= Duration::from_secs(70)
        });
        if !about_a_minute {
            reader.reset();
        }
        last = Some(at);
        let minute_s = wall_ms_now().div_euclid(60_000) * 60 - 60;
        let (r, result) = match tokio::task::spawn_blocking(move || {
            let s = reader.sample();
            (reader, s)
        })
        .await
        {
            Ok(x) => x,
            Err(_) => return,
        };
        reader = r;
        match result {
            Ok(Some(s)) => {
                pending.lock().shares.insert(minute_s, s);
                warned = false;
            }
            Ok(None) => {}
            Err(e) => {
                if !warned {
                    tracing::warn!("the Matrix service's CPU share is unknown (counted as 1): {e}");
                    warned = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_STAT: &str =
        "cpu  100 20 30 5000 40 5 6 7 50 0\ncpu0 50 10 15 2500 20 2 3 3 25 0\nintr 1 2 3\n";

    #[test]
    fn busy_is_user_nice_system_irq_softirq_steal() {
        assert_eq!(
            parse_proc_stat_busy(PROC_STAT),
            Some(100 + 20 + 30 + 5 + 6 + 7)
        );
        // An old kernel without steal.
        assert_eq!(
            parse_proc_stat_busy("cpu 1 2 3 4 5 6 7\n"),
            Some(1 + 2 + 3 + 6 + 7)
        );
        assert_eq!(parse_proc_stat_busy("intr 1\n"), None);
        assert_eq!(parse_proc_stat_busy("cpu 1 x 3 4\n"), None);
    }

    #[test]
    fn pid_stat_survives_a_command_name_with_parentheses() {
        let text = "4242 (python3 (synapse) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 40 7 3 20 0 12 0 98765 1000000 5000 18446744073709551615";
        assert_eq!(
            parse_pid_stat(text),
            Some(PidStat {
                pgrp: 4242,
                cpu_ticks: 250 + 40 + 7 + 3,
                start_ticks: 98765
            })
        );
        assert_eq!(parse_pid_stat("12 (x) S 1"), None);
    }

    #[test]
    fn counters_count_growth_restarts_and_newcomers() {
        let mut c = Counters::default();
        assert_eq!(c.delta([("a", 100u64), ("b", 50)]), 150);
        // a grew 30, b restarted (went back to 5), c is new.
        assert_eq!(c.delta([("a", 130u64), ("b", 5), ("c", 9)]), 30 + 5 + 9);
        // b vanished: nothing.
        assert_eq!(c.delta([("a", 130u64), ("c", 9)]), 0);
    }

    #[test]
    fn template_units_live_in_their_slice() {
        assert_eq!(
            unit_cgroup("matrix-synapse.service"),
            "matrix-synapse.service"
        );
        assert_eq!(
            unit_cgroup("postgresql@17-main.service"),
            "system-postgresql.slice/postgresql@17-main.service"
        );
        assert_eq!(
            unit_cgroup("synapse-worker@1.service"),
            "system-synapse\\x2dworker.slice/synapse-worker@1.service"
        );
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn proc_stat(busy_ticks: u64) -> String {
        format!("cpu  {busy_ticks} 0 0 99999 0 0 0 0 0 0\n")
    }

    #[test]
    fn the_share_of_systemd_units_from_a_fake_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let synapse = "sys/fs/cgroup/system.slice/matrix-synapse.service/cpu.stat";
        let pg = "sys/fs/cgroup/system.slice/system-postgresql.slice/postgresql@17-main.service/cpu.stat";
        write(root, "proc/stat", &proc_stat(1000));
        write(root, synapse, "usage_usec 5000000\nuser_usec 1\n");
        write(root, pg, "usage_usec 1000000\n");
        let mut r = CpuReader::new(
            root,
            Scope::Units(vec![
                "matrix-synapse.service".into(),
                "postgresql@17-main.service".into(),
            ]),
        );
        assert_eq!(r.sample(), Ok(None), "the first reading is the baseline");
        // A minute: 30 s of busy CPU (3000 ticks), Synapse 9 s, PostgreSQL 3 s → 0.4.
        write(root, "proc/stat", &proc_stat(4000));
        write(root, synapse, "usage_usec 14000000\n");
        write(root, pg, "usage_usec 4000000\n");
        let s = r.sample().unwrap().unwrap();
        assert!((s - 0.4).abs() < 1e-12, "{s}");
        // Synapse counted more than the whole machine (counters read a moment apart): 1.
        write(root, "proc/stat", &proc_stat(4100));
        write(root, synapse, "usage_usec 16000000\n");
        assert_eq!(r.sample(), Ok(Some(1.0)));
        // An idle minute: unknown.
        assert_eq!(r.sample(), Ok(None));
        // No cgroup v2 at all: an error (logged), and a new baseline afterwards.
        let bare = tempfile::tempdir().unwrap();
        write(bare.path(), "proc/stat", &proc_stat(1));
        let mut none = CpuReader::new(bare.path(), Scope::Units(vec!["x.service".into()]));
        assert!(none.sample().unwrap_err().contains("cgroup"));
    }

    #[test]
    fn the_share_of_a_process_group_from_a_fake_proc() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let stat = |pid: i32, pgrp: i32, ticks: u64, start: u64| {
            format!("{pid} (python) S 1 {pgrp} {pgrp} 0 -1 0 0 0 0 0 {ticks} 0 0 0 20 0 1 0 {start} 0 0")
        };
        write(root, "proc/stat", &proc_stat(1000));
        write(root, "proc/700/stat", &stat(700, 700, 100, 5));
        write(root, "proc/701/stat", &stat(701, 700, 50, 6));
        write(root, "proc/900/stat", &stat(900, 900, 400, 7)); // someone else
        let mut r = CpuReader::new(root, Scope::ProcessGroup(Arc::new(|| Some(700))));
        assert_eq!(r.sample(), Ok(None));
        // 1000 busy ticks; the group: 700 +200, 701 exited, 702 new with 100 → 300 / 1000.
        write(root, "proc/stat", &proc_stat(2000));
        write(root, "proc/700/stat", &stat(700, 700, 300, 5));
        std::fs::remove_dir_all(root.join("proc/701")).unwrap();
        write(root, "proc/702/stat", &stat(702, 700, 100, 8));
        write(root, "proc/900/stat", &stat(900, 900, 900, 7));
        let s = r.sample().unwrap().unwrap();
        assert!((s - 0.3).abs() < 1e-12, "{s}");
    }
}
