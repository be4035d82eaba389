"""The Pulumi program: stack config -> spec -> plan -> render -> components -> exports.

``__main__.py`` calls :func:`main`. The blueprint is read from the stack's structured config
``aiinfra:cluster`` (the same stacks/Pulumi.<env>.yaml the CLI reads), validated by the same
loader, so `pulumi up` refuses exactly what `aiinfra validate` refuses.
"""

from __future__ import annotations

import pulumi

from aiinfra.deploy.components import build_components
from aiinfra.errors import BlueprintError
from aiinfra.pipeline import Built, build_data
from aiinfra.render.summary import summary


def load_stack_config() -> Built:
    env = pulumi.get_stack()
    raw = pulumi.Config("aiinfra").require_object("cluster")
    source = f"stacks/Pulumi.{env}.yaml"
    try:
        return build_data(raw, source, env)
    except BlueprintError as exc:
        raise pulumi.RunError("invalid blueprint:\n" + "\n".join(p.format(source) for p in exc.problems)) from None


def main() -> None:
    loaded = load_stack_config()
    cluster = loaded.cluster
    components = build_components(cluster, loaded.plan)
    data = summary(cluster)
    pulumi.export("environment", cluster.env)
    pulumi.export("totals", data["totals"])
    pulumi.export("schedulers", data["schedulers"])
    pulumi.export("components", sorted(c.__class__.__name__ for c in components))
