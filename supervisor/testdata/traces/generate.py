#!/usr/bin/env python3
"""Generate hearth's reference power traces (PRODUCT.md §4 trace CSV) and their README.

Deterministic: python3 standard library only, fixed seeds, and only arithmetic and sqrt (both
correctly rounded in IEEE 754) between the random numbers and the integers written, so every
platform writes the same bytes. Values are kept as integers (t in ms, volts in 0.1 mV, amps in
10 µA) and the true energy is summed exactly as a fraction of the very numbers written.

    python3 generate.py           # (re)write the traces and README.md next to this script
    python3 generate.py --check   # exit 1 if any file differs from what would be written
"""

import random
import sys
from fractions import Fraction
from math import sqrt
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Supply model (the same as SupplyModel::PI_WITH_SHUNT in supervisor/src/power/truth.rs):
# a 5.10 V source behind 0.15 ohm (about 0.05 ohm of cable and contacts plus the 0.1 ohm shunt).
SOURCE_V = 5.10
PATH_OHMS = 0.15
IDLE_W = 2.7  # Raspberry Pi 4 B idle
FULL_W = 6.4  # Raspberry Pi 4 B, four cores busy

V_SCALE = 10_000  # volts written with 4 decimals
A_SCALE = 100_000  # amps written with 5 decimals


def operating_point(watts, source_v=SOURCE_V, ohms=PATH_OHMS):
    """Load volts and amps for a constant-power load: V = Vs - R*I and P = V*I."""
    disc = source_v * source_v - 4.0 * ohms * watts
    amps = 2.0 * watts / (source_v + sqrt(disc))
    return source_v - ohms * amps, amps


def stiff(watts, volts):
    """A supply without droop."""
    return volts, watts / volts


def quantise(volts, amps):
    return round(volts * V_SCALE), round(amps * A_SCALE)


class Trace:
    def __init__(self):
        self.rows = []  # (t_ms, v in 0.1 mV, i in 10 uA)

    def add(self, t_ms, volts, amps):
        v, i = quantise(volts, amps)
        if self.rows and t_ms <= self.rows[-1][0]:
            raise ValueError(f"t not increasing at {t_ms} ms")
        self.rows.append((t_ms, v, i))

    def text(self):
        out = ["t_s,volts,amps"]
        for t, v, i in self.rows:
            out.append(
                f"{t // 1000}.{t % 1000:03d},{v // V_SCALE}.{v % V_SCALE:04d},"
                f"{i // A_SCALE}.{i % A_SCALE:05d}"
            )
        return "\n".join(out) + "\n"

    def energy_joules(self):
        total = 0
        for (t0, v, i), (t1, _, _) in zip(self.rows, self.rows[1:]):
            total += v * i * (t1 - t0)
        return Fraction(total, V_SCALE * A_SCALE * 1000)

    def duration_s(self):
        return Fraction(self.rows[-1][0], 1000)


def smooth_drift(rng, end_ms, amplitude_v):
    """A slow random supply drift: knots every 60-180 s, uniform in +-amplitude, joined by
    smoothstep curves (continuous, flat at the knots). Returns a function of t in ms."""
    knots = [(0, (2.0 * rng.random() - 1.0) * amplitude_v)]
    while knots[-1][0] < end_ms:
        knots.append(
            (knots[-1][0] + 60_000 + int(rng.random() * 120_001),
             (2.0 * rng.random() - 1.0) * amplitude_v)
        )

    def drift(t_ms):
        for (ta, va), (tb, vb) in zip(knots, knots[1:]):
            if ta <= t_ms <= tb:
                x = (t_ms - ta) / (tb - ta)
                return va + (vb - va) * x * x * (3.0 - 2.0 * x)
        return knots[-1][1]

    return drift


def bursty_hour():
    """One hour: idle with random CPU bursts; droop supply with a slow drift."""
    rng = random.Random(20260101)
    end = 3_600_000
    drift = smooth_drift(rng, end, 0.010)
    bursts = []  # (start_ms, end_ms, watts)
    t = 0
    while True:
        start = t + 200 + int(rng.random() * 4601)  # idle gap 0.2-4.8 s
        length = 50 + int(rng.random() * 751)  # burst 50-800 ms
        watts = 4.0 + 3.0 * rng.random()  # 4-7 W
        if start + length >= end:
            break
        bursts.append((start, start + length, watts))
        t = start + length
    # Rows at every burst edge and every whole second (for the drift).
    power_at = {}
    for s, e, w in bursts:
        power_at[s] = w
        power_at[e] = IDLE_W
    times = sorted(set(power_at) | set(range(0, end + 1, 1000)))
    trace = Trace()
    watts = IDLE_W
    for t in times:
        watts = power_at.get(t, watts)
        trace.add(t, *operating_point(watts, SOURCE_V + drift(t)))
    return trace, len(bursts)


def square(power_of_level):
    """Ten minutes of a 50 % square wave, period 68.0 ms, starting low."""
    trace = Trace()
    end, half = 600_000, 34
    t, high = 0, False
    while t < end:
        trace.add(t, *power_of_level(FULL_W if high else IDLE_W))
        t += half
        high = not high
    trace.add(end, *power_of_level(FULL_W if high else IDLE_W))
    return trace


def steps_10min():
    """Ten minutes of random steps every 1-30 s between 2.5 and 7 W, droop supply."""
    rng = random.Random(20260104)
    trace = Trace()
    end, t = 600_000, 0
    while t < end:
        watts = 2.5 + 4.5 * rng.random()
        trace.add(t, *operating_point(watts))
        t += 1000 + int(rng.random() * 29_001)
    trace.add(end, *operating_point(2.5 + 4.5 * rng.random()))
    return trace


# 0-4 s 2.5 W, 4-6 s 5 W, 6-8 s 6 W, 8-10 s 2 W: 36 J = 0.01 Wh exactly. The last row
# (5.1 V, 0.6 A) only marks the end.
TINY = """t_s,volts,amps
0,5.0,0.5
4,5.0,1.0
6,4.8,1.25
8,5.0,0.4
10,5.1,0.6
"""

H = "t_s,volts,amps\n"
BAD = {
    "non_increasing.csv": H + "0.000,5.0000,0.50000\n1.000,5.0000,0.50000\n"
    "2.000,5.0000,0.60000\n2.000,5.0000,0.70000\n3.000,5.0000,0.50000\n",
    "nan.csv": H + "0.000,5.0000,0.50000\n1.000,5.0000,0.50000\n2.000,NaN,0.50000\n"
    "3.000,5.0000,0.50000\n",
    "negative_volts.csv": H + "0.000,5.0000,0.50000\n1.000,-5.0000,0.50000\n"
    "2.000,5.0000,0.50000\n",
    "negative_amps.csv": H + "0.000,5.0000,0.50000\n1.000,5.0000,0.50000\n"
    "2.000,5.0000,-0.10000\n3.000,5.0000,0.50000\n",
    "missing_column.csv": "t_s,volts\n0.000,5.0000\n1.000,5.0000\n",
    "garbage_row.csv": H + "0.000,5.0000,0.50000\n1.000,5.0000,0.50000\n"
    "this is not a row\n3.000,5.0000,0.50000\n",
    "first_not_zero.csv": H + "1.000,5.0000,0.50000\n2.000,5.0000,0.50000\n",
    "one_row.csv": H + "0.000,5.0000,0.50000\n",
}


def fmt_wh(joules):
    return f"{float(joules / 3600):.12f}"


def build():
    files = {}
    facts = []
    bursty, n_bursts = bursty_hour()
    traces = [
        ("bursty_hour.csv", bursty,
         f"one hour: 2.7 W idle with {n_bursts} random bursts of 50-800 ms to 4-7 W "
         "(gaps 0.2-4.8 s, 1 ms steps); droop supply (5.10 V, 0.15 ohm) with a smooth "
         "+-10 mV drift over minutes (a row every second carries the drift); seed 20260101"),
        ("square_near_fs.csv", square(lambda w: stiff(w, 5.05)),
         "ten minutes of a 50 % square wave 2.7 W / 6.4 W, period 68.0 ms (34 ms each, "
         "starting low), constant 5.05 V: close to the 68.632 ms conversion cycle of the "
         "default INA219 configuration, so it aliases (beat period about 7.4 s); the "
         "current-aliasing torture test"),
        ("square_droop.csv", square(operating_point),
         "the same square wave through the droop supply (5.10 V, 0.15 ohm, no drift): volts "
         "and amps correlate within one conversion window, so even a perfect chip's mean(V) * "
         "mean(I) differs from mean(V*I); the INA219's physical limit, reported separately"),
        ("steps_10min.csv", steps_10min(),
         "ten minutes of random steps every 1-30 s (1 ms resolution) between 2.5 and 7 W, "
         "droop supply (no drift); seed 20260104"),
    ]
    for name, trace, what in traces:
        text = trace.text()
        files[name] = text
        facts.append((name, len(trace.rows), float(trace.duration_s()),
                      trace.energy_joules(), len(text.encode()), what))
    files["tiny.csv"] = TINY
    facts.append(("tiny.csv", 5, 10.0, Fraction(36), len(TINY.encode()),
                  "hand-checkable: 0-4 s 2.5 W, 4-6 s 5 W, 6-8 s 6 W, 8-10 s 2 W (36 J); "
                  "the last row's 5.1 V / 0.6 A holds for zero time; used by the CLI tests"))
    for name, text in BAD.items():
        files[f"bad/{name}"] = text
    files["README.md"] = readme(facts)
    return files


def readme(facts):
    lines = [
        "# Reference traces",
        "",
        "Power traces in the trace CSV format of PRODUCT.md §4 (`t_s,volts,amps`, a step "
        "function; the last row only marks the end). **Generated** by `generate.py` (python3 "
        "standard library, fixed seeds, deterministic): run `python3 generate.py` here to "
        "rewrite them and this README, `python3 generate.py --check` to verify. Edit the "
        "generator, not the files.",
        "",
        "Volts come from a supply model: a 5.10 V source behind 0.15 ohm (cable and contacts "
        "plus the INA219 board's 0.1 ohm shunt), `V = Vs - R*I` with the load's power `P = V*I` "
        "(the same model as `SupplyModel::PI_WITH_SHUNT` in `supervisor/src/power/truth.rs`). "
        "Numbers are written with 3 decimals for `t_s`, 4 for volts and 5 for amps; the true "
        "energy below is the exact integral of volts x amps over the numbers as written "
        "(summed in rational arithmetic), rounded to 12 decimals.",
        "",
        "| file | rows | duration (s) | true energy (Wh) | mean (W) | bytes |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, rows, duration, joules, size, _ in facts:
        mean = float(joules) / duration
        lines.append(f"| `{name}` | {rows} | {duration:g} | {fmt_wh(joules)} | "
                     f"{mean:.6f} | {size} |")
    lines += ["", "What each is:", ""]
    for name, _, _, _, _, what in facts:
        lines.append(f"- `{name}`: {what}.")
    lines += [
        "",
        "`bad/` holds invalid traces for the parser's error tests (each must fail with a "
        "one-line error naming file, line and field): "
        + ", ".join(f"`{n}`" for n in BAD) + ".",
        "",
    ]
    return "\n".join(lines)


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for name, text in build().items():
        path = HERE / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="\n")
    if check:
        if stale:
            print("out of date: " + ", ".join(stale), file=sys.stderr)
            return 1
        print("all traces up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
