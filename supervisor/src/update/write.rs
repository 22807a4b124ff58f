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

/// The image's first bytes, held back until the rest is on the card and checked: they hold the
/// ext4 primary superblock (bytes 1024..2048), and with it the file system's label.
const HEAD: u64 = 4096;

/// Decompresses `source` (zstd) onto `target` (the other slot's root partition) from its first
/// byte, checks size and hash, and syncs. Of the image, only the ranges `payload.used` names are
/// written (all of it when it names none); the whole stream is hashed. Returns the bytes
/// written. On any error after writing began, the target's first MiB is zeroed.
///
/// Until the very end the slot holds no file system a boot could find: its first [`HEAD`] bytes
/// are zeroed before anything else and the image's own are written last, after the hash
/// checked out, with `label` (the slot's: `RASPIROOT_B`) already in the superblock. A release's
/// image carries the label `RASPIROOT`; written in stream order, a power cut part-way left two
/// partitions labelled `RASPIROOT`, and the old slot's initramfs could mount the half-written
/// one as its root (found by the image test's power cut).
pub fn write_image(
    source: impl Read,
    target: &Path,
    payload: &Payload,
    label: Option<&str>,
) -> Result<u64, WriteError> {
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
        let mut head = vec![0u8; HEAD.min(payload.size) as usize];
        out.write_all_at(&head, 0).map_err(terr)?;
        out.sync_data().map_err(terr)?;
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
                let (mut from, to) = (offset.max(at), (offset + length).min(end));
                if from < to && from < HEAD {
                    // The head is kept for the end.
                    let upto = to.min(HEAD);
                    head[from as usize..upto as usize]
                        .copy_from_slice(&buf[(from - at) as usize..(upto - at) as usize]);
                    written += upto - from;
                    from = upto;
                }
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
        if let Some(label) = label {
            set_ext4_label(&mut head, label)
                .map_err(|e| WriteError::Source(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        }
        out.write_all_at(&head, 0).map_err(terr)?;
        out.sync_data().map_err(terr)?;
        Ok(written)
    })();
    if result.is_err() {
        spoil(&mut out);
    }
    result
}

/// Sets the volume label in the ext4 primary superblock held in `head` (the image's first
/// bytes), and its checksum when the file system has `metadata_csum` (crc32c over the bytes
/// before it, seeded with ~0 and not inverted: e2fsprogs' `ext2fs_superblock_csum`). The backup
/// superblocks keep the release's label; `e2label` afterwards ([`label_root`]) aligns them.
fn set_ext4_label(head: &mut [u8], label: &str) -> Result<(), String> {
    const MAGIC: usize = 0x38;
    const RO_COMPAT: usize = 0x64;
    const VOLUME_NAME: usize = 0x78;
    const CHECKSUM: usize = 0x3fc;
    const METADATA_CSUM: u32 = 0x400;
    let sb = head
        .get_mut(1024..2048)
        .ok_or("the root image is too small for an ext4 superblock")?;
    if sb[MAGIC..MAGIC + 2] != 0xef53u16.to_le_bytes() {
        return Err("the root image has no ext4 superblock at byte 1024".into());
    }
    let name = label.as_bytes();
    if name.len() > 16 {
        return Err(format!("the label {label} is longer than ext4's 16 bytes"));
    }
    sb[VOLUME_NAME..VOLUME_NAME + 16].fill(0);
    sb[VOLUME_NAME..VOLUME_NAME + name.len()].copy_from_slice(name);
    let ro_compat = u32::from_le_bytes([
        sb[RO_COMPAT],
        sb[RO_COMPAT + 1],
        sb[RO_COMPAT + 2],
        sb[RO_COMPAT + 3],
    ]);
    if ro_compat & METADATA_CSUM != 0 {
        let sum = !crc32c::crc32c(&sb[..CHECKSUM]);
        sb[CHECKSUM..].copy_from_slice(&sum.to_le_bytes());
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::fs;
    use std::process::Stdio;
    use std::rc::Rc;

    /// Byte 1024+0x38 of the partition: ext4's magic, what blkid (and so the initramfs's
    /// `root=LABEL=`) looks for.
    fn holds_ext4(part: &Path) -> bool {
        let mut magic = [0u8; 2];
        File::open(part)
            .unwrap()
            .read_exact_at(&mut magic, 1024 + 0x38)
            .unwrap();
        magic == 0xef53u16.to_le_bytes()
    }

    fn label_of(part: &Path) -> String {
        let out = Command::new("blkid")
            .args(["-p", "-s", "LABEL", "-o", "value"])
            .arg(part)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `bytes` compressed by the zstd tool, and the manifest's entry for them as a root image.
    fn root_payload(bytes: &[u8]) -> (Vec<u8>, Payload) {
        let mut zstd = Command::new("zstd")
            .args(["-q", "-c", "-3"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = zstd.stdin.take().unwrap();
        let data = bytes.to_vec();
        let feed = std::thread::spawn(move || io::Write::write_all(&mut stdin, &data));
        let zst = zstd.wait_with_output().unwrap().stdout;
        feed.join().unwrap().unwrap();
        let payload = Payload {
            file: "root.ext4.zst".into(),
            download_size: zst.len() as u64,
            size: bytes.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(bytes)),
            used: None,
        };
        (zst, payload)
    }

    /// Reads `inner`, and after each read checks the slot as a power cut would leave it.
    struct Watch<R> {
        inner: R,
        part: PathBuf,
        reads: Rc<Cell<u32>>,
    }

    impl<R: Read> Read for Watch<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            assert!(
                !holds_ext4(&self.part),
                "read {}: the half-written slot already holds an ext4 superblock",
                self.reads.get()
            );
            self.reads.set(self.reads.get() + 1);
            let n = buf.len().min(512);
            self.inner.read(&mut buf[..n])
        }
    }

    #[test]
    fn a_power_cut_at_any_point_leaves_no_file_system_the_old_slot_could_boot_by_mistake() {
        let dir = tempfile::tempdir().unwrap();
        // The release's root, labelled as every release is: RASPIROOT.
        let image = dir.path().join("root.ext4");
        File::create(&image).unwrap().set_len(8 << 20).unwrap();
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "RASPIROOT"])
            .arg(&image)
            .status()
            .unwrap();
        assert!(mkfs.success());
        let bytes = fs::read(&image).unwrap();
        let (zst, payload) = root_payload(&bytes);
        // Slot B still holds an older release (slot B's label), as before any later update.
        let part = dir.path().join("p3");
        fs::copy(&image, &part).unwrap();
        assert!(holds_ext4(&part));

        let reads = Rc::new(Cell::new(0));
        // Small reads (512 bytes): the stream arrives in many pieces, each a moment a plug
        // could be pulled.
        let source = Watch {
            inner: &zst[..],
            part: part.clone(),
            reads: reads.clone(),
        };
        let n = write_image(source, &part, &payload, Some("RASPIROOT_B")).unwrap();
        assert!(reads.get() > 10, "only {} reads", reads.get());
        assert_eq!(n, bytes.len() as u64);
        // Only at the end: the file system, with slot B's label, clean (the checksum matches).
        assert_eq!(label_of(&part), "RASPIROOT_B");
        let fsck = Command::new("e2fsck")
            .arg("-fn")
            .arg(&part)
            .output()
            .unwrap();
        assert!(
            fsck.status.success(),
            "{}",
            String::from_utf8_lossy(&fsck.stdout)
        );
        // Everything but the label is the release's.
        let written = fs::read(&part).unwrap();
        let label = 1024 + 0x78..1024 + 0x88;
        let sum = 1024 + 0x3fc..2048;
        assert_eq!(written[..label.start], bytes[..label.start]);
        assert_eq!(written[label.end..sum.start], bytes[label.end..sum.start]);
        assert_eq!(written[2048..], bytes[2048..]);
    }

    #[test]
    fn a_root_image_without_ext4_is_refused_and_the_slot_left_empty() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = vec![7u8; 64 << 10];
        let (zst, payload) = root_payload(&bytes);
        let part = dir.path().join("p3");
        fs::write(&part, vec![0xa5u8; 1 << 20]).unwrap();
        let err = write_image(&zst[..], &part, &payload, Some("RASPIROOT_B")).unwrap_err();
        assert!(err.to_string().contains("no ext4 superblock"), "{err}");
        assert!(fs::read(&part).unwrap()[..1 << 20].iter().all(|&b| b == 0));
    }
}
