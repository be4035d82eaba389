"""Version compatibility: the rules `aiinfra validate` checks before any host is touched.

Each rule names both versions involved in its message. The tables are facts from the vendors'
release notes; extend them when a release note adds a row (a version the table does not know is
an error, so an unreviewed combination never reaches a host).

Sources:

- CUDA minimum drivers: NVIDIA CUDA Toolkit Release Notes, table "CUDA Toolkit and Corresponding
  Driver Versions" (Linux x86_64, toolkit driver version, i.e. without minor-version compatibility).
- DOCA-Host (DOCA-OFED) supported operating systems: NVIDIA DOCA release notes, section
  "Supported Platforms and Operating Systems" of each release (x86_64 hosts; only the OS lines this
  blueprint's ``versions.os`` allows are kept). Ubuntu 24.04 first appears with DOCA 2.7.
- Kernel series of each OS: Canonical's Ubuntu kernel lifecycle (22.04: 5.15 GA, HWE 6.2 / 6.5 /
  6.8; 24.04: 6.8 GA, HWE 6.11 / 6.14) and Red Hat's "Red Hat Enterprise Linux Release Dates"
  (every RHEL 9 minor release ships a 5.14.0 kernel; Rocky Linux 9 follows RHEL 9).
- Lustre client support: the "Client support for unpatched kernels" and "Interoperability /
  OFED" lines of the Lustre ChangeLog of each release (lustre.org), per kernel series; the
  OFED range is the MLNX_OFED / DOCA-OFED the o2iblnd module of that release builds against
  (MLNX_OFED 23.10 = DOCA 2.5, 24.01 = 2.6, 24.04 = 2.7, 24.07 = 2.8, 24.10 = 2.9, 25.01 = 2.10,
  25.04 = 3.0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiinfra.catalog.names import suggest


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


def _series(text: str, parts: int = 2) -> str:
    """``"5.15.0-134-generic"`` -> ``"5.15"``; ``"2.16.1"`` -> ``"2.16"``."""
    return ".".join(str(p) for p in version_tuple(text)[:parts])


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

# Kernel series (major.minor) each OS of versions.os ships or supports (GA and HWE kernels).
OS_KERNEL_SERIES: dict[str, tuple[str, ...]] = {
    "ubuntu-22.04": ("5.15", "6.2", "6.5", "6.8"),
    "ubuntu-24.04": ("6.8", "6.11", "6.14"),
    "rhel-9": ("5.14",),
    "rocky-9": ("5.14",),
}

# DOCA-Host release (major.minor) -> operating systems of its supported-platforms table.
DOCA_SUPPORTED_OS: dict[str, tuple[str, ...]] = {
    "2.5": ("ubuntu-22.04", "rhel-9", "rocky-9"),
    "2.6": ("ubuntu-22.04", "rhel-9", "rocky-9"),
    "2.7": ("ubuntu-22.04", "ubuntu-24.04", "rhel-9", "rocky-9"),
    "2.8": ("ubuntu-22.04", "ubuntu-24.04", "rhel-9", "rocky-9"),
    "2.9": ("ubuntu-22.04", "ubuntu-24.04", "rhel-9", "rocky-9"),
    "2.10": ("ubuntu-22.04", "ubuntu-24.04", "rhel-9", "rocky-9"),
    "3.0": ("ubuntu-22.04", "ubuntu-24.04", "rhel-9", "rocky-9"),
}


@dataclass(frozen=True)
class LustreClientSupport:
    """What one Lustre client release builds and runs against."""

    kernels: dict[str, tuple[str, ...]]  # versions.os -> kernel series (major.minor)
    doca_min: str  # oldest DOCA-OFED (major.minor) its o2iblnd builds against
    doca_max: str  # newest one


# Lustre client release (major.minor.patch) -> supported kernels and OFED range.
LUSTRE_CLIENT_SUPPORT: dict[str, LustreClientSupport] = {
    "2.15.4": LustreClientSupport({"ubuntu-22.04": ("5.15",), "rhel-9": ("5.14",), "rocky-9": ("5.14",)},
                                  "2.5", "2.6"),
    "2.15.5": LustreClientSupport({"ubuntu-22.04": ("5.15", "6.5"), "rhel-9": ("5.14",), "rocky-9": ("5.14",)},
                                  "2.5", "2.7"),
    "2.15.6": LustreClientSupport({"ubuntu-22.04": ("5.15", "6.5", "6.8"), "ubuntu-24.04": ("6.8",),
                                   "rhel-9": ("5.14",), "rocky-9": ("5.14",)},
                                  "2.5", "2.9"),
    "2.16.0": LustreClientSupport({"ubuntu-22.04": ("5.15", "6.8"), "ubuntu-24.04": ("6.8",),
                                   "rhel-9": ("5.14",), "rocky-9": ("5.14",)},
                                  "2.7", "2.9"),
    "2.16.1": LustreClientSupport({"ubuntu-22.04": ("5.15", "6.8"), "ubuntu-24.04": ("6.8", "6.11"),
                                   "rhel-9": ("5.14",), "rocky-9": ("5.14",)},
                                  "2.7", "3.0"),
}


@dataclass(frozen=True)
class Incompatibility:
    rule: str  # stable id
    message: str
    fields: tuple[str, ...]  # version keys involved (for key paths); the first one is reported
    hint: str = "pin compatible versions"  # the fix `aiinfra validate` prints


def check_driver_for_cuda(driver: str, cuda: str) -> Incompatibility | None:
    minor = _series(cuda)
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
    """The centre's requirements name NCCL 2.18 or newer."""
    if version_tuple(nccl) < (2, 18):
        return Incompatibility("nccl-too-old", f"NCCL {nccl} is older than 2.18, the minimum of this design", ("nccl",))
    return None


def check_kernel_for_os(kernel: str, os_name: str) -> Incompatibility | None:
    """The kernel must be one the OS ships (GA or HWE): DOCA and Lustre modules are built per OS kernel."""
    known = OS_KERNEL_SERIES.get(os_name)
    if known is None or _series(kernel) in known:
        return None
    return Incompatibility(
        "kernel-not-for-os",
        f"kernel {kernel} is not a kernel of {os_name} (its series: {', '.join(known)})",
        ("kernel", "os"),
    )


def check_doca_for_os(doca: str, os_name: str) -> Incompatibility | None:
    minor = _series(doca)
    if minor not in DOCA_SUPPORTED_OS:
        return Incompatibility(
            "unknown-doca-version",
            f"DOCA-OFED {doca} is not in the compatibility table (known: {', '.join(DOCA_SUPPORTED_OS)})",
            ("doca_ofed",),
        )
    supported = DOCA_SUPPORTED_OS[minor]
    if os_name not in supported:
        return Incompatibility(
            "doca-unsupported-os",
            f"DOCA-OFED {doca} does not support {os_name} (it supports: {', '.join(supported)})",
            ("doca_ofed", "os"),
        )
    return None


def check_lustre_client(lustre: str, os_name: str, kernel: str, doca: str | None) -> list[Incompatibility]:
    """The Lustre client must support the OS's kernel series and build against the DOCA-OFED release."""
    release = ".".join(str(p) for p in version_tuple(lustre)[:3])
    support = LUSTRE_CLIENT_SUPPORT.get(release)
    if support is None:
        return [Incompatibility(
            "unknown-lustre-version",
            f"Lustre client {lustre} is not in the compatibility table (known: {', '.join(LUSTRE_CLIENT_SUPPORT)})",
            ("lustre_client",),
        )]
    found = []
    series = _series(kernel)
    kernels = support.kernels.get(os_name, ())
    if series not in kernels:
        where = f"{os_name} kernels {', '.join(kernels)}" if kernels else f"no kernel of {os_name}"
        found.append(Incompatibility(
            "lustre-unsupported-kernel",
            f"Lustre client {lustre} does not support kernel {kernel} on {os_name} (it supports {where})",
            ("lustre_client", "kernel"),
        ))
    if doca:
        doca_minor = version_tuple(doca)[:2]
        if not version_tuple(support.doca_min) <= doca_minor <= version_tuple(support.doca_max):
            found.append(Incompatibility(
                "lustre-unsupported-ofed",
                f"Lustre client {lustre} does not build against DOCA-OFED {doca} "
                f"(it supports DOCA-OFED {support.doca_min} to {support.doca_max})",
                ("lustre_client", "doca_ofed"),
            ))
    return found


# The written form of each pinned version, as its project publishes releases: a version that does
# not have this form ("latest", "1", a letter O for a zero, a misspelt kernel flavour) is refused
# before any compatibility rule reads it.
# Ubuntu kernel releases are <upstream>-<ABI>-<flavour>; the flavours are those of Ubuntu's
# linux-image-* packages for servers (jammy/noble): generic, lowlatency, the 64k-page builds and
# NVIDIA's optimised kernel. RHEL-family kernels are <upstream>-<release>.el<N>[_<minor>][.<arch>].
UBUNTU_KERNEL_FLAVOURS = ("generic", "generic-64k", "lowlatency", "lowlatency-64k", "nvidia", "nvidia-64k",
                          "nvidia-lowlatency")
VERSION_FORMATS: dict[str, tuple[str, str]] = {
    "nvidia_driver": (r"\d{3}\.\d{2,3}(\.\d{2})?", "570.133.20"),
    "cuda": (r"\d{2}\.\d{1,2}(\.\d{1,2})?", "12.8"),
    "nccl": (r"2\.\d{1,2}\.\d{1,2}(-\d+)?", "2.26.2"),
    "doca_ofed": (r"\d\.\d{1,2}\.\d{1,2}(-\d+)?", "2.10.0"),
    "lustre_client": (r"2\.\d{1,2}\.\d{1,2}", "2.15.6"),
    "containerd": (r"[12]\.\d{1,2}\.\d{1,2}([-~+][0-9A-Za-z.~+-]*)?", "1.7.24"),
    "container_toolkit": (r"1\.\d{1,2}\.\d{1,2}", "1.17.5"),
    "enroot": (r"\d\.\d{1,2}\.\d{1,2}", "3.5.0"),
    "pyxis": (r"0\.\d{1,2}\.\d{1,2}", "0.20.0"),
    "dcgm": (r"\d\.\d{1,2}\.\d{1,2}", "4.2.3"),
    "nccl_tests": (r"2\.\d{1,2}\.\d{1,2}", "2.14.1"),
    "megatron_lm": (r"core_v\d+\.\d+\.\d+", "core_v0.12.0"),
    "kernel": (r"\d\.\d{1,2}\.\d{1,3}-(\d{1,4}-(" + "|".join(UBUNTU_KERNEL_FLAVOURS) + r")"
               r"|[\d.]+\.el\d+(_\d+)?(\.x86_64|\.aarch64)?)", "5.15.0-134-generic"),
}


def check_format(key: str, text: str) -> str | None:
    """Why ``text`` is not a release of ``key`` as its project writes them, or None when it is."""
    pattern, example = VERSION_FORMATS[key]
    if re.fullmatch(pattern, text.strip()):
        return None
    if key == "kernel":
        flavour = text.strip().rsplit("-", 1)[-1]
        near = suggest(flavour, UBUNTU_KERNEL_FLAVOURS) if not flavour.isdigit() else ""
        return (f"'{text}' is not a kernel release (<version>-<abi>-<flavour>, flavours: "
                f"{', '.join(UBUNTU_KERNEL_FLAVOURS)}; or an el9 release){near}; e.g. {example}")
    return f"'{text}' is not a release of {key}: write it as the project does, e.g. {example}"


def _parses(*texts: str | None) -> bool:
    try:
        for text in texts:
            if text is not None:
                version_tuple(text)
    except ValueError:
        return False
    return True


def check_versions(versions: dict[str, str | None]) -> list[Incompatibility]:
    """Every rule of the table against a blueprint's ``versions`` section.

    A rule whose versions do not parse is skipped: the validator reports those as ``bad-version``.
    """
    found: list[Incompatibility] = []
    driver, cuda, nccl = versions.get("nvidia_driver"), versions.get("cuda"), versions.get("nccl")
    os_name, kernel, doca = versions.get("os"), versions.get("kernel"), versions.get("doca_ofed")
    lustre = versions.get("lustre_client")
    if driver and cuda and _parses(driver, cuda):
        hit = check_driver_for_cuda(driver, cuda)
        if hit:
            found.append(hit)
    if nccl and _parses(nccl):
        hit = check_nccl(nccl)
        if hit:
            found.append(hit)
    if os_name and kernel and _parses(kernel):
        hit = check_kernel_for_os(kernel, os_name)
        if hit:
            found.append(hit)
    if os_name and doca and _parses(doca):
        hit = check_doca_for_os(doca, os_name)
        if hit:
            found.append(hit)
    if os_name and kernel and lustre and _parses(kernel, lustre, doca):
        found.extend(check_lustre_client(lustre, os_name, kernel, doca))
    found.extend(check_host_versions(versions))
    return found


# ---------------------------------------------------------------- Slurm release sources


@dataclass(frozen=True)
class SourceTarball:
    url: str
    sha256: str
    provenance: str  # where the checksum was read


# Slurm releases the slurm role can build (slurm.install.method: source) without the blueprint
# naming a tarball. The tarball is SchedMD's tagged release as Debian carries it (the .orig.tar.gz
# of the slurm-wlm source package: the tag archive slurm-slurm-24-11-5-1/); its SHA-256 is the one
# in Debian's signed Sources index, which apt verified when it was fetched. A site mirrors the file
# and sets slurm.install.source_url (the checksum stays).
SLURM_SOURCES: dict[str, SourceTarball] = {
    "24.11.5": SourceTarball(
        url="http://deb.debian.org/debian/pool/main/s/slurm-wlm/slurm-wlm_24.11.5.orig.tar.gz",
        sha256="e1a5547edd212c38b5e3230a284133f777b32746551f094aaa81cc4af375e332",
        provenance="Debian trixie main Sources, slurm-wlm 24.11.5-4+deb13u1, Checksums-Sha256",
    ),
}


# ---------------------------------------------------------------- what jobs run (git releases)


@dataclass(frozen=True)
class GitRelease:
    """A release the host roles check out from the site's git mirror: the tag, and the commit it must
    resolve to (git's object id is the checksum: a moved or rewritten tag is refused)."""

    repository: str  # upstream git URL; the site's copy is <mirror.git>/<host>/<path> (aiinfra.plan.mirror)
    tag: str
    commit: str
    provenance: str  # where the commit was read


# nccl-tests releases the nccl_tests role builds (with MPI=1, against versions.cuda and versions.nccl).
# The commit of each tag as the upstream repository has it (git rev-parse <tag>^{commit}).
NCCL_TESTS_RELEASES: dict[str, GitRelease] = {
    "2.14.1": GitRelease("https://github.com/NVIDIA/nccl-tests.git", "v2.14.1",
                         "b4300cc79d05dd35e26f13afcdb4938f29aa31a5", "github.com/NVIDIA/nccl-tests tag v2.14.1"),
}

# Megatron-LM releases the megatron_lm role checks out: only those whose argument names the plan's
# Megatron arguments were checked against (aiinfra.plan.jobs.megatron_args: core_v0.12.0's
# megatron/training/arguments.py). The tag is annotated: its commit is the one it points at.
MEGATRON_LM_RELEASES: dict[str, GitRelease] = {
    "core_v0.12.0": GitRelease("https://github.com/NVIDIA/Megatron-LM.git", "core_v0.12.0",
                               "d580efc68a9f0dbf1945f834f6f6200cd01d3343",
                               "github.com/NVIDIA/Megatron-LM tag core_v0.12.0 (annotated), its commit"),
}

# The pause (pod sandbox) image kubeadm of each Kubernetes minor pulls: kubeadm's PauseVersion
# (cmd/kubeadm/app/constants/constants.go of each release branch). containerd's sandbox image must be
# the same one, or each node keeps two and kubeadm's preflight warns.
KUBEADM_PAUSE_VERSION: dict[str, str] = {
    "1.28": "3.9",
    "1.29": "3.9",
    "1.30": "3.9",
    "1.31": "3.10",
    "1.32": "3.10",
    "1.33": "3.10",
}


def check_git_release(key: str, version: str, table: dict[str, GitRelease]) -> Incompatibility | None:
    if version in table:
        return None
    what = key.replace("_", "-")
    return Incompatibility(f"unknown-{what}-version",
                           f"{what} {version} is not in the release table (known: {', '.join(table)})", (key,),
                           f"pin one of {', '.join(table)}, or add the release with the commit its tag points at to "
                           f"aiinfra.catalog.versions.{key.upper()}_RELEASES")


def check_dcgm_exporter(dcgm: str, exporter: str) -> Incompatibility | None:
    """dcgm-exporter releases are <DCGM version>-<exporter version> and run against that DCGM."""
    built_for = exporter.split("-", 1)[0]
    if built_for == dcgm:
        return None
    return Incompatibility("dcgm-exporter-mismatch",
                           f"dcgm-exporter {exporter} is built for DCGM {built_for}, but versions.dcgm is {dcgm}",
                           ("dcgm",), f"pin a dcgm-exporter release built for DCGM {dcgm} ({dcgm}-<exporter version>), "
                           "or the DCGM it is built for")


def check_pause_image(image: str, kubernetes: str) -> Incompatibility | None:
    minor = _series(kubernetes)
    want = KUBEADM_PAUSE_VERSION.get(minor)
    tag = image.rpartition(":")[2] if ":" in image.rsplit("/", 1)[-1] else ""
    if want is None or tag == want or "@" in image:  # a digest names no release to compare
        return None
    return Incompatibility("pause-not-kubeadms",
                           f"the pause image {image} is not the one kubeadm {minor} pulls (pause:{want})",
                           ("images",), f"pin images.pause: registry.k8s.io/pause:{want}")


def check_host_versions(versions: dict) -> list[Incompatibility]:
    """The rules of the host software beside the driver stack: release tables and the pairs that must agree."""
    found = []
    for key, table in (("nccl_tests", NCCL_TESTS_RELEASES), ("megatron_lm", MEGATRON_LM_RELEASES)):
        if versions.get(key):
            hit = check_git_release(key, versions[key], table)
            if hit:
                found.append(hit)
    exporter = (versions.get("exporters") or {}).get("dcgm-exporter")
    if versions.get("dcgm") and exporter:
        hit = check_dcgm_exporter(versions["dcgm"], exporter)
        if hit:
            found.append(hit)
    pause = (versions.get("images") or {}).get("pause")
    if pause and versions.get("kubernetes") and _parses(versions["kubernetes"]):
        hit = check_pause_image(pause, versions["kubernetes"])
        if hit:
            found.append(hit)
    return found
