"""CLI start-up: wall and CPU time of short ``aiinfra`` commands, run as fresh processes, next to
the import floor (the interpreter plus the third-party library ``aiinfra --help`` cannot do
without: typer, which carries its own click).

Run:  .venv/bin/python benchmarks/bench_startup.py [--runs 20] [--json out.json]
      .venv/bin/python benchmarks/bench_startup.py --src OTHER/src --src src     (compare two versions)
      .venv/bin/python benchmarks/bench_startup.py --imports="validate --stack prod"

Each command runs once to warm the page cache, then --runs times; the table gives the median and
the minimum wall time, the median CPU time (user + system of the child) and the median wall time
above the floor. Without --src the installed ``aiinfra`` script runs; each ``--src DIR`` times the
package under DIR instead (``python -m aiinfra.cli`` with DIR first on PYTHONPATH), and the runs of
all of them alternate, so that a machine's changing load weighs on each alike. ``--imports ARGS``
prints instead the slowest imports of ``aiinfra ARGS`` by cumulative time (``python -X
importtime``) and which of the heavy modules it loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

FLOOR = "floor: python -c 'import typer'"
COMMANDS = ["--help", "validate --help", "size train --help", "validate --stack prod"]
#: modules a start-up should not load unless its command needs them
HEAVY = ("aiinfra.render", "aiinfra.deploy", "jinja2", "pulumi", "kubernetes", "ansible_runner", "rich",
         "pydantic", "aiinfra.spec.models", "aiinfra.plan")


def environ(src: Path | None) -> dict[str, str]:
    env = dict(os.environ, COLUMNS="80")
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src.resolve()), *filter(None, [env.get("PYTHONPATH")])])
    return env


def aiinfra(src: Path | None) -> list[str]:
    exe = BIN / "aiinfra"
    return [str(exe)] if exe.exists() and src is None else [sys.executable, "-m", "aiinfra.cli"]


def once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{shlex.join(argv)} exited {done.returncode}:\n{done.stderr.decode()[-2000:]}")
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def timed(runs: dict[str, tuple[list[str], dict[str, str]]], rounds: int) -> dict[str, dict[str, float]]:
    """Each of ``runs`` (label -> argv, env) ``rounds`` times, alternating; the statistics of each."""
    for argv, env in runs.values():
        once(argv, env)  # warm the page cache
    seen: dict[str, list[tuple[float, float]]] = {label: [] for label in runs}
    for _ in range(rounds):
        for label, (argv, env) in runs.items():
            seen[label].append(once(argv, env))
    return {label: {"wall_median_s": statistics.median(w for w, _ in s), "wall_min_s": min(w for w, _ in s),
                    "cpu_median_s": statistics.median(c for _, c in s)} for label, s in seen.items()}


def imports(args: str, src: Path | None) -> None:
    """The slowest imports of one command, by cumulative time, and the heavy modules it loaded."""
    argv = [sys.executable, "-X", "importtime", "-m", "aiinfra.cli", *shlex.split(args)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False, env=environ(src))
    rows = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = line.removeprefix("import time:").split("|")
            rows.append((int(cumulative), name.rstrip()))
    total = sum(c for c, name in rows if not name.startswith("  "))
    print(f"aiinfra {args}: {len(rows)} modules imported, {total / 1e3:.1f} ms in top-level imports")
    for cumulative, name in sorted(rows, reverse=True)[:25]:
        print(f"{cumulative / 1e3:8.1f} ms {name}")
    names = {name.strip() for _, name in rows}
    loaded = [h for h in HEAVY if any(n == h or n.startswith(h + ".") for n in names)]
    print("heavy modules loaded:", ", ".join(loaded) or "none")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per command")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--src", type=Path, action="append", help="time the aiinfra package under this folder "
                        "(repeat to compare versions)")
    parser.add_argument("--imports", metavar="ARGS", help="print the slowest imports of `aiinfra ARGS` instead")
    args = parser.parse_args()
    sources: list[Path | None] = list(args.src or [None])
    if args.imports is not None:
        imports(args.imports, sources[-1])
        return 0

    results: dict[str, dict[str, dict[str, float]]] = {}
    floor = timed({FLOOR: ([sys.executable, "-c", "import typer"], environ(None))}, args.runs)[FLOOR]
    for command in COMMANDS:
        runs = {str(src or "aiinfra"): ([*aiinfra(src), *shlex.split(command)], environ(src)) for src in sources}
        results[command] = timed(runs, args.runs)
    print(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{args.runs} runs each, load average {os.getloadavg()[0]:.2f} at the end\n")
    print("| command | package | wall median s | wall min s | CPU median s | over floor s |")
    print("|---|---|---|---|---|---|")
    print(f"| `{FLOOR}` | - | {floor['wall_median_s']:.3f} | {floor['wall_min_s']:.3f} | "
          f"{floor['cpu_median_s']:.3f} | - |")
    for command, by_source in results.items():
        for source, r in by_source.items():
            print(f"| `aiinfra {command}` | {source} | {r['wall_median_s']:.3f} | {r['wall_min_s']:.3f} | "
                  f"{r['cpu_median_s']:.3f} | {r['wall_median_s'] - floor['wall_median_s']:+.3f} |")
    if args.json:
        data = {"runs": args.runs, "floor": floor, "results": results}
        args.json.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
