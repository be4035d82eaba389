"""The fast hostlist fold gives ClusterShell's text, whichever path folds a list."""

from __future__ import annotations

import random

import pytest
from ClusterShell.NodeSet import NodeSet

from aiinfra.spec.addressing import split_name
from aiinfra.spec.hostlists import expand, fold

PREFIXES = ["gpu", "su", "a", "node-", "sg", "core-r", "x_y", "G", "h100n", "login"]


def random_names(rng: random.Random) -> list[str]:
    if rng.random() < 0.5:  # a run of one prefix with holes, as node groups and SUs are
        prefix, width, start = rng.choice(PREFIXES), rng.choice([1, 2, 3, 5]), rng.randint(0, 120)
        return [f"{prefix}{i:0{width}d}" for i in range(start, start + rng.randint(1, 90)) if rng.random() < 0.9]
    names = []
    for _ in range(rng.randint(1, 40)):  # anything: mixed prefixes, widths, padding, names without numbers
        prefix = rng.choice(PREFIXES)
        names.append(prefix.rstrip("-_") if rng.random() < 0.1 else f"{prefix}{rng.randint(0, 1200):0{rng.randint(0, 5)}d}")
    return names


@pytest.mark.parametrize("seed", range(2))
def test_fold_is_clustershells_fold(seed):
    rng = random.Random(seed)
    for _ in range(1000):
        names = random_names(rng)
        rng.shuffle(names)
        assert fold(names) == str(NodeSet.fromlist(names)), names


@pytest.mark.parametrize(("names", "folded"), [
    (["gpu003", "gpu001", "gpu002", "gpu001"], "gpu[001-003]"),  # any order, duplicates once
    (["su99", "su100", "su101"], "su[99-101]"),  # unpadded numbers of several widths: one range
    (["gpu01", "gpu1"], "gpu[1,01]"),  # mixed padding within a prefix: ClusterShell's own rules
    (["login01", "gpu001"], "gpu001,login01"),  # one name: no brackets
    (["h100n1", "h100n2"], "h100n[1-2]"),  # two numbers in a name: ClusterShell
    (["head"], "head"),
])
def test_examples(names, folded):
    assert fold(names) == folded == str(NodeSet.fromlist(names))


@pytest.mark.parametrize(("host", "parts"), [
    ("gpu017", ("gpu", 17, 3)), ("head", ("head", None, 0)), ("gpu-a2", ("gpu-a", 2, 1)), ("42", ("", 42, 2)),
])
def test_split_name(host, parts):
    assert tuple(split_name(host)) == parts


@pytest.mark.parametrize("seed", range(2))
def test_expand_is_clustershells_expansion(seed):
    rng = random.Random(seed)
    for _ in range(1000):
        prefix, width = rng.choice(["gpu", "su", "node-", "a"]), rng.choice([1, 2, 3, 5])
        parts = []
        for _ in range(rng.randint(1, 4)):
            low = rng.randint(0, 10 ** min(width, 3) - 1)
            high = min(low + rng.randint(0, 40), 10 ** width - 1)
            parts.append(f"{low:0{width}d}" if low == high else f"{low:0{width}d}-{high:0{width}d}")
        if rng.random() < 0.2:  # bounds of other widths, steps: ClusterShell's rules
            parts.append(rng.choice(["7-12", "1-9/2", "98-101"]))
        expression = f"{prefix}[{','.join(parts)}]" if rng.random() < 0.9 else f"{prefix}{rng.randint(0, 99)}"
        assert expand(expression) == tuple(NodeSet(expression)), expression
