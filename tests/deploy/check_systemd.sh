#!/usr/bin/env bash
# Validates the systemd output of `agentd deploy render --target systemd`.
# Usage: check_systemd.sh RENDERED_DIR (the directory holding systemd/).
#
#   1. `systemd-analyze verify` (this machine's systemd, from Debian) on every unit, installed in a
#      scratch root as install.sh would install it: /etc/systemd/system, the binary at
#      /usr/local/bin/agentd ($AGENTD_BIN, else a stand-in executable), the distribution's units
#      beside them (verify resolves dependencies such as network-online.target). A template is
#      verified through an instance of each pool. verify reports unknown keys and bad values as
#      warnings with exit status 0, so any output at all fails the check.
#   2. The hardening the units promise is there (systemd-analyze security would need a running
#      systemd), and a config error (agentd exits 78) is not restarted in a loop
#      (RestartPreventExitStatus=78).
#   3. The worker template's pools each have their own worker-<pool>.env with a port of their own:
#      not server.listen's (the main unit holds it), not another pool's.
#   4. install.sh: bash -n and ShellCheck; agentd.env.example names variables and holds no value
#      (AGENTD_REGION, when the config lists several regions, as a commented line).
# Environment: DEPLOY_VENV (shellcheck), AGENTD_BIN (optional).
set -euo pipefail

dir="${1:?usage: $0 RENDERED_DIR}"
venv="${DEPLOY_VENV:?set DEPLOY_VENV to the venv of tests/deploy/requirements.txt}"
sd="$dir/systemd"
[ -f "$sd/install.sh" ] || { echo "ERROR: $sd/install.sh does not exist (render with --target systemd first)" >&2; exit 1; }
command -v systemd-analyze >/dev/null || { echo "ERROR: systemd-analyze is not installed (Debian: apt-get install systemd)" >&2; exit 1; }
units_dir=""
for d in /usr/lib/systemd/system /lib/systemd/system; do
  if [ -f "$d/multi-user.target" ]; then units_dir="$d"; break; fi
done
[ -n "$units_dir" ] || { echo "ERROR: no systemd unit directory on this machine" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system" "$root/usr/local/bin"
cp -r "$units_dir" "$root/usr/lib/systemd/system"
if [ -n "${AGENTD_BIN:-}" ] && [ -x "$AGENTD_BIN" ]; then
  cp "$AGENTD_BIN" "$root/usr/local/bin/agentd"
else
  printf '#!/bin/sh\nexit 0\n' > "$root/usr/local/bin/agentd"
  chmod 0755 "$root/usr/local/bin/agentd"
fi

units=()
for unit in "$sd"/*.service; do
  name="$(basename "$unit")"
  cp "$unit" "$root/etc/systemd/system/$name"
  if [[ "$name" == *@.service ]]; then
    pools="$(sed -n 's/^# is the pool: .*(pools: \(.*\))\.$/\1/p' "$unit" | tr -d ',')"
    [ -n "$pools" ] || pools="cpu"
    for pool in $pools; do units+=("${name%@.service}@$pool.service"); done
  else
    units+=("$name")
  fi
done
echo "systemd-analyze verify ($(systemd-analyze --version | head -n 1)): ${units[*]}"
out="$(systemd-analyze verify --root="$root" "${units[@]}" 2>&1)" || { echo "$out" >&2; exit 1; }
if [ -n "$out" ]; then
  echo "$out" >&2
  echo "FAIL: systemd-analyze verify reported problems" >&2
  exit 1
fi

failures=0
for unit in "$sd"/*.service; do
  for line in Restart=on-failure RestartPreventExitStatus=78 KillSignal=SIGTERM NoNewPrivileges=yes ProtectSystem=strict \
      ProtectHome=yes PrivateTmp=yes DynamicUser=yes "EnvironmentFile=/etc/agentd/agentd.env"; do
    grep -qx "$line" "$unit" || { echo "FAIL: $(basename "$unit") lacks $line" >&2; failures=$((failures + 1)); }
  done
  grep -qE '^TimeoutStopSec=[0-9]+$' "$unit" || { echo "FAIL: $(basename "$unit") has no TimeoutStopSec" >&2; failures=$((failures + 1)); }
  grep -qE '^LimitNOFILE=[0-9]+$' "$unit" || { echo "FAIL: $(basename "$unit") has no LimitNOFILE" >&2; failures=$((failures + 1)); }
done
# Worker ports: one file per pool named by the template, AGENTD_LISTEN only, all ports distinct and
# none server.listen's.
if compgen -G "$sd/*-worker@.service" >/dev/null; then
  main_port="$("${venv}/bin/python" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb")).get("server", {}).get("listen", "0.0.0.0:8080").rsplit(":", 1)[1])' "$sd/agentd.toml")"
  seen=" $main_port "
  template="$(echo "$sd"/*-worker@.service)"
  pools="$(sed -n 's/^# is the pool: .*(pools: \(.*\))\.$/\1/p' "$template" | tr -d ',')"
  grep -qx 'EnvironmentFile=/etc/agentd/worker-%i.env' "$template" \
    || { echo "FAIL: $(basename "$template") does not read /etc/agentd/worker-%i.env" >&2; failures=$((failures + 1)); }
  for pool in $pools; do
    env_file="$sd/worker-$pool.env"
    if [ ! -f "$env_file" ]; then
      echo "FAIL: no worker-$pool.env for $(basename "$template") instance $pool" >&2; failures=$((failures + 1)); continue
    fi
    if grep -vE '^(#.*|AGENTD_LISTEN=[0-9.]+:[0-9]+)?$' "$env_file"; then
      echo "FAIL: worker-$pool.env holds more than AGENTD_LISTEN" >&2; failures=$((failures + 1))
    fi
    port="$(sed -n 's/^AGENTD_LISTEN=.*:\([0-9]*\)$/\1/p' "$env_file")"
    case "$seen" in
      *" $port "*) echo "FAIL: worker-$pool.env listens on port $port, which server.listen or another pool has" >&2; failures=$((failures + 1)) ;;
    esac
    seen="$seen$port "
    grep -qF "worker-$pool.env" "$sd/install.sh" || { echo "FAIL: install.sh does not install worker-$pool.env" >&2; failures=$((failures + 1)); }
  done
fi
if grep -vE '^(#.*|[A-Z_][A-Z0-9_]*=)?$' "$sd/agentd.env.example"; then
  echo "FAIL: agentd.env.example holds more than names" >&2
  failures=$((failures + 1))
fi
[ "$failures" = 0 ] || exit 1

bash -n "$sd/install.sh"
"$venv/bin/shellcheck" --severity=style "$sd/install.sh"
echo "systemd: ${#units[@]} units verified; install.sh: bash -n and shellcheck clean"
