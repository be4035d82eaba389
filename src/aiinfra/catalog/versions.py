"""Version compatibility: the rules `aiinfra validate` checks before any host is touched.

CUDA minimum drivers: NVIDIA CUDA Toolkit Release Notes, table "CUDA Toolkit and Corresponding
Driver Versions" (Linux x86_64, toolkit driver version, i.e. without minor-version compatibility).
"""

from __future__ import annotations

from dataclasses import dataclass


def version_tuple(text: str) -> tuple[int, ...]:
    """``"550.127.08"`` -> (550, 127, 8); a leading 'v' and suffixes after '-' or '+' are ignored."""
    core = text.strip().lstrip("vV").split("-")[0].split("+")[0]
    parts = []
    for piece in core.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    if not parts:
        raise ValueError(f"'{text}' is not a version")
    return tuple(parts)


# CUDA toolkit (major.minor) -> minimum Linux driver of its GA release.
CUDA_MIN_DRIVER: dict[str, str] = {
    "12.0": "525.60.13",
    "12.1": "530.30.02",
    "12.2": "535.54.03",
    "12.3": "545.23.06",
    "12.4": "550.54.14",
    "12.5": "555.42.02",
    "12.6": "560.28.03",
    "12.8": "570.26",
    "12.9": "575.51.03",
}


@dataclass(frozen=True)
class Incompatibility:
    rule: str  # stable id
    message: str
    fields: tuple[str, ...]  # version keys involved (for key paths)


def check_driver_for_cuda(driver: str, cuda: str) -> Incompatibility | None:
    minor = ".".join(str(p) for p in version_tuple(cuda)[:2])
    if minor not in CUDA_MIN_DRIVER:
        return Incompatibility(
            "unknown-cuda-version",
            f"CUDA {cuda} is not in the compatibility table (known: {', '.join(CUDA_MIN_DRIVER)})",
            ("cuda",),
        )
    need = CUDA_MIN_DRIVER[minor]
    if version_tuple(driver) < version_tuple(need):
        return Incompatibility(
            "driver-too-old-for-cuda",
            f"NVIDIA driver {driver} is older than {need}, the minimum for CUDA {cuda}",
            ("nvidia_driver", "cuda"),
        )
    return None


def check_nccl(nccl: str) -> Incompatibility | None:
    """The brief requires NCCL 2.18 or newer."""
    if version_tuple(nccl) < (2, 18):
        return Incompatibility("nccl-too-old", f"NCCL {nccl} is older than 2.18, the minimum of this design", ("nccl",))
    return None


def check_versions(versions: dict[str, str | None]) -> list[Incompatibility]:
    """Every rule of the table against a blueprint's ``versions`` section."""
    found: list[Incompatibility] = []
    if versions.get("nvidia_driver") and versions.get("cuda"):
        hit = check_driver_for_cuda(versions["nvidia_driver"], versions["cuda"])
        if hit:
            found.append(hit)
    if versions.get("nccl"):
        hit = check_nccl(versions["nccl"])
        if hit:
            found.append(hit)
    return found
