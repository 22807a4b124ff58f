//! The status LED: a pure mapping from health and sensor state to a [`Pattern`], and the
//! backends that light it: rppal GPIO (any pin, either polarity; `gpio.rs`), the sysfs LED
//! class (the Pi's own ACT LED, no wiring) and a recording backend for tests.
//!
//! | pattern        | meaning                                   |
//! |----------------|-------------------------------------------|
//! | `steady`       | healthy, or ready for its setup (no name chosen yet: open the page) |
//! | `slow_blink`   | starting                                  |
//! | `double_blink` | degraded (slow, a missed probe, sensor fault) |
//! | `fast_blink`   | restarting or down                        |
//! | `failure`      | failed: restarting cannot help, a person is needed |
//! | `maintenance`  | maintenance switch on: a short blip every 2 s |

mod gpio;

pub use gpio::GpioLed;

use crate::health::machine::Health;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    Off,
    Steady,
    SlowBlink,
    DoubleBlink,
    FastBlink,
    Failure,
    Maintenance,
}

impl Pattern {
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::Off => "off",
            Pattern::Steady => "steady",
            Pattern::SlowBlink => "slow_blink",
            Pattern::DoubleBlink => "double_blink",
            Pattern::FastBlink => "fast_blink",
            Pattern::Failure => "failure",
            Pattern::Maintenance => "maintenance",
        }
    }

    /// One period of the pattern: (on?, milliseconds), repeated forever.
    pub fn steps(self) -> &'static [(bool, u64)] {
        match self {
            Pattern::Off => &[(false, 1000)],
            Pattern::Steady => &[(true, 1000)],
            Pattern::SlowBlink => &[(true, 1000), (false, 1000)],
            Pattern::DoubleBlink => &[(true, 150), (false, 150), (true, 150), (false, 1550)],
            Pattern::FastBlink => &[(true, 100), (false, 100)],
            // Long on, then three quick flashes: unlike any other pattern, seen across a room.
            Pattern::Failure => &[
                (true, 1500),
                (false, 300),
                (true, 100),
                (false, 100),
                (true, 100),
                (false, 100),
                (true, 100),
                (false, 700),
            ],
            Pattern::Maintenance => &[(true, 50), (false, 1950)],
        }
    }
}

/// What the health monitor tells the LED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    pub health: Health,
    /// The maintenance switch is on.
    pub maintenance: bool,
    /// No name is chosen yet, and Synapse waits for it on purpose: the box is ready for the
    /// family to open the page (PRODUCT journey 1: "waits for the LED to turn steady").
    pub awaiting_setup: bool,
}

impl Signal {
    /// Healthy, nothing else: where health is not monitored.
    pub fn healthy() -> Signal {
        Signal {
            health: Health::Healthy,
            maintenance: false,
            awaiting_setup: false,
        }
    }
}

/// The LED's pattern for the server's overall health (`None`: not known yet), and the sensor.
/// A failed service wins over everything; maintenance is shown unless something has failed;
/// waiting for the setup shows like healthy (steady), since the box is ready for the family.
pub fn pattern(signal: Option<Signal>, sensor_fault: bool) -> Pattern {
    let Some(s) = signal else {
        return Pattern::SlowBlink;
    };
    let health = if s.awaiting_setup && s.health == Health::Starting {
        Health::Healthy
    } else {
        s.health
    };
    match (health, s.maintenance) {
        (Health::Failed, _) => Pattern::Failure,
        (_, true) => Pattern::Maintenance,
        (Health::Down, _) => Pattern::FastBlink,
        (Health::Starting, _) => Pattern::SlowBlink,
        (Health::Degraded, _) => Pattern::DoubleBlink,
        (Health::Healthy, false) if sensor_fault => Pattern::DoubleBlink,
        (Health::Healthy, _) => Pattern::Steady,
    }
}

/// Something that can be switched on and off.
pub trait Led: Send {
    fn set(&mut self, on: bool) -> std::io::Result<()>;
    fn describe(&self) -> String;
}

/// The sysfs LED class, e.g. `/sys/class/leds/ACT` (the Pi's green LED): the kernel trigger is
/// switched to `none` so the supervisor owns the LED.
pub struct SysfsLed {
    dir: PathBuf,
    max: String,
}

impl SysfsLed {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::write(dir.join("trigger"), "none")?;
        let max = std::fs::read_to_string(dir.join("max_brightness"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "1".into());
        Ok(Self {
            dir: dir.to_path_buf(),
            max,
        })
    }
}

impl Led for SysfsLed {
    fn set(&mut self, on: bool) -> std::io::Result<()> {
        std::fs::write(
            self.dir.join("brightness"),
            if on { &self.max } else { "0" },
        )
    }
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

/// Records every change, for tests.
#[derive(Clone, Default)]
pub struct RecordingLed {
    pub log: Arc<Mutex<Vec<bool>>>,
}

impl Led for RecordingLed {
    fn set(&mut self, on: bool) -> std::io::Result<()> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).push(on);
        Ok(())
    }
    fn describe(&self) -> String {
        "recording".into()
    }
}

/// No LED configured.
pub struct NoLed;

impl Led for NoLed {
    fn set(&mut self, _on: bool) -> std::io::Result<()> {
        Ok(())
    }
    fn describe(&self) -> String {
        "none".into()
    }
}

/// Play the current pattern on `led` until `patterns` closes; a new pattern starts at once.
pub async fn drive(mut led: Box<dyn Led>, mut patterns: tokio::sync::watch::Receiver<Pattern>) {
    let mut warned = false;
    loop {
        let p = *patterns.borrow_and_update();
        for &(on, ms) in p.steps() {
            if let Err(e) = led.set(on) {
                if !warned {
                    tracing::warn!(led = %led.describe(), "cannot set the LED: {e}");
                    warned = true;
                }
            }
            tokio::select! {
                changed = patterns.changed() => {
                    if changed.is_err() {
                        let _ = led.set(false);
                        return;
                    }
                    break;
                }
                _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
            }
        }
    }
}

/// Keep `patterns` on the pattern for the health monitor's signal (`None` until it has one;
/// with no monitor configured, healthy) and the sensor (`sensor_fault`: an absent sensor is
/// not a fault, the page explains it and the LED stays steady), every 250 ms until `cancel`.
/// Returning drops the sender, which ends [`drive`] and switches the LED off.
pub async fn follow(
    health: tokio::sync::watch::Receiver<Option<Signal>>,
    monitored: bool,
    sensor_fault: impl Fn() -> bool,
    patterns: tokio::sync::watch::Sender<Pattern>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {
                let signal = (*health.borrow()).or((!monitored).then(Signal::healthy));
                let p = pattern(signal, sensor_fault());
                patterns.send_if_modified(|cur| {
                    let changed = *cur != p;
                    *cur = p;
                    changed
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mapping_covers_every_state() {
        use Health::*;
        // (health, sensor fault, maintenance, awaiting setup) → pattern
        let cases = [
            (Some(Healthy), false, false, false, Pattern::Steady),
            (Some(Healthy), true, false, false, Pattern::DoubleBlink),
            (Some(Starting), false, false, false, Pattern::SlowBlink),
            (None, false, false, false, Pattern::SlowBlink),
            (None, true, false, false, Pattern::SlowBlink),
            (Some(Degraded), false, false, false, Pattern::DoubleBlink),
            (Some(Down), false, false, false, Pattern::FastBlink),
            (Some(Failed), false, false, false, Pattern::Failure),
            (Some(Failed), true, true, false, Pattern::Failure),
            (Some(Healthy), false, true, false, Pattern::Maintenance),
            (Some(Down), false, true, false, Pattern::Maintenance),
            // Waiting for the name: ready for the family, steady.
            (Some(Starting), false, false, true, Pattern::Steady),
            (Some(Starting), true, false, true, Pattern::DoubleBlink),
            (Some(Starting), false, true, true, Pattern::Maintenance),
            // The flag says nothing once the state is not "starting".
            (Some(Down), false, false, true, Pattern::FastBlink),
            (Some(Failed), false, false, true, Pattern::Failure),
        ];
        for (h, sensor, maint, setup, want) in cases {
            let signal = h.map(|health| Signal {
                health,
                maintenance: maint,
                awaiting_setup: setup,
            });
            assert_eq!(
                pattern(signal, sensor),
                want,
                "{h:?} sensor_fault={sensor} maintenance={maint} awaiting_setup={setup}"
            );
        }
    }

    #[test]
    fn patterns_are_distinct_and_have_a_period() {
        let all = [
            Pattern::Off,
            Pattern::Steady,
            Pattern::SlowBlink,
            Pattern::DoubleBlink,
            Pattern::FastBlink,
            Pattern::Failure,
            Pattern::Maintenance,
        ];
        for (i, a) in all.iter().enumerate() {
            assert!(a.steps().iter().map(|s| s.1).sum::<u64>() >= 200);
            for b in &all[i + 1..] {
                assert_ne!(a.steps(), b.steps(), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn sysfs_led_takes_over_the_trigger_and_switches_brightness() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("trigger"), "[mmc0] none heartbeat").unwrap();
        std::fs::write(dir.path().join("max_brightness"), "255\n").unwrap();
        std::fs::write(dir.path().join("brightness"), "0").unwrap();
        let mut led = SysfsLed::open(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("trigger")).unwrap(),
            "none"
        );
        led.set(true).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("brightness")).unwrap(),
            "255"
        );
        led.set(false).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("brightness")).unwrap(),
            "0"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_driver_plays_a_pattern_and_switches_at_once() {
        let rec = RecordingLed::default();
        let (tx, rx) = tokio::sync::watch::channel(Pattern::DoubleBlink);
        let task = tokio::spawn(drive(Box::new(rec.clone()), rx));
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let seen: Vec<bool> = rec.log.lock().unwrap().clone();
        // One period of the double blink, and the start of the next.
        assert_eq!(seen[..5], [true, false, true, false, true]);
        tx.send(Pattern::Steady).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(rec.log.lock().unwrap().last(), Some(&true));
        drop(tx);
        task.await.unwrap();
        assert_eq!(
            rec.log.lock().unwrap().last(),
            Some(&false),
            "off when the supervisor stops"
        );
    }
}
