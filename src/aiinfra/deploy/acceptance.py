"""The fabric acceptance gate: read nccl-tests' output (and NCCL's ``NCCL_DEBUG=INFO`` lines
naming the HCAs in use) and say pass or fail per node against the plan's pass marks
(:mod:`aiinfra.plan.acceptance`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ClusterShell.NodeSet import NodeSet

from aiinfra.plan.acceptance import GATE_MIN_BYTES, SCOPES, TESTS, threshold_gb_s
from aiinfra.plan.fabric_env import rail_hcas
from aiinfra.spec.cluster import Cluster, su_name

MARKER = "# aiinfra-acceptance:"

_RANK_LINE = re.compile(r"^#\s+Rank\s+(\d+)\s+Group\s+\d+\s+Pid\s+\d+\s+on\s+(\S+)\s+device\s+(\d+)")
_NET_IB = re.compile(r"^(?P<host>[^:\s]+):\d+:\d+ \[\d+\] NCCL INFO NET/IB : Using (?P<devs>.*?)(?:;|$)")
_DEV = re.compile(r"\[\d+\]([A-Za-z0-9_]+):\d+/")
_WARN = re.compile(r"NCCL WARN (.*)")


# ---------------------------------------------------------------- parsing


@dataclass
class Row:
    size: int
    busbw_out: float
    busbw_in: float
    wrong: int  # out-of-place + in-place; -1 when the data was not checked (N/A)


@dataclass
class Run:
    """One nccl-tests run: one collective over some ranks."""

    source: str
    test: str | None
    scope: str | None
    target: str | None
    hosts: list[str] = field(default_factory=list)
    ranks: int = 0
    rows: list[Row] = field(default_factory=list)
    hcas: dict[str, set[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def nodes(self) -> list[str]:
        return sorted(set(self.hosts))

    @property
    def largest(self) -> Row | None:
        return max(self.rows, key=lambda r: r.size) if self.rows else None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _parse_row(line: str) -> Row | None:
    parts = line.split()
    if len(parts) < 10 or not parts[0].isdigit():
        return None
    tail = parts[-8:]  # out-of-place time algbw busbw #wrong, in-place time algbw busbw #wrong
    busbw_out, busbw_in = _number(tail[2]), _number(tail[6])
    if busbw_out is None or busbw_in is None:
        return None
    wrong = -1
    if tail[3].isdigit() and tail[7].isdigit():
        wrong = int(tail[3]) + int(tail[7])
    return Row(int(parts[0]), busbw_out, busbw_in, wrong)


def _test_from_name(name: str) -> str | None:
    return next((t for t in TESTS if t in name), None)


def parse_output(text: str, source: str = "-") -> list[Run]:
    """Runs in one nccl-tests output (several when acceptance markers separate them)."""
    runs: list[Run] = []
    current: Run | None = None
    for line in text.splitlines():
        if line.startswith(MARKER):
            fields = dict(kv.split("=", 1) for kv in line[len(MARKER):].split() if "=" in kv)
            current = Run(source, fields.get("test"), fields.get("scope"), fields.get("target"))
            runs.append(current)
            continue
        if current is None:
            current = Run(source, _test_from_name(Path(source).name), None, None)
            runs.append(current)
        if m := _RANK_LINE.match(line):
            current.hosts.append(m.group(2))
            current.ranks += 1
        elif m := _NET_IB.match(line):
            current.hcas.setdefault(m.group("host"), set()).update(_DEV.findall(m.group("devs")))
        elif m := _WARN.search(line):
            current.warnings.append(m.group(1).strip())
        elif not line.startswith("#") and (row := _parse_row(line)):
            current.rows.append(row)
    return [r for r in runs if r.rows or r.hosts]


def read_results(paths: Iterable[Path]) -> list[Run]:
    """Every run in the given files and folders (folders: every regular file below, sorted)."""
    runs: list[Run] = []
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            runs.extend(parse_output(f.read_text(errors="replace"), str(f)))
    return runs


# ---------------------------------------------------------------- the gate


@dataclass
class RunVerdict:
    run: Run
    scope: str
    test: str
    busbw_gb_s: float | None
    threshold_gb_s: float | None
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass
class NodeVerdict:
    node: str
    su: str | None
    busbw: dict[str, float | None]  # per-node test -> busbw at the largest message
    hcas: str  # "8/8" or what is missing
    multi: list[str]  # "su01 all_reduce_perf: ok" ...
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems


def _scope_of(cluster: Cluster, run: Run) -> str:
    if run.scope in SCOPES:
        return run.scope
    nodes = run.nodes
    if len(nodes) <= 1:
        return "node"
    sus = {cluster.hosts[n].su for n in nodes if n in cluster.hosts}
    return "su" if len(sus) == 1 else "partition"


def judge_run(cluster: Cluster, run: Run) -> RunVerdict:
    scope = _scope_of(cluster, run)
    test = run.test or "unknown"
    problems: list[str] = []
    unknown = [n for n in run.nodes if n not in cluster.hosts]
    if unknown:
        problems.append(f"{', '.join(unknown)} not in the blueprint")
    if test not in TESTS:
        problems.append("which collective is unknown (no acceptance marker, no test name in the file name)")
    largest = run.largest
    busbw = largest.busbw_out if largest else None
    threshold = None
    if largest is None:
        problems.append("no results (the test did not finish)")
    else:
        if largest.size < GATE_MIN_BYTES:
            problems.append(f"largest message {largest.size} B is below {GATE_MIN_BYTES} B: bandwidth not measured")
        if any(r.wrong > 0 for r in run.rows):
            problems.append("wrong results (#wrong > 0): data corruption")
    known = [n for n in run.nodes if n in cluster.hosts]
    if known and test in TESTS and largest is not None:
        group = cluster.groups[cluster.hosts[known[0]].group]
        threshold = threshold_gb_s(cluster, group, test, len(run.nodes))
        if busbw is not None and busbw < threshold:
            problems.append(f"busbw {busbw:.1f} GB/s < {threshold:.1f} GB/s")
    for w in run.warnings[:1]:
        problems.append(f"NCCL WARN {w}")
    return RunVerdict(run, scope, test, busbw, threshold, problems)


def _hca_problem(cluster: Cluster, node: str, runs: list[Run]) -> tuple[str, str | None]:
    expected = rail_hcas(cluster, cluster.groups[cluster.hosts[node].group])
    seen: set[str] = set()
    reported = False
    for run in runs:
        if node in run.hcas:
            reported = True
            seen |= run.hcas[node]
    if not expected:
        return "-", None
    if not reported:
        return "?", "no 'NET/IB : Using' line for this node (run with NCCL_DEBUG=INFO)"
    missing = [h for h in expected if h not in seen]
    if missing:
        return f"{len(expected) - len(missing)}/{len(expected)}", f"rail HCA(s) not in use: {', '.join(missing)}"
    return f"{len(expected)}/{len(expected)}", None


def gate(cluster: Cluster, runs: list[Run]) -> tuple[list[NodeVerdict], list[RunVerdict]]:
    """Per node: every per-node test passed, every rail HCA in use, every multi-node run with it passed."""
    verdicts = [judge_run(cluster, r) for r in runs]
    nodes = sorted({n for r in runs for n in r.nodes}, key=lambda n: (n not in cluster.hosts, n))
    out: list[NodeVerdict] = []
    for node in nodes:
        host = cluster.hosts.get(node)
        if host is None:
            out.append(NodeVerdict(node, None, {}, "-", [], ["not in the blueprint"]))
            continue
        mine = [v for v in verdicts if node in v.run.nodes]
        single = [v for v in mine if v.scope == "node"]
        problems: list[str] = []
        busbw: dict[str, float | None] = {}
        for test in TESTS:
            these = [v for v in single if v.test == test]
            if not these:
                problems.append(f"no per-node {test} result")
                busbw[test] = None
                continue
            busbw[test] = min((v.busbw_gb_s for v in these if v.busbw_gb_s is not None), default=None)
            problems += [f"{test}: {p}" for v in these for p in v.problems]
        hcas, hca_problem = _hca_problem(cluster, node, [v.run for v in mine])
        if hca_problem:
            problems.append(hca_problem)
        multi = []
        for v in mine:
            if v.scope == "node":
                continue
            label = v.run.target or (su_name(host.su) if v.scope == "su" and host.su else v.scope)
            multi.append(f"{label} {v.test}: {'ok' if v.passed else 'FAIL'}")
            if not v.passed:
                problems.append(f"{v.scope} run {label} {v.test} failed: {'; '.join(v.problems)}")
        out.append(NodeVerdict(node, su_name(host.su) if host.su else None, busbw, hcas, multi, problems))
    return out, verdicts


def resume_command(nodes: list[str]) -> str | None:
    return f"scontrol update nodename={NodeSet.fromlist(nodes)} state=resume" if nodes else None


def drain_command(nodes: list[str]) -> str | None:
    if not nodes:
        return None
    return f'scontrol update nodename={NodeSet.fromlist(nodes)} state=drain reason="aiinfra fabric check failed"'


# ---------------------------------------------------------------- the summary per SU


@dataclass
class SuSummary:
    """The gate's verdicts of one SU (``su`` is ``-`` for nodes outside the fabric or the blueprint)."""

    su: str
    nodes: list[NodeVerdict]
    runs: list[RunVerdict]  # the SU-scope runs over its nodes

    @property
    def passed(self) -> int:
        return sum(n.passed for n in self.nodes)

    @property
    def failed(self) -> int:
        return len(self.nodes) - self.passed

    def worst(self, test: str) -> float | None:
        """The lowest per-node busbw of ``test`` in the SU."""
        return min((b for n in self.nodes if (b := n.busbw.get(test)) is not None), default=None)


def by_su(nodes: list[NodeVerdict], runs: list[RunVerdict]) -> list[SuSummary]:
    """Node verdicts and SU-scope runs per SU, in SU order (nodes outside the fabric last)."""
    out: dict[str, SuSummary] = {}
    for n in nodes:
        out.setdefault(n.su or "-", SuSummary(n.su or "-", [], [])).nodes.append(n)
    su_of = {n.node: n.su or "-" for n in nodes}
    for v in runs:
        if v.scope == "su" and v.run.nodes and su_of.get(v.run.nodes[0]) in out:
            out[su_of[v.run.nodes[0]]].runs.append(v)
    return sorted(out.values(), key=lambda s: (s.su == "-", s.su))


def failures(nodes: list[NodeVerdict]) -> list[tuple[str, str, str]]:
    """(hostlist, SU, why) for the failed nodes, nodes with the same SU and problems folded into one."""
    found: dict[tuple[str, str], list[str]] = {}
    for n in nodes:
        if not n.passed:
            found.setdefault((n.su or "-", "; ".join(n.problems)), []).append(n.node)
    return [(str(NodeSet.fromlist(hosts)), su, why) for (su, why), hosts in found.items()]
