"""Everything a stack pulls from outside: container images, Helm charts, git sources, OS packages
and model artifacts, each with its version, its upstream source and where the site pulls it
(the blueprint's ``mirror:``, :mod:`aiinfra.plan.mirror`). ``aiinfra artifacts`` prints it and
writes the mirror script; docs/air-gapped.md explains the workflow.

Computed from the Cluster and the plan (the pins of ``versions``, the catalog's repositories, the
components the platform installs), never from rendered text: tests/render/test_artifacts.py reads
the rendered files and compares.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from aiinfra.catalog.charts import (
    CNI_CHARTS,
    NETWORK_OPERATOR_IMAGE_REPOSITORY,
    NETWORK_OPERATOR_IMAGES,
    chart,
    network_operator_image_tag,
)
from aiinfra.catalog.platform import COMPONENTS
from aiinfra.catalog.versions import MEGATRON_LM_RELEASES, NCCL_TESTS_RELEASES
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.plan.mirror import canonical_image, mirror_chart, mirror_image
from aiinfra.plan.software import job_software
from aiinfra.spec.cluster import Cluster


@dataclass(frozen=True)
class Artifact:
    kind: str  # image | chart | git | package | model
    name: str  # image repository, chart name, git URL, package name, model path
    version: str  # tag or digest, chart version, git tag, package version ("" for the distribution's)
    source: str  # upstream: image reference, Helm repository, git URL, apt repository, where the model lies
    site: str  # where the rendered files pull it from (the mirror's name; the upstream without a mirror)
    used_by: str  # what needs it (versions key, component, role, workload)

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def split_image(ref: str) -> tuple[str, str]:
    """``nvcr.io/nvidia/pytorch:25.04-py3`` -> (``nvcr.io/nvidia/pytorch``, ``25.04-py3``); a digest
    is the version of a ``name@sha256:...`` reference."""
    if "@" in ref:
        name, _, digest = ref.partition("@")
        return name, digest
    name, sep, tag = ref.rpartition(":")
    return (name, tag) if sep and "/" not in tag else (ref, "")


def _images(cluster: Cluster) -> list[Artifact]:
    mirror = cluster.blueprint.mirror
    out = []
    for key, ref in sorted(cluster.blueprint.versions.images.items()):
        name, version = split_image(ref)
        out.append(Artifact("image", canonical_image(name), version, ref, mirror_image(mirror, ref),
                            f"versions.images.{key}"))
    k8s = cluster.blueprint.kubernetes
    version = cluster.blueprint.versions.charts.get("network-operator")
    if k8s and version and cluster.groups_for_scheduler("kubernetes"):
        # the NicClusterPolicy's components (render/platform.py): shared RDMA with IPoIB, or SR-IOV
        keys = ["multus", "cni_plugins", "nv_ipam",
                *(("rdma_shared_device_plugin", "ipoib_cni") if k8s.rdma == "shared" else ("sriov_device_plugin",))]
        tag = network_operator_image_tag(version)
        for key in keys:
            ref = f"{NETWORK_OPERATOR_IMAGE_REPOSITORY}/{NETWORK_OPERATOR_IMAGES[key]}:{tag}"
            out.append(Artifact("image", canonical_image(split_image(ref)[0]), tag, ref, mirror_image(mirror, ref),
                                f"network-operator NicClusterPolicy ({key})"))
    return out


def _charts(cluster: Cluster) -> list[Artifact]:
    k8s = cluster.blueprint.kubernetes
    if k8s is None or not cluster.groups_for_scheduler("kubernetes"):
        return []
    pins = cluster.blueprint.versions.charts
    uses = [(c.chart, f"component {c.name}") for c in COMPONENTS if c.chart]
    uses.append((CNI_CHARTS[k8s.cni], f"CNI ({k8s.cni}, kubernetes role)"))
    out = []
    for key, used_by in uses:
        if key not in pins:
            continue  # checks.platform refuses an unpinned chart
        c, site = chart(key), mirror_chart(cluster.blueprint.mirror, chart(key))
        if c.is_kustomize:
            out.append(Artifact("git", c.repository, pins[key], c.repository, site.repository,
                                f"{used_by}: kustomize {c.path}"))
        else:
            out.append(Artifact("chart", c.chart, pins[key], c.repository, site.repository, used_by))
    return out


# OS packages the host roles install (Debian family), the version each is pinned to and its apt
# repository. The names are the roles' (roles/<role>/vars/Debian.yml and defaults/main.yml; a test
# checks that each one is still there); the versions are the blueprint's, "" where a role takes
# the distribution's package or its own default (named in the source column).
def _packages(cluster: Cluster) -> list[Artifact]:
    v = cluster.blueprint.versions
    if not v.os.startswith("ubuntu"):
        return []  # the RPM names of rhel-9 / rocky-9 are not listed yet (docs/air-gapped.md)
    distro = v.os.replace("-", "").replace(".", "")  # ubuntu-22.04 -> ubuntu2204
    ubuntu = f"Ubuntu {v.os.split('-')[1]} archive"
    branch = v.nvidia_driver.split(".")[0]
    cuda_repo = f"https://developer.download.nvidia.com/compute/cuda/repos/{distro}/x86_64"
    rows: list[tuple[str, str, str, str]] = [  # role, package, version, repository
        ("common", "chrony", "", ubuntu),
        ("nvidia_driver", f"nvidia-driver-{branch}-open", v.nvidia_driver, cuda_repo),
        ("nvidia_driver", f"nvidia-fabricmanager-{branch}", v.nvidia_driver, cuda_repo),
        ("nvidia_driver", f"libnvidia-nscq-{branch}", v.nvidia_driver, cuda_repo),
        ("dcgm", "datacenter-gpu-manager-4-cuda" + v.cuda.split(".")[0], v.dcgm or "", cuda_repo),
        ("container_runtime", "nvidia-container-toolkit", v.container_toolkit or "",
         "NVIDIA container toolkit repository (container_runtime_toolkit_repo)"),
        ("infiniband", "doca-ofed", v.doca_ofed,
         f"https://linux.mellanox.com/public/repo/doca/{v.doca_ofed}/{distro}/x86_64"),
        ("infiniband", "opensm", "", "DOCA repository (subnet managers only)"),
    ]
    roles = {r for g in cluster.groups.values() for r in g.spec.roles}
    if v.lustre_client and "lustre_client" in roles:
        lustre = f"https://downloads.whamcloud.com/public/lustre/lustre-{v.lustre_client}/client/{distro}"
        rows += [("lustre_client", f"lustre-client-modules-{v.kernel}", v.lustre_client, lustre),
                 ("lustre_client", "lustre-client-utils", v.lustre_client, lustre)]
    if v.gpfs and "gpfs_client" in roles:  # names as roles/gpfs_client/vars/Debian.yml installs them
        scale = f"the site's IBM Storage Scale {v.gpfs} repository (gpfs_client_repo_url)"
        rows += [("gpfs_client", pkg, v.gpfs, scale)
                 for pkg in ("gpfs.base", "gpfs.gpl", "gpfs.gskit", "gpfs.msg.en-us", "gpfs.docs")]
    if "nvmeof_client" in roles:
        rows.append(("nvmeof", "nvme-cli", "", ubuntu))
    if cluster.blueprint.slurm is not None:
        rows += [("munge", "munge", "", ubuntu)]
        slurm_repo = f"the apt source of Slurm {v.slurm} (the slurm role pins no repository)"
        rows += [("slurm", p, v.slurm or "", slurm_repo) for p in ("slurm-client", "slurmctld", "slurmd", "slurmdbd")]
        rows += [("slurm", p, "", ubuntu) for p in ("libpmix-dev", "mariadb-server")]
    if job_software(cluster).nccl_tests is not None:  # the nccl_tests role's build on the Slurm GPU nodes
        cuda = v.cuda.replace(".", "-")
        rows += [("nccl_tests", p, "", ubuntu) for p in ("make", "g++", "libopenmpi-dev")]
        rows += [("nccl_tests", f"cuda-nvcc-{cuda}", "", cuda_repo), ("nccl_tests", f"cuda-cudart-dev-{cuda}", "", cuda_repo),
                 ("nccl_tests", "libnccl2", f"{v.nccl}-1+cuda{v.cuda}", cuda_repo),
                 ("nccl_tests", "libnccl-dev", f"{v.nccl}-1+cuda{v.cuda}", cuda_repo)]
    if cluster.groups_for_scheduler("kubernetes") and v.kubernetes:
        minor = ".".join(v.kubernetes.split(".")[:2])
        k8s_repo = f"https://pkgs.k8s.io/core:/stable:/v{minor}/deb/"
        rows += [("kubernetes", p, v.kubernetes, k8s_repo) for p in ("kubelet", "kubeadm", "kubectl")]
        rows.append(("containerd", "containerd", v.containerd or "", ubuntu))
    return [Artifact("package", name, version, repo, repo, f"role {role}") for role, name, version, repo in rows]


def _git_sources(cluster: Cluster) -> list[Artifact]:
    """The releases the nccl_tests and megatron_lm roles check out (aiinfra.plan.software)."""
    software = job_software(cluster)
    out = []
    for key, checkout, table in (("nccl_tests", software.nccl_tests, NCCL_TESTS_RELEASES),
                                 ("megatron_lm", software.megatron_lm, MEGATRON_LM_RELEASES)):
        if checkout is not None:
            upstream = table[checkout.version].repository
            out.append(Artifact("git", upstream, checkout.tag, upstream, checkout.repository,
                                f"versions.{key} (role {key}, commit {checkout.commit})"))
    return out


def _models(cluster: Cluster, plan: ClusterPlan) -> list[Artifact]:
    out = []
    for d in plan.deployments:
        out.append(Artifact("model", d.lustre_weights, "", d.lustre_weights, d.lustre_weights,
                            f"serving {d.name} (model {d.dep.model})"))
        if d.draft_lustre_weights and d.dep.speculative:
            out.append(Artifact("model", d.draft_lustre_weights, "", d.draft_lustre_weights, d.draft_lustre_weights,
                                f"serving {d.name} (draft {d.dep.speculative.draft_model})"))
    for j in plan.jobs:
        for what in ("tokenizer", "data_path"):
            path = getattr(j.spec, what, None)
            if path:
                out.append(Artifact("model", path, "", path, path, f"training {j.name} ({what})"))
    return out


def stack_artifacts(cluster: Cluster, plan: ClusterPlan) -> list[Artifact]:
    """Every artifact of the stack, by kind then name (deterministic)."""
    found = _images(cluster) + _charts(cluster) + _git_sources(cluster) + _packages(cluster) + _models(cluster, plan)
    order = {"image": 0, "chart": 1, "git": 2, "package": 3, "model": 4}
    return sorted(set(found), key=lambda a: (order[a.kind], a.name, a.version, a.used_by))


def mirror_script(cluster: Cluster, artifacts: list[Artifact]) -> str:
    """A POSIX shell script, run on a host that reaches the upstreams and the mirror: skopeo copies
    every image, helm pulls (and pushes, to an OCI mirror) every chart, git mirrors every git
    source, and the apt package list is written for the OS mirror (aptly, reprepro, ...).
    Destinations are the mirror's; where the blueprint sets no mirror they are $MIRROR_REGISTRY,
    $MIRROR_HELM and $MIRROR_GIT, which the script then requires."""
    mirror = cluster.blueprint.mirror
    registry = mirror.registry if mirror and mirror.registry else "${MIRROR_REGISTRY:?set MIRROR_REGISTRY}"
    helm = mirror.helm if mirror and mirror.helm else "${MIRROR_HELM:?set MIRROR_HELM}"
    git = mirror.git if mirror and mirror.git else "${MIRROR_GIT:?set MIRROR_GIT}"
    by = {k: [a for a in artifacts if a.kind == k] for k in ("image", "chart", "git", "package", "model")}
    lines = [
        "#!/bin/sh",
        f"# Mirror script of '{cluster.env}', written by `aiinfra artifacts` from {cluster.source}.",
        "# Run where both the upstreams and the mirror are reachable (docs/air-gapped.md).",
        "set -eu",
        'dir="${AIINFRA_MIRROR_DIR:-./aiinfra-mirror}"',
        'mkdir -p "$dir/charts"',
        "",
        f"# container images ({len(by['image'])}): skopeo copy --all keeps every platform of a manifest list",
    ]
    for a in by["image"]:
        lines.append(f"skopeo copy --all docker://{a.source} docker://{registry}/{canonical_image(a.source)}")
    lines += ["", f"# Helm charts ({len(by['chart'])}): pulled into $dir/charts"]
    for a in by["chart"]:
        src = f"{a.source}/{a.name}" if a.source.startswith("oci://") else f"{a.name} --repo {a.source}"
        lines.append(f'helm pull {src} --version {a.version} --destination "$dir/charts"')
    if by["chart"]:
        if helm.startswith("oci://") or helm.startswith("${"):
            lines += [f'for chart in "$dir"/charts/*.tgz; do helm push "$chart" {helm}; done']
        else:
            lines += [f"# {helm} is not an OCI registry: upload $dir/charts/*.tgz with the repository's own tool"]
    lines += ["", f"# git sources ({len(by['git'])}): bare mirrors with every tag"]
    for a in by["git"]:
        host_path = a.source.split("://", 1)[-1]
        lines += [f'git clone --mirror {a.source} "$dir/git/{host_path}"',
                  f'git -C "$dir/git/{host_path}" push --mirror {git}/{host_path}']
    lines += ["", f"# OS packages ({len(by['package'])}) for the site's apt mirror: name=version (empty: the "
              "distribution's) and repository", "cat > \"$dir/apt-packages.txt\" <<'EOF'"]
    lines += [f"{a.name}={a.version}\t{a.source}" if a.version else f"{a.name}\t{a.source}" for a in by["package"]]
    lines += ["EOF", "", f"# model artifacts ({len(by['model'])}): copy onto the site's Lustre before serving"]
    lines += [f"#   {a.name}  ({a.used_by})" for a in by["model"]]
    return "\n".join(lines) + "\n"
