//! The card's two slots and the Pi firmware's `autoboot.txt` (image/README.md "Partition plan",
//! "Updates").
//!
//! | slot | firmware partition (FAT) | root partition (ext4) |
//! |---|---|---|
//! | A | 1, `RASPIFIRM` | 2, `RASPIROOT` |
//! | B | 5, `RASPIFIRM_B` | 3, `RASPIROOT_B` |
//!
//! `autoboot.txt` lives on partition 1, beside slot A's firmware files, and is the only file an
//! update rewrites there in place. Its `[all] boot_partition` is the slot the firmware boots;
//! `[tryboot] boot_partition` the slot it boots once when a trial was requested.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
    /// The FAT partition the Pi firmware boots for this slot.
    pub fn firmware_partition(self) -> u8 {
        match self {
            Slot::A => 1,
            Slot::B => 5,
        }
    }
    pub fn root_partition(self) -> u8 {
        match self {
            Slot::A => 2,
            Slot::B => 3,
        }
    }
    pub fn root_label(self) -> &'static str {
        match self {
            Slot::A => "RASPIROOT",
            Slot::B => "RASPIROOT_B",
        }
    }
    pub fn firmware_label(self) -> &'static str {
        match self {
            Slot::A => "RASPIFIRM",
            Slot::B => "RASPIFIRM_B",
        }
    }
    fn by_firmware_partition(n: u32) -> Option<Slot> {
        match n {
            1 => Some(Slot::A),
            5 => Some(Slot::B),
            _ => None,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::A => "A",
            Slot::B => "B",
        })
    }
}

/// The slot this system runs from, by the kernel command line's `root=LABEL=…`.
pub fn running(cmdline: &str) -> Result<Slot, String> {
    let root = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("root="))
        .ok_or("the kernel command line has no root=")?;
    match root {
        "LABEL=RASPIROOT" => Ok(Slot::A),
        "LABEL=RASPIROOT_B" => Ok(Slot::B),
        other => Err(format!("root={other} is neither slot's label")),
    }
}

/// `autoboot.txt` as the firmware reads it: the slot booted normally and the one tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Autoboot {
    pub default: Slot,
    pub tryboot: Option<Slot>,
}

impl Autoboot {
    /// What a card without `autoboot.txt` does: partition 1, slot A.
    pub const ABSENT: Autoboot = Autoboot {
        default: Slot::A,
        tryboot: None,
    };

    /// Parses the file (sections `[all]` and `[tryboot]`, `boot_partition=N`; other keys and
    /// sections are ignored, as the firmware ignores what it does not know). An error names the
    /// line and what is wrong with it.
    pub fn parse(text: &str) -> Result<Autoboot, String> {
        let mut section = "all".to_string();
        let mut default = None;
        let mut tryboot = None;
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.trim().to_ascii_lowercase();
                continue;
            }
            let Some(value) = line.strip_prefix("boot_partition=") else {
                continue;
            };
            let n: u32 = value.trim().parse().map_err(|_| {
                format!(
                    "autoboot.txt:{}: boot_partition: '{value}' is not a number",
                    i + 1
                )
            })?;
            let slot = Slot::by_firmware_partition(n).ok_or_else(|| {
                format!("autoboot.txt:{}: boot_partition: {n} is neither slot's firmware partition (1, 5)", i + 1)
            })?;
            match section.as_str() {
                "all" => default = Some(slot),
                "tryboot" => tryboot = Some(slot),
                _ => {}
            }
        }
        Ok(Autoboot {
            default: default.unwrap_or(Slot::A),
            tryboot,
        })
    }

    /// The file for `default`, trying the other slot: written before a trial (default: the
    /// running slot) and at the commit (default: the new slot).
    pub fn render(default: Slot) -> String {
        format!(
            "# hearth: the Pi firmware boots [all]'s partition; after `reboot \"0 tryboot\"` once\n\
             # [tryboot]'s. Rewritten only by the supervisor's updates (image/README.md \"Updates\").\n\
             [all]\ntryboot_a_b=1\nboot_partition={}\n[tryboot]\nboot_partition={}\n",
            default.firmware_partition(),
            default.other().firmware_partition()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_slot_is_the_root_label() {
        assert_eq!(running("console=tty1 root=LABEL=RASPIROOT rw"), Ok(Slot::A));
        assert_eq!(running("root=LABEL=RASPIROOT_B rootwait"), Ok(Slot::B));
        assert!(running("root=/dev/vda2")
            .unwrap_err()
            .contains("root=/dev/vda2"));
        assert!(running("quiet").is_err());
    }

    #[test]
    fn autoboot_round_trips_and_reads_the_documented_form() {
        for slot in [Slot::A, Slot::B] {
            let a = Autoboot::parse(&Autoboot::render(slot)).unwrap();
            assert_eq!(
                a,
                Autoboot {
                    default: slot,
                    tryboot: Some(slot.other())
                }
            );
        }
        // The Raspberry Pi documentation's example, with our partition numbers.
        let doc = "[all]\ntryboot_a_b=1\nboot_partition=5\n[tryboot]\nboot_partition=1\n";
        assert_eq!(
            Autoboot::parse(doc).unwrap(),
            Autoboot {
                default: Slot::B,
                tryboot: Some(Slot::A)
            }
        );
        assert_eq!(Autoboot::parse("").unwrap(), Autoboot::ABSENT);
    }

    #[test]
    fn a_bad_autoboot_line_is_named() {
        let e = Autoboot::parse("[all]\nboot_partition=3\n").unwrap_err();
        assert!(e.starts_with("autoboot.txt:2: boot_partition: 3"), "{e}");
        let e = Autoboot::parse("[all]\nboot_partition=x\n").unwrap_err();
        assert!(e.contains("autoboot.txt:2"), "{e}");
    }
}
