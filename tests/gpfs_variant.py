"""The gpfs variant of the dev blueprint (tests/fixtures/gpfs/dev-gpfs.yaml applied to stacks/Pulumi.dev.yaml)."""

from __future__ import annotations

from pathlib import Path

import yaml

from aiinfra.pipeline import Built, build_file

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "gpfs" / "dev-gpfs.yaml"


def gpfs_variant_raw() -> dict:
    """dev's blueprint document with the fixture's versions, role renames and storage applied."""
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())
    change = yaml.safe_load(FIXTURE.read_text())
    bp = doc["config"]["aiinfra:cluster"]
    versions = dict(change["versions"])
    for key in versions.pop("drop", []):
        bp["versions"].pop(key, None)
    bp["versions"].update(versions)
    for group in bp["node_groups"]:
        group["roles"] = [change["roles"].get(r, r) for r in group.get("roles", [])]
    for workload in [*bp.get("training", []), *bp.get("serving", [])]:
        _move_paths(workload, change["paths"])
    bp["storage"] = change["storage"]
    return doc


def _move_paths(node: dict | list, moves: dict[str, str]) -> None:
    """Rewrite, in place, every string below ``node`` that starts with a key of ``moves``."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in list(items):
        if isinstance(value, (dict, list)):
            _move_paths(value, moves)
        elif isinstance(value, str):
            for old, new in moves.items():
                if value.startswith(old):
                    node[key] = new + value[len(old):]


def write_gpfs_variant(directory: Path, name: str = "Pulumi.dev.yaml") -> Path:
    """The variant as a stack file in ``directory`` (its environment is still named dev)."""
    path = directory / name
    path.write_text(yaml.safe_dump(gpfs_variant_raw(), sort_keys=False))
    return path


def build_gpfs_variant(directory: Path) -> Built:
    return build_file(write_gpfs_variant(directory), "tests/fixtures/gpfs/dev-gpfs.yaml")
