#!/usr/bin/env bash
# Installs the Debian packages Foyer needs, only when something is missing.
# Usage: scripts/install-deps.sh [extra-package ...]   (bench scripts pass wrk, nginx, ...)
set -euo pipefail

need=()
have_pc() { pkg-config --exists "$1" 2>/dev/null; }
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v curl >/dev/null || need+=(curl)
have_pc hiredis || need+=(libhiredis-dev)
have_pc libcrypto || need+=(libssl-dev)
have_pc libqrencode || need+=(libqrencode-dev)
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-benchmark >/dev/null || need+=(redis-tools)
ls -d /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
for extra in "$@"; do
  case "$extra" in
    wrk|nginx|hyperfine|chromium) command -v "$extra" >/dev/null || need+=("$extra") ;;
    *) dpkg -s "$extra" >/dev/null 2>&1 || need+=("$extra") ;;
  esac
done

((${#need[@]} == 0)) && exit 0

echo "installing missing packages: ${need[*]}"
if [[ $(id -u) -ne 0 ]]; then
  echo "error: not root; run: sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts packaged servers as system services; Foyer runs its own on free ports.
for service in redis-server nginx postgresql; do
  command -v systemctl >/dev/null && systemctl stop "$service" >/dev/null 2>&1 || true
  command -v service >/dev/null && service "$service" stop >/dev/null 2>&1 || true
done
