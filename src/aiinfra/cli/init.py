"""``aiinfra init SITE``: scaffold a site's own configuration repository (docs/site-repository.md).

The repository holds the site's blueprint (``stacks/Pulumi.<SITE>.yaml``, made from a shipped
example: the environment renamed to SITE, the example's GitOps URL replaced by a placeholder that
``aiinfra validate`` warns about), its rendered ``manifests/<SITE>/``, the Pulumi project that runs
aiinfra's program, the pipeline of every change (GitHub Actions and GitLab CI), a pre-commit config
and a README of the day-to-day commands; aiinfra itself is a pinned requirement. The other files
come from ``templates/site/``. The same aiinfra and example give the same bytes. Everything is
written into a hidden folder beside the target first and renamed into place: an init that fails
leaves nothing half-written, and a folder that is not empty is refused.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
import yaml
from pydantic import TypeAdapter, ValidationError

from aiinfra import __version__, paths
from aiinfra.cli.console import console
from aiinfra.errors import UsageError
from aiinfra.pipeline import Built, build_text
from aiinfra.render import render_all
from aiinfra.render.templates import render_template
from aiinfra.render.writer import write_tree
from aiinfra.spec.models import Name

out = console()

EXAMPLES = ("dev", "prod")
#: Under .invalid, a top-level domain that never resolves (RFC 2606): checks/placeholders.py warns.
PLACEHOLDER_REPO = "https://git.example.invalid/{site}/{site}.git"
PLACEHOLDER_ID = "gitops-repo-placeholder"

#: template under templates/site/ -> path in the site repository
TEMPLATES = {
    "README.md.j2": "README.md",
    "Pulumi.yaml.j2": "Pulumi.yaml",
    "__main__.py.j2": "__main__.py",
    "requirements.txt.j2": "requirements.txt",
    "gitignore.j2": ".gitignore",
    "pre-commit-config.yaml.j2": ".pre-commit-config.yaml",
    "github-workflow.yml.j2": ".github/workflows/aiinfra.yml",
    "gitlab-ci.yml.j2": ".gitlab-ci.yml",
}

_HEADER = re.compile(r"\A(?:#.*\n)+")  # the example's leading comment block
_NAME = re.compile(r"^(\s+name:[ \t]*)([^\s#]+)([ \t]+#)?", re.M)  # the first name: is the environment's
_PROJECT_NAME = re.compile(r"^(?:name|description):.*\n", re.M)  # the top-level keys of aiinfra's Pulumi.yaml
_GITOPS_REPO = re.compile(r"^(\s+gitops_repo:[ \t]*)[^\s#]+.*$", re.M)  # its value and comment
_SILENCE = re.compile(r"^(\s+silence:[ \t]*\[)([^\]\n]*)\]([ \t]*#.*)?\n", re.M)  # a flow list


def _unsilence(m: re.Match[str]) -> str:
    """The ``silence: [...]`` line without the placeholder's id; no line when nothing is left."""
    items = [i.strip() for i in m[2].split(",") if i.strip() and i.strip() != PLACEHOLDER_ID]
    if not items:
        return ""
    head = f"{m[1]}{', '.join(items)}]"
    comment = m[3] or ""
    return (head.ljust(len(m[0]) - len(comment.lstrip()) - 1) + comment.lstrip() if comment else head) + "\n"


def site_stack(example_text: str, site: str, example: str) -> str:
    """The example's stack file made the site's: a new header, the environment named ``site``, the
    GitOps URL a placeholder and its warning no longer silenced. Comments and layout stay."""
    text = _HEADER.sub(render_template("site/stack-header.yaml.j2", site=site, example=example,
                                       version=__version__), example_text, count=1)
    text = _NAME.sub(lambda m: m[1] + (site.ljust(max(len(m[2] + m[3]) - 1, len(site) + 1)) + "#" if m[3] else site),
                     text, count=1)  # the comment stays in its column
    text = _GITOPS_REPO.sub(lambda m: f"{m[1]}{PLACEHOLDER_REPO.format(site=site)}   # a placeholder: the URL of "
                                      "this repository goes here", text, count=1)
    text = _SILENCE.sub(_unsilence, text, count=1)
    cluster = yaml.safe_load(text)["config"]["aiinfra:cluster"]
    repo = (cluster.get("kubernetes") or {}).get("gitops_repo")
    if (cluster["name"] != site or PLACEHOLDER_ID in (cluster.get("silence") or [])
            or repo not in (None, PLACEHOLDER_REPO.format(site=site))):
        raise RuntimeError(f"the '{example}' example's layout changed: update aiinfra.cli.init.site_stack")
    return text


def site_files(site: str, example: str) -> tuple[dict[str, str], Built]:
    """Every file of the site repository but manifests/, and the site's environment built."""
    code = paths.code_root()
    stack = site_stack(paths.stack_file(example, code).read_text(encoding="utf-8"), site, example)
    built = build_text(stack, f"stacks/Pulumi.{site}.yaml", site)
    own = (code / "Pulumi.yaml").read_text(encoding="utf-8")  # runtime, main, stackConfigDir, config
    gpu_hosts = [h for g in built.cluster.gpu_groups for h in g.in_service]
    context = {
        "site": site, "example": example, "version": __version__,
        "requirement": f"aiinfra=={__version__}",
        "project": _PROJECT_NAME.sub("", own),
        "canary": (gpu_hosts or sorted(built.cluster.hosts))[0],
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
    }
    files = {path: render_template(f"site/{name}", **context) for name, path in TEMPLATES.items()}
    files[f"stacks/Pulumi.{site}.yaml"] = stack
    files[".pulumi.version"] = importlib.metadata.version("pulumi") + "\n"  # the CLI CI installs: the SDK's
    return files, built


def scaffold(site: str, example: str, target: Path) -> Built:
    """Write the site repository into ``target`` (new or empty), all or nothing."""
    try:
        TypeAdapter(Name).validate_python(site)
    except ValidationError:
        raise UsageError(f"'{site}' is not a valid environment name: lower-case letters, digits and '-', "
                         "at most 63") from None
    target = target.absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{target} is not empty: aiinfra init writes a new repository "
                         "(give --dir a new or empty folder)")
    files, built = site_files(site, example)
    staging = target.parent / f".{target.name}.init-{secrets.token_hex(4)}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()  # mode 0777 less the umask, as the folder the rename makes of it
        for rel, text in sorted(files.items()):
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        write_tree(staging / "manifests" / site, render_all(built.cluster, built.plan))
        os.rename(staging, target)  # replaces an empty folder; refuses one that filled up meanwhile
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return built


def register(app: typer.Typer, load: Callable[[str | None, Path | None], Built]) -> None:
    @app.command()
    def init(
        site: Annotated[str, typer.Argument(help="the site's environment name, e.g. nacc (stacks/Pulumi.SITE.yaml)")],
        example: Annotated[str, typer.Option("--example", help=f"the blueprint to start from: {', '.join(EXAMPLES)}")]
        = "dev",
        dir_: Annotated[Path | None, typer.Option("--dir", help="where to write it (new or empty) [default: ./SITE]")]
        = None,
    ) -> None:
        """Scaffold a site's configuration repository: blueprint, manifests, Pulumi project, CI, README."""
        if example not in EXAMPLES:
            raise UsageError(f"no example '{example}': give --example {' or '.join(EXAMPLES)}")
        target = dir_ if dir_ is not None else Path(site)
        built = scaffold(site, example, target)
        t = built.cluster.totals
        out.print(f"{target}: a site repository for '{site}' from the {example} example "
                  f"({t['nodes']} nodes, {t['gpus']} GPUs, {len(built.warnings)} warning(s)); next: set "
                  f"kubernetes.gitops_repo in stacks/Pulumi.{site}.yaml, then see its README.md", highlight=False)
