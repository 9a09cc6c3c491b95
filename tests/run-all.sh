#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine: installs the real clients and servers
# the tests use (skopeo, Debian's docker-registry = distribution 2.8.2, Apache's htpasswd,
# ...), checks formatting and lints, then runs every test with cargo-nextest (cargo test if
# absent) and, as root, the package tests (packaging/test.sh).
#
# Ends with one line, "N passed, N failed, N skipped": the tests, the package checks, and
# cargo fmt, cargo clippy and the fuzz targets (fuzz/run.sh) as one check each (the package
# tests count as one skipped when they cannot run). Exits non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."

passed=0 failed=0 skipped=0
step() { echo "== $* ($(date +%T))"; }
check() { # check NAME COMMAND...: a step that counts as one check
    local name=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
    else
        echo "FAILED: $name"
        failed=$((failed + 1))
    fi
}
count() { # count TEXT PATTERN: the number before PATTERN in TEXT, 0 if none
    grep -oE "[0-9]+ $2" <<<"$1" | tail -n1 | grep -oE '^[0-9]+' || echo 0
}

need=(skopeo podman docker-registry apache2-utils nginx-light openssl python3 python3-venv curl systemd gzip g++
    chromium chromium-driver)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    step "installing: ${missing[*]}"
    # apt's and needrestart's chatter (stderr too) goes to a log, shown only on failure.
    apt_log=$(mktemp)
    if ! { $sudo apt-get update -qq &&
        $sudo env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
            apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$apt_log" 2>&1; then
        tail -n 30 "$apt_log"
        echo "apt-get install ${missing[*]} failed (log above)"
        exit 1
    fi
    rm -f "$apt_log"
fi

# moto_server, the S3-compatible server the S3 driver's tests run against (PyPI
# `moto[server]`), in a venv of its own. With MOTO_SERVER set, a test that needs it fails
# rather than skips when it cannot start it.
moto_venv=target/test-tools/moto
if [[ ! -x $moto_venv/bin/moto_server ]]; then
    step "installing moto[server] into $moto_venv"
    pip_log=$(mktemp)
    if ! { python3 -m venv "$moto_venv" &&
        "$moto_venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5.1'; } >"$pip_log" 2>&1; then
        tail -n 30 "$pip_log"
        echo "installing moto[server] failed (log above)"
        exit 1
    fi
    rm -f "$pip_log"
fi
export MOTO_SERVER=$PWD/$moto_venv/bin/moto_server
# s3s-fs, an S3 server that checks SigV4 signatures, for the tests where they matter
# (tests/s3_signed.rs). 0.14.1 is the last release that builds with Rust 1.95; it is built
# once into target/test-tools and kept there.
s3s_root=target/test-tools/s3s-fs
if [[ ! -x $s3s_root/bin/s3s-fs ]]; then
    step "building s3s-fs 0.14.1 into $s3s_root (once: a few minutes)"
    cargo_log=$(mktemp)
    if ! cargo install --locked s3s-fs --version 0.14.1 --features binary --root "$s3s_root" >"$cargo_log" 2>&1; then
        tail -n 30 "$cargo_log"
        echo "cargo install s3s-fs failed (log above)"
        exit 1
    fi
    rm -f "$cargo_log"
fi
export S3S_FS=$PWD/$s3s_root/bin/s3s-fs
# Every program a test drives is installed above: a test that finds one missing fails
# instead of skipping (tests/common/tools.rs).
export DOCKER_REGISTRY_TEST_TOOLS=required

step "cargo fmt --check"
check "cargo fmt --check" cargo fmt --check
step "cargo clippy --all-targets (builds the crate for checking: minutes on a cold machine)"
check "cargo clippy" cargo clippy --all-targets --quiet -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
    step "building the tests"
    cargo nextest run --no-run --cargo-quiet "$@" || true
    step "cargo nextest run"
    log=$(mktemp)
    cargo nextest run --no-fail-fast "$@" 2>&1 | tee "$log" || true
    # "Summary [ 61.0s] 199 tests run: 196 passed (3 slow), 1 failed, 1 exec failed,
    # 1 timed out, 2 skipped"
    summary=$(grep -E '^ *Summary \[' "$log" | tail -n1 || true)
    rm -f "$log"
    if [[ -n $summary ]]; then
        passed=$((passed + $(count "$summary" passed)))
        failed=$((failed + $(count "$summary" failed) + $(count "$summary" 'exec failed') \
            + $(count "$summary" 'timed out')))
        skipped=$((skipped + $(count "$summary" skipped)))
    else
        echo "FAILED: cargo nextest run printed no summary (the tests did not build?)"
        failed=$((failed + 1))
    fi
else
    step "building and running the tests (cargo test; cargo install cargo-nextest for one process per test)"
    log=$(mktemp)
    cargo test --no-fail-fast "$@" 2>&1 | tee "$log" || true
    # One "test result: ok. 12 passed; 0 failed; 1 ignored; ..." line per test binary.
    results=$(grep -E '^test result: ' "$log" || true)
    rm -f "$log"
    if [[ -n $results ]]; then
        while read -r line; do
            passed=$((passed + $(count "$line" passed)))
            failed=$((failed + $(count "$line" failed)))
            skipped=$((skipped + $(count "$line" ignored)))
        done <<<"$results"
    else
        echo "FAILED: cargo test printed no results (the tests did not build?)"
        failed=$((failed + 1))
    fi
fi

# The parsers that read what clients and admins write, fuzzed for 7 s each (libFuzzer on the
# stable toolchain, seeds from fuzz/corpus; fuzz/run.sh says more). One check: a finding
# fails it, and leaves its input under target/fuzz/artifacts.
step "fuzzing the parsers (fuzz/run.sh: 7 targets, 7 s each, after building them)"
check "fuzz/run.sh" fuzz/run.sh 7

# The packages: build, inspect, lint, install and run as the unit would, and boot a real
# systemd in a container (needs root: dpkg, systemd-nspawn). The container tree is cached
# outside the checkout so later runs on the same machine skip debootstrap.
if [[ -n ${SKIP_PACKAGING_TEST:-} ]]; then
    echo "package tests not run: SKIP_PACKAGING_TEST is set"
    skipped=$((skipped + 1))
elif [[ $(id -u) -eq 0 ]]; then
    step "package tests (packaging/test.sh: a few minutes, more the first time)"
    export TEST_ROOT_CACHE=${TEST_ROOT_CACHE:-/var/cache/docker-registry-tests/rootfs}
    log=$(mktemp)
    PACKAGING_TEST_BOOT=1 packaging/test.sh 2>&1 | tee "$log" || true
    # Its last "N passed, M failed" line counts every check, the containers' included.
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n1 || true)
    rm -f "$log"
    if [[ -n $summary ]]; then
        passed=$((passed + $(count "$summary" passed)))
        failed=$((failed + $(count "$summary" failed)))
    else
        echo "FAILED: packaging/test.sh stopped before its summary"
        failed=$((failed + 1))
    fi
else
    echo "package tests not run: they need root"
    skipped=$((skipped + 1))
fi

echo "$passed passed, $failed failed, $skipped skipped"
((failed == 0))
