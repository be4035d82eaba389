"""Time a full plan of prod: every training job and serving deployment, reliability, power, claims.

Run:  .venv/bin/python benchmarks/bench_plan.py [--repeat 20]
The plan is computed from the validated blueprint (load not included); median and max of --repeat runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from aiinfra.pipeline import build_file  # noqa: E402
from aiinfra.plan.cluster import plan_blueprint  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--stack", default="prod")
    args = ap.parse_args()
    bp = build_file(ROOT / "stacks" / f"Pulumi.{args.stack}.yaml").cluster.blueprint
    runs = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        plan = plan_blueprint(bp)
        runs.append(time.perf_counter() - t)
    print(f"plan of {args.stack}: {len(plan.training)} training job(s), {len(plan.serving)} deployment(s), "
          f"{len(plan.claims)} claim(s); median {statistics.median(runs) * 1e3:.1f} ms, "
          f"max {max(runs) * 1e3:.1f} ms over {args.repeat} runs")


if __name__ == "__main__":
    main()
