//! The USB disk for backups (issue 16): which disks are plugged in, as the page offers them to
//! a server admin, and the request that prepares one.
//!
//! A disk is offered when the kernel sees it behind a USB controller (its `/sys/block/<name>`
//! device path runs through a `usb` node) and it is not the disk the system runs from (the SD
//! card is `mmcblk0`, never `sd*`; a Pi booted from USB has its root on an `sd*` disk, which is
//! left out by its mounted partitions). What is on it is read from udev's database
//! (`/run/udev/data/b<major>:<minor>`: `ID_FS_LABEL`, `ID_FS_TYPE`), never by opening the disk:
//! the supervisor has no access to block devices.
//!
//! Preparing erases the disk, so the page asks the admin to confirm the exact disk (vendor,
//! model, size); the request names the disk and its size, and the root side
//! (hearth-backup-setup.service, `/usr/lib/hearth/backup-setup`) checks both again before it writes
//! anything. A prepared disk has one ext4 file system labelled [`LABEL`]; systemd mounts it at
//! `/media/hearth-backup` whenever it is plugged in (`media-hearth\x2dbackup.mount`).

use std::path::{Path, PathBuf};

/// The file system label of a prepared backup disk.
pub const LABEL: &str = "HEARTH-BKP";
/// The unit that prepares a disk (or the cooperative's store).
pub const UNIT: &str = "hearth-backup-setup.service";

/// One USB disk, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// The kernel's name: `sda`.
    pub name: String,
    pub vendor: String,
    pub model: String,
    pub bytes: u64,
    /// A partition of it is a prepared backup disk.
    pub prepared: bool,
    /// A partition of it is mounted (in use: not offered for erasing).
    pub mounted: bool,
}

impl Disk {
    /// `SanDisk Ultra (32.0 GB)`.
    pub fn describe(&self) -> String {
        let what = format!("{} {}", self.vendor, self.model);
        let what = what.trim();
        let what = if what.is_empty() { "USB disk" } else { what };
        format!("{what} ({})", crate::http::backup_page::size(self.bytes))
    }
}

/// Where the kernel's and udev's views are: `/sys`, `/run/udev/data` and `/proc/self/mounts`
/// on the box, folders in tests.
#[derive(Debug, Clone)]
pub struct Sources {
    pub sys: PathBuf,
    pub udev_data: PathBuf,
    pub mounts: PathBuf,
}

impl Sources {
    pub fn system() -> Sources {
        Sources {
            sys: PathBuf::from("/sys"),
            udev_data: PathBuf::from("/run/udev/data"),
            mounts: PathBuf::from("/proc/self/mounts"),
        }
    }
}

fn read_trim(p: &Path) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// udev's properties of the block device `major:minor`.
fn udev_props(src: &Sources, dev: &str) -> Vec<(String, String)> {
    std::fs::read_to_string(src.udev_data.join(format!("b{dev}")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("E:"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The USB disks plugged in now, by name.
pub fn disks(src: &Sources) -> Vec<Disk> {
    let mounts = std::fs::read_to_string(&src.mounts).unwrap_or_default();
    let mounted_dev = |part: &str| {
        mounts
            .lines()
            .any(|l| l.split_whitespace().next() == Some(&format!("/dev/{part}")))
    };
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(src.sys.join("block")) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("sd") || !name[2..].bytes().all(|b| b.is_ascii_lowercase()) {
            continue;
        }
        let dir = src.sys.join("block").join(&name);
        let Ok(real) = std::fs::read_link(&dir) else {
            continue;
        };
        if !real
            .components()
            .any(|c| c.as_os_str().to_str().is_some_and(|s| s.starts_with("usb")))
        {
            continue;
        }
        let sectors: u64 = read_trim(&dir.join("size")).parse().unwrap_or(0);
        if sectors == 0 {
            continue; // a card reader without a card
        }
        // The disk and its partitions (`sda`, `sda1`, ...).
        let mut parts = vec![name.clone()];
        if let Ok(children) = std::fs::read_dir(&dir) {
            for c in children.flatten() {
                let n = c.file_name().to_string_lossy().into_owned();
                if n.starts_with(&name) && c.path().join("partition").exists() {
                    parts.push(n);
                }
            }
        }
        let mut prepared = false;
        let mut mounted = false;
        for p in &parts {
            let pdir = if *p == name { dir.clone() } else { dir.join(p) };
            let dev = read_trim(&pdir.join("dev"));
            prepared |= udev_props(src, &dev)
                .iter()
                .any(|(k, v)| k == "ID_FS_LABEL" && v == LABEL);
            mounted |= mounted_dev(p);
        }
        out.push(Disk {
            vendor: read_trim(&dir.join("device/vendor")),
            model: read_trim(&dir.join("device/model")),
            bytes: sectors * 512,
            prepared,
            mounted,
            name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The prepare request's text (`key=value` lines): the disk and the size the admin confirmed.
pub fn request_text(d: &Disk) -> String {
    format!("target=usb\ndisk={}\nbytes={}\n", d.name, d.bytes)
}

/// The request that makes the cooperative's store a target.
pub const COOPERATIVE_REQUEST: &str = "target=cooperative\n";

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `/sys`, `/run/udev/data` and mounts file as the kernel and udev lay them out.
    pub(crate) struct FakeSys {
        pub dir: tempfile::TempDir,
    }

    impl FakeSys {
        pub fn new() -> FakeSys {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("sys/block")).unwrap();
            std::fs::create_dir_all(dir.path().join("udev")).unwrap();
            std::fs::write(dir.path().join("mounts"), "/dev/mmcblk0p2 / ext4 rw 0 0\n").unwrap();
            FakeSys { dir }
        }

        pub fn sources(&self) -> Sources {
            Sources {
                sys: self.dir.path().join("sys"),
                udev_data: self.dir.path().join("udev"),
                mounts: self.dir.path().join("mounts"),
            }
        }

        /// A disk at `devpath` (under `sys/devices`), with partitions `(n, label)`.
        pub fn disk(
            &self,
            name: &str,
            devpath: &str,
            sectors: u64,
            model: &str,
            parts: &[(u32, &str)],
        ) {
            let root = self.dir.path().join("sys");
            // sd disks have 16 minors each: sda 8:0, sdb 8:16, ...
            let base = 16 * u32::from(name.as_bytes()[2] - b'a');
            let dev = root.join("devices").join(devpath).join("block").join(name);
            std::fs::create_dir_all(dev.join("device")).unwrap();
            std::fs::write(dev.join("size"), format!("{sectors}\n")).unwrap();
            std::fs::write(dev.join("dev"), format!("8:{base}\n")).unwrap();
            std::fs::write(dev.join("device/vendor"), "SanDisk \n").unwrap();
            std::fs::write(dev.join("device/model"), format!("{model}\n")).unwrap();
            for (n, label) in parts {
                let p = dev.join(format!("{name}{n}"));
                std::fs::create_dir_all(&p).unwrap();
                std::fs::write(p.join("partition"), format!("{n}\n")).unwrap();
                std::fs::write(p.join("dev"), format!("8:{}\n", base + n)).unwrap();
                std::fs::write(
                    self.dir.path().join(format!("udev/b8:{}", base + n)),
                    format!("S:disk/by-label/{label}\nE:ID_FS_LABEL={label}\nE:ID_FS_TYPE=ext4\n"),
                )
                .unwrap();
            }
            let rel = PathBuf::from("../devices")
                .join(devpath)
                .join("block")
                .join(name);
            std::os::unix::fs::symlink(rel, root.join("block").join(name)).unwrap();
        }
    }

    const USB: &str = "platform/scb/fd500000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0/usb2/2-2/2-2:1.0/host0/target0:0:0/0:0:0:0";

    #[test]
    fn usb_disks_are_found_with_what_is_on_them_and_others_are_not() {
        let f = FakeSys::new();
        f.disk("sda", USB, 62_521_344, "Ultra", &[(1, "HEARTH-BKP")]);
        f.disk(
            "sdb",
            &USB.replace("2-2", "2-3"),
            1_953_525_168,
            "Elements",
            &[(1, "FOTOS")],
        );
        // A SATA disk (not USB), a card reader without a card.
        f.disk(
            "sdc",
            "platform/ahci/ata1/host1/target1:0:0/1:0:0:0",
            1000,
            "SSD",
            &[],
        );
        f.disk("sdd", &USB.replace("2-2", "2-4"), 0, "Reader", &[]);
        let found = disks(&f.sources());
        assert_eq!(
            found.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["sda", "sdb"]
        );
        assert!(found[0].prepared && !found[1].prepared);
        assert_eq!(found[0].bytes, 62_521_344 * 512);
        assert_eq!(found[0].describe(), "SanDisk Ultra (32.0 GB)");
        assert!(!found[0].mounted);
        std::fs::write(
            f.dir.path().join("mounts"),
            "/dev/sdb1 /media/fotos vfat rw 0 0\n",
        )
        .unwrap();
        assert!(disks(&f.sources())[1].mounted);
        assert_eq!(
            request_text(&found[0]),
            "target=usb\ndisk=sda\nbytes=32010928128\n"
        );
    }

    #[test]
    fn no_sysfs_no_disks() {
        let src = Sources {
            sys: PathBuf::from("/nonexistent"),
            udev_data: PathBuf::from("/nonexistent"),
            mounts: PathBuf::from("/nonexistent"),
        };
        assert!(disks(&src).is_empty());
    }
}
