#!/usr/bin/env bash
# Prints the path of a promtool: $DEPLOY_PROMTOOL, one on PATH, or the one of Debian's
# `prometheus` package, downloaded once with apt-get into $DEPLOY_CACHE (default
# ~/.cache/agentd-deploy) and unpacked there: not installed, so no Prometheus service starts.
# Exits 1 with a message on stderr when none can be had.
set -euo pipefail

if [ -n "${DEPLOY_PROMTOOL:-}" ] && [ -x "$DEPLOY_PROMTOOL" ]; then
  echo "$DEPLOY_PROMTOOL"
  exit 0
fi
if command -v promtool >/dev/null 2>&1; then
  command -v promtool
  exit 0
fi
cache="${DEPLOY_CACHE:-$HOME/.cache/agentd-deploy}/prometheus-deb"
if [ -x "$cache/usr/bin/promtool" ]; then
  echo "$cache/usr/bin/promtool"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "no promtool: set DEPLOY_PROMTOOL or install Debian's prometheus package" >&2
  exit 1
fi
mkdir -p "$cache"
(
  cd "$cache"
  # apt-get download fetches into the current directory; as root it warns that the _apt
  # user cannot write there, which is harmless.
  apt-get download prometheus >/dev/null 2>&1 \
    || { apt-get update >/dev/null 2>&1 && apt-get download prometheus >/dev/null 2>&1; }
  deb=$(ls prometheus_*.deb 2>/dev/null | head -n 1)
  [ -n "$deb" ] || { echo "apt-get download prometheus failed" >&2; exit 1; }
  dpkg-deb -x "$deb" .
  rm -f prometheus_*.deb
) || exit 1
[ -x "$cache/usr/bin/promtool" ] || { echo "the prometheus package has no promtool" >&2; exit 1; }
echo "$cache/usr/bin/promtool"
