"""``aiinfra``: the command line. :mod:`aiinfra.cli.app` holds the main commands and the entry point;
each layer mounts its own (:mod:`~aiinfra.cli.plan`, :mod:`~aiinfra.cli.hosts`, :mod:`~aiinfra.cli.fabric`),
imported when one of its commands runs (:mod:`~aiinfra.cli.lazy`)."""

from aiinfra.cli.app import app, main

__all__ = ["app", "main"]
