"""The checks stage: ``(Cluster, Plan) -> [Problem]``, every refusal in one place (``validate`` is
the whole gate). Validators register in :mod:`aiinfra.checks.registry`; one module per concern."""
