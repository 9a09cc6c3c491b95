#!/usr/bin/env bash
# The package test: builds the .deb and the .rpm (packaging/build.sh) twice and compares them
# (reproducible: the same bytes), checks their contents, modes, owners, metadata and scripts,
# runs lintian, rpmlint and systemd-analyze, then
# installs the .deb and runs the installed daemon as its unit would (packaging/test-install.sh):
# READY=1, /v2/, skopeo push and pull, data in /var/lib/docker-registry, SIGHUP, SIGTERM,
# upgrade, remove (data kept) and purge (configuration removed).
#
#   packaging/test.sh          as root on Debian bookworm; installs its tools with apt-get
#
# Where to install the .deb (PACKAGING_TEST_INSTALL):
#   auto (default)  on this machine, unless another docker-registry package is installed
#                   (Debian's distribution 2.8.2, which the test suite uses as the reference
#                   registry): ours would replace it, so then in a container instead;
#   host            on this machine;
#   container       in a throwaway systemd-nspawn container on a cached debootstrap tree
#                   (target/packaging-test/rootfs; a few minutes the first time), followed
#                   by an upgrade from Debian's docker-registry 2.8.2 (test-upgrade.sh) and
#                   the .rpm installed, reinstalled and erased with rpm (test-rpm.sh).
# PACKAGING_TEST_BOOT=1 also runs packaging/test-nspawn.sh: the package under a booted
# systemd (`systemctl enable --now`, socket activation), a few seconds once the tree exists.
# The images pushed are the tests' own (cargo run --example oci-layouts).
# Ends with "N passed, M failed" and exits non-zero if anything failed.
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT_DIR"
OUT=$ROOT_DIR/target/packaging-test
mkdir -p "$OUT"
RESULTS=$OUT/results
: >"$RESULTS"
export RESULTS
# shellcheck source=packaging/testlib.sh
source packaging/testlib.sh
started=$SECONDS

echo "== tools"
apt_need rpm rpmlint lintian dpkg-dev binutils systemd skopeo python3 curl man-db util-linux

echo "== test images (cargo run --example oci-layouts)"
IMAGES=$OUT/images.tar.gz
test_images "$IMAGES" || { fail "the test images are written"; summary; exit 1; }

echo "== build"
if packaging/build.sh; then
    pass "packaging/build.sh builds both packages"
else
    fail "packaging/build.sh builds both packages"
    summary
    exit 1
fi
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
DEB=$(ls target/packages/docker-registry_"$VERSION"-1_*.deb)
RPM=$(ls target/packages/docker-registry-"$VERSION"-1.*.rpm)
BIN=$ROOT_DIR/target/release/docker-registry

echo "== reproducible: a second build of the same commit"
first=$(sha256sum "$DEB" "$RPM")
# Kept to compare (diffoscope) when they differ.
mkdir -p "$OUT/first-build"
cp "$DEB" "$RPM" "$OUT/first-build/"
if packaging/build.sh >"$OUT/second-build.log" 2>&1; then
    second=$(sha256sum "$DEB" "$RPM")
    echo "$second"
    check "the .deb is the same bytes when built again" \
        test "$(head -n1 <<<"$first")" = "$(head -n1 <<<"$second")"
    check "the .rpm is the same bytes when built again" \
        test "$(tail -n1 <<<"$first")" = "$(tail -n1 <<<"$second")"
else
    tail -n 20 "$OUT/second-build.log"
    fail "packaging/build.sh builds both packages a second time"
fi

# Every subcommand the binary has gets a man page: docker-registry-NAME.(1|8).
# (Only lines indented by two spaces name one; deeper ones continue a wrapped description.)
subcommands=$("$BIN" --help | sed -n '/^Commands:/,/^$/p' | awk '/^  [^ ]/ && $1 != "help" {print $1}')

# --- the .deb --------------------------------------------------------------------------------
echo "== deb contents and metadata: $DEB ($(stat -c %s "$DEB") bytes)"
deb_listing=$(dpkg-deb -c "$DEB")
deb_has() { # deb_has MODE OWNER PATH
    grep -Eq "^$1 $2 +[0-9]+ [0-9-]+ [0-9:]+ \./${3#/}\$" <<<"$deb_listing"
}
for entry in \
    "-rwxr-xr-x root/root /usr/bin/docker-registry" \
    "-rw-r--r-- root/root /lib/systemd/system/docker-registry.service" \
    "-rw-r--r-- root/root /lib/systemd/system/docker-registry.socket" \
    "-rw-r--r-- root/root /etc/sysconfig/docker-registry" \
    "-rw-r--r-- root/root /etc/docker-registry.yml" \
    "-rw-r--r-- root/root /usr/lib/sysusers.d/docker-registry.conf" \
    "-rw-r--r-- root/root /usr/lib/tmpfiles.d/docker-registry.conf" \
    "-rw-r--r-- root/root /usr/share/man/man8/docker-registry.8.gz" \
    "-rw-r--r-- root/root /usr/share/man/man5/docker-registry.yml.5.gz" \
    "-rw-r--r-- root/root /usr/share/bash-completion/completions/docker-registry" \
    "-rw-r--r-- root/root /usr/share/zsh/vendor-completions/_docker-registry" \
    "-rw-r--r-- root/root /usr/share/fish/vendor_completions.d/docker-registry.fish" \
    "-rw-r--r-- root/root /usr/share/doc/docker-registry/copyright" \
    "-rw-r--r-- root/root /usr/share/doc/docker-registry/changelog.Debian.gz"; do
    read -r mode owner path <<<"$entry"
    check "deb has $path ($mode $owner)" deb_has "$mode" "$owner" "$path"
done
for unit in systemd/*.service systemd/*.socket systemd/*.timer; do
    [[ -e $unit ]] || continue
    check "deb has every unit of systemd/: $(basename "$unit")" \
        deb_has -rw-r--r-- root/root "/lib/systemd/system/$(basename "$unit")"
done
for sub in $subcommands; do
    check "deb has the man page of 'docker-registry $sub'" \
        grep -Eq "\./usr/share/man/man[18]/docker-registry-$sub\.[18]\.gz$" <<<"$deb_listing"
done
check "deb has /usr/bin/docker-registry-htpasswd -> docker-registry" \
    grep -Eq '^lrwxrwxrwx root/root +0 [0-9-]+ [0-9:]+ \./usr/bin/docker-registry-htpasswd -> docker-registry$' <<<"$deb_listing"
check "deb ships nothing under /var (data is created, never owned by the package)" \
    bash -c '! grep -q " \./var/"' <<<"$deb_listing"
check "deb version is 1:$VERSION-1 (epoch above Debian's 2.8.2)" \
    test "$(dpkg-deb -f "$DEB" Version)" = "1:$VERSION-1"
check "deb supersedes Debian's docker-registry 2.8.2+ds1-1" \
    dpkg --compare-versions "$(dpkg-deb -f "$DEB" Version)" gt 2.8.2+ds1-1
check "deb depends on libc6" grep -q libc6 <<<"$(dpkg-deb -f "$DEB" Depends)"
deb_info=$(dpkg-deb -I "$DEB")
ctrl() { dpkg-deb --ctrl-tarfile "$DEB" | tar -xO "./$1"; }
check "deb conffiles: /etc/sysconfig/docker-registry and /etc/docker-registry.yml" \
    test "$(ctrl conffiles | sort | tr '\n' ' ')" = "/etc/docker-registry.yml /etc/sysconfig/docker-registry "
for script in preinst postinst prerm postrm; do
    check "deb has an executable $script" grep -Eq "^ +[0-9]+ bytes, +[0-9]+ lines +\* +$script " <<<"$deb_info"
done
postinst=$(ctrl postinst)
check "postinst enables the service via deb-systemd-helper" grep -q 'deb-systemd-helper enable' <<<"$postinst"
check "postinst starts it via deb-systemd-invoke (honours policy-rc.d)" grep -q 'deb-systemd-invoke "$action"' <<<"$postinst"
check "postinst starts units only where systemd runs (/run/systemd/system)" grep -q '/run/systemd/system' <<<"$postinst"
check "postinst creates the user with systemd-sysusers, else useradd" \
    grep -q 'systemd-sysusers /usr/lib/sysusers.d/docker-registry.conf' <<<"$postinst"
for script in preinst postinst prerm postrm; do
    check "$script is valid POSIX sh" sh -n <(ctrl "$script")
done

echo "== lintian"
lintian_out=$(lintian --fail-on error,warning --pedantic "$DEB" 2>&1) && lintian_rc=0 || lintian_rc=$?
lintian_out=$(grep -v 'running with root privileges' <<<"$lintian_out" || true)
echo "${lintian_out:-(no tags)}"
check "lintian: no errors or warnings (overrides in packaging/debian/lintian-overrides)" test "$lintian_rc" = 0

# --- the .rpm --------------------------------------------------------------------------------
echo "== rpm contents and metadata: $RPM ($(stat -c %s "$RPM") bytes)"
rpm_listing=$(rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILENAMES}\n]' "$RPM" 2>/dev/null)
rpm_has() { grep -qx -- "$1 $2 $3 $4" <<<"$rpm_listing"; }
check "rpm has /usr/bin/docker-registry-htpasswd (a symlink)" \
    grep -qx -- "lrwxrwxrwx root root /usr/bin/docker-registry-htpasswd" <<<"$rpm_listing"
for entry in \
    "-rwxr-xr-x root root /usr/bin/docker-registry" \
    "-rw-r--r-- root root /usr/lib/systemd/system/docker-registry.service" \
    "-rw-r--r-- root root /usr/lib/systemd/system/docker-registry.socket" \
    "-rw-r--r-- root root /etc/sysconfig/docker-registry" \
    "-rw-r--r-- root root /etc/docker-registry.yml" \
    "-rw-r--r-- root root /usr/lib/sysusers.d/docker-registry.conf" \
    "-rw-r--r-- root root /usr/lib/tmpfiles.d/docker-registry.conf" \
    "-rw-r--r-- root root /usr/share/man/man8/docker-registry.8.gz" \
    "-rw-r--r-- root root /usr/share/man/man5/docker-registry.yml.5.gz" \
    "-rw-r--r-- root root /usr/share/bash-completion/completions/docker-registry" \
    "-rw-r--r-- root root /usr/share/zsh/site-functions/_docker-registry" \
    "-rw-r--r-- root root /usr/share/fish/vendor_completions.d/docker-registry.fish" \
    "drwxr-x--- docker-registry docker-registry /var/lib/docker-registry"; do
    read -r mode user group path <<<"$entry"
    check "rpm has $path ($mode $user:$group)" rpm_has "$mode" "$user" "$group" "$path"
done
for sub in $subcommands; do
    check "rpm has the man page of 'docker-registry $sub'" \
        grep -Eq "/usr/share/man/man[18]/docker-registry-$sub\.[18]\.gz$" <<<"$rpm_listing"
done
rpm_config=$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPM" 2>/dev/null)
for f in /etc/sysconfig/docker-registry /etc/docker-registry.yml; do
    check "rpm: $f is %config(noreplace)" grep -Eq "^c[a-z]*n[a-z]* $f$" <<<"$rpm_config"
done
check "rpm epoch is 1" test "$(rpm -qp --qf '%{EPOCH}' "$RPM" 2>/dev/null)" = 1
check "rpm obsoletes the Python docker-registry (docker-registry < 1:0)" \
    grep -qx 'docker-registry < 1:0' <<<"$(rpm -qp --obsoletes "$RPM" 2>/dev/null)"
rpm_scripts=$(rpm -qp --scripts "$RPM" 2>/dev/null)
check "rpm %pre creates the user with systemd-sysusers" grep -q 'systemd-sysusers --replace' <<<"$rpm_scripts"
check "rpm %pre falls back to useradd" grep -q 'useradd --system' <<<"$rpm_scripts"
check "rpm %post presets on first install (%systemd_post)" grep -Eq 'systemctl --no-reload preset .*docker-registry\.service' <<<"$rpm_scripts"
check "rpm %preun disables and stops on erase (%systemd_preun)" grep -Eq 'systemctl --no-reload disable --now .*docker-registry\.service' <<<"$rpm_scripts"
check "rpm %postun restarts on upgrade (%systemd_postun_with_restart)" grep -Eq 'systemctl try-restart .*docker-registry\.service' <<<"$rpm_scripts"
rpmroot=$(mktemp -d)
check "rpm installs into an empty root (rpm -ivh --root --nodeps --noscripts)" \
    rpm -ivh --quiet --root "$rpmroot" --nodeps --noscripts --dbpath /var/lib/rpm "$RPM"
check "the binary from the rpm runs" "$rpmroot/usr/bin/docker-registry" --version
rm -rf "$rpmroot"

echo "== rpmlint"
if command -v rpmlint >/dev/null; then
    rpmlint_out=$(rpmlint -r packaging/rpm/docker-registry.rpmlintrc "$RPM" 2>&1) && rpmlint_rc=0 || rpmlint_rc=$?
    echo "$rpmlint_out" | tail -n 5
    check "rpmlint: exit status 0 (filters in packaging/rpm/docker-registry.rpmlintrc)" test "$rpmlint_rc" = 0
    check "rpmlint: 0 errors, 0 warnings" grep -q ' 0 errors, 0 warnings' <<<"$rpmlint_out"
fi

# --- the units -------------------------------------------------------------------------------
echo "== systemd-analyze"
units_dir=$(mktemp -d)
for unit in systemd/*.service systemd/*.socket systemd/*.timer; do
    [[ -e $unit ]] || continue
    # verify needs ExecStart='s binary to exist: point it at the one just built.
    sed "s|/usr/bin/docker-registry|$BIN|g" "$unit" >"$units_dir/$(basename "$unit")"
done
for unit in "$units_dir"/*; do
    name=$(basename "$unit")
    # Man pages are checked after installing; here only the unit's own syntax and semantics.
    verify_out=$(cd "$units_dir" && systemd-analyze verify --man=no "$name" 2>&1) && verify_rc=0 || verify_rc=$?
    if [[ $verify_rc == 0 && -z $verify_out ]]; then
        pass "systemd-analyze verify $name: clean"
    else
        echo "$verify_out"
        fail "systemd-analyze verify $name: clean"
    fi
done
security=$(cd "$units_dir" && systemd-analyze security --offline=yes ./docker-registry.service 2>&1 | grep 'Overall exposure level')
echo "$security"
check "systemd-analyze security rates docker-registry.service OK or better" \
    grep -Eq ': [0-9.]+ (OK|SAFE|PERFECT)' <<<"$security"
rm -rf "$units_dir"

# --- install and run -------------------------------------------------------------------------
mode=${PACKAGING_TEST_INSTALL:-auto}
if [[ $mode == auto ]]; then
    mode=host
    installed=$(dpkg-query -W -f='${Status} ${Version}' docker-registry 2>/dev/null || true)
    if [[ $installed == "install ok installed "* && ${installed##* } != 1:* ]]; then
        echo "another docker-registry package is installed (${installed##* }): testing in a container"
        mode=container
    fi
fi
echo "== install and run ($mode)"
case $mode in
    host)
        bash packaging/test-install.sh "$DEB" "$IMAGES" || fail "packaging/test-install.sh ran to the end"
        ;;
    container)
        in_container() { # in_container SCRIPT ARGS...: one throwaway container per script
            local script=$1
            shift
            : >"$OUT/in-container/results"
            nspawn -D "$TEST_ROOT" --volatile=overlay --as-pid2 \
                --bind-ro="$ROOT_DIR/packaging:/pkgtest/packaging" \
                --bind="$OUT/in-container:/pkgtest/out" \
                env RESULTS=/pkgtest/out/results bash "/pkgtest/packaging/$script" "$@" \
                || fail "packaging/$script ran to the end in the container"
            cat "$OUT/in-container/results" >>"$RESULTS"
        }
        if make_test_root; then
            mkdir -p "$OUT/in-container"
            cp "$DEB" "$RPM" "$IMAGES" "$OUT/in-container/"
            in_container test-install.sh "/pkgtest/out/$(basename "$DEB")" "/pkgtest/out/$(basename "$IMAGES")"
            echo "== upgrade from Debian's docker-registry 2.8.2 (container)"
            debian_deb=$(cd "$TEST_ROOT" && ls opt/pkgtest/docker-registry_*.deb | head -n1)
            in_container test-upgrade.sh "/pkgtest/out/$(basename "$DEB")" "/$debian_deb" \
                "/pkgtest/out/$(basename "$IMAGES")"
            echo "== the rpm's scriptlets (container)"
            in_container test-rpm.sh "/pkgtest/out/$(basename "$RPM")"
        else
            fail "a bookworm container root could be made (debootstrap)"
        fi
        ;;
    *)
        echo "PACKAGING_TEST_INSTALL must be auto, host or container"
        exit 2
        ;;
esac

if [[ ${PACKAGING_TEST_BOOT:-0} == 1 ]]; then
    echo "== under a booted systemd (packaging/test-nspawn.sh)"
    packaging/test-nspawn.sh || true
    grep -E '^(not )?ok - ' "$OUT/boot/results" | sed 's/ - / - booted: /' >>"$RESULTS" ||
        fail "packaging/test-nspawn.sh recorded results"
fi

echo "== $((SECONDS - started)) s"
summary
