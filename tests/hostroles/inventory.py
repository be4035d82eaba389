"""A small inventory for role tests: chosen hosts of a rendered environment, with every group
variable, all-variable and group_vars/all file the full inventory gives them.

The roles see exactly the same variables through this one as through prod's full inventory
(every group a chosen host is in, with its variables, flattened: no child groups), and a test can
override a host's variables in it.
"""

from __future__ import annotations

import yaml

from aiinfra.pipeline import Built
from aiinfra.render.host_vars import render_host_vars
from aiinfra.render.inventory import inventory_model


def mini_inventory(built: Built, hosts: list[str], host_overrides: dict | None = None) -> str:
    """YAML inventory of ``hosts`` as ``aiinfra render`` would give them (plus ``host_overrides``)."""
    cluster = built.cluster
    model = inventory_model(cluster)
    all_vars = dict(model.all_vars)
    for path, text in render_host_vars(cluster, built.plan).items():
        if path.startswith("ansible/group_vars/all/"):
            all_vars.update(yaml.safe_load(text))
    children = {}
    for group, members in model.groups.items():
        chosen = [h for h in members if h in hosts]
        if chosen:
            children[group] = {"hosts": {h: None for h in chosen}}
            if group in model.group_vars:
                children[group]["vars"] = model.group_vars[group]
    host_vars = {h: {**model.hostvars[h], **(host_overrides or {}).get(h, {})} for h in hosts}
    data = {"all": {"vars": all_vars, "hosts": host_vars, "children": children}}
    return yaml.safe_dump(data, sort_keys=True)
