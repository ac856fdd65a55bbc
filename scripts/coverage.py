"""Coverage of the verdict interval on simulated runs with a known ratio (a benchmark: prints numbers).

Each replication simulates a whole run (artifact/analysis/simulation.py), feeds its records to the analysis
code the reports use (analysis.core.judged_comparisons) and checks whether the verdict interval contains the
true ratio. With --old, also the interval the analysis used before the crossed design: a BCa bootstrap
(scipy) over units of the per-unit means over rounds (artifact.stats.paired_ratio_of_means), which resamples
units only.

    python scripts/coverage.py --replications 400 --rounds 2 --units 30 --old
"""

from __future__ import annotations

import argparse

from artifact.analysis.simulation import Scenario, coverage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--units", type=int, default=30)
    parser.add_argument("--ratio", type=float, default=1.78)
    parser.add_argument("--unit-spread", type=float, default=0.05)
    parser.add_argument("--block-drift", type=float, default=0.005)
    parser.add_argument("--cell-noise", type=float, default=0.002)
    parser.add_argument("--shared-drift", action="store_true", help="drift hits both models of a round alike")
    parser.add_argument("--old", action="store_true", help="also the one-level bootstrap used before")
    args = parser.parse_args()
    scenario = Scenario(ratio=args.ratio, rounds=args.rounds, units=args.units, unit_spread=args.unit_spread,
                        block_drift=args.block_drift, cell_noise=args.cell_noise, shared_drift=args.shared_drift)
    result = coverage(scenario, args.replications, old=args.old)
    mc_error = (0.95 * 0.05 / args.replications) ** 0.5
    print(f"{scenario}")
    print(f"replications {args.replications}; Monte Carlo standard error at 95%: {mc_error:.4f}")
    for key, value in result.items():
        print(f"{key}: {value:.4f}")


if __name__ == "__main__":
    main()
