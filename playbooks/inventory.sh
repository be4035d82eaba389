#!/bin/sh
# Ansible dynamic inventory from the blueprint: ansible-inventory -i playbooks/inventory.sh --graph
# The environment comes from $AIINFRA_STACK (default dev); `aiinfra` must be on PATH (or $AIINFRA).
exec "${AIINFRA:-aiinfra}" inventory --stack "${AIINFRA_STACK:-dev}" "$@"
