"""Defaults shared by the blueprint, the planner, the renderers and ``aiinfra size``: each typed once.

The blueprint's Field defaults (:mod:`aiinfra.spec.models` ``Site``, ``Rollout``), the planner
(:mod:`aiinfra.plan.power`, :mod:`aiinfra.plan.reliability`, :mod:`aiinfra.plan.training`,
:mod:`aiinfra.plan.cluster`) and the CLI import these names; none of them repeats the number.
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

#: Fraction of GPUs failing per year (checkpoint planning, Young/Daly): the 5 %/year the brief
#: assumes; ``site.gpu_annual_failure_rate`` and ``aiinfra size train --afr`` override it.
DEFAULT_GPU_ANNUAL_FAILURE_RATE = 0.05

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
