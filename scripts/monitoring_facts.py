#!/usr/bin/env python3
"""Generate src/aiinfra/catalog/data/monitoring_metrics.json: the metric names each exporter
exposes at each version aiinfra pins, read from that version's own source.

    scripts/monitoring_facts.py --mirrors DIR [--check]

--mirrors holds bare git clones named <owner>+<name>/repo (NVIDIA+dcgm-exporter, NVIDIA+go-dcgm,
prometheus+node_exporter, rivosinc+prometheus-slurm-exporter, NVIDIA+gpu-operator). vLLM's metrics
are in the engine table (scripts/engine_flags.py), with its flags. --check compares with the committed file
(exit 1 on a difference) instead of writing it. Only names, types and default ports are taken:
facts, not the projects' code.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "aiinfra" / "catalog" / "data" / "monitoring_metrics.json"

# what aiinfra pins (stacks/*.yaml versions.exporters, versions.charts.gpu-operator, versions.images)
DCGM_EXPORTER = ("4.2.3-4.1.3", "4.4.1-4.6.0")
GPU_OPERATOR = ("v25.10.0",)
NODE_EXPORTER = ("1.8.2",)
SLURM_EXPORTER = ("v1.7.0",)


def git_show(repo: Path, rev: str, path: str) -> str:
    return subprocess.run(["git", "--git-dir", str(repo), "show", f"{rev}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def git_files(repo: Path, rev: str, folder: str) -> list[str]:
    out = subprocess.run(["git", "--git-dir", str(repo), "ls-tree", "--name-only", f"{rev}", f"{folder}/"],
                         check=True, capture_output=True, text=True).stdout
    return sorted(out.split())


def dcgm_exporter(mirrors: Path) -> dict:
    """DCGM field names dcgm-exporter accepts in its collectors CSV: the name -> field map of the
    go-dcgm commit its go.mod pins (const_fields.go); a metric is named as its field."""
    exporter, godcgm = mirrors / "NVIDIA+dcgm-exporter" / "repo", mirrors / "NVIDIA+go-dcgm" / "repo"
    out = {}
    for tag in DCGM_EXPORTER:
        gomod = git_show(exporter, tag, "go.mod")
        commit = re.search(r"github\.com/NVIDIA/go-dcgm v[\w.]+-\d{14}-([0-9a-f]{12})", gomod).group(1)
        text = git_show(godcgm, commit, "pkg/dcgm/const_fields.go")
        names = sorted(set(re.findall(r'^\s*"(DCGM_FI_[A-Z0-9_]+)":', text, flags=re.M)))
        port = re.search(r'Value:\s*":(\d+)"', git_show(exporter, tag, "pkg/cmd/app.go")).group(1)
        out[tag] = {"source": f"NVIDIA/dcgm-exporter {tag} go.mod -> NVIDIA/go-dcgm {commit} "
                              "pkg/dcgm/const_fields.go; port: pkg/cmd/app.go",
                    "port": int(port), "metrics": {n: "field" for n in names}}
    return out


def gpu_operator(mirrors: Path) -> dict:
    """The dcgm-exporter image version each GPU Operator chart runs by default."""
    repo = mirrors / "NVIDIA+gpu-operator" / "repo"
    out = {}
    for tag in GPU_OPERATOR:
        values = git_show(repo, tag, "deployments/gpu-operator/values.yaml")
        block = values[values.index("\ndcgmExporter:"):]
        version = re.search(r"\n  version: ([\w.-]+)", block).group(1)
        out[tag] = {"source": f"NVIDIA/gpu-operator {tag} deployments/gpu-operator/values.yaml dcgmExporter.version",
                    "dcgm_exporter": version.removesuffix("-distroless").removesuffix("-ubuntu22.04")}
    return out


def node_exporter(mirrors: Path) -> dict:
    """The infiniband collector's metrics (node_infiniband_*), and the default listen port."""
    repo = mirrors / "prometheus+node_exporter" / "repo"
    out = {}
    for version in NODE_EXPORTER:
        tag = f"v{version}"
        text = git_show(repo, tag, "collector/infiniband_linux.go")
        metrics = {f"node_infiniband_{n}": ("counter" if n.endswith("_total") else "gauge")
                   for n in re.findall(r'^\s*"([a-z_]+)":\s+"', text, flags=re.M)}
        metrics["node_infiniband_info"] = "gauge"
        port = re.search(r'AddFlags\(kingpin\.CommandLine, ":(\d+)"\)', git_show(repo, tag, "node_exporter.go"))
        out[version] = {"source": f"prometheus/node_exporter {tag} collector/infiniband_linux.go; port: node_exporter.go",
                        "port": int(port.group(1)), "metrics": dict(sorted(metrics.items()))}
    return out


def slurm_exporter(mirrors: Path) -> dict:
    """rivosinc/prometheus-slurm-exporter: every NewDesc / CounterOpts name and its flags."""
    repo = mirrors / "rivosinc+prometheus-slurm-exporter" / "repo"
    out = {}
    for tag in SLURM_EXPORTER:
        metrics: dict[str, str] = {}
        for path in git_files(repo, tag, "exporter"):
            if not path.endswith(".go") or path.endswith("_test.go"):
                continue
            text = git_show(repo, tag, path)
            metrics.update({n: "gauge" for n in re.findall(r'prometheus\.NewDesc\(\s*"(slurm_[a-z_]+)"', text)})
            metrics.update({n: "counter" for n in re.findall(r'Name:\s*"(slurm_[a-z_]+)"', text)})
        main = git_show(repo, tag, "main.go")
        flags = sorted(set(re.findall(r'flag\.\w+\(\s*"([a-z.-]+)"', main)))
        port = re.search(r'ListenAddress:\s*":(\d+)"', git_show(repo, tag, "exporter/server.go")).group(1)
        out[tag.lstrip("v")] = {"source": f"rivosinc/prometheus-slurm-exporter {tag} exporter/*.go, main.go",
                                "port": int(port), "flags": flags, "metrics": dict(sorted(metrics.items()))}
    return out


def generate(mirrors: Path) -> dict:
    return {
        "_about": "Metric names per exporter and version, generated by scripts/monitoring_facts.py from each "
                  "version's source (see 'source'). Do not edit by hand.",
        "dcgm-exporter": dcgm_exporter(mirrors),
        "gpu-operator": gpu_operator(mirrors),
        "node-exporter": node_exporter(mirrors),
        "slurm-exporter": slurm_exporter(mirrors),
    }


def dump(facts: dict) -> str:
    return json.dumps(facts, indent=1, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirrors", type=Path, required=True)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = dump(generate(args.mirrors))
    if args.check:
        same = OUT.read_text() == text
        print("up to date" if same else f"{OUT} differs from the sources")
        return 0 if same else 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
