"""Fabric acceptance jobs under ``manifests/<env>/acceptance/<partition>/``: nccl-tests at node, SU
and partition scope, with the plan's pass marks beside them (:mod:`aiinfra.plan.acceptance`)."""

from __future__ import annotations

from aiinfra.plan.acceptance import NCCL_TESTS_ARGS, TESTS, thresholds_table
from aiinfra.plan.cluster import ClusterPlan
from aiinfra.plan.fabric_env import nccl_env
from aiinfra.plan.mirror import site_image
from aiinfra.plan.software import job_software
from aiinfra.render import Artifacts, renderer
from aiinfra.render.jobs import enroot_image
from aiinfra.render.templates import dump_json, fold, render_template, shell_quote
from aiinfra.spec.cluster import Cluster, su_name

#: nccl-tests built with MPI=1 get their ranks from Slurm's PMIx plugin.
NCCL_TESTS_MPI = "--mpi=pmix"


@renderer("acceptance", "fabric acceptance: nccl-tests jobs per node, SU and partition, with their pass marks")
def render_acceptance(cluster: Cluster, plan: ClusterPlan) -> Artifacts:
    slurm = cluster.blueprint.slurm
    if slurm is None:
        return {}
    out: Artifacts = {}
    su_nodes = cluster.fabric.su_nodes if cluster.fabric else 1
    image = cluster.blueprint.versions.images.get("nccl-tests")
    # without an image: the nccl_tests role's build on the hosts (versions.nccl_tests)
    host_build = job_software(cluster).nccl_tests
    for part in slurm.partitions:
        groups = [cluster.groups[g] for g in part.node_groups if g in cluster.groups]
        gpu_groups = [g for g in groups if g.gpus_per_node]
        if not gpu_groups:
            continue
        group = gpu_groups[0]  # one acceptance job per partition: its GPU groups share a node type's rails
        hosts = [h for g in gpu_groups for h in g.in_service]  # drained and down nodes are never tested
        sus: dict[str, list[str]] = {}
        for h in hosts:
            su = cluster.hosts[h].su
            if su is not None:
                sus.setdefault(su_name(su), []).append(h)
        text = render_template(
            "acceptance/nccl-tests.sbatch.j2", env=cluster.env, source=cluster.source, partition=part.name,
            tests=TESTS, args=NCCL_TESTS_ARGS, efficiency=f"{thresholds_table(cluster, group)['efficiency']:g}",
            in_service=fold(hosts), gpus_per_node=group.gpus_per_node,
            image=enroot_image(site_image(cluster, image)) if image else None, host_build=host_build, mpi=NCCL_TESTS_MPI,
            nccl=nccl_env(cluster, group), q=shell_quote, su_nodes=su_nodes,
            sus={su: fold(members) for su, members in sorted(sus.items())},
        )
        out[f"acceptance/{part.name}/nccl-tests.sbatch"] = text
        out[f"acceptance/{part.name}/thresholds.json"] = dump_json(
            {"partition": part.name, "groups": [thresholds_table(cluster, g) for g in gpu_groups]})
    return out
