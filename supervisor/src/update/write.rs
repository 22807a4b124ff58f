//! Writing a release into the other slot, straight from the download: the compressed stream is
//! decompressed, hashed and written as it arrives, so the card takes each byte once and holds no
//! copy of the bundle. What is written is checked against the signed manifest (size, SHA-256)
//! before anything points at it; a slot whose check fails is spoiled (its first MiB zeroed) so
//! nothing mistakes it for a release.

use super::manifest::Payload;
use super::slots::Slot;
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Files on a firmware partition that belong to the card, not to a release: the boot selector,
/// the family's settings and the setup code's note. An update never deletes or replaces them.
pub const FIRMWARE_KEEP: &[&str] = &["autoboot.txt", "hearth.txt", "hearth-setup.txt"];

const CHUNK: usize = 1 << 20;

#[derive(Debug)]
pub enum WriteError {
    /// Reading the bundle (the download, the USB stick) or decompressing it.
    Source(io::Error),
    /// Writing the slot.
    Target(PathBuf, io::Error),
    /// The slot is smaller than the release.
    TooSmall {
        target: PathBuf,
        have: u64,
        need: u64,
    },
    /// The release is not what the signed manifest says.
    Size { file: String, want: u64, got: u64 },
    Hash {
        file: String,
        want: String,
        got: String,
    },
    /// A tool (mkfs.vfat, mtools, e2label) failed: its name and what it said.
    Tool(String, String),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Source(e) => write!(f, "reading the release: {e}"),
            Self::Target(p, e) => write!(f, "writing {}: {e}", p.display()),
            Self::TooSmall { target, have, need } => write!(
                f,
                "{} holds {have} bytes; the release needs {need}",
                target.display()
            ),
            Self::Size { file, want, got } => write!(
                f,
                "{file}: {got} bytes after decompressing, the signed manifest says {want}"
            ),
            Self::Hash { file, want, got } => {
                write!(f, "{file}: SHA-256 {got}, the signed manifest says {want}")
            }
            Self::Tool(tool, said) => write!(f, "{tool} failed: {said}"),
        }
    }
}

impl std::error::Error for WriteError {}

/// A reader that hashes and counts what passes through it, and refuses to give more than
/// `limit` bytes (a stream longer than the manifest says stops there, not at the slot's end).
struct Checked<R> {
    inner: R,
    hash: Sha256,
    count: u64,
    limit: u64,
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("longer than the {} bytes the manifest says", self.limit),
            ));
        }
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

impl<R> Checked<R> {
    fn new(inner: R, payload: &Payload) -> Self {
        Checked {
            inner,
            hash: Sha256::new(),
            count: 0,
            limit: payload.size,
        }
    }
    fn finish(self, payload: &Payload) -> Result<(), WriteError> {
        if self.count != payload.size {
            return Err(WriteError::Size {
                file: payload.file.clone(),
                want: payload.size,
                got: self.count,
            });
        }
        let got = hex::encode(self.hash.finalize());
        if got != payload.sha256 {
            return Err(WriteError::Hash {
                file: payload.file.clone(),
                want: payload.sha256.clone(),
                got,
            });
        }
        Ok(())
    }
}

fn decoder<R: Read>(
    source: R,
) -> Result<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>, WriteError> {
    ruzstd::decoding::StreamingDecoder::new(source).map_err(|e| {
        WriteError::Source(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not zstd: {e}"),
        ))
    })
}

/// Decompresses `source` (zstd) onto `target` (the other slot's root partition) from its first
/// byte, checks size and hash, and syncs. Returns the bytes written. On any error after writing
/// began, the target's first MiB is zeroed.
pub fn write_image(source: impl Read, target: &Path, payload: &Payload) -> Result<u64, WriteError> {
    let terr = |e| WriteError::Target(target.to_path_buf(), e);
    let mut out = OpenOptions::new().write(true).open(target).map_err(terr)?;
    let have = out.seek(SeekFrom::End(0)).map_err(terr)?;
    if have < payload.size {
        return Err(WriteError::TooSmall {
            target: target.to_path_buf(),
            have,
            need: payload.size,
        });
    }
    out.seek(SeekFrom::Start(0)).map_err(terr)?;
    let result = (|| {
        let mut input = Checked::new(decoder(source)?, payload);
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(WriteError::Source(e)),
            };
            out.write_all(&buf[..n]).map_err(terr)?;
        }
        out.sync_data().map_err(terr)?;
        let written = input.count;
        input.finish(payload)?;
        Ok(written)
    })();
    if result.is_err() {
        spoil(&mut out);
    }
    result
}

/// Zeroes the first MiB (the file system's superblock) of a slot that holds no release.
fn spoil(out: &mut File) {
    let zeros = vec![0u8; CHUNK];
    let _ = out
        .seek(SeekFrom::Start(0))
        .and_then(|_| out.write_all(&zeros))
        .and_then(|_| out.sync_data());
}

/// Unpacks the firmware payload (zstd-compressed tar) into `dir` (on tmpfs), checking size and
/// hash over the whole stream. Returns the decompressed size.
pub fn unpack_firmware(
    source: impl Read,
    dir: &Path,
    payload: &Payload,
) -> Result<u64, WriteError> {
    let mut input = Checked::new(decoder(source)?, payload);
    let result = (|| {
        let mut archive = tar::Archive::new(&mut input);
        archive.set_preserve_permissions(false);
        archive.set_overwrite(true);
        archive.unpack(dir).map_err(WriteError::Source)?;
        // tar stops at its end marker; the hash covers the padding behind it too.
        io::copy(&mut input, &mut io::sink()).map_err(WriteError::Source)?;
        Ok(())
    })();
    let size = input.count;
    result.and_then(|()| input.finish(payload))?;
    Ok(size)
}

fn run(cmd: &mut Command) -> Result<String, WriteError> {
    let name = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .map_err(|e| WriteError::Tool(name.clone(), e.to_string()))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(WriteError::Tool(name, said));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Lays the unpacked firmware files in `dir` onto `partition`, the firmware partition of
/// `slot`, without mounting it (mtools: the same on the box and in tests). A partition that is
/// no FAT yet (slot B before its first update) is formatted; on partition 1 the files in
/// [`FIRMWARE_KEEP`] stay as they are, `autoboot.txt` above all. `cmdline.txt` is pointed at the
/// slot's root. Returns the bytes copied.
pub fn install_firmware(dir: &Path, partition: &Path, slot: Slot) -> Result<u64, WriteError> {
    let cmdline = dir.join("cmdline.txt");
    let text =
        std::fs::read_to_string(&cmdline).map_err(|e| WriteError::Target(cmdline.clone(), e))?;
    let pointed: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            if w.starts_with("root=") {
                format!("root=LABEL={}", slot.root_label())
            } else {
                w.to_string()
            }
        })
        .collect();
    if !pointed.iter().any(|w| w.starts_with("root=")) {
        return Err(WriteError::Tool(
            "cmdline.txt".into(),
            "the release's cmdline.txt has no root=".into(),
        ));
    }
    std::fs::write(&cmdline, format!("{}\n", pointed.join(" ")))
        .map_err(|e| WriteError::Target(cmdline.clone(), e))?;

    let part = partition.as_os_str();
    let is_fat = run(Command::new("mdir")
        .arg("-b")
        .arg("-i")
        .arg(part)
        .arg("::/"))
    .ok();
    let listing = match is_fat {
        Some(l) => l,
        None => {
            run(Command::new("mkfs.vfat")
                .args(["-F", "32", "-n", slot.firmware_label()])
                .arg(part))?;
            String::new()
        }
    };
    for entry in listing.lines() {
        let Some(name) = entry.strip_prefix("::/") else {
            continue;
        };
        let bare = name.trim_end_matches('/');
        if bare.is_empty() || FIRMWARE_KEEP.contains(&bare.to_ascii_lowercase().as_str()) {
            continue;
        }
        let tool = if name.ends_with('/') {
            "mdeltree"
        } else {
            "mdel"
        };
        run(Command::new(tool)
            .arg("-i")
            .arg(part)
            .arg(format!("::/{bare}")))?;
    }
    let mut copy = Command::new("mcopy");
    copy.args(["-s", "-m", "-o", "-i"]).arg(part);
    let mut bytes = 0u64;
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| WriteError::Target(dir.to_path_buf(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            !FIRMWARE_KEEP.contains(&n.as_str())
        })
        .collect();
    names.sort();
    for p in &names {
        bytes += du(p);
        copy.arg(p);
    }
    copy.arg("::/");
    run(&mut copy)?;
    Ok(bytes)
}

fn du(p: &Path) -> u64 {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| du(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// Gives the root file system just written its slot's label (`e2label`).
pub fn label_root(partition: &Path, slot: Slot) -> Result<(), WriteError> {
    run(Command::new("e2label")
        .arg(partition)
        .arg(slot.root_label()))
    .map(|_| ())
}

/// Rewrites `autoboot.txt` on partition 1 (mtools, no mount): the default slot and the slot to
/// try. The file is written whole; the firmware reads it at the next power-on.
pub fn write_autoboot(partition1: &Path, default: Slot, scratch: &Path) -> Result<(), WriteError> {
    let tmp = scratch.join("autoboot.txt");
    std::fs::write(&tmp, super::slots::Autoboot::render(default))
        .map_err(|e| WriteError::Target(tmp.clone(), e))?;
    run(Command::new("mcopy")
        .args(["-o", "-i"])
        .arg(partition1)
        .arg(&tmp)
        .arg("::/autoboot.txt"))
    .map(|_| ())
}

/// Reads `autoboot.txt` from partition 1; a card without one boots slot A.
pub fn read_autoboot(partition1: &Path) -> Result<super::slots::Autoboot, String> {
    let out = Command::new("mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(partition1)
        .arg("::/autoboot.txt")
        .output()
        .map_err(|e| format!("mtype: {e}"))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        if said.contains("not found") {
            return Ok(super::slots::Autoboot::ABSENT);
        }
        return Err(format!(
            "{}: autoboot.txt: {}",
            partition1.display(),
            said.trim()
        ));
    }
    super::slots::Autoboot::parse(&String::from_utf8_lossy(&out.stdout))
}
