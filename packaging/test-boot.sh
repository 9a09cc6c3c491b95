#!/usr/bin/env bash
# Runs inside a booted systemd container (packaging/test-nspawn.sh starts it as the unit
# pkgtest.service): installs the .deb with a real systemd as PID 1, then checks the user's
# whole path: `systemctl enable --now`, active (running), push/pull, reload, restart, socket
# activation, stop, remove. Results go to $RESULTS; the container powers off at the end.
#
#   RESULTS=FILE test-boot.sh DEB IMAGES_TAR_GZ
set -uo pipefail

DEB=$1
IMAGES=$2
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=packaging/testlib.sh
source "$ROOT_DIR/packaging/testlib.sh"
trap 'systemctl poweroff --no-block' EXIT

wait_for() { # wait_for SECONDS COMMAND...
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}
active() { test "$(systemctl is-active "$1")" = active; }
http_code() { curl -s -o /dev/null -w '%{http_code}' "$1"; }
show() { systemctl show -P "$2" "$1"; }

check "dpkg -i under a running systemd" dpkg -i "$DEB"
check "systemctl enable --now docker-registry" systemctl enable --now docker-registry
check "docker-registry.service is active" wait_for 30 active docker-registry.service
check "systemctl status says active (running)" \
    bash -c 'systemctl status docker-registry --no-pager | grep -q "Active: active (running)"'
status_text=$(show docker-registry StatusText)
check "the daemon's STATUS= reaches systemd ($status_text)" grep -q '^serving on' <<<"$status_text"
check "the service runs as docker-registry" test "$(ps -o user= -p "$(show docker-registry MainPID)")" = docker-registry
check "GET http://127.0.0.1:5000/v2/ answers 200" test "$(http_code http://127.0.0.1:5000/v2/)" = 200

work=$(mktemp -d)
tar -xzf "$IMAGES" -C "$work"
check "skopeo pushes to the service" skopeo --insecure-policy copy -q --dest-tls-verify=false \
    "oci:$work/a:latest" docker://127.0.0.1:5000/boot/test:latest
check "the image is in /var/lib/docker-registry" \
    test -f /var/lib/docker-registry/docker/registry/v2/repositories/boot/test/_manifests/tags/latest/current/link

# The garbage-collection timer ships with the package (when the repository has it): enabled
# and started by postinst, and its service collects inside the running, packaged daemon.
if [[ -e /lib/systemd/system/docker-registry-gc.timer ]]; then
    check "postinst enabled the GC timer" systemctl is-enabled -q docker-registry-gc.timer
    check "the GC timer is active" systemctl is-active -q docker-registry-gc.timer
    check "systemctl start docker-registry-gc.service (online, next to the packaged daemon)" \
        systemctl start docker-registry-gc.service
    check "the GC service succeeded (Result=success)" test "$(show docker-registry-gc Result)" = success
    check "after GC the image is still served" \
        bash -c 'curl -sf http://127.0.0.1:5000/v2/boot/test/tags/list | grep -q latest'
fi

pid=$(show docker-registry MainPID)
check "systemctl reload docker-registry" systemctl reload docker-registry
check "after reload: same process, still active" \
    bash -c "test \"\$(systemctl show -P MainPID docker-registry)\" = $pid && systemctl is-active -q docker-registry"
check "systemctl restart docker-registry" systemctl restart docker-registry
check "after restart: a new process, active" \
    bash -c "test \"\$(systemctl show -P MainPID docker-registry)\" != $pid && systemctl is-active -q docker-registry"
check "after restart: the tag is still served" \
    bash -c 'curl -sf http://127.0.0.1:5000/v2/boot/test/tags/list | grep -q latest'
pid=$(show docker-registry MainPID)
check "dpkg -i again (an upgrade) under systemd" dpkg -i "$DEB"
check "the upgrade restarted the running service" \
    wait_for 10 bash -c "test \"\$(systemctl show -P MainPID docker-registry)\" != $pid && systemctl is-active -q docker-registry"
security=$(systemd-analyze security docker-registry.service 2>&1 | grep 'Overall exposure level')
echo "# $security" | tee -a "$RESULTS"
check "systemd-analyze security (online) rates it OK or better" grep -Eq ': [0-9.]+ (OK|SAFE|PERFECT)' <<<"$security"

# Socket activation: systemd owns the port, the daemon takes the socket over on first use.
check "switch to the socket: disable --now the service" systemctl disable --now docker-registry.service
check "systemctl enable --now docker-registry.socket" systemctl enable --now docker-registry.socket
check "the service is not running before the first connection" bash -c '! systemctl is-active -q docker-registry.service'
check "GET /v2/ through the socket answers 200" test "$(http_code http://127.0.0.1:5000/v2/)" = 200
check "the connection started the service" wait_for 10 active docker-registry.service
check "the daemon serves on the socket it was given" \
    bash -c 'journalctl -u docker-registry.service --no-pager | grep -q "listening on"'
pid=$(show docker-registry MainPID)
check "dpkg -i again while socket-activated" dpkg -i "$DEB"
check "the upgrade restarted the socket-activated service" \
    wait_for 10 bash -c "test \"\$(systemctl show -P MainPID docker-registry)\" != $pid && systemctl is-active -q docker-registry"
check "the socket stays enabled, the service stays disabled" \
    bash -c 'systemctl is-enabled -q docker-registry.socket && ! systemctl is-enabled -q docker-registry.service'
check "systemctl stop docker-registry.socket docker-registry.service" \
    systemctl stop docker-registry.socket docker-registry.service
check "the service stopped cleanly (Result=success)" test "$(show docker-registry Result)" = success

check "dpkg -r docker-registry" dpkg -r docker-registry
check "after remove: the unit file is gone" test ! -e /lib/systemd/system/docker-registry.service
check "after remove: the unit is masked (LoadState=masked), so nothing can start it" \
    test "$(show docker-registry.service LoadState)" = masked
check "after remove: nothing runs" bash -c '! pgrep -x docker-registry'
check "after remove: the data is kept" \
    test -f /var/lib/docker-registry/docker/registry/v2/repositories/boot/test/_manifests/tags/latest/current/link
