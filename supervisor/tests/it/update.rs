//! Updates (issue 18), as `hearth-supervisor update write` meets a card: real file systems
//! (ext4 made by mkfs.ext4, FAT by mkfs.vfat, read back with e2label and mtools) in files that
//! stand in for the card's partitions, a release signed with minisign, served from a folder (a
//! USB stick) or over HTTP on loopback. What a user needs to hold: a good release lands in the
//! other slot and only arms the trial; anything unsigned, mis-signed, corrupt, old or arriving
//! while another update is pending writes nothing that could boot.

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

const MIB: u64 = 1 << 20;

fn sh(cmd: &mut Command) -> String {
    let out = cmd
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .expect("tool runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha(p: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(p).unwrap()))
}

fn zstd(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("zstd")
        .args(["-q", "-c", "-3"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("zstd");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let w = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data));
    let out = child.wait_with_output().unwrap();
    w.join().unwrap().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// A card: partitions 1 (FAT, slot A's firmware and the family's hearth.txt), 2 (ext4 slot A),
/// 3 and 5 (empty, as first boot leaves them).
struct Card {
    dir: PathBuf,
}

impl Card {
    fn new(dir: &Path) -> Card {
        let card = Card {
            dir: dir.join("card"),
        };
        fs::create_dir_all(&card.dir).unwrap();
        for (n, size) in [(1, 64), (2, 24), (3, 24), (5, 64)] {
            let f = fs::File::create(card.p(n)).unwrap();
            f.set_len(size * MIB).unwrap();
        }
        sh(Command::new("mkfs.vfat")
            .args(["-F", "32", "-n", "RASPIFIRM"])
            .arg(card.p(1)));
        let old = dir.join("old-firmware");
        fs::create_dir_all(old.join("overlays")).unwrap();
        fs::write(old.join("vmlinuz-6.12.0-old"), "old kernel").unwrap();
        fs::write(old.join("overlays/old.dtbo"), "old overlay").unwrap();
        fs::write(
            old.join("cmdline.txt"),
            "console=tty1 root=LABEL=RASPIROOT rw\n",
        )
        .unwrap();
        fs::write(old.join("hearth.txt"), "server_name = family.example\n").unwrap();
        sh(Command::new("mcopy")
            .args(["-s", "-i"])
            .arg(card.p(1))
            .arg(old.join("vmlinuz-6.12.0-old"))
            .arg(old.join("overlays"))
            .arg(old.join("cmdline.txt"))
            .arg(old.join("hearth.txt"))
            .arg("::/"));
        let root = dir.join("old-root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/hearth-version"), "0.1.0\n").unwrap();
        sh(Command::new("mkfs.ext4")
            .args(["-q", "-L", "RASPIROOT", "-d"])
            .arg(&root)
            .arg(card.p(2)));
        card
    }
    fn p(&self, n: u8) -> PathBuf {
        self.dir.join(format!("p{n}"))
    }
    fn template(&self) -> String {
        format!("{}/p{{}}", self.dir.display())
    }
    fn fat(&self, n: u8, file: &str) -> Option<String> {
        let out = Command::new("mtype")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(self.p(n))
            .arg(format!("::/{file}"))
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
    fn listing(&self, n: u8) -> Vec<String> {
        let out = sh(Command::new("mdir")
            .args(["-b", "-i"])
            .arg(self.p(n))
            .arg("::/"));
        let mut v: Vec<String> = out
            .lines()
            .map(|l| l.trim_start_matches("::/").to_string())
            .collect();
        v.sort();
        v
    }
    fn label(&self, n: u8) -> String {
        sh(Command::new("e2label").arg(self.p(n)))
            .trim()
            .to_string()
    }
    fn hashes(&self) -> Vec<String> {
        [1, 2, 3, 5].iter().map(|n| sha(&self.p(*n))).collect()
    }
}

/// A release: a root file system, firmware files, the manifest, signed with `keys`.
struct Release {
    dir: PathBuf,
    root_size: u64,
}

struct Keys {
    pk_text: String,
    pk: minisign::PublicKey,
    sk: minisign::SecretKey,
}

fn keys() -> Keys {
    let minisign::KeyPair { pk, sk } = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    Keys {
        pk_text: pk.to_box().unwrap().into_string(),
        pk,
        sk,
    }
}

fn release(dir: &Path, version: &str, keys: &Keys) -> Release {
    let out = dir.join(format!("release-{version}"));
    fs::create_dir_all(&out).unwrap();
    // The root: an ext4 image as the image build makes it (label RASPIROOT, the slot's size or less).
    let tree = dir.join(format!("tree-{version}"));
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/hearth-version"), format!("{version}\n")).unwrap();
    // Incompressible, so that the download has a size worth limiting (about 400 kB).
    let noise: Vec<u8> = (0..400_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 ^ version.len() as u8)
        .collect();
    fs::write(tree.join("etc/noise"), noise).unwrap();
    let img = dir.join(format!("root-{version}.ext4"));
    let f = fs::File::create(&img).unwrap();
    f.set_len(20 * MIB).unwrap();
    sh(Command::new("mkfs.ext4")
        .args(["-q", "-L", "RASPIROOT", "-d"])
        .arg(&tree)
        .arg(&img));
    let root = fs::read(&img).unwrap();
    let root_z = zstd(&root);
    fs::write(out.join("root.ext4.zst"), &root_z).unwrap();
    // The firmware: what raspi-firmware's hooks write, as a tar.
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, data).unwrap();
    };
    add(
        &format!("vmlinuz-{version}"),
        format!("kernel {version}").as_bytes(),
    );
    add("config.txt", b"dtparam=i2c_arm=on\n");
    add(
        "cmdline.txt",
        b"console=tty1 root=LABEL=RASPIROOT rw fsck.repair=yes\n",
    );
    add("overlays/new.dtbo", b"new overlay");
    let fw = tar.into_inner().unwrap();
    let fw_z = zstd(&fw);
    fs::write(out.join("firmware.tar.zst"), &fw_z).unwrap();
    let manifest = serde_json::json!({
        "format": 1,
        "version": version,
        "released": "2026-12-07",
        "notes": {"en": format!("hearth {version}"), "de": format!("hearth {version}")},
        "root": {"file": "root.ext4.zst", "download_size": root_z.len(), "size": root.len(),
                 "sha256": hex::encode(Sha256::digest(&root))},
        "firmware": {"file": "firmware.tar.zst", "download_size": fw_z.len(), "size": fw.len(),
                     "sha256": hex::encode(Sha256::digest(&fw))},
    });
    let bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    sign(&out, &bytes, keys);
    Release {
        dir: out,
        root_size: root.len() as u64,
    }
}

/// Most tests' start: a scratch folder, a signing key, a card, and release 0.2.0.
fn setup() -> (tempfile::TempDir, Keys, Card, Release) {
    let tmp = tempfile::tempdir().unwrap();
    let keys = keys();
    let card = Card::new(tmp.path());
    let rel = release(tmp.path(), "0.2.0", &keys);
    (tmp, keys, card, rel)
}

fn sign(out: &Path, bytes: &[u8], keys: &Keys) {
    fs::write(out.join("manifest.json"), bytes).unwrap();
    let sig = minisign::sign(
        Some(&keys.pk),
        &keys.sk,
        Cursor::new(bytes),
        Some("hearth release"),
        None,
    )
    .unwrap();
    fs::write(out.join("manifest.json.minisig"), sig.into_string()).unwrap();
}

struct Run {
    out: Output,
}

impl Run {
    fn ok(&self) -> serde_json::Value {
        assert!(
            self.out.status.success(),
            "update write failed: {}",
            self.err()
        );
        serde_json::from_slice(&self.out.stdout).expect("JSON on stdout")
    }
    fn err(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    fn refused(&self, why: &str) {
        assert!(
            !self.out.status.success(),
            "update write succeeded; expected: {why}"
        );
        assert!(
            self.err().contains(why),
            "expected '{why}' in: {}",
            self.err()
        );
        assert_eq!(
            self.err().trim().lines().count(),
            1,
            "one line: {}",
            self.err()
        );
    }
}

fn write(dir: &Path, card: &Card, from: &str, key: &str, slot_root: &str, extra: &[&str]) -> Run {
    let keyfile = dir.join("update.pub");
    fs::write(&keyfile, key).unwrap();
    let cmdline = dir.join("cmdline");
    fs::write(
        &cmdline,
        format!("console=tty1 root=LABEL={slot_root} rw\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hearth-supervisor"))
        .args([
            "update",
            "write",
            "--from",
            from,
            "--disk",
            &card.template(),
            "--running-version",
            "0.1.0",
        ])
        .arg("--key")
        .arg(&keyfile)
        .arg("--cmdline")
        .arg(&cmdline)
        .arg("--scratch")
        .arg(dir.join("scratch"))
        .args(extra)
        .output()
        .unwrap();
    Run { out }
}

fn slot_b_holds(card: &Card, version: &str) {
    // The root slot: a clean ext4 labelled for slot B, holding the release's files. (Byte for
    // byte it is the release but for the label and e2label's write time in the superblocks.)
    assert_eq!(card.label(3), "RASPIROOT_B");
    sh(Command::new("e2fsck").arg("-fn").arg(card.p(3)));
    let cat = |f: &str| {
        let out = Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat {f}"))
            .arg(card.p(3))
            .output()
            .unwrap();
        out.stdout
    };
    assert_eq!(
        cat("/etc/hearth-version"),
        format!("{version}\n").into_bytes()
    );
    assert_eq!(cat("/etc/noise").len(), 400_000);
    // The firmware slot: a FAT labelled for B, the release's files, cmdline.txt pointing at B.
    let label = sh(Command::new("mlabel")
        .args(["-s", "-i"])
        .arg(card.p(5))
        .arg("::"));
    assert!(label.contains("RASPIFIRM_B"), "{label}");
    assert_eq!(
        card.fat(5, &format!("vmlinuz-{version}")).as_deref(),
        Some(format!("kernel {version}").as_str())
    );
    assert_eq!(
        card.fat(5, "overlays/new.dtbo").as_deref(),
        Some("new overlay")
    );
    assert_eq!(
        card.fat(5, "cmdline.txt").as_deref(),
        Some("console=tty1 root=LABEL=RASPIROOT_B rw fsck.repair=yes\n")
    );
}

#[test]
fn a_signed_release_from_a_usb_stick_lands_in_slot_b_and_only_arms_the_trial() {
    let (tmp, keys, card, rel) = setup();
    let dir = tmp.path();
    let slot_a = (sha(&card.p(2)), card.fat(1, "vmlinuz-6.12.0-old"));

    let w = write(
        dir,
        &card,
        &rel.dir.to_string_lossy(),
        &keys.pk_text,
        "RASPIROOT",
        &[],
    )
    .ok();
    assert_eq!(w["version"], "0.2.0");
    assert_eq!(w["slot"], "B");
    let card_bytes = w["card_bytes"].as_u64().unwrap();
    assert!(
        card_bytes >= rel.root_size && card_bytes < rel.root_size + MIB,
        "{w}"
    );
    slot_b_holds(&card, "0.2.0");
    // Slot A untouched; autoboot.txt boots A by default and tries B once.
    assert_eq!((sha(&card.p(2)), card.fat(1, "vmlinuz-6.12.0-old")), slot_a);
    let autoboot = card
        .fat(1, "autoboot.txt")
        .expect("autoboot.txt on partition 1");
    assert!(
        autoboot.contains("[all]\ntryboot_a_b=1\nboot_partition=1\n[tryboot]\nboot_partition=5\n"),
        "{autoboot}"
    );
    assert_eq!(
        card.fat(1, "hearth.txt").as_deref(),
        Some("server_name = family.example\n")
    );

    // The same release again: a trial is armed, but autoboot's default is still the running
    // slot, so it is written again (a retry after a failed attempt); an older one is refused.
    let old = release(dir, "0.0.9", &keys);
    let before = card.hashes();
    write(
        dir,
        &card,
        &old.dir.to_string_lossy(),
        &keys.pk_text,
        "RASPIROOT",
        &[],
    )
    .refused("release 0.0.9 is not newer than 0.1.0");
    assert_eq!(card.hashes(), before, "a refused release changed the card");
}

#[test]
fn the_next_update_from_slot_b_rewrites_slot_a_but_keeps_autoboot_and_hearth_txt() {
    let (tmp, keys, card, rel) = setup();
    let dir = tmp.path();
    write(
        dir,
        &card,
        &rel.dir.to_string_lossy(),
        &keys.pk_text,
        "RASPIROOT",
        &[],
    )
    .ok();
    // Committed: B is the default now (what the supervisor writes after a healthy trial).
    let commit = dir.join("autoboot.txt");
    fs::write(
        &commit,
        "[all]\ntryboot_a_b=1\nboot_partition=5\n[tryboot]\nboot_partition=1\n",
    )
    .unwrap();
    sh(Command::new("mcopy")
        .args(["-o", "-i"])
        .arg(card.p(1))
        .arg(&commit)
        .arg("::/autoboot.txt"));
    // Running from A while B is the default: something is pending, nothing is written.
    let before = card.hashes();
    write(
        dir,
        &card,
        &rel.dir.to_string_lossy(),
        &keys.pk_text,
        "RASPIROOT",
        &[],
    )
    .refused("autoboot.txt boots slot B by default while slot A runs");
    assert_eq!(card.hashes(), before);

    let next = release(dir, "0.3.0", &keys);
    let w = write(
        dir,
        &card,
        &next.dir.to_string_lossy(),
        &keys.pk_text,
        "RASPIROOT_B",
        &[],
    )
    .ok();
    assert_eq!(w["slot"], "A");
    assert_eq!(card.label(2), "RASPIROOT");
    // Slot A's firmware: the release's files, the old ones gone, the card's own kept.
    assert_eq!(
        card.listing(1),
        [
            "autoboot.txt",
            "cmdline.txt",
            "config.txt",
            "hearth.txt",
            "overlays/",
            "vmlinuz-0.3.0"
        ]
    );
    assert_eq!(
        card.fat(1, "cmdline.txt").as_deref(),
        Some("console=tty1 root=LABEL=RASPIROOT rw fsck.repair=yes\n")
    );
    assert_eq!(
        card.fat(1, "overlays/new.dtbo").as_deref(),
        Some("new overlay")
    );
    assert!(card.fat(1, "overlays/old.dtbo").is_none());
    assert_eq!(
        card.fat(1, "hearth.txt").as_deref(),
        Some("server_name = family.example\n")
    );
    let autoboot = card.fat(1, "autoboot.txt").unwrap();
    assert!(
        autoboot.contains("[all]\ntryboot_a_b=1\nboot_partition=5\n[tryboot]\nboot_partition=1\n"),
        "{autoboot}"
    );
    // Slot B, which runs, untouched.
    assert_eq!(card.label(3), "RASPIROOT_B");
    assert_eq!(
        card.fat(5, "vmlinuz-0.2.0").as_deref(),
        Some("kernel 0.2.0")
    );
}

#[test]
fn bad_signatures_are_refused_before_a_byte_is_written() {
    let (tmp, keys, card, rel) = setup();
    let dir = tmp.path();
    let before = card.hashes();
    let from = rel.dir.to_string_lossy().into_owned();

    // Signed by someone else's key.
    let other = keys_other();
    write(dir, &card, &from, &other, "RASPIROOT", &[])
        .refused("the signature does not verify with this box's update key");
    // The manifest changed after signing (a payload's hash swapped for another's).
    let text = fs::read_to_string(rel.dir.join("manifest.json")).unwrap();
    fs::write(
        rel.dir.join("manifest.json"),
        text.replace("\"0.2.0\"", "\"9.9.9\""),
    )
    .unwrap();
    write(dir, &card, &from, &keys.pk_text, "RASPIROOT", &[])
        .refused("the signature does not verify with this box's update key");
    // No signature at all.
    fs::write(rel.dir.join("manifest.json"), &text).unwrap();
    fs::remove_file(rel.dir.join("manifest.json.minisig")).unwrap();
    write(dir, &card, &from, &keys.pk_text, "RASPIROOT", &[]).refused("manifest.json.minisig");
    assert_eq!(card.hashes(), before, "a refused release changed the card");
    assert!(card.fat(1, "autoboot.txt").is_none());
}

/// A signed manifest whose used ranges could not describe the image: refused, one line naming
/// the range, nothing written.
#[test]
fn impossible_used_ranges_are_refused_before_a_byte_is_written() {
    let (tmp, keys, card, rel) = setup();
    let dir = tmp.path();
    let before = card.hashes();
    let from = rel.dir.to_string_lossy().into_owned();
    let text = fs::read_to_string(rel.dir.join("manifest.json")).unwrap();
    for (used, why) in [
        (serde_json::json!([[0, 8192], [4096, 4096]]), "root.used[1]"),
        (serde_json::json!([[0, rel.root_size + 1]]), "root.used[0]"),
        (serde_json::json!([[4096, 4096]]), "root.used[0]"),
        (serde_json::json!([]), "root.used"),
    ] {
        let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
        m["root"]["used"] = used;
        sign(&rel.dir, &serde_json::to_vec_pretty(&m).unwrap(), &keys);
        write(dir, &card, &from, &keys.pk_text, "RASPIROOT", &[]).refused(why);
    }
    assert_eq!(card.hashes(), before, "a refused release changed the card");
}

fn keys_other() -> String {
    keys().pk_text
}

#[test]
fn a_corrupt_payload_spoils_the_slot_it_reached_and_arms_nothing() {
    let (tmp, keys, card, rel) = setup();
    let dir = tmp.path();
    // A signed manifest, a payload that is not what it says (a bit flipped in transit, on the
    // stick, or a store that serves the wrong file).
    let other = release(dir, "0.2.1", &keys);
    fs::copy(
        other.dir.join("root.ext4.zst"),
        rel.dir.join("root.ext4.zst"),
    )
    .unwrap();
    let slot_a = sha(&card.p(2));
    let p1 = sha(&card.p(1));
    write(
        dir,
        &card,
        &rel.dir.to_string_lossy(),
        &keys.pk_text,
        "RASPIROOT",
        &[],
    )
    .refused("root.ext4.zst: SHA-256");
    let p3 = fs::read(card.p(3)).unwrap();
    assert!(
        p3[..MIB as usize].iter().all(|b| *b == 0),
        "slot B's first MiB still looks like a file system"
    );
    assert!(
        Command::new("e2label")
            .arg(card.p(3))
            .output()
            .unwrap()
            .status
            .code()
            != Some(0)
    );
    assert_eq!(
        (sha(&card.p(2)), sha(&card.p(1))),
        (slot_a, p1),
        "slot A or autoboot.txt changed"
    );
}

/// The cooperative's release directory over HTTP on loopback; `cut` serves only the first bytes
/// of a file and then ends the connection (the network dropping mid-download).
async fn serve(dir: PathBuf, cut: Option<&'static str>) -> String {
    let files: HashMap<String, Vec<u8>> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    let state = Arc::new((files, cut));
    type S = Arc<(HashMap<String, Vec<u8>>, Option<&'static str>)>;
    async fn file(State(s): State<S>, UrlPath(name): UrlPath<String>) -> axum::response::Response {
        use axum::response::IntoResponse;
        let Some(bytes) = s.0.get(&name) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        match s.1 {
            Some(cut_name) if cut_name == name => {
                // Announce the whole length, send half of it, end: the client sees a short body.
                let part = bytes[..bytes.len() / 2].to_vec();
                use futures_util::StreamExt;
                let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(part)]).chain(
                    futures_util::stream::once(async {
                        // Half of it arrives and is written; then the line drops.
                        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                        Err(std::io::Error::other("connection reset"))
                    }),
                );
                axum::response::Response::builder()
                    .header("content-length", bytes.len())
                    .body(axum::body::Body::from_stream(stream))
                    .unwrap()
            }
            _ => bytes.clone().into_response(),
        }
    }
    let app = Router::new()
        .route("/release/{name}", get(file))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/release")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_at_a_set_rate_and_a_dropped_download_arms_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let keys = keys();
    let card = Card::new(&dir);
    let rel = release(&dir, "0.2.0", &keys);

    // Cut in the middle of the root payload: an error, slot B spoiled, autoboot.txt unwritten.
    let url = serve(rel.dir.clone(), Some("root.ext4.zst")).await;
    let (d, c, u, k) = (
        dir.clone(),
        Card {
            dir: card.dir.clone(),
        },
        url.clone(),
        keys.pk_text.clone(),
    );
    let run = tokio::task::spawn_blocking(move || write(&d, &c, &u, &k, "RASPIROOT", &[]))
        .await
        .unwrap();
    assert!(!run.out.status.success(), "a cut download succeeded");
    assert!(run.err().contains("reading the release"), "{}", run.err());
    assert!(
        card.fat(1, "autoboot.txt").is_none(),
        "a dropped download armed a trial"
    );

    // The whole release at 200 kB/s: it lands, and takes at least as long as the limit says.
    let url = serve(rel.dir.clone(), None).await;
    let download: u64 = ["root.ext4.zst", "firmware.tar.zst"]
        .iter()
        .map(|f| fs::metadata(rel.dir.join(f)).unwrap().len())
        .sum();
    let started = std::time::Instant::now();
    let (d, c, k) = (
        dir.clone(),
        Card {
            dir: card.dir.clone(),
        },
        keys.pk_text.clone(),
    );
    let run = tokio::task::spawn_blocking(move || {
        write(&d, &c, &url, &k, "RASPIROOT", &["--rate-kbps", "200"])
    })
    .await
    .unwrap();
    let w = run.ok();
    assert_eq!(w["downloaded_bytes"].as_u64(), Some(download));
    let floor = download as f64 / 200_000.0;
    assert!(
        started.elapsed().as_secs_f64() >= floor * 0.9,
        "{download} bytes faster than 200 kB/s"
    );
    slot_b_holds(&card, "0.2.0");
    assert!(card
        .fat(1, "autoboot.txt")
        .unwrap()
        .contains("boot_partition=5"));
}

// --- root's steps: the whole update, a boot after a power cut or a failed trial, the commit ---

use hearth::update::state::{self as ustate, Phase};
use hearth::update::{steps, Disk, Options, Source};

/// A box: the card, a root file system with SQLite databases (the 1 GB board's), the real
/// update-snapshot script working on them, and a reboot that only leaves a mark.
struct Bx {
    dir: PathBuf,
    card: Card,
    root: PathBuf,
    app: steps::Appliance,
}

fn sqlite(db: &Path, sql: &str) -> String {
    sh(Command::new("sqlite3").arg(db).arg(sql))
}

fn a_box(dir: &Path) -> Bx {
    let card = Card::new(dir);
    let root = dir.join("root");
    for d in ["etc/hearth", "var/lib/matrix-synapse", "var/lib/hearth"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("etc/hearth/database"), "sqlite\n").unwrap();
    sqlite(
        &root.join("var/lib/matrix-synapse/homeserver.db"),
        "PRAGMA journal_mode=WAL; CREATE TABLE events(id TEXT); INSERT INTO events VALUES ('$before');
         CREATE TABLE e2e_one_time_keys_json(k TEXT); INSERT INTO e2e_one_time_keys_json VALUES ('otk');
         CREATE TABLE e2e_fallback_keys_json(k TEXT); CREATE TABLE schema_version(v INT); INSERT INTO schema_version VALUES (90);",
    );
    sqlite(&root.join("var/lib/hearth/hearth.db"), "CREATE TABLE audit_log(e TEXT); INSERT INTO audit_log VALUES ('a1'); PRAGMA user_version = 9;");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../overlays/usr/lib/hearth/update-snapshot");
    let snapshot = vec![
        "env".to_string(),
        format!("HEARTH_ROOT={}", root.display()),
        format!("HEARTH_UPDATE_SNAPSHOT={}", dir.join("snapshot").display()),
        script.display().to_string(),
    ];
    let app = steps::Appliance {
        state_dir: dir.join("data/update"),
        verdict_file: root.join("var/lib/hearth/update-verdict.json"),
        disk: Disk {
            template: card.template(),
        },
        // No sysfs entry for the card's files: the writer's own count.
        sys: dir.join("sys"),
        snapshot,
        // Carrying mounts the new root: the image test does it for real (QEMU); here it is a no-op.
        carry: vec!["true".into()],
        reboot_trial: vec![
            "touch".into(),
            dir.join("rebooted-on-trial").display().to_string(),
        ],
        reboot_plain: vec!["touch".into(), dir.join("rebooted").display().to_string()],
    };
    Bx {
        dir: dir.to_path_buf(),
        card,
        root,
        app,
    }
}

fn opts(b: &Bx, keys: &Keys, slot_root: &str) -> Options {
    Options {
        key: keys.pk_text.clone(),
        ca: None,
        rate: None,
        running_version: "0.1.0".into(),
        cmdline: format!("console=tty1 root=LABEL={slot_root} rw"),
        scratch: b.dir.join("scratch"),
    }
}

fn autoboot_default(card: &Card) -> Option<String> {
    card.fat(1, "autoboot.txt").and_then(|t| {
        t.lines()
            .skip_while(|l| *l != "[all]")
            .find_map(|l| l.strip_prefix("boot_partition=").map(String::from))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_fails_its_trial_comes_back_with_the_data_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let b = a_box(tmp.path());
    let keys = keys();
    let rel = release(&b.dir, "0.2.0", &keys);
    let src = Source::Dir(rel.dir.clone());

    let st = steps::run(&src, &b.app, &opts(&b, &keys, "RASPIROOT"), 1000)
        .await
        .unwrap()
        .expect("newer");
    assert_eq!(
        (st.phase, st.version.as_str(), st.from_version.as_str()),
        (Phase::Trial, "0.2.0", "0.1.0")
    );
    assert!(
        b.dir.join("rebooted-on-trial").exists(),
        "no reboot into the trial"
    );
    assert_eq!(ustate::load(&b.app.state_dir).unwrap().unwrap(), st);
    assert_eq!(
        autoboot_default(&b.card).as_deref(),
        Some("1"),
        "the default must stay slot A during the trial"
    );
    // The snapshot was taken by the databases' owners' online backup.
    assert!(
        b.dir.join("snapshot/homeserver.db").exists() && b.dir.join("snapshot/hearth.db").exists()
    );

    // On trial, the new release migrates the databases and a member sends a message.
    let synapse_db = b.root.join("var/lib/matrix-synapse/homeserver.db");
    sqlite(&synapse_db, "UPDATE schema_version SET v = 91; CREATE TABLE new_thing(x); INSERT INTO events VALUES ('$during');");
    sqlite(
        &b.root.join("var/lib/hearth/hearth.db"),
        "PRAGMA user_version = 10; CREATE TABLE newer(x);",
    );
    // The supervisor gave up on it (its reason in its verdict file), the box rebooted into slot A.
    ustate::Verdict {
        version: "0.2.0".into(),
        reason: Some("Synapse failed on the new release: crash loop\n\u{1b}[31m".into()),
        told: None,
    }
    .save(&b.app.verdict_file)
    .unwrap();
    steps::rollback(&b.app).unwrap();
    assert!(b.dir.join("rebooted").exists());

    let st = steps::boot(&b.app, "root=LABEL=RASPIROOT rw", 2000)
        .unwrap()
        .unwrap();
    assert_eq!(st.phase, Phase::RolledBack);
    // The supervisor's reason, as one line without control characters (its account wrote it).
    let reason = st.reason.clone().unwrap();
    assert!(
        reason.starts_with("Synapse failed on the new release: crash loop"),
        "{reason}"
    );
    assert!(!reason.chars().any(|c| c.is_control()), "{reason:?}");
    assert_eq!(
        sqlite(
            &synapse_db,
            "SELECT v FROM schema_version; SELECT id FROM events;"
        ),
        "90\n$before\n"
    );
    assert_eq!(
        sqlite(
            &synapse_db,
            "SELECT count(*) FROM sqlite_master WHERE name = 'new_thing';"
        ),
        "0\n"
    );
    // Keys handed out during the trial are not handed out again.
    assert_eq!(
        sqlite(&synapse_db, "SELECT count(*) FROM e2e_one_time_keys_json;"),
        "0\n"
    );
    assert_eq!(
        sqlite(
            &b.root.join("var/lib/hearth/hearth.db"),
            "PRAGMA user_version; SELECT e FROM audit_log;"
        ),
        "9\na1\n"
    );
    assert_eq!(autoboot_default(&b.card).as_deref(), Some("1"));
    // A second boot changes nothing more.
    assert_eq!(
        steps::boot(&b.app, "root=LABEL=RASPIROOT rw", 3000)
            .unwrap()
            .unwrap(),
        st
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_trial_is_committed_and_a_power_cut_while_writing_is_settled_at_boot() {
    let tmp = tempfile::tempdir().unwrap();
    let b = a_box(tmp.path());
    let keys = keys();
    let rel = release(&b.dir, "0.2.0", &keys);
    steps::run(
        &Source::Dir(rel.dir.clone()),
        &b.app,
        &opts(&b, &keys, "RASPIROOT"),
        1000,
    )
    .await
    .unwrap();

    // Slot B came up (the firmware tried partition 5): nothing to settle at boot; a commit from
    // the wrong slot is refused; from slot B it makes B the default.
    let st = steps::boot(&b.app, "root=LABEL=RASPIROOT_B rw", 1100)
        .unwrap()
        .unwrap();
    assert_eq!(st.phase, Phase::Trial);
    let e = steps::commit(&b.app, "root=LABEL=RASPIROOT rw", 1150)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nothing on trial here"), "{e}");
    let st = steps::commit(&b.app, "root=LABEL=RASPIROOT_B rw", 1200).unwrap();
    assert_eq!(st.phase, Phase::Committed);
    assert_eq!(autoboot_default(&b.card).as_deref(), Some("5"));
    assert_eq!(
        b.card.fat(1, "hearth.txt").as_deref(),
        Some("server_name = family.example\n")
    );

    // The next release, from slot B: the box loses power while slot A is written.
    let next = release(&b.dir, "0.3.0", &keys);
    let mut s = ustate::load(&b.app.state_dir).unwrap().unwrap();
    s.phase = Phase::Writing;
    s.version = "0.3.0".into();
    s.slot = hearth::update::slots::Slot::A;
    ustate::save(&b.app.state_dir, &s).unwrap();
    let st = steps::boot(&b.app, "root=LABEL=RASPIROOT_B rw", 5000)
        .unwrap()
        .unwrap();
    assert_eq!(st.phase, Phase::Interrupted);
    assert!(
        st.reason
            .as_deref()
            .unwrap()
            .contains("restarted while release 0.3.0 was being written"),
        "{st:?}"
    );
    assert_eq!(
        autoboot_default(&b.card).as_deref(),
        Some("5"),
        "slot B must stay the default"
    );
    // The next attempt starts over and writes slot A.
    let mut o = opts(&b, &keys, "RASPIROOT_B");
    o.running_version = "0.2.0".into();
    let st = steps::run(&Source::Dir(next.dir.clone()), &b.app, &o, 6000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (st.phase, st.slot),
        (Phase::Trial, hearth::update::slots::Slot::A)
    );
    // While a release is on trial, no other update starts.
    let e = steps::run(&Source::Dir(next.dir.clone()), &b.app, &o, 6100)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("on trial"), "{e}");
}

/// `rel` run from slot A on `b`, which must fail: the error, and the state it left, which must
/// be `interrupted`.
async fn an_update_that_fails(b: &Bx, keys: &Keys, rel: &Release) -> (String, ustate::State) {
    let e = steps::run(
        &Source::Dir(rel.dir.clone()),
        &b.app,
        &opts(b, keys, "RASPIROOT"),
        1000,
    )
    .await
    .unwrap_err()
    .to_string();
    let st = ustate::load(&b.app.state_dir).unwrap().unwrap();
    assert_eq!(st.phase, Phase::Interrupted, "{e}");
    (e, st)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_fails_to_write_is_interrupted_and_never_tried() {
    let tmp = tempfile::tempdir().unwrap();
    let b = a_box(tmp.path());
    let keys = keys();
    let rel = release(&b.dir, "0.2.0", &keys);
    let other = release(&b.dir, "0.2.1", &keys);
    fs::copy(
        other.dir.join("firmware.tar.zst"),
        rel.dir.join("firmware.tar.zst"),
    )
    .unwrap();
    let (e, st) = an_update_that_fails(&b, &keys, &rel).await;
    assert!(e.contains("firmware.tar.zst"), "{e}");
    assert!(st.reason.unwrap().contains("firmware.tar.zst"));
    assert!(!b.dir.join("rebooted-on-trial").exists());
    assert_ne!(autoboot_default(&b.card).as_deref(), Some("5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_reboot_that_does_not_start_leaves_no_trial_to_undo_later() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = a_box(tmp.path());
    b.app.reboot_trial = vec!["false".into()];
    let keys = keys();
    let rel = release(&b.dir, "0.2.0", &keys);
    let (e, _) = an_update_that_fails(&b, &keys, &rel).await;
    assert!(e.contains("the reboot into the trial did not start"), "{e}");
    assert_eq!(autoboot_default(&b.card).as_deref(), Some("1"));

    // The family goes on writing; the box restarts days later on the same slot.
    let db = b.root.join("var/lib/matrix-synapse/homeserver.db");
    sqlite(&db, "INSERT INTO events VALUES ('$after');");
    let st = steps::boot(&b.app, "console=tty1 root=LABEL=RASPIROOT rw", 2000)
        .unwrap()
        .unwrap();
    assert_eq!(st.phase, Phase::Interrupted);
    assert_eq!(
        sqlite(&db, "SELECT id FROM events ORDER BY id"),
        "$after\n$before\n"
    );
}

/// What a cooperative publishes: `image/bundle` run on a built image (here a small one made the
/// same way: an MBR disk with the FAT and the ext4 root), signed with minisign's command line,
/// and what a box does with it.
#[test]
fn image_bundle_makes_a_release_the_box_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The image: FAT (firmware files and the family's hearth.txt) and the root slot.
    let fw = dir.join("fw");
    fs::create_dir_all(fw.join("overlays")).unwrap();
    fs::write(fw.join("vmlinuz-6.12.99-arm64"), "kernel").unwrap();
    fs::write(fw.join("config.txt"), "kernel=vmlinuz-6.12.99-arm64\n").unwrap();
    fs::write(
        fw.join("cmdline.txt"),
        "console=tty1 root=LABEL=RASPIROOT rw\n",
    )
    .unwrap();
    fs::write(fw.join("overlays/a.dtbo"), "dtbo").unwrap();
    fs::write(fw.join("hearth.txt"), "# the family's settings\n").unwrap();
    let fat = dir.join("fat.img");
    fs::File::create(&fat).unwrap().set_len(64 * MIB).unwrap();
    sh(Command::new("mkfs.vfat")
        .args(["-F", "32", "-n", "RASPIFIRM"])
        .arg(&fat));
    let entries: Vec<PathBuf> = fs::read_dir(&fw)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    sh(Command::new("mcopy")
        .args(["-s", "-i"])
        .arg(&fat)
        .args(&entries)
        .arg("::/"));
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/hearth-version"), "0.2.0\n").unwrap();
    // A file of some size that does not compress, and one whose blocks are all zeros.
    let blob: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    fs::write(tree.join("etc/blob"), &blob).unwrap();
    fs::write(tree.join("etc/zeros"), vec![0u8; 300_000]).unwrap();
    let root = dir.join("root.img");
    fs::File::create(&root).unwrap().set_len(20 * MIB).unwrap();
    sh(Command::new("mkfs.ext4")
        .args(["-q", "-L", "RASPIROOT", "-d"])
        .arg(&tree)
        .arg(&root));
    let img = dir.join("hearth.img");
    fs::File::create(&img)
        .unwrap()
        .set_len(4 * MIB + 64 * MIB + 20 * MIB)
        .unwrap();
    let mut sfdisk = Command::new("sfdisk")
        .args(["--quiet"])
        .arg(&img)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        sfdisk.stdin.as_mut().unwrap(),
        b"label: dos\nstart=4MiB, size=64MiB, type=c\nstart=68MiB, size=20MiB, type=83\n",
    )
    .unwrap();
    assert!(sfdisk.wait().unwrap().success());
    for (part, mib) in [(&fat, 4), (&root, 68)] {
        sh(Command::new("dd")
            .arg(format!("if={}", part.display()))
            .arg(format!("of={}", img.display()))
            .args([
                "bs=1M",
                &format!("seek={mib}"),
                "conv=notrunc",
                "status=none",
            ]));
    }
    // The cooperative's key, made with minisign's command line.
    let (sk, pk) = (dir.join("coop.key"), dir.join("coop.pub"));
    sh(Command::new("minisign")
        .args(["-G", "-W", "-f", "-p"])
        .arg(&pk)
        .arg("-s")
        .arg(&sk));
    let out = dir.join("bundle");
    let bundle = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../image/bundle");
    let run = Command::new(&bundle)
        .arg(&img)
        .arg(&out)
        .env("SIGNING_KEY", &sk)
        .env("VERSION", "0.2.0")
        .env("NOTES_EN", "Synapse 1.999: a security fix.")
        .env("NOTES_DE", "Synapse 1.999: eine Sicherheitskorrektur.")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "image/bundle: {}",
        String::from_utf8_lossy(&run.stderr)
    );

    // The box: check, then write.
    let keyfile = dir.join("update.pub");
    fs::copy(&pk, &keyfile).unwrap();
    let check_against = |running: &str| {
        Command::new(env!("CARGO_BIN_EXE_hearth-supervisor"))
            .args(["update", "check", "--from"])
            .arg(&out)
            .arg("--key")
            .arg(&keyfile)
            .args(["--running-version", running])
            .output()
            .unwrap()
    };
    let check = check_against("0.1.0");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(m["version"], "0.2.0");
    assert_eq!(
        m["notes"]["de"],
        "Synapse 1.999: eine Sicherheitskorrektur."
    );
    assert_eq!(m["root"]["size"], 20 * MIB);
    // Only what the file system uses is to be written: its start, well under the slot's size.
    let used: Vec<[u64; 2]> = serde_json::from_value(m["root"]["used"].clone()).unwrap();
    let in_use: u64 = used.iter().map(|r| r[1]).sum();
    assert_eq!(used[0][0], 0, "{used:?}");
    assert!(
        in_use > 3_000_000 && in_use < 12 * MIB,
        "{in_use} bytes in use: {used:?}"
    );
    // Not newer than what runs: exit 3.
    let same = check_against("0.2.0");
    assert_eq!(same.status.code(), Some(3));

    let card = Card::new(dir);
    // Slot B as an earlier release or a power cut leaves it: nothing but stale bytes.
    fs::write(card.p(3), vec![0xa5u8; 24 * MIB as usize]).unwrap();
    let w = write(
        dir,
        &card,
        &out.to_string_lossy(),
        &fs::read_to_string(&pk).unwrap(),
        "RASPIROOT",
        &[],
    )
    .ok();
    assert_eq!(w["version"], "0.2.0");
    assert_eq!(card.label(3), "RASPIROOT_B");
    // The used ranges were written, the free space left as it was, and the file system holds:
    // e2fsck finds nothing wrong and every file reads back whole.
    let card_bytes = w["card_bytes"].as_u64().unwrap();
    assert!(
        card_bytes < in_use + MIB,
        "{card_bytes} bytes written for {in_use} in use"
    );
    let slot = fs::read(card.p(3)).unwrap();
    let free = (0..20 * MIB)
        .step_by(4096)
        .find(|&o| used.iter().all(|r| o + 4096 <= r[0] || o >= r[0] + r[1]))
        .expect("some free space in the image") as usize;
    assert!(
        slot[free..free + 4096].iter().all(|&b| b == 0xa5),
        "free space at {free} was written"
    );
    sh(Command::new("e2fsck").arg("-fn").arg(card.p(3)));
    let cat = |f: &str| {
        sh(Command::new("debugfs")
            .arg("-R")
            .arg(format!("dump {f} {}", dir.join("out").display()))
            .arg(card.p(3)));
        fs::read(dir.join("out")).unwrap()
    };
    assert!(
        cat("/etc/blob") == blob,
        "etc/blob differs after the update"
    );
    assert_eq!(cat("/etc/zeros"), vec![0u8; 300_000]);
    assert_eq!(cat("/etc/hearth-version"), b"0.2.0\n");
    assert_eq!(
        card.fat(5, "vmlinuz-6.12.99-arm64").as_deref(),
        Some("kernel")
    );
    assert_eq!(
        card.fat(5, "cmdline.txt").as_deref(),
        Some("console=tty1 root=LABEL=RASPIROOT_B rw\n")
    );
    assert!(
        card.fat(5, "hearth.txt").is_none(),
        "the image's hearth.txt travelled in the bundle"
    );
}

/// `update-carry` as root runs it on the box: the new root (an ext4 file system, mounted) gets
/// this box's choices and its slot's labels, and not what first boot derives again.
#[test]
fn update_carry_brings_the_boxs_choices_into_the_new_root() {
    assert_eq!(
        Command::new("id").arg("-u").output().unwrap().stdout,
        b"0\n",
        "update-carry mounts a file system: run the tests as root (as CI does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The running root: first boot's and hearth.txt's choices, and derived configuration.
    let old = dir.join("old");
    for (path, text) in [
        ("etc/machine-id", "0123456789abcdef0123456789abcdef\n"),
        ("etc/hearth/server_name", "family.example\n"),
        ("etc/hearth/database", "postgresql\n"),
        (
            "etc/hearth/update-source",
            "https://updates.coop.example/stable\n",
        ),
        ("etc/hearth/firstboot-done", ""),
        ("etc/hearth/supervisor.toml", "# the old release's\n"),
        ("etc/hostname", "kueche\n"),
        ("etc/postgresql/17/main/postgresql.conf", "port = 5432\n"),
        (
            "etc/matrix-synapse/homeserver.yaml",
            "server_name: family.example # old template\n",
        ),
    ] {
        let p = old.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    std::os::unix::fs::symlink(
        "/usr/share/zoneinfo/Europe/Berlin",
        old.join("etc/localtime"),
    )
    .unwrap();
    // The new release's root, as the image build makes it.
    let new = dir.join("new");
    fs::create_dir_all(new.join("etc/hearth")).unwrap();
    fs::write(
        new.join("etc/fstab"),
        "LABEL=RASPIROOT      /               ext4   rw,noatime  0 1\n\
         LABEL=RASPIFIRM      /boot/firmware  vfat   rw,noatime  0 2\n\
         LABEL=HEARTHDATA     /data           ext4   rw,noatime  0 2\n",
    )
    .unwrap();
    fs::write(
        new.join("etc/hearth/supervisor.toml"),
        "# the new release's\n",
    )
    .unwrap();
    fs::write(new.join("etc/hostname"), "hearth\n").unwrap();
    let part = dir.join("p3");
    fs::File::create(&part).unwrap().set_len(16 * MIB).unwrap();
    sh(Command::new("mkfs.ext4")
        .args(["-q", "-L", "RASPIROOT_B", "-d"])
        .arg(&new)
        .arg(&part));

    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../overlays/usr/lib/hearth/update-carry");
    let out = Command::new(&script)
        .arg(&part)
        .arg("B")
        .env("HEARTH_ROOT", &old)
        .env("HEARTH_UPDATE_MNT", dir.join("mnt"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "update-carry: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !Command::new("mountpoint")
            .arg("-q")
            .arg(dir.join("mnt"))
            .status()
            .unwrap()
            .success(),
        "left mounted"
    );
    let cat = |f: &str| {
        let o = Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat {f}"))
            .arg(&part)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(cat("/etc/machine-id"), "0123456789abcdef0123456789abcdef\n");
    assert_eq!(cat("/etc/hearth/server_name"), "family.example\n");
    assert_eq!(cat("/etc/hearth/database"), "postgresql\n");
    // Where releases come from: the next update comes from the same place.
    assert_eq!(
        cat("/etc/hearth/update-source"),
        "https://updates.coop.example/stable\n"
    );
    assert_eq!(cat("/etc/hostname"), "kueche\n");
    assert_eq!(
        cat("/etc/postgresql/17/main/postgresql.conf"),
        "port = 5432\n"
    );
    // The release's own files stay the release's; what first boot derives is derived again.
    assert_eq!(cat("/etc/hearth/supervisor.toml"), "# the new release's\n");
    assert_eq!(cat("/etc/matrix-synapse/homeserver.yaml"), "");
    assert_eq!(cat("/etc/hearth/firstboot-done"), "");
    let stat = sh(Command::new("debugfs")
        .arg("-R")
        .arg("stat /etc/hearth/firstboot-done")
        .arg(&part));
    assert!(
        !stat.contains("Inode:"),
        "first boot's marker was carried: {stat}"
    );
    // The slot's own labels.
    let fstab = cat("/etc/fstab");
    assert!(
        fstab.starts_with("LABEL=RASPIROOT_B    /  ") || fstab.starts_with("LABEL=RASPIROOT_B "),
        "{fstab}"
    );
    assert!(fstab.contains("\nLABEL=RASPIFIRM_B "), "{fstab}");
    assert!(fstab.contains("\nLABEL=HEARTHDATA "), "{fstab}");
    sh(Command::new("e2fsck").arg("-fn").arg(&part));
}
