"""Schema validation of rendered Kubernetes objects, shared by every Kubernetes test.

- Built-in kinds: the official OpenAPI schemas of the blueprint's Kubernetes minor, strictly
  (kubernetes-validate: unknown fields fail).
- Custom resources: the openAPIV3Schema of the official CRD in ../shared/crds, made strict the
  same way (an object schema without ``additionalProperties`` or
  ``x-kubernetes-preserve-unknown-fields`` rejects unknown fields, as the API server's pruning
  would silently drop them). Tests that need the CRDs skip with a reason when the folder is absent.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import pytest
import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
CRD_DIR = Path(__file__).resolve().parents[2] / "shared" / "crds"
# Custom resources whose CRD the shared set does not carry: the fields of their spec as the project
# defines them, written down here as facts (not a copy of the CRD), checked strictly.
# nv-ipam IPPool: Mellanox/nvidia-k8s-ipam api/v1alpha1/ippool_types.go at tag network-operator-v25.7.0
# (the IPAM the Network Operator 25.7.0 chart deploys): subnet and perNodeBlockSize required.
OWN_SCHEMAS: dict[tuple[str, str], dict] = {
    ("nv-ipam.nvidia.com/v1alpha1", "IPPool"): {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
            "spec": {
                "type": "object", "required": ["subnet", "perNodeBlockSize"], "additionalProperties": False,
                "properties": {
                    "subnet": {"type": "string"}, "perNodeBlockSize": {"type": "integer"},
                    "gateway": {"type": "string"}, "defaultGateway": {"type": "boolean"},
                    "nodeSelector": {"type": "object"}, "exclusions": {"type": "array"}, "routes": {"type": "array"},
                },
            },
        },
        "additionalProperties": False,
    },
}


def require_crds() -> Path:
    if not CRD_DIR.is_dir():
        pytest.skip(f"official CRDs not found at {CRD_DIR} (they ship beside the project as shared/crds)")
    return CRD_DIR


@cache
def crd_index() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> strict JSON schema, for every CRD in shared/crds."""
    index: dict[tuple[str, str], dict] = {}
    index.update(OWN_SCHEMAS)
    for path in sorted(require_crds().glob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=_LOADER):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                schema = (version.get("schema") or {}).get("openAPIV3Schema")
                if schema:
                    index[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = _strict(schema)
    return index


def _strict(schema: dict) -> dict:
    schema = copy.deepcopy(schema)

    def walk(node: object, top: bool = False) -> None:
        if isinstance(node, dict):
            if (node.get("type") == "object" and "properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            if node.get("nullable") and "type" in node:
                node["type"] = [node["type"], "null"]
            for key, value in node.items():
                if key == "properties" and isinstance(value, dict):
                    for prop in value.values():
                        walk(prop)
                elif key not in ("enum", "default", "example"):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema, top=True)
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string"}
    props["kind"] = {"type": "string"}
    props["metadata"] = {"type": "object"}
    return schema


def validate_object(obj: dict, k8s_version: str) -> list[str]:
    """Problems of one object (empty when valid)."""
    import jsonschema
    import kubernetes_validate

    where = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
    key = (obj.get("apiVersion"), obj.get("kind"))
    if "/" in str(key[0]) and "." in str(key[0]).split("/")[0] and not str(key[0]).startswith(
        ("apps/", "batch/", "policy/", "autoscaling/", "networking.k8s.io/", "rbac.authorization.k8s.io/",
         "scheduling.k8s.io/", "storage.k8s.io/", "apiextensions.k8s.io/", "node.k8s.io/", "coordination.k8s.io/",
         "admissionregistration.k8s.io/", "discovery.k8s.io/", "resource.k8s.io/"),
    ):
        schema = crd_index().get(key)
        if schema is None:
            return [f"{where}: no CRD in {CRD_DIR} for {key[0]} {key[1]}"]
        validator = jsonschema.Draft7Validator(schema)
        return [f"{where}: {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
    try:
        kubernetes_validate.validate(obj, k8s_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(map(str, exc.caused_by.absolute_path)) if getattr(exc, "caused_by", None) else ""
        message = exc.caused_by.message if getattr(exc, "caused_by", None) else str(exc).splitlines()[0]
        return [f"{where}: {path}: {message}"]
    return []


def objects_in(folder: Path) -> list[tuple[Path, dict]]:
    """Every Kubernetes object of every YAML file below ``folder`` (kustomization files excluded)."""
    found = []
    for path in sorted(folder.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and "kind" in doc:
                found.append((path, doc))
    return found
