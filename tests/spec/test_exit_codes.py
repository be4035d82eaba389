"""Exit codes tell a refusal from a crash: 0 ok, 1 refused, 2 usage, 70 internal error with a report."""

from __future__ import annotations

import importlib
from pathlib import Path

from conftest import ROOT


def test_ok_refused_and_usage_have_their_codes(aiinfra, tmp_path):
    assert aiinfra("validate", "--stack", "dev").code == 0
    broken = tmp_path / "Pulumi.broken.yaml"
    broken.write_text((ROOT / "stacks" / "Pulumi.dev.yaml").read_text().replace("count: 8", "count: 0", 1))
    assert aiinfra("validate", "--file", str(broken)).code == 1
    assert aiinfra("validate", "--no-such-option").code == 2
    assert aiinfra("validate", "--stack", "no-such-env").code == 2


def test_an_internal_error_exits_70_with_a_report_and_no_traceback(aiinfra, tmp_path, monkeypatch):
    app = importlib.import_module("aiinfra.cli.app")  # the module, not the Typer app of the package

    def defect(*args, **kwargs):
        raise ZeroDivisionError("a defect planted by the test")

    monkeypatch.setattr(app, "build_file", defect)
    monkeypatch.setenv("AIINFRA_REPORT_DIR", str(tmp_path))
    r = aiinfra("validate", "--stack", "dev")
    assert r.code == 70
    assert "Traceback" not in r.stdout + r.stderr
    assert "internal error: ZeroDivisionError" in r.stderr
    reports = list(tmp_path.glob("aiinfra-crash-*.txt"))
    assert len(reports) == 1 and str(reports[0]) in r.stderr
    text = reports[0].read_text()
    assert "Traceback" in text and "a defect planted by the test" in text
    assert oct(reports[0].stat().st_mode & 0o777) == oct(0o600)


def test_the_report_hides_extra_vars_values(aiinfra, tmp_path, monkeypatch):
    app = importlib.import_module("aiinfra.cli.app")  # the module, not the Typer app of the package

    monkeypatch.setenv("AIINFRA_REPORT_DIR", str(tmp_path))
    monkeypatch.setattr("sys.argv", ["aiinfra", "hosts", "up", "-e", "db_password=canary-9c1"])
    path = Path(app.crash_report(RuntimeError("x")))
    assert "canary-9c1" not in path.read_text()
    assert "<hidden>" in path.read_text()
