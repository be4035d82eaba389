"""Every broken blueprint in tests/fixtures/broken/ fails with exit 1, its id and key path, no traceback.

Each fixture names what it expects in its header (``# expect-id:`` and ``# expect-path:``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

BROKEN = sorted((Path(__file__).parents[1] / "fixtures" / "broken").glob("Pulumi.*.yaml"))


def expectations(path: Path) -> tuple[str, str]:
    head = path.read_text().splitlines()[:5]
    eid = next(re.sub(r"^# expect-id:\s*", "", line) for line in head if line.startswith("# expect-id:"))
    epath = next(re.sub(r"^# expect-path:\s*", "", line) for line in head if line.startswith("# expect-path:"))
    return eid, epath


def test_at_least_fifteen_different_mistakes():
    assert len({expectations(p)[0] for p in BROKEN}) >= 15
    assert len(BROKEN) >= 20


@pytest.mark.parametrize("path", BROKEN, ids=[p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in BROKEN])
def test_broken_blueprint_is_reported(aiinfra, path):
    eid, epath = expectations(path)
    r = aiinfra("validate", "--file", str(path))
    assert r.code == 1
    assert "Traceback" not in r.stdout + r.stderr
    assert f"{epath}: error[{eid}]" in r.stderr, r.stderr
    assert str(path) in r.stderr  # names the file
    for line in r.stderr.splitlines():
        if "error[" in line or "warning[" in line:  # every problem gives its line and a fix
            assert re.match(rf"{re.escape(str(path))}:\d+: ", line), line
            assert "(fix: " in line, line
    text = next((line.removeprefix("# expect-text:").strip() for line in path.read_text().splitlines()[:5]
                 if line.startswith("# expect-text:")), None)
    if text:
        assert text in r.stderr, r.stderr


@pytest.mark.parametrize("path", BROKEN[:3])
def test_json_output_carries_the_same_problem(aiinfra, path):
    eid, epath = expectations(path)
    r = aiinfra("validate", "--file", str(path), "--json")
    assert r.code == 1
    data = json.loads(r.stdout)
    assert data["ok"] is False
    assert any(p["id"] == eid and p["path"] == epath and p["level"] == "error" for p in data["problems"])


def test_all_problems_are_reported_at_once(aiinfra, tmp_path):
    from conftest import ROOT

    text = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text()
    text = text.replace("model: h100-80gb", "model: h100-80g")
    text = text.replace("node_groups: [gpu-train]", "node_groups: [gpu-trian]")
    text = text.replace("nvidia_driver: 550.127.08", "nvidia_driver: 520.61.05")
    f = tmp_path / "Pulumi.multi.yaml"
    f.write_text(text)
    r = aiinfra("validate", "--file", str(f))
    assert r.code == 1
    for eid in ("unknown-gpu-model", "undefined-node-group", "driver-too-old-for-cuda"):
        assert f"error[{eid}]" in r.stderr


def test_problems_carry_the_line_of_the_key(aiinfra):
    path = next(p for p in BROKEN if "undefined-node-type" in p.name)
    lines = path.read_text().splitlines()
    expected = next(i for i, line in enumerate(lines, 1) if "type: gpu-h100" in line)
    r = aiinfra("validate", "--file", str(path))
    assert f"{path}:{expected}: " in r.stderr


def test_a_named_warning_can_be_silenced_but_is_shown_otherwise(aiinfra, tmp_path):
    from conftest import ROOT

    text = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text().replace("su_nodes: 1 ", "su_nodes: 2 ")
    f = tmp_path / "Pulumi.warn.yaml"
    f.write_text(text)
    r = aiinfra("validate", "--file", str(f))
    assert r.code == 0
    assert "warning[fabric-su-split]" in r.stderr
    f.write_text(text.replace("silence: [", "silence: [fabric-su-split, ", 1))
    r = aiinfra("validate", "--file", str(f))
    assert r.code == 0 and "fabric-su-split" not in r.stderr
