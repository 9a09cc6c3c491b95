#!/usr/bin/env bash
# Runs every fuzz target for a bounded time, on the stable toolchain: tests/run-all.sh calls
# it, and it is the way to fuzz longer by hand (`fuzz/run.sh 300` gives each target 5 min;
# `fuzz/run.sh 60 token` one target). Seeds come from fuzz/corpus/<target> (kept in the
# repository, never written to); what a run discovers goes to target/fuzz/corpus/<target>
# and is reused by the next run on the same checkout. A crash, a panic, a timeout or a
# memory blow-up fails the run and leaves its input in target/fuzz/artifacts/<target>/:
# replay it with `target/debug/<target> FILE`, then make it a unit test next to the code.
#
# Coverage instrumentation is libFuzzer's (the flags `cargo fuzz` passes, all stable),
# added by fuzz/rustc-instrument to our two crates only, so the dependencies are the very
# artifacts `cargo build` made for the tests and only the registry and the targets rebuild.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-7}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=(manifest names ranges htpasswd sysconfig config_yaml token)
fi

# Optimised (the YAML parser's generic code is compiled into our crate, and unoptimised it
# runs ten times slower), with overflow checks kept.
RUSTC_WORKSPACE_WRAPPER=$PWD/fuzz/rustc-instrument \
    cargo build --quiet --package docker-registry-fuzz --bins \
    --config 'profile.dev.package.docker-registry.opt-level=2' \
    --config 'profile.dev.package.docker-registry-fuzz.opt-level=2'

status=0
for t in "${targets[@]}"; do
    found=target/fuzz/corpus/$t artifacts=target/fuzz/artifacts/$t
    mkdir -p "$found" "$artifacts"
    log=target/fuzz/$t.log
    # -timeout: one input taking a second is a hang (the slowest seed takes milliseconds);
    # -rss_limit_mb: a few hundred MB from one input is a blow-up, not a configuration.
    if target/debug/"$t" -max_total_time="$seconds" -timeout=1 -rss_limit_mb=512 \
        -max_len=16384 -print_final_stats=1 -artifact_prefix="$artifacts/" \
        "$found" fuzz/corpus/"$t" >"$log" 2>&1; then
        runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
        rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")
        echo "fuzz $t: ${runs:-?} inputs in ${seconds}s (${rate:-?}/s), no failure"
    else
        status=1
        echo "fuzz $t: FAILED; the input is in $artifacts/, the log in $log:"
        grep -E -A 30 "panicked|ERROR: libFuzzer|SUMMARY" "$log" | head -60 || tail -n 30 "$log"
    fi
done
exit $status
