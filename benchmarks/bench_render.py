"""Validate + render wall time for prod and for synthetic blueprints up to 16,384 GPU nodes.

Run:  .venv/bin/python benchmarks/bench_render.py [--sizes 512,2048,8192,16384] [--repeat 3]
Each size is prod's blueprint with the GPU fleet scaled (15/16 Slurm, 1/16 Kubernetes). A
two-level 64-port fat-tree connects at most 64 SUs, so synthetic sizes above 2,048 nodes use
larger SUs (a stand-in for a three-level fabric, which the model does not cover yet) and silence
the oversubscription warning. Times are the median of --repeat runs, in-process (no interpreter
start-up); the `aiinfra` CLI adds about 0.5 s of imports.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from aiinfra.pipeline import build_file, build_text  # noqa: E402
from aiinfra.render import render_all  # noqa: E402
from aiinfra.render.writer import write_tree  # noqa: E402


def synthetic(nodes: int) -> str:
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())
    bp = doc["config"]["aiinfra:cluster"]
    serve = max(nodes // 16, 1)
    width = len(str(nodes))
    su_nodes = 32 if nodes <= 2048 else nodes // 64
    bp["fabric"]["su_nodes"] = su_nodes
    bp["silence"] = ["fabric-oversubscribed"] if su_nodes > 32 else []
    for g in bp["node_groups"]:
        if g["name"] == "gpu-train":
            g["hosts"] = f"gpu[{1:0{width}d}-{nodes - serve:0{width}d}]"
            g["address_index"] = 1001
        elif g["name"] == "gpu-serve":
            g["hosts"] = f"gpu[{nodes - serve + 1:0{width}d}-{nodes:0{width}d}]"
            g["address_index"] = 1001 + nodes - serve
    bp["networks"]["management"]["cidr"] = "10.0.0.0/16"
    bp["training"][0]["nodes"] = min(bp["training"][0]["nodes"], nodes - serve)
    return yaml.safe_dump(doc, sort_keys=False)


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    value = fn()
    return time.perf_counter() - t, value


def measure(label: str, load, repeat: int, out: Path) -> dict:
    runs = []
    for _ in range(repeat):
        t_load, loaded = timed(load)
        t_render, artifacts = timed(lambda c=loaded.cluster: render_all(c))
        t_write, _ = timed(lambda a=artifacts: write_tree(out / label, a))
        runs.append((t_load, t_render, t_write))
    med = [statistics.median(x) for x in zip(*runs, strict=True)]
    return {"label": label, "nodes": loaded.cluster.totals["nodes"], "gpus": loaded.cluster.totals["gpus"],
            "files": len(artifacts), "bytes": sum(len(t) for t in artifacts.values()),
            "validate_s": med[0], "render_s": med[1], "write_s": med[2], "total_s": sum(med)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="512,2048,8192,16384")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        prod = ROOT / "stacks" / "Pulumi.prod.yaml"
        rows.append(measure("prod", lambda: build_file(prod), args.repeat, out))
        for n in (int(s) for s in args.sizes.split(",")):
            text = synthetic(n)
            rows.append(measure(f"synthetic-{n}", lambda t=text, n=n: build_text(t, f"synthetic-{n}", f"s{n}"),
                                args.repeat, out))
    print(f"{'blueprint':<18}{'nodes':>7}{'GPUs':>8}{'files':>6}{'MB':>7}{'validate s':>11}{'render s':>10}"
          f"{'write s':>9}{'total s':>9}{'us/node':>9}")
    for r in rows:
        print(f"{r['label']:<18}{r['nodes']:>7}{r['gpus']:>8}{r['files']:>6}{r['bytes'] / 1e6:>7.1f}"
              f"{r['validate_s']:>11.3f}{r['render_s']:>10.3f}{r['write_s']:>9.3f}{r['total_s']:>9.3f}"
              f"{r['total_s'] / r['nodes'] * 1e6:>9.0f}")


if __name__ == "__main__":
    main()
