"""Fit the step-time model's free inputs on the published tables, and test how it generalises.

    .venv/bin/python benchmarks/calibrate_step_time.py [--quick]

Rows: src/aiinfra/catalog/data/calibration/training_step_time.csv (aiinfra.plan.calibration).
Free inputs: those marked ``fitted`` in aiinfra.catalog.time_model. The fit minimises the mean
squared log error of predicted over published time (a Nelder-Mead simplex from the catalog's
defaults, inputs kept inside their bounds). Prints the fitted values (to copy into
catalog/time_model.py), each row's error with all tables, and the leave-one-table-out errors
(fit on every table but one, predict that one) as the markdown table docs/planner.md shows.
Deterministic: same rows, same numbers.
"""

from __future__ import annotations

import argparse
import math
import sys

from aiinfra.catalog.time_model import TIME_INPUTS
from aiinfra.plan.calibration import CalibrationRow, calibration_rows

FREE = [name for name, spec in TIME_INPUTS.items() if spec.fitted]


def _clip(x: list[float]) -> dict[str, float]:
    return {n: min(TIME_INPUTS[n].high, max(TIME_INPUTS[n].low, v)) for n, v in zip(FREE, x, strict=True)}


def loss(rows: list[CalibrationRow], x: list[float]) -> float:
    inp = _clip(x)
    return sum(math.log(r.predicted_s(inp) / r.published_s) ** 2 for r in rows) / len(rows)


def fit(rows: list[CalibrationRow], iterations: int) -> dict[str, float]:
    """Nelder-Mead on the free inputs (pure Python, no SciPy)."""
    x0 = [TIME_INPUTS[n].default for n in FREE]
    simplex = [x0] + [[v * (1.25 if i == j else 1.0) + (1e-6 if v == 0 and i == j else 0) for j, v in enumerate(x0)]
                      for i in range(len(x0))]
    scores = [loss(rows, p) for p in simplex]
    for _ in range(iterations):
        order = sorted(range(len(simplex)), key=lambda i: scores[i])
        simplex, scores = [simplex[i] for i in order], [scores[i] for i in order]
        centroid = [sum(p[j] for p in simplex[:-1]) / (len(simplex) - 1) for j in range(len(x0))]
        worst = simplex[-1]
        refl = [c + (c - w) for c, w in zip(centroid, worst, strict=True)]
        fr = loss(rows, refl)
        if fr < scores[0]:
            exp = [c + 2 * (c - w) for c, w in zip(centroid, worst, strict=True)]
            fe = loss(rows, exp)
            simplex[-1], scores[-1] = (exp, fe) if fe < fr else (refl, fr)
        elif fr < scores[-2]:
            simplex[-1], scores[-1] = refl, fr
        else:
            con = [c + 0.5 * (w - c) for c, w in zip(centroid, worst, strict=True)]
            fc = loss(rows, con)
            if fc < scores[-1]:
                simplex[-1], scores[-1] = con, fc
            else:
                best = simplex[0]
                simplex = [best] + [[b + 0.5 * (p - b) for b, p in zip(best, q, strict=True)] for q in simplex[1:]]
                scores = [scores[0]] + [loss(rows, p) for p in simplex[1:]]
    return _clip(min(zip(scores, simplex, strict=True))[1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer simplex iterations")
    args = ap.parse_args(argv)
    iters = 60 if args.quick else 250
    rows = calibration_rows()
    tables = list(dict.fromkeys(r.table for r in rows))

    fitted = fit(rows, iters)
    print("## fitted inputs (all tables)\n")
    for n, v in fitted.items():
        print(f"- {n}: {v:.4g}")
    print("\n## per-row error, fitted on all tables; leave-one-table-out (fitted without the row's table)\n")
    loo: dict[str, dict[str, float]] = {t: fit([r for r in rows if r.table != t], iters) for t in tables}
    print("| table | row | published s | predicted s | error | left-out fit s | left-out error |")
    print("|---|---|---|---|---|---|---|")
    worst_all = worst_loo = 0.0
    for r in rows:
        pub, pred, out = r.published_s, r.predicted_s(fitted), r.predicted_s(loo[r.table])
        e, eo = pred / pub - 1, out / pub - 1
        worst_all, worst_loo = max(worst_all, abs(e)), max(worst_loo, abs(eo))
        print(f"| {r.table} | {r.row} | {pub:.4g} | {pred:.4g} | {e:+.1%} | {out:.4g} | {eo:+.1%} |")
    print(f"\nworst |error|: {worst_all:.1%} (all tables), {worst_loo:.1%} (leave-one-table-out)")
    print("\n## leave-one-table-out fits\n")
    for t, f in loo.items():
        print(f"- without {t}: " + ", ".join(f"{n} {v:.4g}" for n, v in f.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
