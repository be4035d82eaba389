"""The reference docs stay equal to the code."""

from __future__ import annotations

import re

from aiinfra.checks import registry
from aiinfra.spec.reference import blueprint_reference
from conftest import ROOT


def test_blueprint_reference_is_generated_from_the_models():
    committed = (ROOT / "docs" / "blueprint.md").read_text()
    assert committed == blueprint_reference(), "run: aiinfra schema --markdown > docs/blueprint.md"


def test_every_problem_id_is_documented():
    doc = (ROOT / "docs" / "validation.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", doc, flags=re.M))
    source = "".join(p.read_text() for p in [*(ROOT / "src" / "aiinfra" / "spec").glob("*.py"), *(ROOT / "src" / "aiinfra" / "checks").glob("*.py")])
    used = set(re.findall(r'(?:error|warning|Problem)\([^"]*?"([a-z0-9]+(?:-[a-z0-9]+)+)"', source))
    used |= registry.ERROR_IDS | registry.KNOWN_WARNINGS
    missing = sorted(used - documented)
    assert not missing, f"document these ids in docs/validation.md: {missing}"


def test_ids_reported_for_the_broken_fixtures_are_documented():
    from aiinfra.errors import BlueprintError
    from aiinfra.pipeline import build_file

    doc = (ROOT / "docs" / "validation.md").read_text()
    seen = set()
    for path in (ROOT / "tests" / "fixtures" / "broken").glob("*.yaml"):
        try:
            build_file(path)
        except BlueprintError as exc:
            seen |= {p.id for p in exc.problems}
    assert seen and all(f"`{i}`" in doc for i in seen), sorted(i for i in seen if f"`{i}`" not in doc)
