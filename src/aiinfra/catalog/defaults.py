"""Defaults shared by the blueprint, the planner, the renderers and ``aiinfra size``: each typed once.

The blueprint's Field defaults (:mod:`aiinfra.spec.models` ``Site``, ``Rollout``), the planner
(:mod:`aiinfra.plan.power`, :mod:`aiinfra.plan.reliability`, :mod:`aiinfra.plan.training`,
:mod:`aiinfra.plan.cluster`, :mod:`aiinfra.plan.failures`) and the CLI import these names; none of
them repeats the number.
"""

from __future__ import annotations

from types import MappingProxyType

# ---------------------------------------------------------------- site: power and reliability

#: Power usage effectiveness (facility power / IT power) when the blueprint gives no ``site.pue``:
#: an assumption for a modern liquid/air-cooled GPU hall; give the site's measured value instead.
DEFAULT_PUE = 1.2

#: Non-GPU power of one GPU node (CPUs, NICs, fans, NVSwitch), W: an assumption for an 8-GPU HGX
#: node on top of its GPUs' TDP; ``site.node_overhead_w`` overrides it.
DEFAULT_NODE_OVERHEAD_W = 2000

#: Fraction of GPUs failing per year (checkpoint planning, Young/Daly): the 5 %/year the centre
#: assumes; ``site.gpu_annual_failure_rate`` and ``aiinfra size train --afr`` override it.
DEFAULT_GPU_ANNUAL_FAILURE_RATE = 0.05

#: Failures per node-year from parts other than its GPUs (CPUs, DIMMs, NICs, PSUs, boards), added
#: to GPUs per node x ``DEFAULT_GPU_ANNUAL_FAILURE_RATE`` for the node's failure rate. 0: no figure
#: for it is taken as given here, so a node fails exactly when one of its GPUs does; a site with
#: its own repair records sets ``site.node_non_gpu_annual_failure_rate``.
DEFAULT_NODE_NON_GPU_ANNUAL_FAILURE_RATE = 0.0

#: Mean time to repair a failed GPU node, days: from going down to back in service (diagnosis,
#: swapping the part from on-site stock, burn-in). An assumption, the operator's choice: with
#: parts on site a swap takes days, an RMA without them weeks; ``site.node_repair_days`` sets it.
DEFAULT_NODE_REPAIR_DAYS = 3.0

#: Fraction of the time the spares of a scalable unit must cover every node of it that is down
#: (the spare pool is sized for it): the operator's choice; ``site.spare_target_availability``.
DEFAULT_SPARE_TARGET_AVAILABILITY = 0.99

#: Minutes from a failure to the job running again from its last checkpoint: detect the failure,
#: requeue, schedule onto a spare, start the ranks and load the checkpoint. An assumption (the
#: restart time Daly 2006 uses in his examples, Figs. 3-5, is also 10 min); measure your own and
#: set ``site.job_restart_minutes``.
DEFAULT_JOB_RESTART_MINUTES = 10.0
#: Job interruptions from all causes, not only GPU failures: the Llama 3 405B pre-training snapshot
#: (Meta, "The Llama 3 Herd of Models", 2024, section 3.3.4 and Table 5): 466 interruptions in 54
#: days on 16,384 H100 GPUs, 419 unexpected and 47 planned (maintenance).
LLAMA3_SNAPSHOT_DAYS = 54
LLAMA3_SNAPSHOT_GPUS = 16_384
LLAMA3_UNEXPECTED_INTERRUPTIONS = 419
LLAMA3_PLANNED_INTERRUPTIONS = 47
_LLAMA3_GPU_YEARS = LLAMA3_SNAPSHOT_GPUS * LLAMA3_SNAPSHOT_DAYS / 365
#: Unexpected job interruptions per GPU-year (the snapshot's, 0.173).
DEFAULT_INTERRUPTIONS_PER_GPU_YEAR = LLAMA3_UNEXPECTED_INTERRUPTIONS / _LLAMA3_GPU_YEARS
#: Planned interruptions (maintenance) per GPU-year (the snapshot's, 0.019).
DEFAULT_PLANNED_PER_GPU_YEAR = LLAMA3_PLANNED_INTERRUPTIONS / _LLAMA3_GPU_YEARS

# ---------------------------------------------------------------- fabric

#: Inter-node link rate (catalog name, :mod:`aiinfra.catalog.links`) the planner assumes for the
#: compute fabric when the blueprint declares no ``fabric`` (one compute rail per GPU).
DEFAULT_INTER_NODE_LINK = "ndr400"

# ---------------------------------------------------------------- rolling changes (playbooks/rolling.yml)

#: Nodes in the first (canary) batch.
DEFAULT_ROLLOUT_FIRST_BATCH = 1
#: Nodes per later batch (Ansible ``serial``): one scalable unit of 32 nodes.
DEFAULT_ROLLOUT_BATCH_SIZE = 32
#: Percent of a batch's nodes that may fail before the rollout stops (0: stop at the first).
DEFAULT_ROLLOUT_MAX_FAIL_PERCENTAGE = 0
#: Seconds to wait for a drained node's jobs or pods to finish: 4 hours.
DEFAULT_ROLLOUT_DRAIN_TIMEOUT_S = 4 * 3600

#: The blueprint's ``rollout`` when it has none, as rendered for Ansible (keys of ``Rollout``).
DEFAULT_ROLLOUT = MappingProxyType({
    "first_batch": DEFAULT_ROLLOUT_FIRST_BATCH,
    "batch_size": DEFAULT_ROLLOUT_BATCH_SIZE,
    "max_fail_percentage": DEFAULT_ROLLOUT_MAX_FAIL_PERCENTAGE,
    "drain_timeout_s": DEFAULT_ROLLOUT_DRAIN_TIMEOUT_S,
})
