//! Updates (issue 18): a release is written whole into the slot the box is not running from,
//! booted once on trial, and kept only when the supervisor sees Synapse healthy on it
//! (image/README.md "Updates" has the whole design and why minisign rather than RAUC).
//!
//! - [`manifest`]: the signed manifest, verified against the key in the image before anything
//!   of it is believed.
//! - [`slots`]: slots A and B, which one runs, and the Pi firmware's `autoboot.txt`.
//! - [`write`]: the payloads streamed from the download (or a USB stick) into the other slot,
//!   decompressed, hashed and checked on the way; firmware files laid on the FAT with mtools.
//!
//! [`write_release`] does one update's writing: verify, refuse what is not newer or arrives
//! while a trial is pending, write the root and the firmware of the other slot, and arm the
//! trial in `autoboot.txt` (default: the running slot; tried once: the new one). Until the
//! firmware is asked for the trial, the card boots exactly as before.

pub mod manifest;
pub mod slots;
pub mod state;
pub mod steps;
pub mod trial;
pub mod write;

use manifest::{Manifest, ManifestError, Payload};
use serde::Serialize;
use slots::Slot;
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use write::WriteError;

/// Where releases come from: the cooperative's HTTPS directory, or a folder (a USB stick)
/// holding `manifest.json`, `manifest.json.minisig` and the payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Url(String),
    Dir(PathBuf),
}

impl Source {
    pub fn parse(s: &str) -> Source {
        if s.starts_with("https://") || s.starts_with("http://") {
            Source::Url(s.trim_end_matches('/').to_string())
        } else {
            Source::Dir(PathBuf::from(s))
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Url(u) => f.write_str(u),
            Source::Dir(d) => write!(f, "{}", d.display()),
        }
    }
}

/// The card's partitions: a template with `{}` for the number (`/dev/mmcblk0p{}`).
#[derive(Debug, Clone)]
pub struct Disk {
    pub template: String,
}

impl Disk {
    pub fn partition(&self, n: u8) -> PathBuf {
        PathBuf::from(self.template.replace("{}", &n.to_string()))
    }

    /// `[update] disk`: a template, or `auto`: the disk the running root is on, named as the
    /// kernel names its partitions (`/dev/mmcblk0p{}` for a card, `/dev/sda{}` for a Pi booted
    /// from USB, `/dev/vda{}` under QEMU), as first boot's `repart` finds it.
    pub fn resolve(spec: &str) -> Result<Disk, String> {
        if spec != "auto" {
            return Ok(Disk {
                template: spec.to_string(),
            });
        }
        use std::os::unix::fs::MetadataExt;
        let dev = std::fs::metadata("/").map_err(|e| format!("/: {e}"))?.dev();
        // glibc's encoding of dev_t (major and minor are split across the word).
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
        let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
        Disk::of_device(Path::new("/sys"), major, minor)
    }

    /// The disk holding block device `major:minor` (a partition), from sysfs.
    pub fn of_device(sys: &Path, major: u64, minor: u64) -> Result<Disk, String> {
        let link = sys.join(format!("dev/block/{major}:{minor}"));
        let dev = std::fs::canonicalize(&link).map_err(|e| format!("{}: {e}", link.display()))?;
        let name = dev
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: no device name", dev.display()))?;
        let number = std::fs::read_to_string(dev.join("partition")).map_err(|_| {
            format!("the root file system is on {name}, which is not a partition of a disk")
        })?;
        let stem = name
            .strip_suffix(number.trim())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                format!(
                    "{name}: its name does not end in its partition number {}",
                    number.trim()
                )
            })?;
        Ok(Disk {
            template: format!("/dev/{stem}{{}}"),
        })
    }

    /// Bytes the kernel has written to the whole disk since boot (its `stat`'s sectors written,
    /// 512 bytes each), read through partition 1's entry in sysfs; `None` where there is none.
    pub fn written_bytes(&self, sys: &Path) -> Option<u64> {
        let part = self.partition(1);
        let entry = sys.join("class/block").join(part.file_name()?);
        let disk = std::fs::canonicalize(entry).ok()?.parent()?.to_path_buf();
        let stat = std::fs::read_to_string(disk.join("stat")).ok()?;
        let sectors: u64 = stat.split_whitespace().nth(6)?.parse().ok()?;
        Some(sectors * 512)
    }
}

#[derive(Debug)]
pub enum UpdateError {
    /// The source could not be read (network, HTTP status, missing file).
    Fetch(String),
    Manifest(ManifestError),
    /// The release is not newer than what runs.
    NotNewer {
        running: String,
        offered: String,
    },
    /// `autoboot.txt` already points away from the running slot: a trial or a commit is pending.
    Pending(String),
    Slot(String),
    Write(WriteError),
}

impl fmt::Display for UpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fetch(e) => write!(f, "{e}"),
            Self::Manifest(e) => write!(f, "{e}"),
            Self::NotNewer { running, offered } => write!(
                f,
                "release {offered} is not newer than {running}, which runs: nothing written"
            ),
            Self::Pending(e) | Self::Slot(e) => write!(f, "{e}"),
            Self::Write(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for UpdateError {}

impl From<WriteError> for UpdateError {
    fn from(e: WriteError) -> Self {
        UpdateError::Write(e)
    }
}

/// The release that runs: the version in the image's `/etc/hearth/release` (`hearth 1.2.3
/// (…)`, written by the image build), which is what bundles are numbered by; this binary's
/// own version where there is no such file (a developer's machine).
pub fn running_version(release_file: &Path) -> String {
    release_version(&std::fs::read_to_string(release_file).unwrap_or_default())
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string())
}

fn release_version(text: &str) -> Option<String> {
    let mut words = text.lines().next()?.split_whitespace();
    (words.next()? == "hearth").then_some(())?;
    let v = words.next()?;
    semver::Version::parse(v).ok().map(|_| v.to_string())
}

/// What an update needs to know about the box.
#[derive(Debug, Clone)]
pub struct Options {
    /// The image's public key (minisign's `.pub` text).
    pub key: String,
    /// Extra CA to trust for an HTTPS source (the cooperative's test CA); the system's otherwise.
    pub ca: Option<PathBuf>,
    /// Download limit, bytes a second (None: as fast as it comes).
    pub rate: Option<u64>,
    /// The version that runs.
    pub running_version: String,
    /// The kernel command line (which slot runs).
    pub cmdline: String,
    /// A directory on tmpfs for the firmware files on their way to the FAT.
    pub scratch: PathBuf,
}

/// One update's writing, as `update write` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    pub version: String,
    pub slot: Slot,
    /// Bytes fetched from the source (compressed).
    pub downloaded_bytes: u64,
    /// Bytes written to the card: the root slot, the firmware files, autoboot.txt.
    pub card_bytes: u64,
    pub seconds: f64,
}

fn http_client(ca: Option<&Path>) -> Result<reqwest::Client, UpdateError> {
    let mut b = crate::http_client::builder().connect_timeout(Duration::from_secs(20));
    if let Some(ca) = ca {
        let pem =
            std::fs::read(ca).map_err(|e| UpdateError::Fetch(format!("{}: {e}", ca.display())))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| UpdateError::Fetch(format!("{}: {e}", ca.display())))?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(|e| UpdateError::Fetch(e.to_string()))
}

async fn fetch_small(
    source: &Source,
    client: &reqwest::Client,
    file: &str,
) -> Result<Vec<u8>, UpdateError> {
    let limit = manifest::MAX_MANIFEST_BYTES;
    match source {
        Source::Dir(d) => {
            let p = d.join(file);
            let bytes = std::fs::read(&p)
                .map_err(|e| UpdateError::Fetch(format!("{}: {e}", p.display())))?;
            if bytes.len() > limit {
                return Err(UpdateError::Manifest(ManifestError::TooLarge(bytes.len())));
            }
            Ok(bytes)
        }
        Source::Url(u) => {
            let url = format!("{u}/{file}");
            let mut resp = client
                .get(&url)
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| UpdateError::Fetch(format!("{url}: {e}")))?;
            let mut bytes = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| UpdateError::Fetch(format!("{url}: {e}")))?
            {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > limit {
                    return Err(UpdateError::Manifest(ManifestError::TooLarge(bytes.len())));
                }
            }
            Ok(bytes)
        }
    }
}

/// Fetches the manifest and its signature and verifies them with the image's key.
pub async fn fetch_manifest(source: &Source, opts: &Options) -> Result<Manifest, UpdateError> {
    let client = http_client(opts.ca.as_deref())?;
    let bytes = fetch_small(source, &client, "manifest.json").await?;
    let sig = fetch_small(source, &client, "manifest.json.minisig").await?;
    let sig = String::from_utf8(sig)
        .map_err(|_| UpdateError::Manifest(ManifestError::SignatureFormat("not text".into())))?;
    manifest::verify(&bytes, &sig, &opts.key).map_err(UpdateError::Manifest)
}

/// A payload's bytes as they arrive, at most `rate` bytes a second, counted.
struct Download {
    inner: DownloadInner,
    rate: Option<u64>,
    started: Instant,
    count: u64,
}

enum DownloadInner {
    File(std::fs::File),
    Http {
        handle: tokio::runtime::Handle,
        resp: reqwest::Response,
        buf: bytes_buf::Buf,
    },
}

mod bytes_buf {
    /// The rest of the last chunk that did not fit the reader's buffer.
    #[derive(Default)]
    pub struct Buf {
        pub data: Vec<u8>,
        pub at: usize,
    }
}

impl Read for Download {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = match &mut self.inner {
            DownloadInner::File(f) => f.read(out)?,
            DownloadInner::Http { handle, resp, buf } => {
                if buf.at >= buf.data.len() {
                    match handle.block_on(resp.chunk()) {
                        Ok(Some(c)) => {
                            buf.data = c.to_vec();
                            buf.at = 0;
                        }
                        Ok(None) => return Ok(0),
                        Err(e) => return Err(io::Error::other(e.to_string())),
                    }
                }
                let n = out.len().min(buf.data.len() - buf.at);
                out[..n].copy_from_slice(&buf.data[buf.at..buf.at + n]);
                buf.at += n;
                n
            }
        };
        self.count += n as u64;
        if let Some(rate) = self.rate.filter(|r| *r > 0) {
            // Ahead of the allowed pace: wait until the average is back at `rate`.
            let due = Duration::from_secs_f64(self.count as f64 / rate as f64);
            let spent = self.started.elapsed();
            if due > spent {
                std::thread::sleep(due - spent);
            }
        }
        Ok(n)
    }
}

async fn open_payload(
    source: &Source,
    client: &reqwest::Client,
    payload: &Payload,
    rate: Option<u64>,
) -> Result<Download, UpdateError> {
    let inner = match source {
        Source::Dir(d) => {
            let p = d.join(&payload.file);
            DownloadInner::File(
                std::fs::File::open(&p)
                    .map_err(|e| UpdateError::Fetch(format!("{}: {e}", p.display())))?,
            )
        }
        Source::Url(u) => {
            let url = format!("{u}/{}", payload.file);
            let resp = client
                .get(&url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| UpdateError::Fetch(format!("{url}: {e}")))?;
            DownloadInner::Http {
                handle: tokio::runtime::Handle::current(),
                resp,
                buf: Default::default(),
            }
        }
    };
    Ok(Download {
        inner,
        rate,
        started: Instant::now(),
        count: 0,
    })
}

/// Writes the release at `source` into the slot this box does not run from and arms the trial.
/// Refuses, writing nothing, a manifest whose signature does not verify, a release that is not
/// newer, and a card whose `autoboot.txt` does not boot the running slot by default.
pub async fn write_release(
    source: &Source,
    disk: &Disk,
    opts: &Options,
) -> Result<Written, UpdateError> {
    let started = Instant::now();
    let manifest = fetch_manifest(source, opts).await?;
    if !manifest.newer_than(&opts.running_version) {
        return Err(UpdateError::NotNewer {
            running: opts.running_version.clone(),
            offered: manifest.version,
        });
    }
    let running = slots::running(&opts.cmdline).map_err(UpdateError::Slot)?;
    let p1 = disk.partition(1);
    let autoboot = write::read_autoboot(&p1).map_err(UpdateError::Slot)?;
    if autoboot.default != running {
        return Err(UpdateError::Pending(format!(
            "autoboot.txt boots slot {} by default while slot {running} runs: an update is pending; nothing written",
            autoboot.default
        )));
    }
    let target = running.other();
    let client = http_client(opts.ca.as_deref())?;

    // The root: streamed onto the partition, checked, labelled for its slot (its superblock,
    // with the slot's label, last; then e2label for the backup superblocks).
    let root_part = disk.partition(target.root_partition());
    let dl = open_payload(source, &client, &manifest.root, opts.rate).await?;
    let payload = manifest.root.clone();
    let part = root_part.clone();
    let (root_bytes, root_downloaded) = tokio::task::spawn_blocking(move || {
        let mut dl = dl;
        let n = write::write_image(&mut dl, &part, &payload, Some(target.root_label()))?;
        Ok::<_, WriteError>((n, dl.count))
    })
    .await
    .map_err(|e| UpdateError::Slot(format!("the writer stopped: {e}")))??;
    write::label_root(&root_part, target)?;

    // The firmware: laid on the slot's FAT file by file through tmpfs, checked.
    let dl = open_payload(source, &client, &manifest.firmware, opts.rate).await?;
    let payload = manifest.firmware.clone();
    let fw_part = disk.partition(target.firmware_partition());
    let scratch = opts.scratch.clone();
    let (fw_bytes, fw_downloaded) = tokio::task::spawn_blocking(move || {
        let mut dl = dl;
        let (_, laid) = write::write_firmware(&mut dl, &fw_part, target, &payload, &scratch)?;
        Ok::<_, WriteError>((laid, dl.count))
    })
    .await
    .map_err(|e| UpdateError::Slot(format!("the writer stopped: {e}")))??;

    // Armed: the default stays the running slot; the firmware tries the new one once when asked.
    write::write_autoboot(&p1, running, &opts.scratch)?;
    Ok(Written {
        version: manifest.version,
        slot: target,
        downloaded_bytes: root_downloaded + fw_downloaded,
        card_bytes: root_bytes + fw_bytes + slots::Autoboot::render(running).len() as u64,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A sysfs as the kernel lays it out: /sys/devices/…/block/DISK/PART with `partition`,
    /// DISK/stat, and the /sys/dev/block/MAJ:MIN and /sys/class/block/PART links to them.
    fn sys_with(disk: &str, parts: &[(&str, u32, u64)], stat: &str) -> tempfile::TempDir {
        let sys = tempfile::tempdir().unwrap();
        let d = sys.path().join("devices/platform/soc/block").join(disk);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("stat"), stat).unwrap();
        for dir in ["dev/block", "class/block"] {
            std::fs::create_dir_all(sys.path().join(dir)).unwrap();
        }
        for (name, number, minor) in parts {
            std::fs::create_dir_all(d.join(name)).unwrap();
            std::fs::write(d.join(name).join("partition"), format!("{number}\n")).unwrap();
            symlink(
                d.join(name),
                sys.path().join(format!("dev/block/179:{minor}")),
            )
            .unwrap();
            symlink(d.join(name), sys.path().join("class/block").join(name)).unwrap();
        }
        sys
    }

    #[test]
    fn the_disk_is_found_from_the_root_partition_as_the_kernel_names_it() {
        for (disk, p1, p2, want) in [
            ("mmcblk0", "mmcblk0p1", "mmcblk0p2", "/dev/mmcblk0p{}"),
            ("sda", "sda1", "sda2", "/dev/sda{}"),
            ("vda", "vda1", "vda2", "/dev/vda{}"),
            ("nvme0n1", "nvme0n1p1", "nvme0n1p2", "/dev/nvme0n1p{}"),
        ] {
            let sys = sys_with(disk, &[(p1, 1, 1), (p2, 2, 2)], "");
            let d = Disk::of_device(sys.path(), 179, 2).unwrap();
            assert_eq!(d.template, want);
            assert_eq!(d.partition(5), PathBuf::from(want.replace("{}", "5")));
        }
    }

    #[test]
    fn a_root_that_is_no_partition_is_named() {
        let sys = sys_with("vda", &[("vda2", 2, 2)], "");
        std::fs::remove_file(
            sys.path()
                .join("devices/platform/soc/block/vda/vda2/partition"),
        )
        .unwrap();
        let e = Disk::of_device(sys.path(), 179, 2).unwrap_err();
        assert!(e.contains("vda2, which is not a partition"), "{e}");
        let e = Disk::of_device(sys.path(), 8, 0).unwrap_err();
        assert!(e.contains("dev/block/8:0"), "{e}");
        assert_eq!(
            Disk::resolve("/dev/mmcblk0p{}").unwrap().template,
            "/dev/mmcblk0p{}"
        );
    }

    #[test]
    fn the_running_release_is_the_images() {
        assert_eq!(
            release_version("hearth 0.18.1 (v0.18.1-3-gabc)\n").as_deref(),
            Some("0.18.1")
        );
        assert_eq!(
            release_version("hearth 0.19.0 (image-test)\n").as_deref(),
            Some("0.19.0")
        );
        for bad in [
            "",
            "debian 12\n",
            "hearth\n",
            "hearth soon (x)\n",
            "hearth 1.2 (x)\n",
        ] {
            assert_eq!(release_version(bad), None, "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("release");
        assert_eq!(running_version(&file), env!("CARGO_PKG_VERSION"));
        std::fs::write(&file, "hearth 9.8.7 (test)\n").unwrap();
        assert_eq!(running_version(&file), "9.8.7");
    }

    #[test]
    fn bytes_written_are_the_whole_disks_sectors_written() {
        // The kernel's block stat: reads, merges, sectors, ticks, writes, merges, SECTORS, …
        let sys = sys_with(
            "mmcblk0",
            &[("mmcblk0p1", 1, 1)],
            "  4120 1337 565480 2480 21044 13120 1234567 90210 0 33000 92690 0 0 0 0\n",
        );
        let d = Disk {
            template: "/dev/mmcblk0p{}".into(),
        };
        assert_eq!(d.written_bytes(sys.path()), Some(1_234_567 * 512));
        let elsewhere = Disk {
            template: "/dev/sdz{}".into(),
        };
        assert_eq!(elsewhere.written_bytes(sys.path()), None);
    }
}
