#!/usr/bin/env bash
# The .rpm's scriptlets for real: installs it with rpm (Debian's rpm, `--nodeps` because that
# rpm database knows none of Debian's packages), reinstalls it over an edited configuration,
# and erases it, checking the user, the data directory, %config(noreplace) and the
# %systemd_* steps. Run by packaging/test.sh inside a throwaway container.
#
#   RESULTS=FILE packaging/test-rpm.sh RPM
set -euo pipefail

RPM=$1
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=packaging/testlib.sh
source "$ROOT_DIR/packaging/testlib.sh"

DATA=/var/lib/docker-registry
WANTS=/etc/systemd/system/multi-user.target.wants/docker-registry.service

check "rpm -ivh installs the package (scriptlets run)" rpm -ivh --nodeps "$RPM"
check "rpm -V: installed files match the package" rpm -V --nodeps docker-registry
check "%pre created the docker-registry user" getent passwd docker-registry
check "$DATA is owned by docker-registry, mode 750" \
    test "$(stat -c '%U:%G %a' "$DATA")" = "docker-registry:docker-registry 750"
check "the binary runs" /usr/bin/docker-registry --version
check "the configuration is valid for the service user" \
    setpriv --reuid=docker-registry --regid=docker-registry --init-groups \
    env -i PATH=/usr/bin:/bin STATE_DIRECTORY=$DATA /usr/bin/docker-registry config --check
# %systemd_post applies the distribution's preset policy; Debian's enables every unit.
check "%post applied the preset (Debian's policy: enabled)" test -L "$WANTS"

echo "# edited by the rpm test" >>/etc/sysconfig/docker-registry
check "rpm -Uvh --replacepkgs reinstalls over the edited configuration" rpm -Uvh --nodeps --replacepkgs "$RPM"
check "%config(noreplace): the edited sysconfig is kept" grep -q '^# edited by the rpm test' /etc/sysconfig/docker-registry
touch "$DATA/kept-by-erase"
chown docker-registry:docker-registry "$DATA/kept-by-erase"

check "rpm -e erases the package" rpm -e docker-registry
check "%preun disabled the unit" test ! -e "$WANTS"
check "erase: the binary is gone" test ! -e /usr/bin/docker-registry
check "erase: the data is kept" test -f "$DATA/kept-by-erase"
check "erase: the edited sysconfig is saved as .rpmsave" test -f /etc/sysconfig/docker-registry.rpmsave
check "erase: the unedited yml is removed" test ! -e /etc/docker-registry.yml
