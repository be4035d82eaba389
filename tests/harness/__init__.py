"""Test harness: hosts made on this machine (network namespaces + sshd) for real Ansible runs."""
