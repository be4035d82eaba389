#!/usr/bin/env bash
# The Slurm build the test bed's slurm role installs: versions.slurm of the test-bed blueprint,
# built by the role's own build script (roles/slurm/files/aiinfra-build-slurm) into the archive the
# role looks for on its build host, so `aiinfra hosts up` on the bed (whose hosts have no route
# out) finds it and only copies and unpacks it. Cached per machine: nothing happens when the archive
# is there; a fresh machine (CI) builds it once (about 5 minutes on 2 cores).
#
#   scripts/build-testbed-slurm.sh [PYTHON]     PYTHON: the project's venv python (.venv/bin/python)
#
# Sources, with the facts of ../shared/TESTING-HERE.md:
#   - the release tarball: Debian trixie's slurm-wlm source package (.orig.tar.gz), fetched with a
#     private apt configuration (deb-src line), checked against the catalog's SHA-256;
#   - NVML for the gpu/nvml plugin: Debian 12 non-free's libnvidia-ml-dev (nvml.h) and libnvidia-ml1
#     (the library to link), unpacked into a CUDA-like directory, never installed on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${1:-.venv/bin/python}"
[ "$(id -u)" = 0 ] || { echo "not root: skipping the Slurm build (the Slurm test bed skips itself)"; exit 0; }

# What the role computes (roles/slurm/vars/main.yml _slurm_build_archive, defaults slurm_build_*),
# for the test bed's extra variables (tests/harness/slurm_testbed.py: nvml and multiple-slurmd on).
eval "$("$python" - <<'EOF'
import shlex
from pathlib import Path
import yaml
from aiinfra.pipeline import build_file
from aiinfra.render.slurm import install_settings
built = build_file(Path("tests/fixtures/slurm-testbed/stacks/Pulumi.testbed.yaml"))
inst = install_settings(built.cluster)  # what the role gets as aiinfra_slurm_install
defaults = yaml.safe_load(open("roles/slurm/defaults/main.yml"))
for k, v in {"version": inst["version"], "url": inst["source_url"], "sha256": inst["source_sha256"],
             "prefix": inst["prefix"], "cache": defaults["slurm_build_cache_dir"],
             "pmix": defaults["slurm_build_pmix_dir"]}.items():
    print(f"{k}={shlex.quote(v)}")
EOF
)"
archive="$cache/slurm-$version-nvml-multiple-slurmd.tar.gz"
if [ -f "$archive" ]; then echo "Slurm $version test-bed build: $archive (cached)"; exit 0; fi

export DEBIAN_FRONTEND=noninteractive
work="$(mktemp -d /tmp/aiinfra-slurm-src.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache" "$work/dl" "$work/nvml/include" "$work/nvml/lib64/stubs" "$cache"
printf '%s\n' "deb-src http://deb.debian.org/debian trixie main" \
  "deb http://deb.debian.org/debian bookworm non-free" >"$work/sources.list"
apt=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache")
chown -R _apt "$work" 2>/dev/null || true   # apt downloads as _apt where it can
apt-get "${apt[@]}" update -qq
tarball="$cache/$(basename "$url")"
if [ ! -f "$tarball" ]; then
  # the catalog's address (Debian's pool); else through apt's source index (the .dsc may 404
  # while the .orig tarball comes). aiinfra-build-slurm checks the SHA-256 either way.
  "$python" -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
    "$url" "$work/dl/$(basename "$url")" 2>/dev/null \
    || (cd "$work/dl" && apt-get "${apt[@]}" source --download-only slurm-wlm >/dev/null 2>&1 || true)
  [ -f "$work/dl/$(basename "$url")" ] || { echo "could not fetch $(basename "$url")" >&2; exit 1; }
  mv "$work/dl/$(basename "$url")" "$tarball"
fi
(cd "$work/dl" && apt-get "${apt[@]}" download libnvidia-ml-dev libnvidia-ml1 >/dev/null 2>&1)
for deb in "$work"/dl/*.deb; do dpkg -x "$deb" "$work/x"; done
cp "$work/x/usr/include/nvml.h" "$work/nvml/include/"
lib="$(find "$work/x" -name 'libnvidia-ml.so.*' -type f | head -n1)"
cp "$lib" "$work/nvml/lib64/stubs/"
ln -sf "$(basename "$lib")" "$work/nvml/lib64/stubs/libnvidia-ml.so"
ln -sf "$(basename "$lib")" "$work/nvml/lib64/stubs/libnvidia-ml.so.1"

started=$(date +%s)
roles/slurm/files/aiinfra-build-slurm --source "$tarball" --sha256 "$sha256" --version "$version" \
  --prefix "$prefix" --out "$archive" --nvml "$work/nvml" --pmix "$pmix" --multiple-slurmd \
  --jobs "$(nproc)"
echo "Slurm $version test-bed build took $(( $(date +%s) - started )) s"
