"""``aiinfra show`` prints every pin of the blueprint's ``versions``: software, charts, images, exporters."""

from __future__ import annotations

import pytest

from conftest import load_stack


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_show_prints_every_pinned_version(aiinfra, env):
    pins = load_stack(env).cluster.blueprint.versions.model_dump(exclude_none=True)
    kinds = [k for k, v in pins.items() if isinstance(v, dict) and v]
    assert {"charts", "images", "exporters"} <= set(kinds)
    r = aiinfra("show", "--stack", env)
    assert r.code == 0, r.stderr
    rows = {tuple(c.strip() for c in line.split("│")[1:-1]) for line in r.stdout.splitlines() if "│" in line}
    for key, value in pins.items():
        for name, pin in (value.items() if isinstance(value, dict) else [(key, value)]):
            assert (name, str(pin)) in rows, f"versions.{key}: {name} {pin} not shown"
    for kind in kinds:
        assert f"versions.{kind}" in r.stdout.splitlines()
