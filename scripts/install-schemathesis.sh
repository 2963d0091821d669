#!/usr/bin/env bash
# Installs schemathesis (PyPI, pinned) into .build/schemathesis, once, for APIContractTests.
# Its own virtual environment: nothing of the system's Python is changed.
set -euo pipefail
cd "$(dirname "$0")/.."
version=4.32.5
venv=.build/schemathesis
if [[ -x $venv/bin/st ]] && "$venv/bin/st" --version 2>/dev/null | grep -q "$version"; then exit 0; fi

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "error: python3 with venv is missing; run: sudo apt-get install -y python3-venv" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
fi
echo "installing schemathesis $version into $venv"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
"$venv/bin/st" --version
