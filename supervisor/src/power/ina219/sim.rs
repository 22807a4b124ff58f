//! Register-level simulator of the TI INA219 current/power monitor (datasheet SBOS448G).
//!
//! [`Ina219Sim`] implements the embedded-hal 1.0 [`I2c`] trait, so the real `ina219` driver runs
//! over it unchanged: the same code path that reads the chip on the Pi reads the simulator in
//! replay and in the live demo. It models what the driver can observe at the register level; the
//! section numbers below refer to SBOS448G (December 2015).
//!
//! # Registers (§8.6)
//!
//! | ptr | register      | access | reset    | model                                                |
//! |-----|---------------|--------|----------|------------------------------------------------------|
//! | 00h | Configuration | R/W    | `399Fh`  | RST (bit 15) resets the chip and self-clears         |
//! | 01h | Shunt voltage | R      | `0000h`  | two's complement, LSB 10 µV, clamped to the PGA range |
//! | 02h | Bus voltage   | R      | `0000h`  | bits 15..3 LSB 4 mV, bit 1 CNVR, bit 0 OVF           |
//! | 03h | Power         | R      | `0000h`  | Equation 4; reading it clears CNVR                   |
//! | 04h | Current       | R      | `0000h`  | Equation 3, two's complement                         |
//! | 05h | Calibration   | R/W    | `0000h`  | bit 0 is void and reads 0 (§8.6.4.1)                 |
//!
//! # Conversions (§8.3.1, §8.4, §8.6.2.1)
//!
//! The ADC converts the shunt channel over its window (SADC setting), then the bus channel over
//! its window (BADC setting); the current and power arithmetic takes no extra time (§8.3.1). A
//! *cycle* is the channels the mode selects, back to back; in continuous modes cycles follow each
//! other without gaps, in triggered modes each configuration write runs exactly one cycle.
//! Writing the configuration (any mode but power-down/ADC-off) or the calibration restarts the
//! cycle at that instant (the datasheet is silent about calibration writes; we assume a restart,
//! and an idle chip stays idle); power-down and ADC-off abandon it. Leaving power-down costs the
//! 40 µs recovery of §8.3.1 before the next cycle starts. RST and the I2C general-call reset
//! (address 00h, command 06h, §8.5.6.2) restore every register and restart continuous
//! conversions.
//!
//! Each channel reports the mean of the [`GroundTruth`] over *its own* window, as an integrating
//! converter would: shunt = `mean_amps × shunt_ohms`, bus = `mean_volts`. Values are rounded to
//! the nearest LSB (10 µV, 4 mV); the shunt saturates at ± the PGA full scale (±4000, 8000, 16000,
//! 32000 counts, §8.6.3.1: saturation is how an over-range shows) and the bus at its register
//! field (13 bits in the 32 V range, 12 bits in the 16 V range, §8.6.3.2; negative reads 0). No
//! noise unless [`Ina219Sim::with_noise`] asks for a deterministic, seeded one.
//!
//! After both channels the chip computes (§8.5.1, equations 3 and 4)
//!
//! ```text
//! Current = trunc(Shunt × Calibration / 4096)        signed, truncated toward zero
//! Power   = trunc(|Current| × Bus / 5000)            unsigned: the power register has no sign bit
//! ```
//!
//! and sets CNVR. OVF is set when either result does not fit its register (current outside
//! `i16`, power above `u16::MAX`); both registers then saturate (the datasheet only says the data
//! "may be meaningless"). With calibration 0 both read 0, as after reset. CNVR is cleared by
//! reading the power register and by writing a conversion mode into the configuration register
//! (not by power-down or ADC-off writes) (§8.6.3.2).
//!
//! # Time
//!
//! Nothing runs in the background. On every transaction the simulator computes, in integer
//! nanoseconds since its creation on the given [`Clock`](crate::clock::Clock), every cycle
//! completed up to `clock.now()`: it jumps straight to the last one and evaluates only that one
//! (registers hold only the last conversion), while the cycle counter in [`SimStats`] still counts
//! all of them. An hour of cycles is one division, and the schedule never drifts. Within one
//! transaction time stands still, so a multi-register read sees one consistent conversion.
//! [`GroundTruth`] time is seconds since the simulator was created.
//!
//! # I2C (§8.5.5, §8.5.6)
//!
//! A write transfer's first byte sets the register pointer, the next two are the register value,
//! MSB first; a read transfer returns the register at the pointer, MSB first. Adjacent operations
//! of the same kind in one [`I2c::transaction`] form one transfer, as the embedded-hal contract
//! says, so both the driver's combined Write/Read transaction and rppal's one-call-per-operation
//! style work. Malformed transfers never panic and are handled as the chip plausibly would:
//!
//! * a write of pointer + 1 byte sets the pointer and writes nothing; bytes after the first data
//!   word are ignored; writes to read-only registers are ignored;
//! * a 1-byte read returns the MSB; longer reads repeat MSB, LSB (the pointer does not
//!   auto-increment);
//! * the pointer decodes 3 bits (pointers alias modulo 8, as real parts show in `i2cdump`); the
//!   undocumented registers 06h and 07h read 0 here;
//! * a wrong address is not acknowledged ([`NoAcknowledgeSource::Address`]); a general call
//!   (00h) with command 06h resets the chip, other commands are not acknowledged
//!   ([`NoAcknowledgeSource::Data`]) and a read from 00h is refused.
//!
//! # Faults
//!
//! [`FaultHandle`] injects bus faults while the driver owns the simulator; see [`BusFault`].

use crate::clock::SharedClock;
use crate::power::truth::GroundTruth;
use embedded_hal::i2c::{ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How long a transfer takes to fail under [`BusFault::Timeout`] (the SMBus clock-low timeout,
/// t_TIMEOUT, is 25 to 35 ms).
pub const TIMEOUT: Duration = Duration::from_millis(25);

/// Recovery time from power-down mode before the first conversion starts ("full recovery from
/// Power-Down requires 40 µs", §8.3.1).
pub const POWER_DOWN_RECOVERY: Duration = Duration::from_micros(40);

/// Register pointers (§8.6.1, table 2).
pub mod reg {
    /// 00h, read/write, reset 399Fh.
    pub const CONFIGURATION: u8 = 0x00;
    /// 01h, read-only, signed, LSB 10 µV.
    pub const SHUNT_VOLTAGE: u8 = 0x01;
    /// 02h, read-only: bus voltage (bits 15..3, LSB 4 mV), CNVR (bit 1), OVF (bit 0).
    pub const BUS_VOLTAGE: u8 = 0x02;
    /// 03h, read-only; reading it clears CNVR.
    pub const POWER: u8 = 0x03;
    /// 04h, read-only, signed.
    pub const CURRENT: u8 = 0x04;
    /// 05h, read/write, bit 0 reads 0.
    pub const CALIBRATION: u8 = 0x05;
}

/// Configuration register value after power-on or RST (§8.6.2.1).
pub const CONFIGURATION_RESET: u16 = 0x399F;

const CONFIG_RST: u16 = 1 << 15;
/// Bit 14 is unused ("—" in §8.6.2.1); it is modelled as reading 0.
const CONFIG_UNUSED: u16 = 1 << 14;
const CONFIG_BRNG: u16 = 1 << 13;
const BUS_CNVR: u16 = 1 << 1;
const BUS_OVF: u16 = 1;
/// The pointer register decodes P2..P0 only.
const POINTER_MASK: u8 = 0b111;
/// The I2C general-call address and its reset command (§8.5.6.2).
const GENERAL_CALL: u8 = 0x00;
const GENERAL_CALL_RESET: u8 = 0x06;

const SHUNT_LSB_VOLTS: f64 = 10e-6;
const BUS_LSB_VOLTS: f64 = 4e-3;
const POWER_DOWN_RECOVERY_NS: u64 = 40_000;

/// Conversion time of one channel for its 4-bit BADC or SADC field, in nanoseconds (§8.6.2.1,
/// ADC settings table). `0X00`..`0X11` are single 9..12-bit samples (X, BADC3/SADC3, is
/// don't-care, so `01xx` aliases `00xx`), `1000` is 12-bit too, `1001`..`1111` average 2..128
/// samples.
pub const fn adc_conversion_ns(field: u16) -> u64 {
    match field & 0b1111 {
        0b0000 | 0b0100 => 84_000,
        0b0001 | 0b0101 => 148_000,
        0b0010 | 0b0110 => 276_000,
        0b0011 | 0b0111 | 0b1000 => 532_000,
        0b1001 => 1_060_000,
        0b1010 => 2_130_000,
        0b1011 => 4_260_000,
        0b1100 => 8_510_000,
        0b1101 => 17_020_000,
        0b1110 => 34_050_000,
        _ => 68_100_000,
    }
}

fn shunt_adc_ns(config: u16) -> u64 {
    adc_conversion_ns((config >> 3) & 0b1111)
}

fn bus_adc_ns(config: u16) -> u64 {
    adc_conversion_ns((config >> 7) & 0b1111)
}

/// Shunt full scale in 10 µV counts for the PG bits: ±40, 80, 160, 320 mV (§8.6.2.1, PG table).
fn shunt_full_scale(config: u16) -> i16 {
    4000 << ((config >> 11) & 0b11)
}

/// Largest bus count the register field holds: 13 bits in the 32 V range, 12 in the 16 V range
/// (bit 15 reads 0 there, §8.6.3.2).
fn bus_full_scale(config: u16) -> u16 {
    if config & CONFIG_BRNG != 0 {
        0x1FFF
    } else {
        0x0FFF
    }
}

/// Which channels a cycle converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Channels {
    shunt: bool,
    bus: bool,
}

/// The MODE bits (§8.6.2.1, mode settings table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    PowerDown,
    AdcOff,
    Triggered(Channels),
    Continuous(Channels),
}

fn mode(config: u16) -> Mode {
    let bits = config & 0b111;
    let channels = Channels {
        shunt: bits & 0b001 != 0,
        bus: bits & 0b010 != 0,
    };
    match bits {
        0b000 => Mode::PowerDown,
        0b100 => Mode::AdcOff,
        0b001..=0b011 => Mode::Triggered(channels),
        _ => Mode::Continuous(channels),
    }
}

/// Length of one cycle of `channels` under `config`, in nanoseconds.
fn cycle_ns(config: u16, channels: Channels) -> u64 {
    let shunt = if channels.shunt {
        shunt_adc_ns(config)
    } else {
        0
    };
    let bus = if channels.bus { bus_adc_ns(config) } else { 0 };
    shunt + bus
}

/// Register contents, kept in their natural types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Registers {
    config: u16,
    shunt: i16,
    /// Bus voltage in 4 mV counts (the BD field, bits 15..3).
    bus: u16,
    cnvr: bool,
    ovf: bool,
    power: u16,
    current: i16,
    calibration: u16,
}

impl Registers {
    const RESET: Registers = Registers {
        config: CONFIGURATION_RESET,
        shunt: 0,
        bus: 0,
        cnvr: false,
        ovf: false,
        power: 0,
        current: 0,
        calibration: 0,
    };

    fn bus_word(&self) -> u16 {
        (self.bus << 3) | if self.cnvr { BUS_CNVR } else { 0 } | if self.ovf { BUS_OVF } else { 0 }
    }
}

/// Deterministic measurement noise, Gaussian, in LSB of each channel (standard deviation).
///
/// The noise of a conversion depends only on the seed and the conversion's cycle number, never on
/// how often the driver polls, so replays are reproducible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noise {
    /// Seed of the noise sequence; the same seed gives the same noise on the same cycles.
    pub seed: u64,
    /// Standard deviation of the shunt reading in 10 µV LSB.
    pub shunt_lsb: f64,
    /// Standard deviation of the bus reading in 4 mV LSB.
    pub bus_lsb: f64,
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A standard normal deviate that is a pure function of its inputs (Box–Muller on two hashes).
fn gaussian(seed: u64, cycle: u64, channel: u64) -> f64 {
    const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
    let a = splitmix64(seed ^ splitmix64(cycle.wrapping_mul(2).wrapping_add(channel)));
    let b = splitmix64(a);
    let u1 = ((a >> 11) as f64 + 1.0) * SCALE; // (0, 1]
    let u2 = (b >> 11) as f64 * SCALE; // [0, 1)
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Round to the nearest count and saturate at ± the PGA full scale.
fn quantise_shunt(counts: f64, full_scale: i16) -> i16 {
    let fs = f64::from(full_scale);
    // NaN casts to 0; the clamp keeps the cast exact.
    counts.round().clamp(-fs, fs) as i16
}

/// Round to the nearest count and clamp to the register field (a bus voltage cannot be negative).
fn quantise_bus(counts: f64, full_scale: u16) -> u16 {
    counts.round().clamp(0.0, f64::from(full_scale)) as u16
}

/// Equations 3 and 4 of §8.5.1 on register values: `(current, power, overflow)`.
fn power_engine(shunt: i16, calibration: u16, bus: u16) -> (i16, u16, bool) {
    // i64 holds every intermediate: |shunt × cal| < 2^31, |current| < 2^20, × bus < 2^33.
    let current = i64::from(shunt) * i64::from(calibration) / 4096; // truncates toward zero
    let power = current.abs() * i64::from(bus) / 5000;
    let current_reg = i16::try_from(current).ok();
    let power_reg = u16::try_from(power).ok();
    let overflow = current_reg.is_none() || power_reg.is_none();
    let current_reg = current_reg.unwrap_or(if current < 0 { i16::MIN } else { i16::MAX });
    (current_reg, power_reg.unwrap_or(u16::MAX), overflow)
}

/// Nanoseconds from `origin` to `now`, saturating.
fn nanos_since(now: Duration, origin: Duration) -> u64 {
    u64::try_from(now.saturating_sub(origin).as_nanos()).unwrap_or(u64::MAX)
}

fn seconds(ns: u64) -> f64 {
    ns as f64 * 1e-9
}

/// A bus fault to inject, applying to every transfer until cleared.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BusFault {
    /// Every transfer fails with [`ErrorKind::NoAcknowledge`]`(`[`NoAcknowledgeSource::Address`]`)`:
    /// the chip is unpowered or disconnected. It keeps converting internally.
    Nack,
    /// Every transfer fails with [`ErrorKind::Other`] after taking [`TIMEOUT`] on the clock
    /// (`clock.sleep`: instant on a virtual clock, a real wait on the monotonic one). Nothing
    /// reaches the chip.
    Timeout,
    /// The chip stops converting: registers keep their last values, a CNVR already set stays set
    /// until the power register is read, and no new one comes. I2C keeps working. Conversions
    /// completed before the fault was set still count; after it is cleared the chip starts a
    /// fresh cycle at the moment of clearing.
    Frozen,
    /// Every read returns 0xFF bytes (SDA stuck high, or the device gone without a NACK); writes
    /// do not reach the chip, which keeps converting.
    AllOnes,
}

struct FaultState {
    fault: Option<BusFault>,
    clock: SharedClock,
    origin: Duration,
    /// When a freeze began that the simulator has not yet applied.
    frozen_at: Option<u64>,
    /// When a freeze ended that the simulator has not yet applied.
    thawed_at: Option<u64>,
}

/// A handle to inject bus faults while the driver owns the simulator. Clones share the state.
#[derive(Clone)]
pub struct FaultHandle(Arc<Mutex<FaultState>>);

impl FaultHandle {
    fn lock(&self) -> MutexGuard<'_, FaultState> {
        // The state stays consistent even if a holder panicked: every update is a plain store.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Inject `fault` (or clear it with `None`) for every subsequent transfer. The time of a
    /// change into or out of [`BusFault::Frozen`] is taken from the clock now, so conversions
    /// stop and resume when this is called, not at the next transfer.
    pub fn set(&self, fault: Option<BusFault>) {
        let mut st = self.lock();
        let now = nanos_since(st.clock.now(), st.origin);
        let was_frozen = st.fault == Some(BusFault::Frozen);
        let is_frozen = fault == Some(BusFault::Frozen);
        if is_frozen && !was_frozen {
            // A freeze → thaw → freeze sequence with no transfer in between collapses into one
            // freeze from the first instant: nothing observed the short thaw.
            if st.frozen_at.is_none() {
                st.frozen_at = Some(now);
            }
            st.thawed_at = None;
        } else if was_frozen && !is_frozen {
            st.thawed_at = Some(now);
        }
        st.fault = fault;
    }

    /// The fault currently injected.
    pub fn get(&self) -> Option<BusFault> {
        self.lock().fault.clone()
    }
}

impl fmt::Debug for FaultHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FaultHandle").field(&self.get()).finish()
    }
}

/// The error every failed simulated transfer returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimI2cError {
    kind: ErrorKind,
    detail: &'static str,
}

impl SimI2cError {
    fn nack(detail: &'static str) -> Self {
        Self {
            kind: ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address),
            detail,
        }
    }

    /// What went wrong, in words.
    pub fn detail(&self) -> &'static str {
        self.detail
    }
}

impl embedded_hal::i2c::Error for SimI2cError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for SimI2cError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "simulated INA219: {} ({})", self.detail, self.kind)
    }
}

impl std::error::Error for SimI2cError {}

/// Counters for tests. Updated lazily: they reflect the state as of the last transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Conversion cycles completed (each one set CNVR), including those skipped over lazily.
    pub cycles: u64,
    /// Cycles whose values were computed from the ground truth (the last of each lazy jump).
    pub evaluated_cycles: u64,
    /// Evaluated cycles whose current/power arithmetic overflowed (OVF set).
    pub overflows: u64,
    /// Calls to [`I2c::transaction`] (and so to `read`, `write`, `write_read`), failed ones too.
    pub transactions: u64,
    /// Register reads that reached the chip (a read transfer of at least one byte).
    pub register_reads: u64,
    /// Complete register writes (pointer + two bytes) that reached the chip, read-only ones too.
    pub register_writes: u64,
    /// Resets through the RST bit or the general call.
    pub resets: u64,
    /// Transactions refused with a NACK: wrong address or [`BusFault::Nack`].
    pub nacks: u64,
    /// Transactions failed by [`BusFault::Timeout`].
    pub timeouts: u64,
    /// Transactions answered with 0xFF bytes under [`BusFault::AllOnes`].
    pub all_ones: u64,
    /// Clock time (as `clock.now()`) at which the last completed cycle ended.
    pub last_cycle_end: Option<Duration>,
}

/// A simulated INA219 on an I2C bus. See the module documentation for the model.
pub struct Ina219Sim {
    truth: Box<dyn GroundTruth>,
    clock: SharedClock,
    /// `clock.now()` at creation: time zero of the schedule and of the ground truth.
    origin: Duration,
    shunt_ohms: f64,
    address: u8,
    regs: Registers,
    pointer: u8,
    /// Start of the cycle in progress (ns since origin; may lie in the future during power-down
    /// recovery), `None` while idle.
    cycle_start: Option<u64>,
    /// A [`BusFault::Frozen`] is in effect: the schedule does not advance.
    frozen: bool,
    noise: Option<Noise>,
    faults: FaultHandle,
    stats: SimStats,
}

impl Ina219Sim {
    /// A chip in its power-on state (continuous shunt and bus conversions, 12-bit, calibration 0),
    /// its first cycle starting now.
    ///
    /// `shunt_ohms` converts the truth's current into shunt voltage. `address` is the 7-bit I2C
    /// address the chip answers to; a real INA219 has 0x40..=0x4F (A0/A1 pins, §8.5.5.1), the
    /// simulator accepts any.
    pub fn new(
        truth: Box<dyn GroundTruth>,
        clock: SharedClock,
        shunt_ohms: f64,
        address: u8,
    ) -> Self {
        let origin = clock.now();
        let faults = FaultHandle(Arc::new(Mutex::new(FaultState {
            fault: None,
            clock: Arc::clone(&clock),
            origin,
            frozen_at: None,
            thawed_at: None,
        })));
        Self {
            truth,
            clock,
            origin,
            shunt_ohms,
            address,
            regs: Registers::RESET,
            pointer: 0,
            cycle_start: Some(0),
            frozen: false,
            noise: None,
            faults,
            stats: SimStats::default(),
        }
    }

    /// Add deterministic Gaussian noise to every conversion (off by default).
    pub fn with_noise(mut self, noise: Noise) -> Self {
        self.noise = Some(noise);
        self
    }

    /// A handle to inject bus faults while the driver owns the simulator.
    pub fn faults(&self) -> FaultHandle {
        self.faults.clone()
    }

    /// Counters as of the last transaction.
    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// The 7-bit address the simulator answers to.
    pub fn address(&self) -> u8 {
        self.address
    }

    fn now_ns(&self) -> u64 {
        nanos_since(self.clock.now(), self.origin)
    }

    /// Apply fault-state changes and run the schedule up to `now`; returns the fault in effect.
    fn catch_up(&mut self, now: u64) -> Option<BusFault> {
        let (fault, frozen_at, thawed_at) = {
            let mut st = self.faults.lock();
            (st.fault.clone(), st.frozen_at.take(), st.thawed_at.take())
        };
        if let Some(at) = frozen_at {
            if !self.frozen {
                self.advance(at.min(now));
                self.frozen = true;
            }
        }
        if let Some(at) = thawed_at {
            if self.frozen {
                self.frozen = false;
                // A fresh cycle from the thaw (a pending one was abandoned by the freeze).
                self.cycle_start = self.cycle_start.map(|start| start.max(at));
            }
        }
        if !self.frozen {
            self.advance(now);
        }
        fault
    }

    /// Complete every cycle that ended by `now`, evaluating only the last one.
    fn advance(&mut self, now: u64) {
        let Some(start) = self.cycle_start else {
            return;
        };
        let (channels, continuous) = match mode(self.regs.config) {
            Mode::Triggered(c) => (c, false),
            Mode::Continuous(c) => (c, true),
            Mode::PowerDown | Mode::AdcOff => {
                self.cycle_start = None;
                return;
            }
        };
        let period = cycle_ns(self.regs.config, channels);
        if period == 0 {
            return; // cannot happen (every conversion mode converts a channel); never divide by 0
        }
        match start.checked_add(period) {
            Some(end) if end <= now => {}
            _ => return,
        }
        if continuous {
            // n ≥ 1 whole cycles fit in [start, now]; registers only keep the last one.
            let n = (now - start) / period;
            let last = start + (n - 1) * period;
            self.stats.cycles += n - 1;
            self.convert(last, channels);
            self.cycle_start = Some(start + n * period);
        } else {
            self.convert(start, channels);
            self.cycle_start = None;
        }
    }

    /// One cycle starting at `start`: the shunt window, then the bus window, then the arithmetic.
    fn convert(&mut self, start: u64, channels: Channels) {
        let config = self.regs.config;
        let index = self.stats.cycles;
        let mut t = start;
        if channels.shunt {
            let end = t + shunt_adc_ns(config);
            let amps = self.truth.mean_amps(seconds(t), seconds(end));
            let mut counts = amps * self.shunt_ohms / SHUNT_LSB_VOLTS;
            if let Some(n) = self.noise {
                counts += n.shunt_lsb * gaussian(n.seed, index, 0);
            }
            self.regs.shunt = quantise_shunt(counts, shunt_full_scale(config));
            t = end;
        }
        if channels.bus {
            let end = t + bus_adc_ns(config);
            let volts = self.truth.mean_volts(seconds(t), seconds(end));
            let mut counts = volts / BUS_LSB_VOLTS;
            if let Some(n) = self.noise {
                counts += n.bus_lsb * gaussian(n.seed, index, 1);
            }
            self.regs.bus = quantise_bus(counts, bus_full_scale(config));
            t = end;
        }
        let (current, power, overflow) =
            power_engine(self.regs.shunt, self.regs.calibration, self.regs.bus);
        self.regs.current = current;
        self.regs.power = power;
        self.regs.ovf = overflow;
        self.regs.cnvr = true;
        self.stats.cycles += 1;
        self.stats.evaluated_cycles += 1;
        self.stats.overflows += u64::from(overflow);
        self.stats.last_cycle_end = Some(self.origin + Duration::from_nanos(t));
    }

    /// The register at the pointer, with the side effect of a read (power clears CNVR).
    fn read_register(&mut self) -> u16 {
        self.stats.register_reads += 1;
        match self.pointer {
            reg::CONFIGURATION => self.regs.config,
            reg::SHUNT_VOLTAGE => u16::from_ne_bytes(self.regs.shunt.to_ne_bytes()),
            reg::BUS_VOLTAGE => self.regs.bus_word(),
            reg::POWER => {
                self.regs.cnvr = false;
                self.regs.power
            }
            reg::CURRENT => u16::from_ne_bytes(self.regs.current.to_ne_bytes()),
            reg::CALIBRATION => self.regs.calibration,
            _ => 0,
        }
    }

    fn write_register(&mut self, value: u16, now: u64) {
        self.stats.register_writes += 1;
        match self.pointer {
            reg::CONFIGURATION => self.write_configuration(value, now),
            reg::CALIBRATION => {
                self.regs.calibration = value & !1;
                // Restart a cycle in progress; an idle chip stays idle.
                self.cycle_start = self.cycle_start.map(|start| start.max(now));
            }
            // Read-only and undocumented registers ignore writes.
            _ => {}
        }
    }

    fn write_configuration(&mut self, value: u16, now: u64) {
        if value & CONFIG_RST != 0 {
            // Same as power-on reset; the other bits of this write are not kept (§8.6.2.1).
            self.regs = Registers::RESET;
            self.pointer = 0;
            self.cycle_start = Some(now);
            self.stats.resets += 1;
            return;
        }
        let was_powered_down = mode(self.regs.config) == Mode::PowerDown;
        self.regs.config = value & !CONFIG_UNUSED;
        match mode(value) {
            Mode::PowerDown | Mode::AdcOff => self.cycle_start = None,
            Mode::Triggered(_) | Mode::Continuous(_) => {
                self.regs.cnvr = false;
                let delay = if was_powered_down {
                    POWER_DOWN_RECOVERY_NS
                } else {
                    0
                };
                self.cycle_start = Some(now.saturating_add(delay));
            }
        }
    }
}

impl Ina219Sim {
    /// A transaction to the general-call address 00h: command 06h is a reset (§8.5.6.2).
    fn general_call(&mut self, ops: &[Operation<'_>], now: u64) -> Result<(), SimI2cError> {
        if let Some(Operation::Read(_)) = ops.first() {
            return Err(SimI2cError::nack("a general call cannot read"));
        }
        // The command is the first byte of the first (write) transfer.
        let command = ops
            .iter()
            .map_while(|op| match op {
                Operation::Write(bytes) => Some(*bytes),
                Operation::Read(_) => None,
            })
            .flat_map(|bytes| bytes.iter())
            .next();
        match command {
            None => Ok(()), // address-only probe: acknowledged
            Some(&GENERAL_CALL_RESET) => {
                self.write_configuration(CONFIG_RST, now);
                Ok(())
            }
            Some(_) => Err(SimI2cError {
                kind: ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data),
                detail: "unsupported general-call command",
            }),
        }
    }
}

impl fmt::Debug for Ina219Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ina219Sim")
            .field("address", &self.address)
            .field("shunt_ohms", &self.shunt_ohms)
            .field("registers", &self.regs)
            .field("pointer", &self.pointer)
            .field("cycle_start_ns", &self.cycle_start)
            .field("frozen", &self.frozen)
            .field("fault", &self.faults.get())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ErrorType for Ina219Sim {
    type Error = SimI2cError;
}

impl I2c for Ina219Sim {
    fn transaction(&mut self, address: u8, ops: &mut [Operation<'_>]) -> Result<(), Self::Error> {
        self.stats.transactions += 1;
        let general_call = address == GENERAL_CALL && self.address != GENERAL_CALL;
        if address != self.address && !general_call {
            self.stats.nacks += 1;
            return Err(SimI2cError::nack("no device at this address"));
        }
        let now = self.now_ns();
        let fault = self.catch_up(now);
        match fault {
            Some(BusFault::Nack) => {
                self.stats.nacks += 1;
                return Err(SimI2cError::nack(
                    "injected fault: address not acknowledged",
                ));
            }
            Some(BusFault::Timeout) => {
                self.stats.timeouts += 1;
                self.clock.sleep(TIMEOUT);
                return Err(SimI2cError {
                    kind: ErrorKind::Other,
                    detail: "injected fault: bus timeout",
                });
            }
            Some(BusFault::AllOnes) => {
                self.stats.all_ones += 1;
                for op in ops.iter_mut() {
                    if let Operation::Read(buf) = op {
                        buf.fill(0xFF);
                    }
                }
                return Ok(());
            }
            Some(BusFault::Frozen) | None => {}
        }
        if general_call {
            return self.general_call(ops, now);
        }

        // Adjacent operations of one kind are one transfer (embedded-hal transaction contract);
        // a change of kind is a repeated START, beginning a new transfer.
        let mut previous_was_write: Option<bool> = None;
        let mut position = 0usize;
        let mut msb = 0u8;
        let mut word = [0u8; 2];
        for op in ops.iter_mut() {
            match op {
                Operation::Write(bytes) => {
                    if previous_was_write != Some(true) {
                        position = 0;
                    }
                    previous_was_write = Some(true);
                    for &byte in bytes.iter() {
                        match position {
                            0 => self.pointer = byte & POINTER_MASK,
                            1 => msb = byte,
                            2 => self.write_register(u16::from_be_bytes([msb, byte]), now),
                            _ => {} // past the data word: acknowledged and ignored
                        }
                        position = position.saturating_add(1);
                    }
                }
                Operation::Read(buf) => {
                    if previous_was_write != Some(false) {
                        position = 0;
                    }
                    previous_was_write = Some(false);
                    for byte in buf.iter_mut() {
                        if position == 0 {
                            word = self.read_register().to_be_bytes();
                        }
                        *byte = word[position % 2];
                        position = position.saturating_add(1);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic; the workspace lint is for the daemon
mod tests {
    use super::*;
    use crate::clock::{Clock, VirtualClock};
    use embedded_hal::i2c::Error as _;
    use ina219::address::Address;
    use ina219::calibration::{simulate, IntCalibration, MicroAmpere, MicroWatt};
    use ina219::configuration::{
        Configuration, MeasuredSignals, OperatingMode, Resolution, ShuntVoltageRange,
    };
    use ina219::errors::{BusVoltageReadError, MeasurementError};
    use ina219::measurements::{BusVoltage, ShuntVoltage};
    use ina219::SyncIna219;

    const ADDR: u8 = 0x40;
    /// Shunt Avg128 (68.10 ms) + bus 12-bit (0.532 ms).
    const PERIOD: Duration = Duration::from_micros(68_632);

    // ---- ground truths ----

    /// Constant volts and amps.
    struct Constant {
        volts: f64,
        amps: f64,
    }

    impl GroundTruth for Constant {
        fn mean_volts(&mut self, _t0: f64, _t1: f64) -> f64 {
            self.volts
        }
        fn mean_amps(&mut self, _t0: f64, _t1: f64) -> f64 {
            self.amps
        }
        fn end(&self) -> Option<f64> {
            None
        }
    }

    /// Volts and amps each stepping from one value to another at their own instant.
    struct Step {
        volts: (f64, f64, f64), // (before, at, after)
        amps: (f64, f64, f64),
    }

    fn step_mean((before, at, after): (f64, f64, f64), t0: f64, t1: f64) -> f64 {
        let split = at.clamp(t0, t1);
        (before * (split - t0) + after * (t1 - split)) / (t1 - t0)
    }

    impl GroundTruth for Step {
        fn mean_volts(&mut self, t0: f64, t1: f64) -> f64 {
            step_mean(self.volts, t0, t1)
        }
        fn mean_amps(&mut self, t0: f64, t1: f64) -> f64 {
            step_mean(self.amps, t0, t1)
        }
        fn end(&self) -> Option<f64> {
            None
        }
    }

    /// A constant truth that logs every window it is asked about.
    /// Which channel asked for which window: `("shunt" | "bus", t0, t1)`.
    type WindowLog = Arc<Mutex<Vec<(&'static str, f64, f64)>>>;

    struct Recorder {
        log: WindowLog,
    }

    impl GroundTruth for Recorder {
        fn mean_volts(&mut self, t0: f64, t1: f64) -> f64 {
            self.log.lock().unwrap().push(("bus", t0, t1));
            5.0
        }
        fn mean_amps(&mut self, t0: f64, t1: f64) -> f64 {
            self.log.lock().unwrap().push(("shunt", t0, t1));
            0.5
        }
        fn end(&self) -> Option<f64> {
            None
        }
    }

    // ---- helpers ----

    fn sim_with(truth: impl GroundTruth + 'static, ohms: f64) -> (Ina219Sim, Arc<VirtualClock>) {
        let clock = Arc::new(VirtualClock::new());
        let sim = Ina219Sim::new(Box::new(truth), clock.clone(), ohms, ADDR);
        (sim, clock)
    }

    fn constant(volts: f64, amps: f64, ohms: f64) -> (Ina219Sim, Arc<VirtualClock>) {
        sim_with(Constant { volts, amps }, ohms)
    }

    fn rd(sim: &mut Ina219Sim, register: u8) -> u16 {
        let mut buf = [0u8; 2];
        sim.write_read(ADDR, &[register], &mut buf).unwrap();
        u16::from_be_bytes(buf)
    }

    fn wr(sim: &mut Ina219Sim, register: u8, value: u16) {
        let [msb, lsb] = value.to_be_bytes();
        sim.write(ADDR, &[register, msb, lsb]).unwrap();
    }

    fn cnvr(sim: &mut Ina219Sim) -> bool {
        rd(sim, reg::BUS_VOLTAGE) & BUS_CNVR != 0
    }

    /// A configuration word from its fields (§8.6.2.1).
    fn config_word(brng: u16, pg: u16, badc: u16, sadc: u16, mode: u16) -> u16 {
        (brng << 13) | (pg << 11) | (badc << 7) | (sadc << 3) | mode
    }

    fn ns(d: Duration) -> u64 {
        u64::try_from(d.as_nanos()).unwrap()
    }

    /// The datasheet example of §8.5.1: 100 µA current LSB, 0.1 Ω shunt → Cal 4096.
    fn datasheet_calibration() -> IntCalibration {
        IntCalibration::new(MicroAmpere(100), 100_000).unwrap()
    }

    fn avg128_continuous() -> Configuration {
        Configuration {
            shunt_resolution: Resolution::Avg128,
            bus_resolution: Resolution::Res12Bit,
            operating_mode: OperatingMode::Continous(MeasuredSignals::ShutAndBusVoltage),
            ..Default::default()
        }
    }

    /// rppal-style bus: every operation of a transaction is its own I2C call.
    struct SplitCalls(Ina219Sim);

    impl ErrorType for SplitCalls {
        type Error = SimI2cError;
    }

    impl I2c for SplitCalls {
        fn transaction(
            &mut self,
            address: u8,
            ops: &mut [Operation<'_>],
        ) -> Result<(), Self::Error> {
            for op in ops.iter_mut() {
                self.0.transaction(address, std::slice::from_mut(op))?;
            }
            Ok(())
        }
    }

    /// The real driver over the simulator, reset and calibrated as in the datasheet example.
    fn driver(sim: Ina219Sim) -> SyncIna219<Ina219Sim, IntCalibration> {
        SyncIna219::new_calibrated(
            sim,
            Address::from_byte(ADDR).unwrap(),
            datasheet_calibration(),
        )
        .unwrap()
    }

    #[test]
    fn simulator_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Ina219Sim>();
        assert_send::<FaultHandle>();
        assert_send::<SimI2cError>();
    }

    // ---- the real driver, end to end ----

    fn driver_round_trip<I: I2c>(bus: I, clock: &VirtualClock)
    where
        I::Error: fmt::Debug,
    {
        let address = Address::from_byte(ADDR).unwrap();
        let mut ina = SyncIna219::new_calibrated(bus, address, datasheet_calibration()).unwrap();
        ina.set_configuration(avg128_continuous()).unwrap();
        assert_eq!(ina.configuration().unwrap(), avg128_continuous());

        assert_eq!(ina.next_measurement().unwrap(), None);
        clock.advance(PERIOD - Duration::from_nanos(1));
        assert_eq!(
            ina.next_measurement().unwrap(),
            None,
            "1 ns before the cycle ends"
        );
        clock.advance(Duration::from_nanos(1));
        let m = ina.next_measurement().unwrap().expect("a completed cycle");
        // 0.5 A × 0.1 Ω = 50 mV = 5000 × 10 µV; 5.0 V = 1250 × 4 mV.
        assert_eq!(m.shunt_voltage, ShuntVoltage::from_10uv(5000));
        assert_eq!(m.bus_voltage.voltage_mv(), 5000);
        assert_eq!(m.bus_voltage.voltage_4mv(), 1250);
        assert!(m.bus_voltage.is_conversion_ready());
        assert!(!m.bus_voltage.has_math_overflowed());
        // Current register 5000 × 4096 / 4096 = 5000 → × 100 µA; power 5000 × 1250 / 5000 = 1250
        // → × 2 mW (power LSB = 20 × current LSB).
        assert_eq!(m.current, MicroAmpere(500_000));
        assert_eq!(m.power, MicroWatt(2_500_000));
        assert_eq!(ina.current_raw().unwrap().0, 5000);
        assert_eq!(ina.power_raw().unwrap().0, 1250);
        // Reading power inside next_measurement cleared CNVR.
        assert_eq!(ina.next_measurement().unwrap(), None);
        clock.advance(PERIOD);
        assert!(ina.next_measurement().unwrap().is_some());
    }

    #[test]
    fn driver_over_combined_transactions() {
        let (sim, clock) = constant(5.0, 0.5, 0.1);
        driver_round_trip(sim, &clock);
    }

    #[test]
    fn driver_over_one_call_per_operation() {
        let (sim, clock) = constant(5.0, 0.5, 0.1);
        driver_round_trip(SplitCalls(sim), &clock);
    }

    #[test]
    fn driver_init_resets_a_configured_chip() {
        let (mut sim, _clock) = constant(5.0, 0.5, 0.1);
        wr(&mut sim, reg::CONFIGURATION, 0x0007);
        wr(&mut sim, reg::CALIBRATION, 1234);
        {
            // The driver borrows the simulator (`I2c` is implemented for `&mut T`).
            SyncIna219::new_calibrated(
                &mut sim,
                Address::from_byte(ADDR).unwrap(),
                datasheet_calibration(),
            )
            .unwrap();
        }
        assert_eq!(rd(&mut sim, reg::CONFIGURATION), CONFIGURATION_RESET);
        assert_eq!(rd(&mut sim, reg::CALIBRATION), 4096);
        assert_eq!(sim.stats().resets, 1);
    }

    // ---- registers ----

    #[test]
    fn reset_values_and_rst_bit() {
        let (mut sim, clock) = constant(5.0, 0.5, 0.1);
        let expect_reset = [(0u8, 0x399Fu16), (1, 0), (2, 0), (3, 0), (4, 0), (5, 0)];
        for (r, v) in expect_reset {
            assert_eq!(rd(&mut sim, r), v, "register {r} after power-on");
        }
        wr(&mut sim, reg::CALIBRATION, 4096);
        wr(&mut sim, reg::CONFIGURATION, config_word(0, 1, 3, 3, 7));
        clock.advance(Duration::from_millis(2));
        assert_ne!(rd(&mut sim, reg::BUS_VOLTAGE), 0);
        // RST with arbitrary other bits: all registers to their defaults, RST self-clears.
        wr(&mut sim, reg::CONFIGURATION, 0x8000 | 0x1234);
        for (r, v) in expect_reset {
            assert_eq!(rd(&mut sim, r), v, "register {r} after RST");
        }
        // And conversions restart from the reset instant, in the default mode (532 + 532 µs).
        clock.advance(Duration::from_micros(1063));
        assert!(!cnvr(&mut sim));
        clock.advance(Duration::from_micros(1));
        assert!(cnvr(&mut sim));
    }

    #[test]
    fn general_call_reset() {
        let (mut sim, clock) = constant(5.0, 0.5, 0.1);
        wr(&mut sim, reg::CALIBRATION, 4096);
        wr(
            &mut sim,
            reg::CONFIGURATION,
            config_word(0, 0, 0b1111, 0b1111, 0b011),
        );
        clock.advance(Duration::from_millis(500));
        assert!(cnvr(&mut sim));
        // Other general-call commands and reads are refused and change nothing.
        let err = sim.write(GENERAL_CALL, &[0x04]).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data)
        );
        let err = sim.read(GENERAL_CALL, &mut [0u8; 2]).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)
        );
        sim.write(GENERAL_CALL, &[]).unwrap();
        assert_eq!(rd(&mut sim, reg::CALIBRATION), 4096);
        // 06h: a power-on reset, conversions restart in the default mode.
        sim.write(GENERAL_CALL, &[GENERAL_CALL_RESET]).unwrap();
        assert_eq!(sim.stats().resets, 1);
        for (r, v) in [(0u8, CONFIGURATION_RESET), (2, 0), (4, 0), (5, 0)] {
            assert_eq!(
                rd(&mut sim, r),
                v,
                "register {r} after the general-call reset"
            );
        }
        clock.advance(Duration::from_micros(1_064));
        assert!(cnvr(&mut sim));
    }

    #[test]
    fn calibration_bit_zero_reads_zero_and_read_only_registers_ignore_writes() {
        let (mut sim, clock) = constant(5.0, 0.5, 0.1);
        wr(&mut sim, reg::CALIBRATION, 0x1001);
        assert_eq!(rd(&mut sim, reg::CALIBRATION), 0x1000);
        wr(&mut sim, reg::CALIBRATION, 0xFFFF);
        assert_eq!(rd(&mut sim, reg::CALIBRATION), 0xFFFE);
        clock.advance(Duration::from_millis(2));
        let before: Vec<u16> = (1..=4).map(|r| rd(&mut sim, r)).collect();
        for r in 1..=4 {
            wr(&mut sim, r, 0xA5A5);
        }
        // Reading power (3) above cleared CNVR; compare the words without it.
        let after: Vec<u16> = (1..=4).map(|r| rd(&mut sim, r)).collect();
        assert_eq!(before[0], after[0]);
        assert_eq!(before[1] & !BUS_CNVR, after[1]);
        assert_eq!(before[2..], after[2..]);
        // Bit 14 of the configuration is unused and reads 0.
        wr(&mut sim, reg::CONFIGURATION, 0x7FFF);
        assert_eq!(rd(&mut sim, reg::CONFIGURATION), 0x3FFF);
    }

    // ---- timing ----

    /// §8.6.2.1 ADC settings: every 4-bit code (aliases included) → conversion time in µs.
    const ADC_TABLE_US: [(u16, u64); 16] = [
        (0b0000, 84),
        (0b0001, 148),
        (0b0010, 276),
        (0b0011, 532),
        (0b0100, 84),
        (0b0101, 148),
        (0b0110, 276),
        (0b0111, 532),
        (0b1000, 532),
        (0b1001, 1_060),
        (0b1010, 2_130),
        (0b1011, 4_260),
        (0b1100, 8_510),
        (0b1101, 17_020),
        (0b1110, 34_050),
        (0b1111, 68_100),
    ];

    #[test]
    fn first_cnvr_after_shunt_plus_bus_time_for_every_adc_setting() {
        let (mut sim, clock) = constant(5.0, 0.5, 0.1);
        for (sadc, shunt_us) in ADC_TABLE_US {
            for (badc, bus_us) in ADC_TABLE_US {
                let word = config_word(1, 3, badc, sadc, 0b111);
                // The driver crate's own table agrees.
                let crate_us = Configuration::from_bits(word).conversion_time_us().unwrap();
                assert_eq!(u64::from(crate_us), shunt_us + bus_us);

                wr(&mut sim, reg::CONFIGURATION, word);
                let total = Duration::from_micros(shunt_us + bus_us);
                clock.advance(total - Duration::from_nanos(1));
                assert!(
                    !cnvr(&mut sim),
                    "SADC {sadc:04b} BADC {badc:04b}: too early"
                );
                clock.advance(Duration::from_nanos(1));
                assert!(cnvr(&mut sim), "SADC {sadc:04b} BADC {badc:04b}: not ready");
            }
        }
    }

    #[test]
    fn single_channel_and_triggered_modes_take_their_own_time() {
        // (mode bits, converts shunt, converts bus)
        let modes = [
            (0b001, true, false),
            (0b010, false, true),
            (0b011, true, true),
            (0b101, true, false),
            (0b110, false, true),
            (0b111, true, true),
        ];
        let (mut sim, clock) = constant(5.0, 0.5, 0.1);
        for (mode_bits, shunt, bus) in modes {
            // Shunt 2.13 ms, bus 8.51 ms.
            let word = config_word(1, 3, 0b1100, 0b1010, mode_bits);
            let us = (if shunt { 2_130 } else { 0 }) + (if bus { 8_510 } else { 0 });
            wr(&mut sim, reg::CONFIGURATION, word);
            clock.advance(Duration::from_micros(us) - Duration::from_nanos(1));
            assert!(!cnvr(&mut sim), "mode {mode_bits:03b}: too early");
            clock.advance(Duration::from_nanos(1));
            assert!(cnvr(&mut sim), "mode {mode_bits:03b}: not ready");
        }
    }

    #[test]
    fn continuous_cycles_are_back_to_back_without_drift() {
        let (mut sim, clock) = constant(5.0, 0.5, 0.1);
        wr(&mut sim, reg::CONFIGURATION, avg128_continuous().as_bits());
        let start = sim.stats().cycles;
        // An hour in one jump: every cycle is counted, one is evaluated.
        let hour = Duration::from_secs(3600);
        clock.advance(hour);
        assert!(cnvr(&mut sim));
        let expected = ns(hour) / ns(PERIOD);
        assert_eq!(sim.stats().cycles - start, expected);
        assert_eq!(sim.stats().evaluated_cycles, 1);
        let last_end = PERIOD * u32::try_from(expected).unwrap();
        assert_eq!(sim.stats().last_cycle_end, Some(last_end));
        // The next cycle ends exactly one period after the last, no rounding drift.
        clock.advance(last_end + PERIOD - clock.now() - Duration::from_nanos(1));
        rd(&mut sim, reg::POWER);
        assert!(!cnvr(&mut sim));
        clock.advance(Duration::from_nanos(1));
        assert!(cnvr(&mut sim));
        assert_eq!(sim.stats().cycles - start, expected + 1);
    }

    #[test]
    fn config_and_calibration_writes_restart_the_cycle() {
        let (mut sim, clock) = constant(5.0, 0.5, 0.1);
        let word = config_word(1, 3, 0b0011, 0b0011, 0b111); // 1.064 ms cycle
        wr(&mut sim, reg::CONFIGURATION, word);
        clock.advance(Duration::from_micros(1_000));
        wr(&mut sim, reg::CALIBRATION, 4096);
        clock.advance(Duration::from_micros(1_063));
        assert!(!cnvr(&mut sim), "calibration write restarted the cycle");
        clock.advance(Duration::from_micros(1));
        assert!(cnvr(&mut sim));
        clock.advance(Duration::from_micros(1_000));
        wr(&mut sim, reg::CONFIGURATION, word);
        assert!(!cnvr(&mut sim), "a configuration write clears CNVR");
        clock.advance(Duration::from_micros(1_063));
        assert!(!cnvr(&mut sim), "configuration write restarted the cycle");
        clock.advance(Duration::from_micros(1));
        assert!(cnvr(&mut sim));
    }

    #[test]
    fn power_down_and_adc_off_stop_conversions_and_keep_cnvr() {
        let (mut sim, clock) = constant(5.0, 0.5, 0.1);
        let run = config_word(1, 3, 0b0011, 0b0011, 0b111);
        for off in [0b100, 0b000] {
            wr(&mut sim, reg::CONFIGURATION, run);
            clock.advance(Duration::from_micros(1_064));
            assert!(cnvr(&mut sim));
            let cycles = sim.stats().cycles; // stats are as of the last transaction
            wr(
                &mut sim,
                reg::CONFIGURATION,
                config_word(1, 3, 0b0011, 0b0011, off),
            );
            assert!(cnvr(&mut sim), "mode {off:03b} does not clear CNVR");
            rd(&mut sim, reg::POWER);
            clock.advance(Duration::from_secs(1));
            assert!(!cnvr(&mut sim));
            assert_eq!(sim.stats().cycles, cycles);
            assert_eq!(rd(&mut sim, reg::SHUNT_VOLTAGE), 5000, "registers hold");
        }
        // Leaving power-down costs the 40 µs recovery before the cycle starts.
        wr(
            &mut sim,
            reg::CONFIGURATION,
            config_word(1, 3, 0b0011, 0b0011, 0b000),
        );
        wr(&mut sim, reg::CONFIGURATION, run);
        clock.advance(Duration::from_micros(1_064 + 40) - Duration::from_nanos(1));
        assert!(!cnvr(&mut sim));
        clock.advance(Duration::from_nanos(1));
        assert!(cnvr(&mut sim));
    }

    #[test]
    fn triggered_mode_runs_one_cycle_per_configuration_write() {
        let (mut sim, clock) = constant(5.0, 0.5, 0.1);
        let triggered = config_word(1, 3, 0b0011, 0b1001, 0b011); // 1.06 + 0.532 ms
        let cycle = Duration::from_micros(1_592);
        wr(&mut sim, reg::CONFIGURATION, triggered);
        let base = sim.stats().cycles;
        for shot in 1..=5u64 {
            clock.advance(cycle * 10);
            assert!(cnvr(&mut sim));
            assert_eq!(rd(&mut sim, reg::POWER), 0, "calibration 0 → power 0");
            assert!(!cnvr(&mut sim));
            assert_eq!(sim.stats().cycles - base, shot, "one cycle per write");
            wr(&mut sim, reg::CONFIGURATION, triggered);
        }
        // A calibration write does not trigger an idle chip.
        clock.advance(cycle * 10);
        rd(&mut sim, reg::POWER);
        wr(&mut sim, reg::CALIBRATION, 4096);
        clock.advance(cycle * 10);
        assert!(!cnvr(&mut sim));
        assert_eq!(sim.stats().cycles - base, 6);
    }

    #[test]
    fn driver_trigger_in_triggered_mode() {
        let (sim, clock) = constant(12.0, 0.25, 0.1);
        let mut ina = driver(sim);
        let conf = Configuration {
            operating_mode: OperatingMode::Triggered(MeasuredSignals::ShutAndBusVoltage),
            ..Default::default()
        };
        ina.set_configuration(conf).unwrap();
        let cycle = conf.conversion_time().unwrap();
        for _ in 0..3 {
            assert_eq!(ina.next_measurement().unwrap(), None);
            clock.advance(cycle);
            let m = ina.next_measurement().unwrap().expect("one shot");
            assert_eq!(m.bus_voltage.voltage_mv(), 12_000);
            assert_eq!(m.current, MicroAmpere(250_000));
            clock.advance(cycle * 5);
            assert_eq!(ina.next_measurement().unwrap(), None, "no second shot");
            ina.trigger().unwrap();
        }
    }

    // ---- values ----

    #[test]
    fn each_channel_averages_the_truth_over_its_own_window() {
        // The chip is created 10 s into the clock: truth time is relative to its creation.
        let clock = Arc::new(VirtualClock::new());
        clock.advance(Duration::from_secs(10));
        let config = config_word(1, 3, 0b1010, 0b1010, 0b111); // 2.13 ms + 2.13 ms
        let t0 = 1.0; // seconds on the truth's time axis when the cycle starts
        let window = 2.13e-3;
        let truth = Step {
            // Current steps 0.1 → 0.3 A a quarter into the shunt window: mean 0.25 A.
            amps: (0.1, t0 + 0.25 * window, 0.3),
            // Voltage steps 4 → 6 V half-way through the bus window: mean 5 V. It does not
            // change during the shunt window, and the current does not during the bus window.
            volts: (4.0, t0 + 1.5 * window, 6.0),
        };
        let mut sim = Ina219Sim::new(Box::new(truth), clock.clone(), 0.1, ADDR);
        clock.advance(Duration::from_secs(1));
        wr(&mut sim, reg::CALIBRATION, 4096);
        wr(&mut sim, reg::CONFIGURATION, config);
        clock.advance(Duration::from_micros(4_260));
        assert!(cnvr(&mut sim));
        assert_eq!(rd(&mut sim, reg::SHUNT_VOLTAGE), 2500, "25 mV");
        assert_eq!(rd(&mut sim, reg::BUS_VOLTAGE) >> 3, 1250, "5.000 V");
        assert_eq!(rd(&mut sim, reg::CURRENT), 2500);
        // Next cycle: both after their steps.
        clock.advance(Duration::from_micros(4_260));
        assert_eq!(rd(&mut sim, reg::SHUNT_VOLTAGE), 3000);
        assert_eq!(rd(&mut sim, reg::BUS_VOLTAGE) >> 3, 1500);
    }

    #[test]
    fn windows_asked_of_the_truth_are_shunt_then_bus() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (mut sim, clock) = sim_with(Recorder { log: log.clone() }, 0.1);
        clock.advance(Duration::from_millis(3));
        wr(&mut sim, reg::CONFIGURATION, avg128_continuous().as_bits());
        clock.advance(PERIOD * 3 + Duration::from_millis(1));
        rd(&mut sim, reg::BUS_VOLTAGE);
        let log = log.lock().unwrap().clone();
        // The default 12-bit/12-bit cycles in the first 3 ms: two completed (1.064 ms each), only
        // the last evaluated; then three Avg128 cycles skipped to the third.
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        let expect = [
            ("shunt", 1.064e-3, 1.596e-3),
            ("bus", 1.596e-3, 2.128e-3),
            (
                "shunt",
                3e-3 + 2.0 * 68.632e-3,
                3e-3 + 2.0 * 68.632e-3 + 68.1e-3,
            ),
            (
                "bus",
                3e-3 + 2.0 * 68.632e-3 + 68.1e-3,
                3e-3 + 3.0 * 68.632e-3,
            ),
        ];
        assert_eq!(log.len(), expect.len(), "{log:?}");
        for ((name, a, b), (ename, ea, eb)) in log.iter().zip(expect) {
            assert_eq!(*name, ename);
            assert!(
                close(*a, ea) && close(*b, eb),
                "{name}: [{a}, {b}) ≠ [{ea}, {eb})"
            );
        }
    }

    #[test]
    fn shunt_quantisation_and_saturation_per_pga_range() {
        // (PG bits, shunt volts, expected register as i16)
        let cases: [(u16, f64, i16); 20] = [
            (0, 0.0123449, 1234),
            (0, 0.0123451, 1235),
            (0, -0.0123451, -1235),
            (0, 0.0399949, 3999),
            (0, 0.0400, 4000),
            (0, 0.0450, 4000),
            (0, -1.0, -4000),
            (1, 0.0799949, 7999),
            (1, 0.0812, 8000),
            (1, -0.0812, -8000),
            (2, 0.1500, 15000),
            (2, 0.1600, 16000),
            (2, 0.2000, 16000),
            (2, -0.2000, -16000),
            (3, 0.31999, 31999),
            (3, 0.3200, 32000),
            (3, 0.4000, 32000),
            (3, -0.4000, -32000),
            (3, 0.0000049, 0),
            (3, -0.0000051, -1),
        ];
        for (pg, volts, expect) in cases {
            // With a 1 Ω shunt the truth's amps are the shunt volts.
            let (mut sim, clock) = constant(5.0, volts, 1.0);
            wr(&mut sim, reg::CONFIGURATION, config_word(1, pg, 3, 3, 7));
            clock.advance(Duration::from_micros(1_064));
            let got = i16::from_ne_bytes(rd(&mut sim, reg::SHUNT_VOLTAGE).to_ne_bytes());
            assert_eq!(got, expect, "PG {pg:02b}, {volts} V");
        }
    }

    #[test]
    fn shunt_register_words_match_the_datasheet_format() {
        // §8.6.3.1: full-scale words per PGA, sign extended.
        let cases = [
            (3, 0.320, 0x7D00u16),
            (3, -0.320, 0x8300),
            (2, 0.160, 0x3E80),
            (2, -0.160, 0xC180),
            (1, 0.080, 0x1F40),
            (1, -0.080, 0xE0C0),
            (0, 0.040, 0x0FA0),
            (0, -0.040, 0xF060),
        ];
        for (pg, volts, word) in cases {
            let (mut sim, clock) = constant(5.0, volts, 1.0);
            wr(&mut sim, reg::CONFIGURATION, config_word(1, pg, 3, 3, 7));
            clock.advance(Duration::from_micros(1_064));
            assert_eq!(
                rd(&mut sim, reg::SHUNT_VOLTAGE),
                word,
                "PG {pg:02b}, {volts} V"
            );
        }
    }

    #[test]
    fn bus_quantisation_and_clamping() {
        // (BRNG, volts, expected 4 mV counts)
        let cases = [
            (1, 5.0, 1250),
            (1, 5.0015, 1250),
            (1, 5.0025, 1251),
            (1, 0.0019, 0),
            (1, 0.0021, 1),
            (1, -3.0, 0),
            (1, 26.0, 6500),
            (1, 32.764, 8191),
            (1, 40.0, 8191),
            (0, 16.0, 4000),
            (0, 16.38, 4095),
            (0, 20.0, 4095),
        ];
        for (brng, volts, expect) in cases {
            let (mut sim, clock) = constant(volts, 0.0, 0.1);
            wr(&mut sim, reg::CONFIGURATION, config_word(brng, 3, 3, 3, 7));
            clock.advance(Duration::from_micros(1_064));
            let word = rd(&mut sim, reg::BUS_VOLTAGE);
            assert_eq!(word >> 3, expect, "BRNG {brng}, {volts} V");
            assert_eq!(word & 0b100, 0, "bit 2 is unused and reads 0");
        }
    }

    #[test]
    fn current_and_power_registers_follow_equations_3_and_4() {
        // (calibration, shunt counts, bus counts) → (current register, power register, OVF)
        type Case = ((u16, i16, u16), (i16, u16, bool));
        let cases: [Case; 12] = [
            ((4096, 5000, 1250), (5000, 1250, false)), // the §8.5.1 example
            ((0, 5000, 1250), (0, 0, false)),          // uncalibrated reads 0
            ((4096, -5000, 1250), (-5000, 1250, false)), // power has no sign
            ((20480, 3000, 1250), (15000, 3750, false)),
            ((4098, 4095, 1250), (4096, 1024, false)), // 4096.99 truncates
            ((4098, -4095, 1250), (-4096, 1024, false)), // toward zero, not floor
            ((8192, 16383, 8191), (32766, 53677, false)),
            ((8192, 16384, 1000), (32767, 6553, true)), // 32768 > i16::MAX
            ((8192, -16384, 1000), (-32768, 6553, false)), // -32768 fits
            ((0xFFFE, 32000, 1250), (32767, 65535, true)),
            ((0xFFFE, -32000, 1250), (-32768, 65535, true)),
            ((2, 1, 8191), (0, 0, false)),
        ];
        for ((cal, shunt, bus), (current, power, ovf)) in cases {
            assert_eq!(
                power_engine(shunt, cal, bus),
                (current, power, ovf),
                "cal {cal}, shunt {shunt}"
            );
            // And through the registers.
            let volts = f64::from(bus) * 4e-3;
            let amps = f64::from(shunt) * 1e-5;
            let (mut sim, clock) = constant(volts, amps, 1.0);
            wr(&mut sim, reg::CALIBRATION, cal);
            wr(&mut sim, reg::CONFIGURATION, config_word(1, 3, 3, 3, 7));
            clock.advance(Duration::from_micros(1_064));
            let word = rd(&mut sim, reg::BUS_VOLTAGE);
            assert_eq!(word & BUS_OVF != 0, ovf, "OVF for cal {cal}, shunt {shunt}");
            assert_eq!(
                rd(&mut sim, reg::CURRENT),
                u16::from_ne_bytes(current.to_ne_bytes())
            );
            assert_eq!(rd(&mut sim, reg::POWER), power);
        }
    }

    #[test]
    fn power_engine_agrees_with_the_driver_crates_simulate() {
        // `ina219::calibration::simulate` does the chip's math in u32, so it only agrees where
        // the shunt voltage is non-negative and the current fits the signed register.
        let calibrations = [
            (100, 100_000),
            (20, 100_000),
            (500, 10_000),
            (1_000, 1_000_000),
        ];
        for (lsb, r) in calibrations {
            let cal = IntCalibration::new(MicroAmpere(lsb), r).unwrap();
            for shunt in (0..=32000i16).step_by(997) {
                for bus_mv in [0u16, 4, 3_300, 5_000, 12_000, 26_000, 32_000] {
                    let bus = BusVoltage::from_mv(bus_mv);
                    let sv = ShuntVoltage::from_10uv(shunt);
                    let (current, power, ovf) =
                        power_engine(shunt, cal.as_bits(), bus.voltage_4mv());
                    if ovf {
                        continue;
                    }
                    let m = simulate(&cal, bus, sv).unwrap();
                    assert_eq!(m.current, MicroAmpere(lsb * i64::from(current)));
                    // The driver decodes the (unsigned) power register as i16: above 32767
                    // LSB it reports negative power. Compare register bits, not physics.
                    let as_driver_reads = i64::from(i16::from_ne_bytes(power.to_ne_bytes()));
                    assert_eq!(m.power, MicroWatt(20 * lsb * as_driver_reads));
                }
            }
        }
    }

    #[test]
    fn driver_reports_math_overflow() {
        // 0.3 A through 0.1 Ω = 30 mV; Cal 0xFFFE → 3000 × 65534 / 4096 = 47998 > 32767.
        // (The largest register the driver's IntCalibration can express: 1 µA × 0.62501 Ω.)
        let (sim, clock) = constant(5.0, 0.3, 0.1);
        let cal = IntCalibration::new(MicroAmpere(1), 625_010).unwrap();
        assert_eq!(cal.as_bits(), 0xFFFE);
        let mut ina =
            SyncIna219::new_calibrated(sim, Address::from_byte(ADDR).unwrap(), cal).unwrap();
        ina.set_configuration(avg128_continuous()).unwrap();
        clock.advance(PERIOD);
        match ina.next_measurement() {
            Err(MeasurementError::MathOverflow(m)) => {
                assert_eq!(m.shunt_voltage, ShuntVoltage::from_10uv(3000));
                assert!(m.bus_voltage.has_math_overflowed());
            }
            other => panic!("expected MathOverflow, got {other:?}"),
        }
        let sim = ina.destroy();
        assert_eq!(sim.stats().overflows, 1);
    }

    #[test]
    fn driver_sees_over_range_as_full_scale() {
        // 1 A through 0.1 Ω = 100 mV on the ±40 mV range: saturates at +4000 (40.00 mV).
        let (sim, clock) = constant(5.0, 1.0, 0.1);
        let mut ina = driver(sim);
        let conf = Configuration {
            shunt_voltage_range: ShuntVoltageRange::Fsr40mv,
            ..avg128_continuous()
        };
        ina.set_configuration(conf).unwrap();
        clock.advance(PERIOD);
        let m = ina.next_measurement().unwrap().unwrap();
        assert_eq!(m.shunt_voltage.shunt_voltage_10uv(), 4000);
        assert_eq!(m.current, MicroAmpere(400_000));
    }

    #[test]
    fn noise_is_deterministic_and_small() {
        let noise = Noise {
            seed: 7,
            shunt_lsb: 2.0,
            bus_lsb: 1.0,
        };
        let run = |poll_every: u32| -> Vec<(u16, u16)> {
            let (sim, clock) = constant(5.0, 0.5, 0.1);
            let mut sim = sim.with_noise(noise);
            wr(&mut sim, reg::CONFIGURATION, config_word(1, 3, 3, 3, 7));
            let mut out = Vec::new();
            for i in 1..=200u32 {
                clock.advance(Duration::from_micros(1_064));
                if i % poll_every == 0 {
                    out.push((
                        rd(&mut sim, reg::SHUNT_VOLTAGE),
                        rd(&mut sim, reg::BUS_VOLTAGE) >> 3,
                    ));
                }
            }
            out
        };
        let every = run(1);
        let sparse = run(4);
        // The same cycle reads the same, however often it is polled.
        let every_fourth: Vec<_> = every.iter().skip(3).step_by(4).copied().collect();
        assert_eq!(every_fourth, sparse);
        assert!(every.iter().any(|&(s, _)| s != 5000), "noise is on");
        for &(s, b) in &every {
            assert!((4990..=5010).contains(&s), "shunt {s}");
            assert!((1245..=1255).contains(&b), "bus {b}");
        }
        let mean = every.iter().map(|&(s, _)| f64::from(s)).sum::<f64>() / every.len() as f64;
        assert!((mean - 5000.0).abs() < 0.5, "mean {mean}");
    }

    // ---- CNVR ----

    #[test]
    fn cnvr_is_cleared_by_reading_power_only() {
        let (mut sim, clock) = constant(5.0, 0.5, 0.1);
        clock.advance(Duration::from_micros(1_064));
        for r in [0, 1, 2, 4, 5] {
            rd(&mut sim, r);
            assert!(cnvr(&mut sim), "reading register {r} keeps CNVR");
        }
        rd(&mut sim, reg::POWER);
        assert!(!cnvr(&mut sim));
        // Set again by the next cycle.
        clock.advance(Duration::from_micros(1_064));
        assert!(cnvr(&mut sim));
    }

    // ---- faults ----

    fn calibrated_driver(
        sim: Ina219Sim,
        clock: &VirtualClock,
    ) -> SyncIna219<Ina219Sim, IntCalibration> {
        let mut ina = driver(sim);
        ina.set_configuration(avg128_continuous()).unwrap();
        clock.advance(PERIOD);
        assert!(ina.next_measurement().unwrap().is_some());
        ina
    }

    #[test]
    fn nack_and_timeout_faults_fail_transfers_and_clear() {
        // (fault, expected kind, time one failed transaction takes)
        let cases = [
            (
                BusFault::Nack,
                ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address),
                Duration::ZERO,
            ),
            (BusFault::Timeout, ErrorKind::Other, TIMEOUT),
        ];
        for (fault, kind, takes) in cases {
            let (sim, clock) = constant(5.0, 0.5, 0.1);
            let faults = sim.faults();
            let mut ina = calibrated_driver(sim, &clock);
            faults.set(Some(fault.clone()));
            assert_eq!(faults.get().as_ref(), Some(&fault));
            clock.advance(PERIOD);
            for _ in 0..3 {
                let before = clock.now();
                match ina.next_measurement() {
                    Err(MeasurementError::I2cError(e)) => {
                        assert_eq!(e.kind(), kind, "{fault:?}");
                        assert!(!e.to_string().is_empty());
                    }
                    other => panic!("{fault:?}: expected an I2C error, got {other:?}"),
                }
                assert_eq!(clock.now() - before, takes, "{fault:?}");
            }
            assert!(ina.set_configuration(avg128_continuous()).is_err());
            faults.set(None);
            // The failed configuration write never reached the chip, which kept converting.
            let m = ina
                .next_measurement()
                .unwrap()
                .expect("conversions went on");
            assert_eq!(m.bus_voltage.voltage_mv(), 5000);
        }
    }

    #[test]
    fn wrong_address_is_not_acknowledged() {
        let (mut sim, _clock) = constant(5.0, 0.5, 0.1);
        for addr in [0x01, 0x41, 0x4F, 0x7F] {
            let err = sim.write(addr, &[0]).unwrap_err();
            assert_eq!(
                err.kind(),
                ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)
            );
        }
        assert_eq!(sim.stats().nacks, 4);
        let (sim, _clock) = constant(5.0, 0.5, 0.1);
        let got = SyncIna219::new(sim, Address::from_byte(0x45).unwrap());
        assert!(got.is_err(), "the driver at another address finds nothing");
    }

    #[test]
    fn frozen_chip_stops_converting_until_cleared() {
        let (sim, clock) = constant(5.0, 0.5, 0.1);
        let faults = sim.faults();
        let mut ina = calibrated_driver(sim, &clock);
        // A cycle completes, then the chip freezes before anyone reads it.
        clock.advance(PERIOD + PERIOD / 2);
        faults.set(Some(BusFault::Frozen));
        clock.advance(PERIOD * 10);
        let m = ina
            .next_measurement()
            .unwrap()
            .expect("the cycle before the freeze");
        assert_eq!(m.bus_voltage.voltage_mv(), 5000);
        for _ in 0..10 {
            clock.advance(PERIOD);
            assert_eq!(
                ina.next_measurement().unwrap(),
                None,
                "no CNVR while frozen"
            );
        }
        // Registers still read their last values.
        assert_eq!(ina.power_raw().unwrap().0, 1250);
        faults.set(None);
        // A fresh cycle from the moment of clearing.
        clock.advance(PERIOD - Duration::from_nanos(1));
        assert_eq!(ina.next_measurement().unwrap(), None);
        clock.advance(Duration::from_nanos(1));
        assert!(ina.next_measurement().unwrap().is_some());
        let sim = ina.destroy();
        // init cycle + one before the freeze + one after.
        assert_eq!(sim.stats().cycles, 3);
    }

    #[test]
    fn freeze_and_thaw_between_transfers() {
        let (mut sim, clock) = constant(5.0, 0.5, 0.1);
        let faults = sim.faults();
        let cycle = Duration::from_micros(1_064);
        clock.advance(cycle / 2);
        faults.set(Some(BusFault::Frozen)); // mid-cycle: that cycle is abandoned
        clock.advance(cycle * 100);
        faults.set(None); // fresh cycle from here
        clock.advance(cycle / 2);
        assert!(!cnvr(&mut sim));
        assert_eq!(sim.stats().cycles, 0);
        clock.advance(cycle / 2);
        assert!(cnvr(&mut sim));
        assert_eq!(sim.stats().cycles, 1);
    }

    #[test]
    fn all_ones_reads_ffff_and_the_driver_rejects_the_bus_voltage() {
        let (sim, clock) = constant(5.0, 0.5, 0.1);
        let faults = sim.faults();
        let mut ina = calibrated_driver(sim, &clock);
        faults.set(Some(BusFault::AllOnes));
        clock.advance(PERIOD);
        match ina.next_measurement() {
            Err(MeasurementError::BusVoltageReadError(
                BusVoltageReadError::BusVoltageOutOfRange { is, .. },
            )) => assert_eq!(is.voltage_mv(), 0x1FFF * 4),
            other => panic!("expected an out-of-range bus voltage, got {other:?}"),
        }
        assert_eq!(ina.power_raw().unwrap().0, 0xFFFF);
        assert_eq!(ina.current_raw().unwrap().0, 0xFFFF);
        faults.set(None);
        // The all-ones reads never reached the chip: CNVR from the last cycle is still set.
        let m = ina.next_measurement().unwrap().expect("recovered");
        assert_eq!(m.power, MicroWatt(2_500_000));
        let mut sim = ina.destroy();
        faults.set(Some(BusFault::AllOnes));
        let mut buf = [0u8; 5];
        sim.write_read(ADDR, &[reg::CALIBRATION], &mut buf).unwrap();
        assert_eq!(buf, [0xFF; 5]);
        faults.set(None);
        assert_eq!(rd(&mut sim, reg::CALIBRATION), 4096);
    }

    // ---- malformed and unusual transfers ----

    #[test]
    fn pointer_semantics_and_partial_transfers() {
        let (mut sim, _clock) = constant(5.0, 0.5, 0.1);
        wr(&mut sim, reg::CALIBRATION, 0x1234);
        // Pointer-only write, then plain reads (rppal style).
        sim.write(ADDR, &[reg::CALIBRATION]).unwrap();
        let mut two = [0u8; 2];
        sim.read(ADDR, &mut two).unwrap();
        assert_eq!(two, [0x12, 0x34]);
        sim.read(ADDR, &mut two).unwrap();
        assert_eq!(two, [0x12, 0x34], "the pointer is retained");
        // One byte: the MSB. More than two: the register repeats.
        let mut one = [0u8; 1];
        sim.read(ADDR, &mut one).unwrap();
        assert_eq!(one, [0x12]);
        let mut five = [0u8; 5];
        sim.read(ADDR, &mut five).unwrap();
        assert_eq!(five, [0x12, 0x34, 0x12, 0x34, 0x12]);
        // Pointer + one byte: pointer set, register unchanged.
        sim.write(ADDR, &[reg::CALIBRATION, 0x56]).unwrap();
        assert_eq!(rd(&mut sim, reg::CALIBRATION), 0x1234);
        // Bytes past the data word are ignored.
        sim.write(ADDR, &[reg::CALIBRATION, 0x20, 0x00, 0x30, 0x00])
            .unwrap();
        assert_eq!(rd(&mut sim, reg::CALIBRATION), 0x2000);
        // Adjacent writes are one transfer; adjacent reads are one transfer.
        let mut a = [0u8; 1];
        let mut b = [0u8; 1];
        sim.transaction(
            ADDR,
            &mut [
                Operation::Write(&[reg::CALIBRATION]),
                Operation::Write(&[0x40, 0x01]),
                Operation::Read(&mut a),
                Operation::Read(&mut b),
            ],
        )
        .unwrap();
        assert_eq!([a[0], b[0]], [0x40, 0x00]);
        // Pointers alias modulo 8; 06h and 07h read 0.
        assert_eq!(rd(&mut sim, 0x08), CONFIGURATION_RESET);
        assert_eq!(rd(&mut sim, 0xFD), 0x4000);
        assert_eq!(rd(&mut sim, 0x06), 0);
        assert_eq!(rd(&mut sim, 0x07), 0);
        // Writes to undocumented registers are ignored.
        wr(&mut sim, 0x06, 0xFFFF);
        assert_eq!(rd(&mut sim, 0x06), 0);
        // Empty transactions and empty operations are harmless.
        sim.transaction(ADDR, &mut []).unwrap();
        sim.write(ADDR, &[]).unwrap();
        sim.read(ADDR, &mut []).unwrap();
        assert_eq!(rd(&mut sim, reg::CALIBRATION), 0x4000);
    }

    #[test]
    fn empty_read_of_power_does_not_clear_cnvr() {
        let (mut sim, clock) = constant(5.0, 0.5, 0.1);
        clock.advance(Duration::from_micros(1_064));
        sim.write(ADDR, &[reg::POWER]).unwrap();
        sim.read(ADDR, &mut []).unwrap();
        assert!(cnvr(&mut sim));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_transactions_never_panic(
            ops in proptest::collection::vec(
                (proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..6)),
                0..8,
            ),
            advance_us in 0u64..200_000,
            fault in 0u8..6,
        ) {
            let (mut sim, clock) = constant(5.0, 0.5, 0.1);
            sim.faults().set(match fault {
                1 => Some(BusFault::Nack),
                2 => Some(BusFault::Timeout),
                3 => Some(BusFault::Frozen),
                4 => Some(BusFault::AllOnes),
                _ => None,
            });
            let mut data = ops;
            let mut operations: Vec<Operation<'_>> = data
                .iter_mut()
                .map(|(is_write, bytes)| {
                    if *is_write {
                        Operation::Write(bytes.as_slice())
                    } else {
                        Operation::Read(bytes.as_mut_slice())
                    }
                })
                .collect();
            for _ in 0..3 {
                clock.advance(Duration::from_micros(advance_us));
                let _ = sim.transaction(ADDR, &mut operations);
            }
            sim.faults().set(None);
            // Whatever happened, the chip still answers and its configuration decodes.
            let word = rd(&mut sim, reg::CONFIGURATION);
            proptest::prop_assert_eq!(word & (CONFIG_RST | CONFIG_UNUSED), 0);
        }
    }

    #[test]
    fn hostile_truth_values_do_not_panic() {
        for value in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            -f64::MAX,
        ] {
            let (mut sim, clock) = constant(value, value, 0.1);
            wr(&mut sim, reg::CALIBRATION, 0xFFFE);
            clock.advance(Duration::from_secs(1));
            for r in 0..8 {
                rd(&mut sim, r);
            }
        }
        // A clock that runs backwards does not confuse the schedule either.
        struct Backwards(Mutex<u64>);
        impl Clock for Backwards {
            fn now(&self) -> Duration {
                let mut n = self.0.lock().unwrap();
                *n = n.saturating_sub(1_000_000);
                Duration::from_nanos(*n)
            }
            fn sleep(&self, _d: Duration) {}
        }
        let clock: SharedClock = Arc::new(Backwards(Mutex::new(10_000_000_000)));
        let mut sim = Ina219Sim::new(
            Box::new(Constant {
                volts: 5.0,
                amps: 0.5,
            }),
            clock,
            0.1,
            ADDR,
        );
        for _ in 0..10 {
            rd(&mut sim, reg::BUS_VOLTAGE);
        }
    }

    #[test]
    fn works_on_the_real_monotonic_clock() {
        let clock: SharedClock = Arc::new(crate::clock::MonotonicClock::new());
        let truth = Box::new(Constant {
            volts: 5.0,
            amps: 0.5,
        });
        let mut sim = Ina219Sim::new(truth, clock.clone(), 0.1, ADDR);
        wr(&mut sim, reg::CONFIGURATION, config_word(1, 3, 0, 0, 0b111)); // 84 + 84 µs
        clock.sleep(Duration::from_millis(5));
        assert!(cnvr(&mut sim));
        assert_eq!(rd(&mut sim, reg::BUS_VOLTAGE) >> 3, 1250);
        assert!(sim.stats().cycles >= 5_000 / 168, "{:?}", sim.stats());
        // A timeout really waits on this clock.
        sim.faults().set(Some(BusFault::Timeout));
        let before = clock.now();
        assert!(sim.write(ADDR, &[0]).is_err());
        assert!(clock.now() - before >= TIMEOUT);
    }

    // ---- speed ----

    /// An hour of virtual time polled once per conversion period through the real driver.
    /// Measured by hand: `cargo test --release hour_of_polling -- --nocapture`.
    #[test]
    fn hour_of_polling_through_the_driver() {
        let (sim, clock) = constant(5.0, 0.5, 0.1);
        let mut ina = driver(sim);
        ina.set_configuration(avg128_continuous()).unwrap();
        let started = std::time::Instant::now();
        let polls = ns(Duration::from_secs(3600)) / ns(PERIOD);
        let mut samples = 0u64;
        for _ in 0..polls {
            clock.sleep(PERIOD);
            if let Some(m) = ina.next_measurement().unwrap() {
                samples += 1;
                assert_eq!(m.power, MicroWatt(2_500_000));
            }
        }
        let elapsed = started.elapsed();
        eprintln!("{polls} polls of an hour of virtual time in {elapsed:?}");
        assert_eq!(samples, polls);
        let sim = ina.destroy();
        assert_eq!(sim.stats().cycles, polls);
        assert_eq!(sim.stats().evaluated_cycles, polls);
    }
}
