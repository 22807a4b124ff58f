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
use std::os::unix::fs::FileExt;
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
/// byte, checks size and hash, and syncs. Of the image, only the ranges `payload.used` names are
/// written (all of it when it names none); the whole stream is hashed. Returns the bytes
/// written. On any error after writing began, the target's first MiB is zeroed.
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
        let whole = [[0, payload.size]];
        let mut used = payload.used.as_deref().unwrap_or(&whole).iter().peekable();
        let (mut at, mut written) = (0u64, 0u64);
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(WriteError::Source(e)),
            };
            let end = at + n as u64;
            // The parts of [at, end) the file system uses; ranges wholly behind are done.
            while let Some(&&[offset, length]) = used.peek() {
                let (from, to) = (offset.max(at), (offset + length).min(end));
                if from < to {
                    let chunk = &buf[(from - at) as usize..(to - at) as usize];
                    out.write_all_at(chunk, from).map_err(terr)?;
                    written += chunk.len() as u64;
                }
                if offset + length > end {
                    break;
                }
                used.next();
            }
            at = end;
        }
        out.sync_data().map_err(terr)?;
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

/// Lays the firmware payload (a zstd-compressed tar) onto `partition`, the firmware partition
/// of `slot`, without mounting it (mtools: the same on the box and in tests), one file at a time
/// through `scratch` (tmpfs): only the largest file, the kernel (about 38 MB), is there at once —
/// a 1 GB Pi's `/run` holds about 100 MB, less than the whole payload. Size and hash are checked
/// over the whole stream; the files are laid before the hash is known to be right, which is safe
/// because the slot is tried only after everything checked out (`autoboot.txt` is armed last) and
/// a payload that does not check out fails the update. A partition that is no FAT yet (slot B
/// before its first update) is formatted; on partition 1 the files in [`FIRMWARE_KEEP`] stay as
/// they are, `autoboot.txt` above all. `cmdline.txt` is pointed at the slot's root. Returns the
/// bytes decompressed and the bytes laid on the partition.
pub fn write_firmware(
    source: impl Read,
    partition: &Path,
    slot: Slot,
    payload: &Payload,
    scratch: &Path,
) -> Result<(u64, u64), WriteError> {
    std::fs::create_dir_all(scratch).map_err(|e| WriteError::Target(scratch.to_path_buf(), e))?;
    clear_firmware(partition, slot)?;
    let mut input = Checked::new(decoder(source)?, payload);
    let tmp = scratch.join("firmware-file");
    let result = (|| {
        let mut laid = 0u64;
        let mut cmdline = false;
        let mut made = std::collections::HashSet::new();
        let mut archive = tar::Archive::new(&mut input);
        for entry in archive.entries().map_err(WriteError::Source)? {
            let mut entry = entry.map_err(WriteError::Source)?;
            let path = entry.path().map_err(WriteError::Source)?.into_owned();
            let name = path
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("/");
            if name.is_empty() || FIRMWARE_KEEP.contains(&name.to_ascii_lowercase().as_str()) {
                continue;
            }
            let kind = entry.header().entry_type();
            // Folders, whether the tar lists them or only files in them.
            let parents: Vec<&str> = name.match_indices('/').map(|(i, _)| &name[..i]).collect();
            for dir in parents
                .into_iter()
                .chain(kind.is_dir().then_some(name.as_str()))
            {
                if made.insert(dir.to_string()) {
                    run(Command::new("mmd")
                        .args(["-D", "s", "-i"])
                        .arg(partition)
                        .arg(format!("::/{dir}")))?;
                }
            }
            if kind.is_dir() {
                continue;
            }
            if !kind.is_file() {
                return Err(WriteError::Tool(
                    "firmware".into(),
                    format!("{name}: neither a file nor a folder in the release's firmware"),
                ));
            }
            let mut bytes = Vec::new();
            if name == "cmdline.txt" {
                entry.read_to_end(&mut bytes).map_err(WriteError::Source)?;
                bytes = point_cmdline(&String::from_utf8_lossy(&bytes), slot)?.into_bytes();
                cmdline = true;
                std::fs::write(&tmp, &bytes).map_err(|e| WriteError::Target(tmp.clone(), e))?;
                laid += bytes.len() as u64;
            } else {
                let mut f = File::create(&tmp).map_err(|e| WriteError::Target(tmp.clone(), e))?;
                laid += io::copy(&mut entry, &mut f).map_err(WriteError::Source)?;
            }
            let copied = run(Command::new("mcopy")
                .args(["-o", "-i"])
                .arg(partition)
                .arg(&tmp)
                .arg(format!("::/{name}")));
            let _ = std::fs::remove_file(&tmp);
            copied?;
        }
        if !cmdline {
            return Err(WriteError::Tool(
                "cmdline.txt".into(),
                "the release's firmware has no cmdline.txt".into(),
            ));
        }
        // tar stops at its end marker; the hash covers the padding behind it too.
        io::copy(&mut input, &mut io::sink()).map_err(WriteError::Source)?;
        Ok(laid)
    })();
    let _ = std::fs::remove_file(&tmp);
    let size = input.count;
    let laid = result?;
    input.finish(payload)?;
    Ok((size, laid))
}

/// The release's `cmdline.txt` with `root=` naming the slot's root label.
fn point_cmdline(text: &str, slot: Slot) -> Result<String, WriteError> {
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
    Ok(format!("{}\n", pointed.join(" ")))
}

/// The slot's firmware partition made ready for a release's files: formatted when it is no FAT
/// yet, emptied of everything but [`FIRMWARE_KEEP`] otherwise.
fn clear_firmware(partition: &Path, slot: Slot) -> Result<(), WriteError> {
    let part = partition.as_os_str();
    let listing = match run(Command::new("mdir")
        .arg("-b")
        .arg("-i")
        .arg(part)
        .arg("::/"))
    {
        Ok(l) => l,
        Err(_) => {
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
    Ok(())
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
