"""Every problem the code can report carries a fix hint: checked on the source, for every call site.

A problem without a hint leaves the user with "what now?"; the loader's own problems and the
pydantic ones (hints from the field descriptions) are covered by the broken-fixture tests.
"""

from __future__ import annotations

import ast

from conftest import ROOT


def calls_without_hint() -> list[str]:
    missing = []
    for path in sorted((ROOT / "src" / "aiinfra").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            keywords = {k.arg for k in node.keywords}
            needed = {"error": 4, "warning": 4, "Problem": 5}.get(name)
            if needed and len(node.args) < needed and "hint" not in keywords and None not in keywords:
                missing.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}(...) without a hint")
    return missing


def test_every_problem_is_built_with_a_hint():
    assert calls_without_hint() == []


def test_the_scan_finds_a_problem_without_a_hint(tmp_path, monkeypatch):
    import conftest

    fake = tmp_path / "src" / "aiinfra"
    fake.mkdir(parents=True)
    (fake / "x.py").write_text('error(("a",), "some-id", "a message")\nProblem((), "x", "y", hint="z")\n')
    monkeypatch.setattr(conftest, "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert calls_without_hint() == ["src/aiinfra/x.py:1: error(...) without a hint"]
