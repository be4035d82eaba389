"""Executors: they apply what render produced (Pulumi components, the ansible-runner driver)."""
