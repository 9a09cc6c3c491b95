#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine: installs the real clients and servers
# the tests use (skopeo, Debian's docker-registry = distribution 2.8.2, ...), checks
# formatting and lints, then runs every test with cargo-nextest (cargo test if absent).
set -euo pipefail
cd "$(dirname "$0")/.."

need=(skopeo podman docker-registry apache2-utils nginx-light openssl python3 python3-venv curl systemd)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    echo "installing: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# moto_server, the S3-compatible server the S3 driver's tests run against (PyPI
# `moto[server]`), in a venv of its own. With MOTO_SERVER set, a test that needs it fails
# rather than skips when it cannot start it.
moto_venv=target/test-tools/moto
if [[ ! -x $moto_venv/bin/moto_server ]]; then
    echo "installing moto[server] into $moto_venv"
    python3 -m venv "$moto_venv"
    "$moto_venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5.1'
fi
export MOTO_SERVER=$PWD/$moto_venv/bin/moto_server

cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings

status=0
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --no-fail-fast "$@" || status=$?
else
    cargo test --no-fail-fast "$@" || status=$?
fi

# The packages: build, inspect, lint, install and run as the unit would, and boot a real
# systemd in a container (needs root: dpkg, systemd-nspawn). The container tree is cached
# outside the checkout so later runs on the same machine skip debootstrap.
if [[ $(id -u) -eq 0 && -z ${SKIP_PACKAGING_TEST:-} ]]; then
    export TEST_ROOT_CACHE=${TEST_ROOT_CACHE:-/var/cache/docker-registry-tests/rootfs}
    PACKAGING_TEST_BOOT=1 packaging/test.sh || status=$?
else
    echo "package tests not run: they need root"
fi
exit $status
