#!/usr/bin/env bash
# Upgrade from Debian's own docker-registry (distribution 2.8.2): install it, let it store an
# image in /var/lib/docker-registry, install our .deb over it (our epoch makes it an upgrade
# of the same package), and check that our daemon serves that image, that the user and the
# data are kept, and that Debian's init script is gone. Run by packaging/test.sh inside a
# throwaway container whose tree has Debian's .deb in /opt/pkgtest (testlib.sh).
#
#   RESULTS=FILE packaging/test-upgrade.sh OUR_DEB DEBIAN_DEB IMAGES_TAR_GZ
set -euo pipefail

DEB=$1
DEBIAN_DEB=$2
IMAGES=$3
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=packaging/testlib.sh
source "$ROOT_DIR/packaging/testlib.sh"

DATA=/var/lib/docker-registry
WORK=$(mktemp -d /tmp/docker-registry-upgrade.XXXXXX)
chmod 0755 "$WORK"
PID=""
cleanup() {
    [[ -z $PID ]] || kill "$PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_for() { # wait_for SECONDS COMMAND...
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}
answers() { curl -sf -o /dev/null "http://127.0.0.1:$1/v2/"; }
stop() { # stop PID: SIGTERM, bounded wait, exit status
    local status=0
    kill -TERM "$1"
    wait_for 30 bash -c "! kill -0 $1 2>/dev/null" || return 1
    wait "$1" || status=$?
    return "$status"
}
as_service_user() { setpriv --reuid=docker-registry --regid=docker-registry --init-groups "$@"; }

# As on an installed machine with policy-rc.d denying starts: Debian's postinst would start
# its SysV service otherwise; this test starts each registry itself.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
check "Debian's docker-registry 2.8.2 installs" dpkg -i "$DEBIAN_DEB"
uid_before=$(id -u docker-registry)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$WORK/config.yml" <<EOF
version: 0.1
storage: {filesystem: {rootdirectory: $DATA}}
http: {addr: 127.0.0.1:$port}
EOF
(cd / && exec setpriv --reuid=docker-registry --regid=docker-registry --init-groups \
    /usr/bin/docker-registry serve "$WORK/config.yml") >"$WORK/debian.log" 2>&1 &
PID=$!
check "Debian's registry serves" wait_for 30 answers "$port"
mkdir -p "$WORK/images"
tar -xzf "$IMAGES" -C "$WORK/images"
check "skopeo pushes an image to Debian's registry" skopeo --insecure-policy copy -q --dest-tls-verify=false \
    "oci:$WORK/images/c:old" "docker://127.0.0.1:$port/debian/old:old"
# distribution exits non-zero on SIGTERM ("http: Server closed"); only stopping matters here.
kill -TERM "$PID"
check "Debian's registry stops" wait_for 30 bash -c "! kill -0 $PID 2>/dev/null"
wait "$PID" 2>/dev/null || true
PID=""
echo "# edited by the upgrade test" >>/etc/docker/registry/config.yml

check "our .deb installs over Debian's (dpkg -i)" dpkg -i "$DEB"
check "the installed version is ours" test "$(dpkg-query -W -f='${Version}' docker-registry)" = "$(dpkg-deb -f "$DEB" Version)"
check "/usr/bin/docker-registry is ours" bash -c '/usr/bin/docker-registry --version | grep -q "^docker-registry [0-9]"'
check "the docker-registry user is kept (same uid)" test "$(id -u docker-registry)" = "$uid_before"
check "Debian's SysV init script is removed" test ! -e /etc/init.d/docker-registry
check "its rc.d links are removed" bash -c '! ls /etc/rc?.d/*docker-registry >/dev/null 2>&1'
check "Debian's edited /etc/docker/registry/config.yml is kept" \
    grep -q '^# edited by the upgrade test' /etc/docker/registry/config.yml
check "$DATA is owned by docker-registry" test "$(stat -c %U "$DATA")" = docker-registry

mapfile -t sysconfig_env < <(env -i bash -c 'set -a; . /etc/sysconfig/docker-registry; env' |
    grep -v -e '^PWD=' -e '^SHLVL=' -e '^_=')
(cd / && exec setpriv --reuid=docker-registry --regid=docker-registry --init-groups \
    env -i PATH=/usr/bin:/bin "${sysconfig_env[@]}" STATE_DIRECTORY=$DATA \
    REGISTRY_ADDRESS=127.0.0.1 REGISTRY_PORT=0 /usr/bin/docker-registry serve) 2>"$WORK/ours.log" &
PID=$!
wait_for 30 grep -q 'listening on http://127.0.0.1:' "$WORK/ours.log" || cat "$WORK/ours.log"
port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$WORK/ours.log" | head -n1)
check "our registry starts on the upgraded machine" test -n "$port"
mkdir -p "$WORK/pulled"
check "our registry serves the image Debian's stored" skopeo --insecure-policy copy -q --src-tls-verify=false \
    "docker://127.0.0.1:${port:-1}/debian/old:old" "oci:$WORK/pulled:old"
digest() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$1"; }
check "with the same manifest digest" test "$(digest "$WORK/images/c/index.json")" = "$(digest "$WORK/pulled/index.json" 2>/dev/null)"
check "our registry stops with status 0" stop "$PID"
PID=""
check "dpkg -P docker-registry after the upgrade" dpkg -P docker-registry
