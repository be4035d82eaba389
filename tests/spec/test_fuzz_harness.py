"""The fuzz harness (benchmarks/fuzz.py): its short profile runs here; `make fuzz` runs the full one.

150 seeded mutants of the stacks' blueprints go through build_text and, when accepted, render_all,
each in a forked worker with a timeout and a memory cap. Whatever a mutant holds, the pipeline must
answer with problems in the documented format (or build and render): no crash, no hang over 10 s,
no memory blow-up, no render failure after validate passed. The harness's own detection is
checked too, with builds that really raise, hang, block the alarm, exhaust memory or die.
"""

from __future__ import annotations

import faulthandler
import importlib.util
import os
import signal
import sys
import time

import pytest

from aiinfra.errors import Level, Problem
from aiinfra.pipeline import build_text
from conftest import ROOT

_spec = importlib.util.spec_from_file_location("aiinfra_fuzz_harness", ROOT / "benchmarks" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fuzz
_spec.loader.exec_module(fuzz)

SHORT_SEED = 20250101
DEV_TEXT = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text()


def _describe(report: dict) -> str:
    lines = [f"{report['outcomes']}"]
    for sig in report["signatures"]:
        lines.append(f"{sig['count']} x {sig['signature']}: {sig.get('exception')}: {(sig.get('message') or '')[:200]}")
        lines += [f"    {r[:200]}" for r in (sig.get("reasons") or [])[:2]]
        lines += [f"    minimal: {m[:200]}" for m in sig.get("minimal_mutations", [])]
        if sig.get("minimal"):
            lines.append(f"    case: {sig['minimal']['file']}")
    return "\n".join(lines)


def test_short_profile_finds_no_crash_hang_memory_or_render_failure(tmp_path):
    t0 = time.monotonic()
    report = fuzz.campaign(fuzz.PROFILES["short"], SHORT_SEED, jobs=1, timeout_s=10, memory_limit_mib=2048,
                           out=tmp_path)
    assert sum(report["outcomes"].values()) == fuzz.PROFILES["short"]
    assert report["failures"] == 0, _describe(report)
    # the sample really exercised the pipeline: some mutants were accepted and rendered, most refused
    assert report["outcomes"]["ok"] >= 5 and report["outcomes"]["refused"] >= 50, report["outcomes"]
    assert time.monotonic() - t0 < 60


def test_a_case_is_a_function_of_seed_and_index_only():
    one, other = fuzz.Generator(3), fuzz.Generator(3)
    forward = [one.case(i).text for i in range(20)]
    backward = [other.case(i).text for i in reversed(range(20))][::-1]
    assert forward == backward
    assert forward != [fuzz.Generator(4).case(i).text for i in range(20)]


def test_mutators_reach_every_kind_of_the_issue_and_the_fragments_land_in_the_text():
    gen = fuzz.Generator(1)
    first: dict[str, tuple] = {}  # kind -> (base, a mutation of that kind that came first in its case)
    kinds: set[str] = set()
    for i in range(2500):
        base, mutations = gen.mutations(i)
        kinds |= {":".join(m.kind.split(":")[:2]) for m in mutations}
        if mutations:
            first.setdefault(mutations[0].kind, (base, mutations[0]))
    assert {f"raw:{k}" for k in fuzz.RAW_KINDS} <= kinds
    assert {f"text:{k}" for k in fuzz.TEXT_OPS} <= kinds
    assert {"replace:unit", "replace:range", "replace:address", "replace:version", "replace:huge", "replace:zero",
            "replace:typo", "replace:wrong-type", "delete", "rename", "copy"} <= kinds
    for kind in (f"raw:{k}" for k in fuzz.RAW_KINDS):
        base, m = first[kind]
        text, skipped = fuzz.materialise(base, [m])  # alone on its base: the path exists, the fragments land
        assert skipped == [] and "__FZ" not in text, kind
        assert all(fragment in text for fragment in m.fragments.values()), kind
    recursive = next(iter(first["raw:recursive"][1].fragments.values()))
    anchor = recursive.split()[0][1:]
    assert recursive.startswith("&") and f"*{anchor}" in recursive  # the alias sits inside its own anchor


def test_problem_format_check_flags_what_breaks_the_one_line_format():
    good = Problem(("nodes", 0), "invalid-value", "bad", Level.ERROR, "fix it", line=3)
    bad, lacking = fuzz.check_problems([good], "f.yaml", "a\nb\nc\n")
    assert (bad, lacking) == ([], [])
    two_lines = Problem(("x",), "invalid-value", "first\nsecond", Level.ERROR, "fix", line=1)
    past_end = Problem(("x",), "invalid-value", "m", Level.ERROR, "fix", line=40)
    bare = Problem(("x",), "wrong-type", "m", Level.ERROR)
    bad, lacking = fuzz.check_problems([two_lines, past_end, bare], "f.yaml", "a\nb\n")
    assert not any("spans lines" in b for b in bad)  # the message's line break is shown escaped
    assert "first\\nsecond" in two_lines.format("f.yaml") and any("line 40 outside" in b for b in bad)

    class Raw(Problem):  # a formatter that lets a line break through is what the check is for
        def format(self, file):
            return f"{file}:1: {self.key_path}: error[{self.id}]: {self.message}"

    bad, _ = fuzz.check_problems([Raw(("x",), "invalid-value", "first\nsecond", Level.ERROR, "fix", line=1)],
                                 "f.yaml", "a\n")
    assert any("spans lines" in b for b in bad)
    assert [(p["id"], p["hint"], p["line"]) for p in lacking] == [("wrong-type", False, False)]
    echo = Problem(("x",), "unknown-key", "unknown key '" + "k" * 5000 + "'", Level.ERROR, "fix", line=1)
    bad, lacking = fuzz.check_problems([echo], "f.yaml", "a\n")
    assert bad == [] and lacking == []  # a value echoed whole is cut in the middle when shown
    assert "characters)..." in echo.format("f.yaml") and len(echo.format("f.yaml")) < fuzz.LONG_PROBLEM


# ------------------------------------------------------------------ the harness catches what it should


def _raises(text, file, env):
    return {}["no such key"]


def _sleeps(text, file, env):
    time.sleep(30)


def _ignores_the_alarm(text, file, env):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(30)


def _eats_memory(text, file, env):
    return bytearray(4 * 2**30)


def _dies(text, file, env):
    faulthandler.disable()  # the test runner's handler would print the worker's stack to the run's stderr
    os.kill(os.getpid(), signal.SIGSEGV)


def _builds_dev(text, file, env):
    return build_text(DEV_TEXT, file, "dev")


def _render_raises(cluster, plan):
    raise ValueError("renderer refused a validated blueprint")


@pytest.mark.parametrize(("build", "render", "outcome", "sig_start"), [
    (_raises, None, "crash", "crash: KeyError @ "),
    (_sleeps, None, "hang", "hang: CaseTimeout @ "),
    (_ignores_the_alarm, None, "hang", "hang: killed by the parent"),
    (_eats_memory, None, "memory", "memory: MemoryError @ "),
    (_dies, None, "crash", "crash: worker died (SIGSEGV)"),
    (_builds_dev, _render_raises, "render", "render: ValueError @ "),
])
def test_harness_classifies_a_real_failure(build, render, outcome, sig_start):
    pool = fuzz.Pool(1, timeout_s=1.0, memory_limit_mib=256, generator=fuzz.Generator(1), build=build,
                     render=render or fuzz.render_all, kill_grace_s=1.0)
    try:
        first, second = pool.run([(0, None), (1, None)])
    finally:
        pool.close()
    assert first["outcome"] == outcome and fuzz.signature(first).startswith(sig_start), first
    assert second["outcome"] == outcome  # the worker was replaced (or survived) and took the next case
    assert first["index"] == 0 and second["index"] == 1
