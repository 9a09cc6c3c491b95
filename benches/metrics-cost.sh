#!/bin/sh
# What Prometheus metrics cost a manifest GET, in instructions: the release daemon under
# valgrind's callgrind, metrics off then on (--debug-addr 127.0.0.1:0 --metrics), one small
# image pushed, WARM GETs of its manifest by tag, then the counters zeroed and N more GETs
# over one keep-alive connection (one curl); the daemon's instructions (every thread) over
# those N, per GET, and the difference in percent. Instruction counts do not depend on what
# else the machine runs, unlike wall-clock rates (the issue's bound: metrics may cost at most
# 3 % of the manifest GET rate). A hardware counter (perf stat -e instructions) would do
# too where the machine has one; virtual machines often have none.
#
#   cargo build --release && benches/metrics-cost.sh [N]      # N = 2000 by default
#
# Needs valgrind and curl. Everything runs on 127.0.0.1; temp dirs are removed.
set -eu
N=${1:-2000}
WARM=${WARM:-100}
BIN=${BIN:-target/release/docker-registry}
[ -x "$BIN" ] || { echo "build it first: cargo build --release ($BIN)" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Runs one daemon; prints the instructions per GET.
measure() {
    mode=$1
    dir=$(mktemp -d)
    : > "$dir/empty.yml"
    : > "$dir/sysconfig"
    port=$(free_port)
    extra=""
    [ "$mode" = on ] && extra="--debug-addr 127.0.0.1:0 --metrics"
    # shellcheck disable=SC2086
    DOCKER_REGISTRY_CONFIG="$dir/empty.yml" valgrind --tool=callgrind --callgrind-out-file="$dir/cg.%p" \
        "$BIN" --config "$dir/empty.yml" --sysconfig "$dir/sysconfig" --storage-path "$dir/data" \
        --address 127.0.0.1 --port "$port" --log-level warn $extra 2>"$dir/log" &
    pid=$!
    base="http://127.0.0.1:$port"
    i=0
    until curl -sf "$base/v2/" >/dev/null; do
        i=$((i + 1)); [ $i -lt 600 ] || { echo "the daemon did not start: $(cat "$dir/log")" >&2; kill "$pid"; exit 1; }
        sleep 0.1
    done
    config='{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    cd_hex=$(printf %s "$config" | sha256sum | cut -d' ' -f1)
    curl -sf -X POST -H 'content-type: application/octet-stream' --data-binary "$config" \
        "$base/v2/cost/app/blobs/uploads/?digest=sha256:$cd_hex" >/dev/null
    manifest="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$cd_hex\",\"size\":${#config}},\"layers\":[]}"
    curl -sf -X PUT -H 'content-type: application/vnd.oci.image.manifest.v1+json' --data-binary "$manifest" \
        "$base/v2/cost/app/manifests/v1" >/dev/null
    url="$base/v2/cost/app/manifests/v1"
    gets() { n=$1; set --; k=0; while [ $k -lt "$n" ]; do set -- "$@" "$url"; k=$((k + 1)); done
             curl -sf -H 'accept: application/vnd.oci.image.manifest.v1+json' "$@" >/dev/null; }
    gets "$WARM"
    callgrind_control --zero "$pid" >/dev/null 2>&1
    gets "$N"
    callgrind_control --dump "$pid" >/dev/null 2>&1
    kill "$pid"; wait "$pid" 2>/dev/null || true
    # The dump holds what was counted since the zeroing (cg.PID.1; cg.PID is the exit's).
    total=0
    for f in "$dir"/cg.*.1; do
        t=$(sed -n 's/^summary: *//p; s/^totals: *//p' "$f" | head -1 | cut -d' ' -f1)
        total=$((total + ${t:-0}))
    done
    # KEEP=1 keeps the dumps for callgrind_annotate (named on stderr).
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $dir/cg.*.1 ($mode)" >&2; else rm -rf "$dir"; fi
    echo $((total / N))
}

off=$(measure off)
on=$(measure on)
echo "manifest GET by tag, $N GETs after $WARM to warm up, instructions of the daemon per GET (callgrind):"
echo "  metrics off: $off"
echo "  metrics on:  $on"
awk -v a="$off" -v b="$on" 'BEGIN { d = (b - a) * 100 / a; printf "  cost of metrics: %+.2f %% instructions per GET (bound: 3 %%): %s\n", d, (d <= 3 ? "met" : "MISSED") }'
