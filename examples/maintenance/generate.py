"""Synthetic predictive-maintenance sensor data (after the AI4I 2020 data set's structure).

Each row is one reading of a milling machine: its type (L/M/H quality variants), operating
hours, air and process temperature, rotational speed, torque, tool wear, vibration and
hydraulic pressure. Failures follow a logistic model of plausible mechanisms: heat dissipation
(a small air/process temperature gap at low speed), power out of range, tool overstrain (wear
times torque), bearing vibration and age. Seeded, so a batch is reproducible.

``--drift`` makes a later batch the model has not seen: the process-temperature sensor was
recalibrated (+3 K offset) and a new machine type ``X`` joined the fleet.

    python generate.py --out data/incoming/batch-001.csv --rows 5000 --seed 1
    python generate.py --out data/incoming/batch-002.csv --rows 5000 --seed 2 --drift
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

TYPES = ("L", "M", "H")
TYPE_SHARE = (0.6, 0.3, 0.1)


def generate(rows: int = 5000, seed: int = 0, drift: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    types = list(TYPES)
    share = list(TYPE_SHARE)
    if drift:
        types.append("X")
        share = [0.45, 0.25, 0.1, 0.2]
    machine_type = rng.choice(types, size=rows, p=share)
    quality = pd.Series(machine_type).map({"L": 0.0, "M": 0.5, "H": 1.0, "X": 0.2}).to_numpy()
    hours = rng.uniform(0, 20_000, rows)
    air = rng.normal(300.0, 2.0, rows)
    process = air + 10.0 + rng.normal(0.0, 1.0, rows)
    rpm = rng.normal(1540.0, 170.0, rows)
    torque = np.clip(40.0 - (rpm - 1540.0) * 0.05 + rng.normal(0.0, 8.0, rows), 3.0, None)
    wear = rng.uniform(0, 250, rows) * (1.0 - 0.2 * quality)
    vibration = rng.lognormal(np.log(2.0) + hours / 40_000, 0.3, rows)
    pressure = rng.normal(5.0, 0.3, rows) - 0.00002 * hours

    power = torque * rpm * 2 * np.pi / 60
    z = (
        -5.0
        + 3.0 / (1 + np.exp((process - air - 8.8) * 3)) * (rpm < 1420)
        + 2.5 * (power < 3800)
        + 2.5 * (power > 8800)
        + 3.0 / (1 + np.exp(-(wear * torque - 10_000) / 600))
        + 0.9 * (vibration - 2.5)
        + 0.00006 * hours
        - 0.6 * quality
    )
    failure = rng.random(rows) < 1 / (1 + np.exp(-z))
    if drift:
        process = process + 3.0  # the recalibrated sensor
    return pd.DataFrame(
        {
            "machine_id": rng.integers(1, 120, rows),
            "machine_type": machine_type,
            "operating_hours": hours.round(1),
            "air_temp_k": air.round(2),
            "process_temp_k": process.round(2),
            "rpm": rpm.round(0),
            "torque_nm": torque.round(2),
            "tool_wear_min": wear.round(0),
            "vibration_mm_s": vibration.round(3),
            "pressure_bar": pressure.round(3),
            "failure": failure.astype(int),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--drift", action="store_true")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame = generate(args.rows, args.seed, args.drift)
    frame.to_csv(args.out, index=False)
    print(f"wrote {len(frame)} rows ({frame.failure.mean():.1%} failures) to {args.out}")


if __name__ == "__main__":
    main()
