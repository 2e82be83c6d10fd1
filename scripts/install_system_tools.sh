#!/usr/bin/env bash
# Install Debian packages whose programs are missing; do nothing when they are there.
#
#   scripts/install_system_tools.sh                # default: prometheus (prometheus + promtool)
#   scripts/install_system_tools.sh prometheus jq  # any Debian packages
#   scripts/install_system_tools.sh nginx gettext-base   # nginx + envsubst (tests/deploy/test_nginx.py)
#   scripts/install_system_tools.sh chromium   # headless browser (tests/test_report.py)
#
# A package counts as present when every program it is known for is on the PATH
# (see binaries_of; an unknown package is checked by a program of its own name).
# `apt-get update` runs at most once, and only when something is to be installed.
# Needs root, or sudo without a password; otherwise prints what to install and
# exits 1. Used by `make test`, tests/test_monitoring.py and tests/deploy/test_nginx.py.
set -euo pipefail

DEFAULT_PACKAGES=(prometheus)

binaries_of() {
    case "$1" in
        prometheus) echo "prometheus promtool" ;;
        openjdk-17-jre-headless) echo "java" ;;
        gettext-base) echo "envsubst" ;;
        nginx) echo "nginx" ;;
        *) echo "$1" ;;
    esac
}

packages=("$@")
if [ ${#packages[@]} -eq 0 ]; then
    packages=("${DEFAULT_PACKAGES[@]}")
fi

missing=()
for package in "${packages[@]}"; do
    for binary in $(binaries_of "$package"); do
        if ! command -v "$binary" >/dev/null 2>&1; then
            missing+=("$package")
            break
        fi
    done
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "system tools present: ${packages[*]}"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "missing Debian packages: ${missing[*]}" >&2
    echo "install them as root:  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing packages: ${missing[*]} (no apt-get here: install them with this system's package manager)" >&2
    exit 1
fi

echo "installing: ${missing[*]}"
# The Debian prometheus and nginx packages try to start a service (policy-rc.d or
# the lack of systemd may refuse it); that does not fail the installation, and the
# tests start their own Prometheus and nginx on free ports anyway.
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update
"${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}"

for package in "${missing[@]}"; do
    for binary in $(binaries_of "$package"); do
        command -v "$binary" >/dev/null 2>&1 || { echo "$package installed but $binary is still not on the PATH" >&2; exit 1; }
    done
done
echo "installed: ${missing[*]}"
