"""Pulumi entry point (`pulumi up -s <env>`): thin by design, see aiinfra.deploy.program."""

from aiinfra.deploy.program import main

main()
