#!/usr/bin/env bash
# Optional: the package under a real systemd. Boots a Debian bookworm container
# (systemd-nspawn, cached debootstrap tree, throwaway overlay, private network) in which the
# unit pkgtest.service runs packaging/test-boot.sh: dpkg -i, `systemctl enable --now
# docker-registry`, active (running), push, reload, restart, socket activation, remove.
#
#   packaging/test-nspawn.sh          (as root; builds the packages if needed)
# Ends with "N passed, M failed".
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT_DIR"
OUT=$ROOT_DIR/target/packaging-test/boot
mkdir -p "$OUT"
RESULTS=$OUT/results
: >"$RESULTS"
export RESULTS
# shellcheck source=packaging/testlib.sh
source packaging/testlib.sh
started=$SECONDS

apt_need systemd-container debootstrap dpkg-dev rpm binutils
IMAGES=$OUT/images.tar.gz
test_images "$IMAGES"
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
packaging/build.sh >/dev/null
DEB=$(ls target/packages/docker-registry_"$VERSION"-1_*.deb)
make_test_root

cp "$DEB" "$OUT/"
cat >"$OUT/pkgtest.service" <<UNIT
[Unit]
Description=docker-registry package test under systemd
After=multi-user.target

[Service]
Type=oneshot
Environment=RESULTS=/pkgtest/out/results
ExecStart=/bin/bash /pkgtest/packaging/test-boot.sh /pkgtest/out/$(basename "$DEB") /pkgtest/out/$(basename "$IMAGES")
StandardOutput=journal+console
StandardError=journal+console
UNIT

boot_started=$SECONDS
# The container powers itself off when the test unit is done; timeout bounds a hang.
timeout 300 systemd-nspawn --quiet --register=no --keep-unit --console=pipe \
    -D "$TEST_ROOT" --volatile=overlay --private-network -b \
    --bind-ro="$ROOT_DIR/packaging:/pkgtest/packaging" \
    --bind="$OUT:/pkgtest/out" \
    --bind-ro="$OUT/pkgtest.service:/etc/systemd/system/pkgtest.service" \
    systemd.wants=pkgtest.service || echo "(container exited with status $?)"
echo "== the booted part took $((SECONDS - boot_started)) s, everything $((SECONDS - started)) s"
cat "$RESULTS"
grep -q '^ok - ' "$RESULTS" || fail "the test ran inside the booted container"
summary
