"""The checks stage's machinery: validators register here, run in two phases, report Problems.

Each validator is a function registered with :func:`validator`; it yields Problems with a stable
id (docs/validation.md lists them). Two phases, both run by :mod:`aiinfra.pipeline`:

- ``blueprint`` validators see the parsed Blueprint and the expanded hostlists
  (:class:`BlueprintView`); they guard everything :func:`aiinfra.spec.cluster.build_cluster`
  relies on.
- ``cluster`` validators see the built Cluster and its Plan (``fn(cluster, plan)``): the planner's
  preflight, the serving and training workloads as resolved, and what each renderer needs. A
  renderer never refuses user input: whatever it could not render is refused here.

All validators of a phase run, so the user gets every problem at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aiinfra.catalog.names import suggest
from aiinfra.errors import Level, Problem
from aiinfra.spec.addressing import AddressPlan, address_plan
from aiinfra.spec.models import Blueprint


@dataclass
class BlueprintView:
    bp: Blueprint
    hosts: dict[str, tuple[str, ...]]  # node group -> expanded hosts
    addresses: AddressPlan = field(init=False)  # the address plan of those hosts, derived once (checks, Cluster)

    def __post_init__(self) -> None:
        self.addresses = address_plan(self.bp.node_groups, self.hosts, self.bp.networks.management.first_host)


Validator = Callable[..., Iterable[Problem]]
_VALIDATORS: dict[str, list[Validator]] = {"blueprint": [], "cluster": []}


def validator(phase: str = "blueprint") -> Callable[[Validator], Validator]:
    def register(fn: Validator) -> Validator:
        _VALIDATORS[phase].append(fn)
        return fn

    return register


def run(phase: str, *subject: object) -> list[Problem]:
    """Every validator of ``phase`` over ``subject`` (a BlueprintView, or a Cluster and its Plan)."""
    _load_validators()
    problems: list[Problem] = []
    for fn in _VALIDATORS[phase]:
        problems.extend(fn(*subject))
    return problems


def _load_validators() -> None:
    """Import every module of this package: importing one registers its validators."""
    import importlib
    import pkgutil

    import aiinfra.checks as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        importlib.import_module(f"{package.__name__}.{info.name}")


def error(path: tuple, id: str, message: str, hint: str) -> Problem:
    return Problem(path=path, id=id, message=message, hint=hint)


def warning(path: tuple, id: str, message: str, hint: str) -> Problem:
    return Problem(path=path, id=id, message=message, level=Level.WARNING, hint=hint)


# ------------------------------------------------------------------ silencing


KNOWN_WARNINGS = {
    "rails-without-gpus", "fabric-oversubscribed", "fabric-partial-su", "fabric-su-split", "gpu-nodes-unscheduled",
    "plan-serving-capacity", "plan-power-budget", "plan-spares-short", "train-checkpoint-outside-lustre",
    "train-no-spare", "train-waits-for-nodes",
    "secret-in-url", "secret-token", "secret-key-material", "serving-egress-anywhere", "serving-no-auth",
    "gitops-repo-placeholder", "serving-speculation-no-gain", "storage-parallel-fs-unused",
}


def apply_silence(bp_silence: list[str], problems: list[Problem]) -> list[Problem]:
    """Drop silenced warnings; report silencing of an error or of an unknown id."""
    error_ids = {p.id for p in problems if p.level is Level.ERROR}
    out = [p for p in problems if not (p.level is Level.WARNING and p.id in bp_silence)]
    for i, sid in enumerate(bp_silence):
        if sid in error_ids or (sid not in KNOWN_WARNINGS and sid in ERROR_IDS):
            out.append(error(("silence", i), "cannot-silence-error", f"'{sid}' is an error and cannot be silenced",
                             "fix the blueprint instead"))
        elif sid not in KNOWN_WARNINGS:
            out.append(warning(("silence", i), "unknown-warning-id",
                               f"'{sid}' is not a warning id{suggest(sid, sorted(KNOWN_WARNINGS))}",
                               "name a warning id of docs/validation.md"))
    return out


ERROR_IDS = {
    "duplicate-name", "undefined-node-type", "unknown-gpu-model", "unknown-link-rate", "host-two-schedulers",
    "duplicate-host", "undefined-host", "address-overlap", "cidr-too-small", "cidr-overlap", "missing-fabric",
    "rails-mismatch", "fabric-too-large", "fabric-spine-group-too-large", "fabric-needs-three-levels",
    "missing-section", "missing-role", "missing-version",
    "undefined-node-group", "wrong-scheduler", "several-defaults", "undefined-qos", "no-gpus", "too-many-nodes",
    "conflicting-keys", "missing-key", "undefined-image", "driver-too-old-for-cuda", "unknown-cuda-version",
    "nccl-too-old", "bad-version", "kernel-not-for-os", "unknown-doca-version", "doca-unsupported-os",
    "unknown-lustre-version", "lustre-unsupported-kernel", "lustre-unsupported-ofed",
    "unknown-key", "wrong-type", "invalid-value",
    "missing-chart-version", "ipoib-pod-range-too-small",
    "k8s-api-vip-missing", "k8s-queue-shares-over-one", "k8s-lustre-csi-driver-missing",
    "k8s-nodecheck-image",
    "plan-training", "plan-serving", "plan-unknown-name", "plan-no-gpus", "plan-too-many-nodes", "plan-claim",
    "train-image-missing", "train-path-unset", "train-checkpoint-interval", "train-checkpoint-not-mounted",
    "train-no-partition", "train-deepspeed-layout", "train-deepspeed-fp8", "train-offload-needs-deepspeed",
    "train-extra-arg-conflict", "train-uneven-pipeline-vpp", "train-megatron-sharding",
    "plaintext-secret", "serving-api-key-unsupported",
    "yaml-tag", "yaml-alias", "yaml-too-deep", "number-out-of-range",
    "gpu-count-exceeds-baseboard", "rails-gpu-mismatch", "storage-hca-is-a-rail",
    "bad-address", "address-taken", "bad-nid", "address-outside-network",
    "slurm-accounts-without-slurmdbd", "slurm-account-reserved", "slurm-account-undefined-parent",
    "slurm-account-cycle", "slurm-account-undefined-qos", "slurm-default-qos-not-granted",
    "slurm-user-in-no-account", "slurm-user-undefined-account", "slurm-user-not-member",
    "slurm-user-ambiguous-default",
    "unknown-nccl-tests-version", "unknown-megatron-lm-version", "dcgm-exporter-mismatch", "pause-not-kubeadms",
    "su-map-incomplete", "su-over-capacity", "bad-cabling", "slurm-source-unknown",
    "storage-client-role-mismatch", "k8s-gpfs-volumes-static",
}
