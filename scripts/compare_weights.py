#!/usr/bin/env python3
"""Tokens/s with real weights against synthetic weights of the same shapes, from two finished runs.

    scripts/compare_weights.py RUNS_DIR [--synthetic r2-swallow-7b-synthetic] [--real r2-swallow-7b]

Takes the newest run directory of each config under RUNS_DIR (by its results.json), and prints, per model
and mode, the median tokens/s of each and their ratio. Decode speed should not depend on weight values
(r2-claim.md measured <= 0.25% on the H200): a ratio far from 1 means the synthetic verdict does not carry
over to the real models. Standard library only, so it runs in the image and on the host alike.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


class CompareError(Exception):
    """A run is missing or lacks what the comparison needs; the message says which."""


def newest_results(runs_dir: Path, config_name: str) -> tuple[Path, dict[str, Any]]:
    """The results.json of the newest run directory (names start with a UTC stamp) of `config_name`."""
    if not runs_dir.is_dir():
        raise CompareError(f"{runs_dir}: no such folder of run directories")
    found = []
    for path in sorted(runs_dir.glob("*/results.json")):
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if (results.get("run") or {}).get("config_name") == config_name:
            found.append((path.parent, results))
    if not found:
        raise CompareError(f"{runs_dir}: no finished run of config {config_name!r} (no results.json naming it)")
    return found[-1]


def tokens_per_s(results: dict[str, Any]) -> dict[tuple[str, str], float]:
    rates = {}
    for model, summary in (results.get("models") or {}).items():
        for mode, metrics in (summary.get("metrics") or {}).items():
            estimate = (metrics.get("tokens_per_s") or {}).get("estimate")
            if estimate:
                rates[(model, mode)] = float(estimate)
    return rates


def comparison_rows(synthetic: dict[str, Any], real: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (model, mode) measured in both runs: tokens/s of each and real / synthetic."""
    fake, true = tokens_per_s(synthetic), tokens_per_s(real)
    return [
        {"model": model, "mode": mode, "synthetic_tokens_per_s": fake[(model, mode)],
         "real_tokens_per_s": true[(model, mode)], "real_over_synthetic": true[(model, mode)] / fake[(model, mode)]}
        for model, mode in sorted(set(fake) & set(true))
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs_dir", type=Path, help="folder holding the run directories")
    parser.add_argument("--synthetic", default="r2-swallow-7b-synthetic", help="config of the synthetic-weights run")
    parser.add_argument("--real", default="r2-swallow-7b", help="config of the real-weights run")
    args = parser.parse_args(argv)
    try:
        synthetic_dir, synthetic = newest_results(args.runs_dir, args.synthetic)
        real_dir, real = newest_results(args.runs_dir, args.real)
        rows = comparison_rows(synthetic, real)
        if not rows:
            raise CompareError(f"{synthetic_dir.name} and {real_dir.name} share no (model, mode) with tokens/s")
    except CompareError as error:
        print(f"compare_weights: {error}", file=sys.stderr)
        return 2
    print(f"tokens/s, real weights ({real_dir.name}) vs synthetic weights ({synthetic_dir.name}):")
    print(f"  {'model':<18} {'mode':<11} {'synthetic':>10} {'real':>10} {'real/synth':>10}")
    for row in rows:
        print(f"  {row['model']:<18} {row['mode']:<11} {row['synthetic_tokens_per_s']:>10.2f} "
              f"{row['real_tokens_per_s']:>10.2f} {row['real_over_synthetic']:>10.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
