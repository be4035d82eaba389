"""The parallel file system choice (``blueprint`` phase): ``storage.parallel_fs`` is ``lustre`` or ``gpfs``.

Everything that mounts or names the shared file system follows the choice: the client role that
runs on the hosts (``lustre_client`` or ``gpfs_client``), the job and checkpoint paths, the node
health check's expected mount, the Kubernetes volumes. So the choice needs its declaration
(``storage.gpfs`` for gpfs) and its client version, and no group may carry the other file system's
client role (the hosts would mount nothing the jobs use). Kubernetes reaches GPFS through the
hosts' mount only (static volumes).
"""

from __future__ import annotations

from collections.abc import Iterator

from aiinfra.checks.registry import BlueprintView, error, validator, warning
from aiinfra.errors import Problem
from aiinfra.spec.models import PARALLEL_FS_CLIENT_ROLE


@validator()
def parallel_fs_choice(v: BlueprintView) -> Iterator[Problem]:
    storage = v.bp.storage
    chosen = storage.parallel_fs
    if chosen == "gpfs":
        if storage.gpfs is None:
            yield error(("storage", "gpfs"), "missing-section",
                        "storage.parallel_fs is gpfs but storage.gpfs is not declared",
                        "add storage.gpfs: {cluster_name, admin_node, fsname, mountpoint, capacity, bandwidth}, "
                        "or use parallel_fs: lustre")
        if not v.bp.versions.gpfs:
            yield error(("versions", "gpfs"), "missing-version",
                        "storage.parallel_fs is gpfs but versions.gpfs (the Storage Scale release) is not pinned",
                        "pin the release of the site's client packages, e.g. versions.gpfs: 5.2.3.1")
        k8s = v.bp.kubernetes
        if k8s is not None and k8s.lustre_volumes == "csi":
            yield error(("kubernetes", "lustre_volumes"), "k8s-gpfs-volumes-static",
                        "with parallel_fs: gpfs the pods reach the file system through the hosts' mount only",
                        "use kubernetes.lustre_volumes: static (hostPath volumes on the gpfs_client hosts)")
    for other, declared in (("lustre", storage.lustre), ("gpfs", storage.gpfs)):
        if other != chosen and declared is not None:
            yield warning(("storage", other), "storage-parallel-fs-unused",
                          f"storage.{other} is declared but storage.parallel_fs is {chosen}: no host mounts it "
                          "and no job uses it", f"remove storage.{other}, or set parallel_fs: {other}")
    wanted = PARALLEL_FS_CLIENT_ROLE[chosen]
    for i, group in enumerate(v.bp.node_groups):
        for fs, role in PARALLEL_FS_CLIENT_ROLE.items():
            if fs != chosen and role in group.roles:
                yield error(("node_groups", i, "roles", group.roles.index(role)), "storage-client-role-mismatch",
                            f"group '{group.name}' has role {role} but storage.parallel_fs is {chosen}",
                            f"use role {wanted} (the client of storage.parallel_fs), or set parallel_fs: {fs}")
