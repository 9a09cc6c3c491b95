# shellcheck shell=bash
# Shared by packaging/test.sh and packaging/test-nspawn.sh (sourced, not run).
#
# Results are lines "ok - NAME" / "not ok - NAME" appended to $RESULTS, so checks made
# inside a container (which writes to a bind-mounted file) count in the same total.

: "${RESULTS:?RESULTS must name the results file}"

check() { # check NAME COMMAND...: runs COMMAND, records the outcome, never exits.
    local name=$1
    shift
    if "$@"; then
        echo "ok - $name" | tee -a "$RESULTS"
    else
        echo "not ok - $name" | tee -a "$RESULTS"
    fi
}

fail() { echo "not ok - $1" | tee -a "$RESULTS"; }
pass() { echo "ok - $1" | tee -a "$RESULTS"; }

summary() { # prints "N passed, M failed" for $RESULTS and returns non-zero on a failure.
    # The last line of packaging/test.sh's output; tests/run-all.sh reads the counts from it.
    local passed failed
    passed=$(grep -c '^ok - ' "$RESULTS" || true)
    failed=$(grep -c '^not ok - ' "$RESULTS" || true)
    if ((failed)); then
        echo "failed checks:"
        grep '^not ok - ' "$RESULTS" | sed 's/^/  /'
    fi
    echo "$passed passed, $failed failed"
    ((failed == 0))
}

apt_need() { # apt_need PACKAGE...: installs the packages that are missing.
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    echo "installing: ${missing[*]}"
    # apt's and needrestart's chatter (stderr too) goes to a log, shown only on failure.
    local log
    log=$(mktemp)
    if ! { apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
            apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
        tail -n 20 "$log"
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
}

test_images() { # test_images TAR_GZ: the test images as one tarball (a/, b/, multi/, c/)
    local dir
    dir=$(mktemp -d)
    # The same layouts the Rust tests push (tests/common/images.rs), the same digests.
    cargo run --quiet --locked --example oci-layouts -- "$dir" >/dev/null &&
        tar -C "$dir" -czf "$1" . && rm -rf "$dir"
}

debian_mirror() { # the Debian mirror this machine's apt uses
    local uri
    uri=$(grep -hs -E '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list /etc/apt/sources.list \
        | grep -v -e security -e cloud.google -e nodesource | head -n1 | awk '{print ($1=="deb") ? $2 : $2}')
    echo "${uri:-http://deb.debian.org/debian}"
}

# A Debian bookworm tree with systemd, skopeo, python3 and rpm, for testing the package in a
# container: cached at $TEST_ROOT_CACHE (default target/packaging-test/rootfs) because
# debootstrap takes minutes. Containers run with --volatile=overlay, so the tree stays clean.
TEST_ROOT=${TEST_ROOT_CACHE:-$ROOT_DIR/target/packaging-test/rootfs}

nspawn() { # nspawn ARGS...: systemd-nspawn with the flags this machine needs
    systemd-nspawn --quiet --register=no --keep-unit --console=pipe "$@"
}

# Bump when the recipe below changes, so cached trees are rebuilt.
TEST_ROOT_RECIPE=3

make_test_root() {
    apt_need debootstrap systemd-container
    if [[ $(cat "$TEST_ROOT/.docker-registry-test-root" 2>/dev/null) == "$TEST_ROOT_RECIPE" ]]; then
        return 0
    fi
    local tmp=$TEST_ROOT.tmp
    rm -rf "$tmp"
    mkdir -p "$(dirname "$TEST_ROOT")"
    echo "debootstrap into $tmp (cached for later runs)"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm "$tmp" "$(debian_mirror)" >"$tmp.log" 2>&1 \
        || { tail -n 20 "$tmp.log"; return 1; }
    # apt (not debootstrap) resolves skopeo's virtual dependencies.
    nspawn -D "$tmp" --resolv-conf=copy-host sh -c \
        'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends skopeo python3 curl procps man-db rpm >/dev/null && apt-get clean' \
        >>"$tmp.log" 2>&1 || { tail -n 20 "$tmp.log"; return 1; }
    add_debian_registry "$tmp" >>"$tmp.log" 2>&1 || { tail -n 20 "$tmp.log"; return 1; }
    echo "$TEST_ROOT_RECIPE" >"$tmp/.docker-registry-test-root"
    rm -rf "$TEST_ROOT"
    mv "$tmp" "$TEST_ROOT"
}

# Debian's docker-registry (distribution 2.8.2), not installed: its .deb in /opt/pkgtest and
# its dependencies installed, so the upgrade test can install it offline and replace it.
add_debian_registry() {
    nspawn -D "$1" --resolv-conf=copy-host sh -c \
        'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends adduser lsb-base >/dev/null &&
         mkdir -p /opt/pkgtest && cd /opt/pkgtest && apt-get download -qq docker-registry && apt-get clean'
}
