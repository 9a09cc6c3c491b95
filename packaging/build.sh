#!/usr/bin/env bash
# Builds the .deb and the .rpm of docker-registry from one release build:
#
#   packaging/build.sh            -> target/packages/docker-registry_<ver>_<arch>.deb
#                                    target/packages/docker-registry-<ver>-1.<arch>.rpm
#
# Needs cargo, dpkg-dev (dpkg-shlibdeps) and rpm (rpmbuild; Debian's `rpm` package works).
# Steps: `cargo build --release`; man pages and completions generated from the clap
# definition (examples/gen-docs.rs); every file staged once under target/packaging/dist;
# the deb assembled with dpkg-deb, the rpm with rpmbuild from packaging/rpm/docker-registry.spec.
#
# The configuration files shipped in /etc come from sysconfig/docker-registry and
# etc/docker-registry.yml at the top of the repository. PACKAGING_CONFIG_DIR=DIR takes them
# from DIR instead (DIR/sysconfig/docker-registry, DIR/etc/docker-registry.yml).
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT_DIR"
PKG=docker-registry
EPOCH=1
RELEASE=1
OUT=$ROOT_DIR/target/packages
WORK=$ROOT_DIR/target/packaging
DIST=$WORK/dist

die() { echo "packaging/build.sh: $*" >&2; exit 1; }

for tool in cargo dpkg-deb dpkg-shlibdeps rpmbuild strip gzip; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install dpkg-dev rpm binutils)"
done

VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
[[ -n $VERSION ]] || die "no version in Cargo.toml"
spec_version=$(sed -n 's/^Version: *//p' packaging/rpm/docker-registry.spec)
[[ $spec_version == "$VERSION" ]] || die "packaging/rpm/docker-registry.spec says Version: $spec_version, Cargo.toml $VERSION"
changelog_version=$(sed -n '1s/^docker-registry (\(.*\)).*/\1/p' packaging/debian/changelog)
[[ $changelog_version == "$EPOCH:$VERSION-$RELEASE" ]] \
    || die "packaging/debian/changelog starts with $changelog_version, expected $EPOCH:$VERSION-$RELEASE"

config_dir=${PACKAGING_CONFIG_DIR:-$ROOT_DIR}
SYSCONFIG=$config_dir/sysconfig/docker-registry
YAML=$config_dir/etc/docker-registry.yml
for f in "$SYSCONFIG" "$YAML"; do
    [[ -f $f ]] || die "$f is missing: the package ships it in /etc (set PACKAGING_CONFIG_DIR to take it from elsewhere)"
done

# Reproducible packages: every date in them (file times, build time, man page dates) is
# the last commit's, so two builds of one commit are the same bytes. Given only to the
# packaging commands, never exported: cargo would see it too, and ring's build script
# reruns when it changes, rebuilding ring and rustls for the next `cargo run`.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
DOC_DATE=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)

echo "== cargo build --release"
cargo build --release --locked --bin docker-registry
echo "== man pages and completions"
rm -rf "$WORK"
mkdir -p "$DIST" "$OUT"
# The debug profile: the generator needs the dev-dependencies (clap_mangen, clap_complete),
# and `cargo test` has usually built the library that way already.
cargo run --quiet --locked --example gen-docs -- "$WORK/docs" "$DOC_DATE"

echo "== staging $DIST"
install -D -m 0755 target/release/docker-registry "$DIST/bin/docker-registry"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$DIST/bin/docker-registry"
install -d "$DIST/systemd"
units=()
for unit in systemd/*.service systemd/*.socket systemd/*.timer; do
    [[ -e $unit ]] || continue
    install -m 0644 "$unit" "$DIST/systemd/"
    units+=("$(basename "$unit")")
done
install -D -m 0644 "$SYSCONFIG" "$DIST/etc/sysconfig/docker-registry"
install -D -m 0644 "$YAML" "$DIST/etc/docker-registry.yml"
install -D -m 0644 packaging/docker-registry.sysusers "$DIST/sysusers.conf"
install -D -m 0644 packaging/docker-registry.tmpfiles "$DIST/tmpfiles.conf"
install -d "$DIST/man"
for page in "$WORK"/docs/man/* packaging/man/*; do
    gzip -9n <"$page" >"$DIST/man/$(basename "$page").gz"
done
install -D -m 0644 "$WORK/docs/completions/docker-registry.bash" "$DIST/completions/bash/docker-registry"
install -D -m 0644 "$WORK/docs/completions/_docker-registry" "$DIST/completions/zsh/_docker-registry"
install -D -m 0644 "$WORK/docs/completions/docker-registry.fish" "$DIST/completions/fish/docker-registry.fish"
install -D -m 0644 packaging/debian/copyright "$DIST/doc/copyright"
# Example reverse-proxy configurations (etc/nginx/, from the authentication work), shipped
# as documentation when the repository has them.
examples=()
for f in etc/nginx/*; do
    [[ -f $f ]] || continue
    install -D -m 0644 "$f" "$DIST/doc/examples/nginx/$(basename "$f")"
    examples+=("nginx/$(basename "$f")")
done
# The example access file for htpasswd users (per-repository permissions).
if [[ -f etc/docker-registry-access.yml ]]; then
    install -D -m 0644 etc/docker-registry-access.yml "$DIST/doc/examples/docker-registry-access.yml"
    examples+=("docker-registry-access.yml")
fi

# Which units postinst enables: the service and timers. The socket is an alternative to the
# service (socket activation), so only an administrator enables it; the GC service is
# started by its timer.
enabled=() other=()
for unit in "${units[@]}"; do
    case $unit in
        docker-registry.service | *.timer) enabled+=("$unit") ;;
        *) other+=("$unit") ;;
    esac
done

echo "== deb"
DEB_ARCH=$(dpkg --print-architecture)
DEB_VERSION=$EPOCH:$VERSION-$RELEASE
tree=$WORK/deb
install -D -m 0755 "$DIST/bin/docker-registry" "$tree/usr/bin/docker-registry"
# The htpasswd helper under the name the package has always shipped (the binary looks at argv[0]).
ln -s docker-registry "$tree/usr/bin/docker-registry-htpasswd"
for unit in "${units[@]}"; do
    # Debian bookworm keeps units in /lib (the /usr merge is not finished for dpkg).
    install -D -m 0644 "$DIST/systemd/$unit" "$tree/lib/systemd/system/$unit"
done
install -D -m 0644 "$DIST/etc/sysconfig/docker-registry" "$tree/etc/sysconfig/docker-registry"
install -D -m 0644 "$DIST/etc/docker-registry.yml" "$tree/etc/docker-registry.yml"
install -D -m 0644 "$DIST/sysusers.conf" "$tree/usr/lib/sysusers.d/docker-registry.conf"
install -D -m 0644 "$DIST/tmpfiles.conf" "$tree/usr/lib/tmpfiles.d/docker-registry.conf"
for page in "$DIST"/man/*.gz; do
    name=$(basename "$page" .gz)
    install -D -m 0644 "$page" "$tree/usr/share/man/man${name##*.}/$name.gz"
done
install -D -m 0644 "$DIST/completions/bash/docker-registry" "$tree/usr/share/bash-completion/completions/docker-registry"
install -D -m 0644 "$DIST/completions/zsh/_docker-registry" "$tree/usr/share/zsh/vendor-completions/_docker-registry"
install -D -m 0644 "$DIST/completions/fish/docker-registry.fish" "$tree/usr/share/fish/vendor_completions.d/docker-registry.fish"
install -D -m 0644 "$DIST/doc/copyright" "$tree/usr/share/doc/$PKG/copyright"
for f in "${examples[@]}"; do
    install -D -m 0644 "$DIST/doc/examples/$f" "$tree/usr/share/doc/$PKG/examples/$f"
done
gzip -9n <packaging/debian/changelog >"$tree/usr/share/doc/$PKG/changelog.Debian.gz"
chmod 0644 "$tree/usr/share/doc/$PKG/changelog.Debian.gz"
install -D -m 0644 packaging/debian/lintian-overrides "$tree/usr/share/lintian/overrides/$PKG"

install -d -m 0755 "$tree/DEBIAN"
# dpkg-shlibdeps wants a source package's debian/control to read.
shlib=$WORK/shlibdeps
mkdir -p "$shlib/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$PKG" "$PKG" >"$shlib/debian/control"
depends=$(cd "$shlib" && dpkg-shlibdeps -O -e "$tree/usr/bin/docker-registry" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[[ -n $depends ]] || die "dpkg-shlibdeps found no library dependencies for the binary"
installed_size=$(du -sk --exclude=DEBIAN "$tree" | cut -f1)
sed -e "s|@DEB_VERSION@|$DEB_VERSION|" -e "s|@DEB_ARCH@|$DEB_ARCH|" \
    -e "s|@INSTALLED_SIZE@|$installed_size|" -e "s|@DEPENDS@|$depends|" \
    -e "s|@MAINTAINER@|$(sed -n 's/^ -- \(.*>\)  .*/\1/p' packaging/debian/changelog | head -n1)|" \
    -e "s|@HOMEPAGE@|https://docker-registry.example.org/|" \
    packaging/debian/control.in >"$tree/DEBIAN/control"
printf '/etc/sysconfig/docker-registry\n/etc/docker-registry.yml\n' >"$tree/DEBIAN/conffiles"
for script in preinst postinst prerm postrm; do
    sed -e "s|@UNITS_ENABLED@|${enabled[*]}|" -e "s|@UNITS_OTHER@|${other[*]}|" \
        -e "s|@UNITS_ALL@|${units[*]}|" \
        "packaging/debian/$script.in" >"$tree/DEBIAN/$script"
    chmod 0755 "$tree/DEBIAN/$script"
done
(cd "$tree" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) >"$tree/DEBIAN/md5sums"
chmod 0644 "$tree/DEBIAN/md5sums" "$tree/DEBIAN/control" "$tree/DEBIAN/conffiles"
deb=$OUT/${PKG}_${VERSION}-${RELEASE}_${DEB_ARCH}.deb
# dpkg-deb sorts the entries, and with SOURCE_DATE_EPOCH clamps their times to it.
SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH dpkg-deb --root-owner-group -Zxz --build "$tree" "$deb" >/dev/null

echo "== rpm"
rpmtop=$WORK/rpmbuild
mkdir -p "$rpmtop"/{BUILD,RPMS,SRPMS,SOURCES,SPECS}
# The spec lists these optional files through %files -f (rpm refuses an empty list).
extra_files=()
if ((${#examples[@]})); then
    for f in "${examples[@]}"; do
        echo "%doc %{_docdir}/%{name}/examples/$f"
    done >"$DIST/rpm-extra-files"
    extra_files=(--define "extra_files $DIST/rpm-extra-files")
fi
# rpm sorts the payload; the macros below take the build time and every file's time from
# SOURCE_DATE_EPOCH and fix the build host's name, the rest of the header's variable part.
SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH rpmbuild -bb --quiet "${extra_files[@]}" \
    --define "_topdir $rpmtop" \
    --define "distdir $DIST" \
    --define "enable_units ${enabled[*]}" \
    --define "all_units ${units[*]}" \
    --define "_buildhost docker-registry-build" \
    --define "use_source_date_epoch_as_buildtime 1" \
    --define "clamp_mtime_to_source_date_epoch 1" \
    packaging/rpm/docker-registry.spec
rpm_file=$(find "$rpmtop/RPMS" -name "$PKG-$VERSION-$RELEASE*.rpm" | head -n1)
[[ -n $rpm_file ]] || die "rpmbuild made no package"
cp "$rpm_file" "$OUT/"

echo "== done"
ls -l "$deb" "$OUT/$(basename "$rpm_file")"
