"""Validate + plan + render time for prod, synthetic blueprints and the 32,768-node three-level fixture.

Run:  .venv/bin/python benchmarks/bench_render.py [--sizes 512,2048,8192,16384,32768] [--repeat 3]
Each size is prod's blueprint with the GPU fleet scaled (15/16 Slurm, 1/16 Kubernetes) in SUs of 32
nodes; above 2,048 nodes (64 SUs, all a two-level 64-port fabric connects) the fabric has three
levels (fabric.levels: 3, spine groups of 32 SUs under a core). ``superpod-32k`` is the committed
fixture tests/fixtures/scale/Pulumi.superpod-32k.yaml. Times are CPU seconds (time.process_time), the
median of --repeat runs, in-process (no interpreter start-up); the first build of the run, which
imports the renderers, is not counted. "validate s" is the whole pipeline: blueprint checks, Cluster,
plan and cluster checks.

Before/after on another tree (docs/benchmarks.md): ``--two-level`` keeps the stand-in older trees
understand (two levels, SUs of nodes/64 above 2,048 nodes, no fixture row); AIINFRA_ROOT names the
tree whose src/ and stacks/ are used:
    git archive <commit> | tar -x -C /tmp/before
    AIINFRA_ROOT=/tmp/before .venv/bin/python benchmarks/bench_render.py --two-level --sizes 2048,32768
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(os.environ.get("AIINFRA_ROOT") or Path(__file__).resolve().parents[1])
FIXTURE_32K = ROOT / "tests" / "fixtures" / "scale" / "Pulumi.superpod-32k.yaml"
sys.path.insert(0, str(ROOT / "src"))

from aiinfra.pipeline import build_file, build_text  # noqa: E402
from aiinfra.render import render_all  # noqa: E402
from aiinfra.render.writer import write_tree  # noqa: E402


def synthetic(nodes: int, two_level: bool = False) -> str:
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())
    bp = doc["config"]["aiinfra:cluster"]
    serve = max(nodes // 16, 1)
    width = len(str(nodes))
    if nodes > 2048 and two_level:  # oversized SUs: what stood in for a three-level fabric before there was one
        bp["fabric"]["su_nodes"] = nodes // 64
        bp["silence"] = [*bp.get("silence", []), "fabric-oversubscribed"]
    elif nodes > 2048:
        bp["fabric"]["levels"] = 3
    for g in bp["node_groups"]:
        if g["name"] == "gpu-train":
            g["hosts"] = f"gpu[{1:0{width}d}-{nodes - serve:0{width}d}]"
        elif g["name"] == "gpu-serve":
            g["hosts"] = f"gpu[{nodes - serve + 1:0{width}d}-{nodes:0{width}d}]"
    bp["nodes"] = {f"gpu{int(h[3:]):0{width}d}": state for h, state in bp.get("nodes", {}).items()}
    bp["networks"]["management"]["cidr"] = "10.0.0.0/16"
    # rail subnets of /15: host indices in the lower half, the Kubernetes pods' blocks in the upper half
    bp["networks"]["ipoib"] = {"cidr": "10.64.0.0/12", "rail_prefix": 15}
    bp["kubernetes"]["rdma_shared_max_pods"] = min(bp["kubernetes"]["rdma_shared_max_pods"], 2**15 // serve)
    bp["training"][0]["nodes"] = min(bp["training"][0]["nodes"], nodes - serve)
    return yaml.safe_dump(doc, sort_keys=False)


def timed(fn) -> tuple[float, object]:
    t = time.process_time()
    value = fn()
    return time.process_time() - t, value


def measure(label: str, load, repeat: int, out: Path) -> dict:
    runs = []
    for _ in range(repeat):
        t_load, loaded = timed(load)
        t_render, artifacts = timed(lambda c=loaded.cluster, p=loaded.plan: render_all(c, p))
        t_write, _ = timed(lambda a=artifacts: write_tree(out / label, a))
        runs.append((t_load, t_render, t_write))
    med = [statistics.median(x) for x in zip(*runs, strict=True)]
    return {"label": label, "nodes": loaded.cluster.totals["nodes"], "gpus": loaded.cluster.totals["gpus"],
            "files": len(artifacts), "bytes": sum(len(t) for t in artifacts.values()),
            "validate_s": med[0], "render_s": med[1], "write_s": med[2], "total_s": sum(med)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="512,2048,8192,16384,32768")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--two-level", action="store_true", help="the two-level stand-in (for trees without levels: 3)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        prod = ROOT / "stacks" / "Pulumi.prod.yaml"
        build_file(prod)  # imports and first-use caches, not counted
        rows.append(measure("prod", lambda: build_file(prod), args.repeat, out))
        for n in (int(s) for s in args.sizes.split(",")):
            text = synthetic(n, args.two_level)
            rows.append(measure(f"synthetic-{n}", lambda t=text, n=n: build_text(t, f"synthetic-{n}", f"s{n}"),
                                args.repeat, out))
        if not args.two_level:
            rows.append(measure("superpod-32k", lambda: build_file(FIXTURE_32K), args.repeat, out))
    print(f"{'blueprint':<18}{'nodes':>7}{'GPUs':>8}{'files':>6}{'MB':>7}{'validate s':>11}{'render s':>10}"
          f"{'write s':>9}{'total s':>9}{'us/node':>9}")
    for r in rows:
        print(f"{r['label']:<18}{r['nodes']:>7}{r['gpus']:>8}{r['files']:>6}{r['bytes'] / 1e6:>7.1f}"
              f"{r['validate_s']:>11.3f}{r['render_s']:>10.3f}{r['write_s']:>9.3f}{r['total_s']:>9.3f}"
              f"{r['total_s'] / r['nodes'] * 1e6:>9.0f}")


if __name__ == "__main__":
    main()
