"""Monte Carlo figures of the control-chart rules, run on deltaiqa_lite.qa.report itself.

Usage (from the repository root)::

    python tests/qa/chart_simulation.py [--runs 400] [--lambda 0.2 --ewma-limit 3.5 ...]

Series scores are simulated as independent normal values (sigma 1) on one
station/protocol/kernel group: ``baseline`` series form the baseline, then
``after`` more follow. Printed:

- false-alarm rate: share of in-control runs with any flag anywhere
  (baseline included), i.e. what "flags nothing on a log without drift" costs;
- detection delay: series from the first shifted series to the first flag,
  for step shifts of 1.5, 2 and 3 sigma (median, 95th, 99th percentile).

docs/qa-node.md quotes the figures of the default rules.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from deltaiqa_lite.qa.report import ChartRules, control_chart


def false_alarm_rate(rules: ChartRules, *, baseline: int, after: int, runs: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    mask = [i < baseline for i in range(baseline + after)]
    alarms = 0
    for _ in range(runs):
        chart = control_chart(list(rng.normal(0.0, 1.0, baseline + after)), mask, rules=rules)
        alarms += bool(chart.flagged)
    return alarms / runs


def detection_delays(rules: ChartRules, shift: float, *, baseline: int, runs: int,
                     seed: int, horizon: int = 200) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = [i < baseline for i in range(baseline + horizon)]
    delays = []
    for _ in range(runs):
        values = rng.normal(0.0, 1.0, baseline + horizon)
        values[baseline:] += shift
        chart = control_chart(list(values), mask, rules=rules)
        late = [i for i, p in enumerate(chart.points) if p.flags and i >= baseline]
        delays.append(late[0] - baseline + 1 if late else horizon + 1)
    return np.array(delays)


def main(argv: list[str] | None = None) -> int:
    defaults = ChartRules()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--baseline", type=int, default=168, help="baseline series (28 d x 6)")
    parser.add_argument("--after", type=int, default=372, help="series after the baseline")
    parser.add_argument("--lambda", dest="lam", type=float, default=defaults.ewma_lambda)
    parser.add_argument("--ewma-limit", type=float, default=defaults.ewma_limit)
    parser.add_argument("--shewhart-limit", type=float, default=defaults.shewhart_limit)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    rules = ChartRules(ewma_lambda=args.lam, ewma_limit=args.ewma_limit,
                       shewhart_limit=args.shewhart_limit, min_baseline=2)
    print(f"rules: EWMA lambda {rules.ewma_lambda}, L {rules.ewma_limit}; Shewhart "
          f"{rules.shewhart_limit} sigma; baseline {args.baseline} series; {args.runs} runs")
    rate = false_alarm_rate(rules, baseline=args.baseline, after=args.after, runs=args.runs,
                            seed=args.seed)
    print(f"in control, {args.baseline + args.after} series: any flag in {rate:.1%} of runs")
    for shift in (1.5, 2.0, 3.0):
        d = detection_delays(rules, -shift, baseline=args.baseline, runs=args.runs,
                             seed=args.seed + 1)
        print(f"shift {shift:g} sigma: flagged after median {np.median(d):g}, "
              f"95% {np.percentile(d, 95):g}, 99% {np.percentile(d, 99):g} series")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
