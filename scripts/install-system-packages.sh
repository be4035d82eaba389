#!/usr/bin/env bash
# Debian packages the real-service tests use (Slurm, munge, MariaDB, sshd, iproute2 ...).
# Listed once, in .ci/apt-packages.txt; installed only when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
list=.ci/apt-packages.txt
[ -f "$list" ] || exit 0
mapfile -t pkgs < <(grep -Ev '^\s*(#|$)' "$list")
[ "${#pkgs[@]}" -gt 0 ] || exit 0
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ "${#missing[@]}" -gt 0 ] || exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
