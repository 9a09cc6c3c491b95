#!/usr/bin/env bash
# The install half of packaging/test.sh: installs the .deb, runs the installed daemon the way
# docker-registry.service does, pushes and pulls with skopeo, reloads, stops, upgrades over
# itself, removes and purges, checking each step. Runs as root on the machine under test
# (test.sh runs it directly, or inside a throwaway container).
#
#   RESULTS=FILE packaging/test-install.sh DEB IMAGES_TAR_GZ
#
# Needs skopeo, python3, curl and setpriv (util-linux).
set -euo pipefail

DEB=$1
IMAGES=$2
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=packaging/testlib.sh
source "$ROOT_DIR/packaging/testlib.sh"

DATA=/var/lib/docker-registry
UNIT=/lib/systemd/system/docker-registry.service
WORK=$(mktemp -d /tmp/docker-registry-pkgtest.XXXXXX)
chmod 0755 "$WORK"
DAEMON_PID="" READER_PID=""
data_existed=no user_existed=no
[[ -e $DATA ]] && data_existed=yes
getent passwd docker-registry >/dev/null && user_existed=yes

cleanup() {
    local pid
    for pid in $DAEMON_PID $READER_PID; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_for() { # wait_for SECONDS COMMAND...: polls COMMAND every 0.1 s
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# --- install -------------------------------------------------------------------------------
check "dpkg -i installs the package" dpkg -i "$DEB"
version=$(dpkg-query -W -f='${Version}' docker-registry 2>/dev/null || true)
check "installed version has our epoch ($version)" test "${version%%:*}" = 1
check "the binary runs" /usr/bin/docker-registry --version
check "user docker-registry exists with no login shell" \
    sh -c 'getent passwd docker-registry | grep -Eq ":/usr/sbin/nologin$|:/bin/false$"'
check "group docker-registry exists" getent group docker-registry
check "$DATA is a directory owned by docker-registry, mode 750" \
    sh -c "test \"\$(stat -c '%U:%G %a' $DATA)\" = 'docker-registry:docker-registry 750'"
check "/etc/sysconfig/docker-registry installed" test -f /etc/sysconfig/docker-registry
check "/etc/docker-registry.yml installed" test -f /etc/docker-registry.yml
check "postinst enabled the service (multi-user.target.wants link)" \
    test -L /etc/systemd/system/multi-user.target.wants/docker-registry.service
check "the socket unit is not enabled by default" \
    test ! -e /etc/systemd/system/sockets.target.wants/docker-registry.socket
if command -v man >/dev/null; then
    check "man docker-registry finds the page" man -w docker-registry
    check "man docker-registry.yml finds the page" man -w 5 docker-registry.yml
    if verify_out=$(systemd-analyze verify "$UNIT" 2>&1) && [[ -z $verify_out ]]; then
        pass "systemd-analyze verify on the installed unit (with its man pages)"
    else
        echo "$verify_out"
        fail "systemd-analyze verify on the installed unit (with its man pages)"
    fi
fi
check "docker-registry config --check accepts the installed files" \
    setpriv --reuid=docker-registry --regid=docker-registry --init-groups \
    env -i PATH=/usr/bin:/bin STATE_DIRECTORY=$DATA /usr/bin/docker-registry config --check

# --- run it as the unit would ----------------------------------------------------------------
# The notification socket systemd would listen on: every datagram goes to notify.log.
python3 - "$WORK/notify.sock" "$WORK/notify.log" <<'EOF' &
import os, socket, sys
path, log = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o666)  # the daemon runs as docker-registry
with open(log, "a") as out:
    while True:
        out.write(s.recv(4096).decode(errors="replace").replace("\n", " ") + "\n")
        out.flush()
EOF
READER_PID=$!
wait_for 10 test -S "$WORK/notify.sock" || fail "notify socket reader started"
: >"$WORK/notify.log"

# systemd's environment for the unit: EnvironmentFile=, User=, StateDirectory=, Type=notify,
# WatchdogSec= (shortened so that pings show up within the test). Address and port are
# overridden through the environment (above the sysconfig file in precedence) so the test
# never collides with another registry on this machine: port 0 is any free port.
mapfile -t sysconfig_env < <(env -i bash -c 'set -a; . /etc/sysconfig/docker-registry; env' |
    grep -v -e '^PWD=' -e '^SHLVL=' -e '^_=')
(
    cd /
    exec setpriv --reuid=docker-registry --regid=docker-registry --init-groups \
        env -i PATH=/usr/local/bin:/usr/bin:/bin "${sysconfig_env[@]}" \
        HOME=$DATA USER=docker-registry LOGNAME=docker-registry SHELL=/usr/sbin/nologin \
        STATE_DIRECTORY=$DATA NOTIFY_SOCKET="$WORK/notify.sock" WATCHDOG_USEC=2000000 \
        REGISTRY_ADDRESS=127.0.0.1 REGISTRY_PORT=0 \
        /usr/bin/docker-registry serve
) 2>"$WORK/daemon.log" &
DAEMON_PID=$!

if wait_for 30 grep -q '^READY=1' "$WORK/notify.log"; then
    pass "READY=1 arrives on NOTIFY_SOCKET"
else
    fail "READY=1 arrives on NOTIFY_SOCKET"
    cat "$WORK/daemon.log" "$WORK/notify.log"
fi
check "the daemon runs as docker-registry" \
    sh -c "test \"\$(ps -o user= -p $DAEMON_PID)\" = docker-registry"
port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$WORK/daemon.log" | head -n1)
check "the daemon logs the port it listens on ($port)" test -n "$port"
base=http://127.0.0.1:${port:-1}
check "GET /v2/ answers 200" \
    sh -c "test \"\$(curl -s -o /dev/null -w '%{http_code}' $base/v2/)\" = 200"
check "storage is the packaged data directory (config says $DATA)" \
    sh -c "setpriv --reuid=docker-registry --regid=docker-registry --init-groups env -i STATE_DIRECTORY=$DATA \
        /usr/bin/docker-registry config | grep -E '^storage' | grep -q '$DATA'"
if wait_for 10 grep -q '^WATCHDOG=1' "$WORK/notify.log"; then
    pass "WATCHDOG=1 pings arrive (WATCHDOG_USEC=2 s)"
else
    fail "WATCHDOG=1 pings arrive (WATCHDOG_USEC=2 s)"
fi

mkdir -p "$WORK/images" "$WORK/pulled"
tar -xzf "$IMAGES" -C "$WORK/images"
skopeo=(skopeo --insecure-policy)
check "skopeo pushes an image" "${skopeo[@]}" copy -q --dest-tls-verify=false \
    "oci:$WORK/images/b:1.0" "docker://127.0.0.1:${port:-1}/packaging/test:1.0"
check "skopeo pulls it back" "${skopeo[@]}" copy -q --src-tls-verify=false \
    "docker://127.0.0.1:${port:-1}/packaging/test:1.0" "oci:$WORK/pulled:1.0"
pushed=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$WORK/images/b/index.json")
pulled=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$WORK/pulled/index.json" 2>/dev/null || true)
check "the pulled manifest is the pushed one ($pushed)" test "$pushed" = "$pulled"
tag_link=$DATA/docker/registry/v2/repositories/packaging/test/_manifests/tags/1.0/current/link
check "the tag landed in $DATA (registry:2 layout)" sh -c "test \"\$(cat $tag_link)\" = '$pushed'"
check "stored blobs belong to docker-registry" \
    sh -c "test -z \"\$(find $DATA/docker -not -user docker-registry | head -n1)\""

kill -HUP "$DAEMON_PID"
if wait_for 10 grep -q '^RELOADING=1' "$WORK/notify.log" && wait_for 10 sh -c "grep -c '^READY=1' '$WORK/notify.log' | grep -qv '^1$'"; then
    pass "SIGHUP: RELOADING=1 then READY=1 again"
else
    fail "SIGHUP: RELOADING=1 then READY=1 again"
fi
check "after SIGHUP the daemon still runs" kill -0 "$DAEMON_PID"
check "after SIGHUP the registry still serves the tag" \
    sh -c "curl -sf $base/v2/packaging/test/tags/list | grep -q '1.0'"

kill -TERM "$DAEMON_PID"
status=0
if wait_for 30 sh -c "! kill -0 $DAEMON_PID 2>/dev/null"; then
    wait "$DAEMON_PID" || status=$?
    check "SIGTERM: exit status 0 (got $status)" test "$status" = 0
else
    fail "SIGTERM: the daemon stops within 30 s"
fi
DAEMON_PID=""
check "SIGTERM: STOPPING=1 was sent" grep -q '^STOPPING=1' "$WORK/notify.log"

# --- upgrade, remove, purge ----------------------------------------------------------------
echo "# edited by the package test" >>/etc/sysconfig/docker-registry
check "reinstalling (upgrade path) succeeds" dpkg -i "$DEB"
check "upgrade keeps the edited /etc/sysconfig/docker-registry" \
    grep -q '^# edited by the package test' /etc/sysconfig/docker-registry
check "upgrade keeps the data" test -f "$tag_link"

check "dpkg -r removes the package" dpkg -r docker-registry
check "remove: the binary is gone" test ! -e /usr/bin/docker-registry
check "remove: the unit is gone" test ! -e "$UNIT"
check "remove: the data is kept" test -f "$tag_link"
check "remove: the configuration is kept" test -f /etc/sysconfig/docker-registry
check "remove: dpkg keeps the package's config-files state" \
    sh -c "dpkg-query -W -f='\${Status}' docker-registry | grep -q config-files"

check "dpkg -P purges the package" dpkg -P docker-registry
check "purge: /etc/sysconfig/docker-registry is gone" test ! -e /etc/sysconfig/docker-registry
check "purge: /etc/docker-registry.yml is gone" test ! -e /etc/docker-registry.yml
check "purge: the data is still kept" test -f "$tag_link"
check "purge: the enablement symlink is gone" \
    test ! -e /etc/systemd/system/multi-user.target.wants/docker-registry.service
check "purge: dpkg forgets the package" sh -c "! dpkg-query -W docker-registry >/dev/null 2>&1"

# On a machine that is not a throwaway container, leave no trace of the test.
if [[ $data_existed == no ]]; then
    rm -rf "$DATA"
fi
if [[ $user_existed == no ]]; then
    userdel docker-registry 2>/dev/null || true
    groupdel docker-registry 2>/dev/null || true
fi
