"""What the jobs run that the host roles install: nccl-tests (built with MPI, for the fabric
acceptance jobs) and Megatron-LM (checked out for the Megatron training jobs).

One function says where each one is, from ``versions`` and the catalog's release tables; the
inventory hands it to the roles (``aiinfra_job_software``: the nccl_tests and megatron_lm roles
install there) and the plan hands it to the job and acceptance renderers (the scripts run from
there), so both layers name the same path.

- nccl-tests: built on each Slurm GPU node against that node's CUDA, NCCL and MPI packages, into
  ``/opt/nccl-tests/<version>`` (binaries in ``bin/``): a build per host needs no shared file
  system and matches the host's own libraries.
- Megatron-LM: Megatron-LM's own instructions run it from a checkout mounted into the NGC PyTorch
  image, which does not ship it. The checkout goes to ``<mount>/software/megatron-lm/<release>`` on
  the parallel file system (Lustre or GPFS: once, visible to every node and, through the container's
  mount of that file system, inside the job); without one, to ``/opt/megatron-lm/<release>`` on every
  GPU node. A versioned path lets jobs of two releases run side by side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from aiinfra.catalog.versions import MEGATRON_LM_RELEASES, NCCL_TESTS_RELEASES
from aiinfra.plan.mirror import mirror_git
from aiinfra.spec.cluster import Cluster

#: Root of the host-local nccl-tests builds: one folder per release.
NCCL_TESTS_ROOT = "/opt/nccl-tests"
#: Megatron-LM checkouts below the parallel file system's mount point, one folder per release.
MEGATRON_LM_SHARED_DIR = "software/megatron-lm"
#: Megatron-LM checkouts on each GPU node when there is no parallel file system.
MEGATRON_LM_LOCAL_ROOT = "/opt/megatron-lm"
#: The GPT pre-training script of a Megatron-LM checkout.
MEGATRON_LM_ENTRYPOINT = "pretrain_gpt.py"


@dataclass(frozen=True)
class Checkout:
    """One pinned git release and where it goes on the hosts."""

    version: str  # the versions key's value
    repository: str  # the site's git URL (the mirror's copy, or upstream without a mirror)
    tag: str
    commit: str  # what the tag must resolve to
    path: str  # checkout (Megatron-LM) or install prefix (nccl-tests)
    shared: bool  # on the shared file system: checked out once, not on every host

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class JobSoftware:
    nccl_tests: Checkout | None
    megatron_lm: Checkout | None

    @property
    def nccl_tests_bin(self) -> str | None:
        return f"{self.nccl_tests.path}/bin" if self.nccl_tests else None

    @property
    def megatron_entrypoint(self) -> str | None:
        return f"{self.megatron_lm.path}/{MEGATRON_LM_ENTRYPOINT}" if self.megatron_lm else None

    def inventory(self) -> dict:
        """What the roles read (inventory: aiinfra_job_software); a release not pinned is left out."""
        return {key: c.to_dict() for key, c in (("nccl_tests", self.nccl_tests), ("megatron_lm", self.megatron_lm))
                if c is not None}


def job_software(cluster: Cluster) -> JobSoftware:
    """Where nccl-tests and Megatron-LM of ``versions`` are; None for a release not pinned or not in
    the catalog's tables (:mod:`aiinfra.checks.host_versions` reports both)."""
    v, mirror = cluster.blueprint.versions, cluster.blueprint.mirror
    nccl_tests = megatron = None
    release = NCCL_TESTS_RELEASES.get(v.nccl_tests or "")
    if release is not None:
        nccl_tests = Checkout(v.nccl_tests or "", mirror_git(mirror, release.repository), release.tag, release.commit,
                              f"{NCCL_TESTS_ROOT}/{v.nccl_tests}", False)
    release = MEGATRON_LM_RELEASES.get(v.megatron_lm or "")
    if release is not None:
        fs = cluster.blueprint.storage.parallel  # Lustre or GPFS, the one storage.parallel_fs chooses
        shared = fs is not None
        root = f"{fs.mountpoint.rstrip('/')}/{MEGATRON_LM_SHARED_DIR}" if fs else MEGATRON_LM_LOCAL_ROOT
        megatron = Checkout(v.megatron_lm or "", mirror_git(mirror, release.repository), release.tag, release.commit,
                            f"{root}/{v.megatron_lm}", shared)
    return JobSoftware(nccl_tests, megatron)
