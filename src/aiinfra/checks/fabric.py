"""How many SUs a fabric of two or three switch levels can connect (``blueprint`` phase).

:func:`levels_fit` is called by :func:`aiinfra.checks.blueprint.fabric_fits` once the SU of every
GPU node is known. The limits are those of :mod:`aiinfra.spec.fabric`: half of a leaf's and of a
three-level spine's ports go down, a top-level switch gives all its ports to the level below.

- Two levels: a spine group connects at most ``radix`` leaves, so at most ``radix`` SUs.
- Three levels: a spine of a spine group meets every leaf of its plane in the group on one of its
  ``radix/2`` down-ports, so a group holds at most ``radix/2`` SUs (rail-optimized: one leaf per
  plane per SU; plain fat-tree: all the SU's leaves share the plane); a core switch meets every spine
  group on one of its ``radix`` ports, so at most ``radix`` spine groups.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

from aiinfra.checks.registry import error
from aiinfra.errors import Problem
from aiinfra.spec.fabric import default_sus_per_spine_group, spine_group_of
from aiinfra.spec.models import Fabric


def levels_fit(fab: Fabric, radix: int, rails: int, su_numbers: Collection[int]) -> Iterator[Problem]:
    """Problems of a fabric whose GPU nodes sit in the SUs ``su_numbers`` with ``radix``-port switches."""
    if fab.levels == 2:
        if fab.sus_per_spine_group is not None:
            yield error(("fabric", "sus_per_spine_group"), "fabric-needs-three-levels",
                        "sus_per_spine_group groups SUs under spine groups, which only a three-level fabric has",
                        "set fabric.levels: 3, or remove sus_per_spine_group")
        if len(su_numbers) > radix:
            yield error(("fabric", "su_nodes"), "fabric-too-large",
                        f"{len(su_numbers)} SUs exceed the {radix} leaves one two-level spine group can connect",
                        "set fabric.levels: 3 (spine groups of SUs under a core layer), or use larger SUs")
        return
    per = fab.sus_per_spine_group or default_sus_per_spine_group(radix)
    leaves_per_plane = 1 if fab.topology == "rail-optimized-fat-tree" else max(rails, 1)
    if per * leaves_per_plane > radix // 2:
        most = max(radix // 2 // leaves_per_plane, 1)
        yield error(("fabric", "sus_per_spine_group"), "fabric-spine-group-too-large",
                    f"a spine group of {per} SUs has {per * leaves_per_plane} leaves per plane, more than the "
                    f"{radix // 2} down-ports of a {radix}-port spine that also uplinks to the core",
                    f"use sus_per_spine_group <= {most}")
        return
    groups = {spine_group_of(su, per) for su in su_numbers}
    top = max(groups, default=0)
    if top > radix:
        yield error(("fabric", "sus_per_spine_group"), "fabric-too-large",
                    f"SU {max(su_numbers)} falls in spine group {top} (of {per} SUs each), beyond the {radix} "
                    f"spine groups a core of {radix}-port switches connects ({radix * per} SUs)",
                    "use larger SUs or spine groups, or switches with more ports (fabric.switch_radix)")
