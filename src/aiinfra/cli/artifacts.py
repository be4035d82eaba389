"""``aiinfra artifacts``: every image, chart, git source, OS package and model artifact the stack
needs, with version, upstream source and where the site pulls it (``mirror:``); ``--mirror-script``
prints the script that copies them into the mirror (docs/air-gapped.md)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from aiinfra.cli.console import console
from aiinfra.plan.artifacts import mirror_script, stack_artifacts

if TYPE_CHECKING:
    from aiinfra.pipeline import Built

out = console()


def register(app: typer.Typer, load: Callable[[str | None, Path | None], Built]) -> None:
    @app.command()
    def artifacts(
        stack: Annotated[str | None, typer.Option("--stack", "-s", help="environment [default: $AIINFRA_STACK or dev]")] = None,
        file: Annotated[Path | None, typer.Option("--file", "-f", help="a blueprint file instead of --stack")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
        script: Annotated[bool, typer.Option("--mirror-script", help="print the mirror script (skopeo, helm, "
                                                                       "git, apt package list)")] = False,
    ) -> None:
        """Images, charts, git sources, OS packages and models the stack needs, and their mirror."""
        built = load(stack, file)
        found = stack_artifacts(built.cluster, built.plan)
        if script:
            typer.echo(mirror_script(built.cluster, found), nl=False)
            return
        mirror = built.cluster.blueprint.mirror
        if json_out:
            data = {"env": built.cluster.env, "mirror": mirror.model_dump() if mirror else None,
                    "artifacts": [a.to_dict() for a in found]}
            typer.echo(json.dumps(data, indent=2, sort_keys=True))
            return
        for kind, title in (("image", "images"), ("chart", "Helm charts"), ("git", "git sources"),
                            ("package", "OS packages"), ("model", "model artifacts")):
            rows = [a for a in found if a.kind == kind]
            if not rows:
                continue
            out.print(f"{title} ({len(rows)}):", style="bold", highlight=False)
            for a in rows:
                version = f" {a.version}" if a.version else ""
                site = f"\n      pulled from {a.site}" if a.site != a.source else ""
                out.print(f"  {a.name}{version}  [{a.used_by}]\n      from {a.source}{site}", highlight=False,
                          markup=False)
        if mirror is None:
            out.print("no mirror: set mirror: in the blueprint for an air-gapped site (docs/air-gapped.md)",
                      highlight=False)
