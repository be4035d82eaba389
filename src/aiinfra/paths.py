"""Where the project's files are: the project root (Pulumi.yaml + stacks/), templates, manifests."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_ROOT = Path(__file__).resolve().parent


def project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) with Pulumi.yaml and stacks/.

    ``AIINFRA_ROOT`` overrides; a checkout's own root is the fallback.
    """
    if os.environ.get("AIINFRA_ROOT"):
        return Path(os.environ["AIINFRA_ROOT"]).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "Pulumi.yaml").is_file() and (folder / "stacks").is_dir():
            return folder
    checkout = _PACKAGE_ROOT.parents[1]
    if (checkout / "Pulumi.yaml").is_file():
        return checkout
    return here


def templates_dir() -> Path:
    checkout = _PACKAGE_ROOT.parents[1] / "templates"
    if checkout.is_dir():
        return checkout
    return _PACKAGE_ROOT / "_templates"  # wheel installs (see pyproject force-include)


def stack_file(env: str, root: Path | None = None) -> Path:
    return (root or project_root()) / "stacks" / f"Pulumi.{env}.yaml"


def manifests_dir(env: str, root: Path | None = None) -> Path:
    return (root or project_root()) / "manifests" / env
