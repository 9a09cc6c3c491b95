#!/bin/sh
# Boots a real systemd (systemd-nspawn) with the gc timer and service installed next to a
# stand-in registry unit, and checks that `systemctl start docker-registry-gc.service`
# collects inside the running daemon: an orphan blob older than the grace period goes, a
# fresh one stays. Not part of CI (it needs a debootstrapped root, ~100 s to make once).
#
#   debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm ROOT MIRROR
#   tests/systemd/gc-units-nspawn.sh ROOT target/debug/docker-registry
#
# ROOT is copied, never modified. Prints RESULT=PASS or RESULT=FAIL and exits accordingly.
set -eu
base=$1 bin=$2
here=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /var/tmp/gc-nspawn.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -a "$base" "$work/root"
R=$work/root
cp "$bin" "$R/usr/bin/docker-registry"
cp "$here"/systemd/docker-registry-gc.service "$here"/systemd/docker-registry-gc.timer "$R/etc/systemd/system/"
cat > "$R/etc/systemd/system/docker-registry.service" <<'EOF'
[Unit]
Description=stand-in for the packaged docker-registry unit
[Service]
ExecStart=/usr/bin/docker-registry serve --address 127.0.0.1 --port 5000
StateDirectory=docker-registry
[Install]
WantedBy=multi-user.target
EOF
cat > "$R/usr/local/bin/gc-check" <<'EOF'
#!/bin/sh
exec > /out/log 2>&1
S=/var/lib/docker-registry/docker-registry-admin.sock
for i in $(seq 1 100); do [ -S $S ] && break; sleep 0.1; done
blob() {
  printf '%s' "$1" > /tmp/b; h=$(sha256sum /tmp/b | cut -d' ' -f1)
  d=/var/lib/docker-registry/docker/registry/v2/blobs/sha256/$(echo $h | cut -c1-2)/$h
  mkdir -p $d && cp /tmp/b $d/data && echo $d/data
}
old=$(blob 'orphan content'); touch -d '2 hours ago' "$old"
new=$(blob 'fresh content')
systemctl enable --now docker-registry-gc.timer
systemctl list-timers --all --no-pager | grep -q docker-registry-gc || echo "timer not listed"
systemctl start docker-registry-gc.service && started=yes || started=no
journalctl -u docker-registry-gc.service --no-pager | tail -8
if [ $started = yes ] && [ ! -e "$old" ] && [ -e "$new" ]; then echo RESULT=PASS; else echo RESULT=FAIL; fi
systemctl poweroff
EOF
chmod +x "$R/usr/local/bin/gc-check"
cat > "$R/etc/systemd/system/gc-check.service" <<'EOF'
[Unit]
After=docker-registry.service
Wants=docker-registry.service
[Service]
Type=oneshot
ExecStart=/usr/local/bin/gc-check
[Install]
WantedBy=multi-user.target
EOF
chroot "$R" systemctl enable docker-registry.service gc-check.service >/dev/null 2>&1
mkdir -p "$work/out"
timeout 120 systemd-nspawn -D "$R" -b --register=no --keep-unit --console=pipe \
  --bind="$work/out:/out" >"$work/nspawn.log" 2>&1 || true
cat "$work/out/log" 2>/dev/null || { echo "no log; nspawn said:"; tail -20 "$work/nspawn.log"; }
grep -q RESULT=PASS "$work/out/log"
