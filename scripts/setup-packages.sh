#!/usr/bin/env bash
# Install the Debian packages the lab needs, only those that are missing.
# Services are never started by the package scripts: the lab starts its own
# copies on loopback (see tests/lab/lab.py).
set -euo pipefail
# python3-venv: the venvs of make setup, test-matrix and lint; shellcheck: the sanity test of `make lint`;
# libnginx-mod-http-lua, lua-resty-core: the lab nginx's reload-free (lua) mode;
# chromium: the headless browser the report's test loads report.html and history.html in.
packages=(haproxy nginx libnginx-mod-http-lua lua-resty-core prometheus prometheus-alertmanager openssh-server openssh-client python3 python3-venv ca-certificates shellcheck chromium)
missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup-packages: all lab packages present"
  exit 0
fi
echo "setup-packages: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "setup-packages: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
# Keep package maintainer scripts from starting system-wide daemons
# (nginx on :80, haproxy, prometheus...) while we install.
created_policy=0
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod 755 /usr/sbin/policy-rc.d
  created_policy=1
fi
trap '[[ $created_policy -eq 1 ]] && $SUDO rm -f /usr/sbin/policy-rc.d' EXIT
$SUDO apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
