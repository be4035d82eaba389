"""Where the files are: the project root (Pulumi.yaml + stacks/: this checkout, or a site's own
repository, docs/site-repository.md), aiinfra's own files (templates/, roles/, playbooks/, ...) and
manifests/."""

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


def code_root() -> Path:
    """Where aiinfra's own files are (templates/, roles/, playbooks/, ansible.cfg, Pulumi.yaml, the
    example stacks/): the checkout this package runs from, else the copy a wheel carries (pyproject's
    force-include), so a site repository can install aiinfra as a package."""
    checkout = _PACKAGE_ROOT.parents[1]
    if (checkout / "templates").is_dir() and (checkout / "roles").is_dir():
        return checkout
    return _PACKAGE_ROOT / "_data"


def templates_dir() -> Path:
    return code_root() / "templates"


def stack_file(env: str, root: Path | None = None) -> Path:
    return (root or project_root()) / "stacks" / f"Pulumi.{env}.yaml"


def manifests_dir(env: str, root: Path | None = None) -> Path:
    return (root or project_root()) / "manifests" / env
