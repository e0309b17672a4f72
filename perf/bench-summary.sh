#!/usr/bin/env bash
# Runs every per-layer criterion benchmark briefly and prints the ratio table of BENCHMARKS.md
# (raw primitive beside the msec layer, from the same run). Redis on 127.0.0.1:6379 is used where a bench needs it.
#
#   perf/bench-summary.sh                    # ~15 min on 2 cores after the release build
#   MEASURE=5 perf/bench-summary.sh          # longer measurement per function (seconds)
set -euo pipefail
cd "$(dirname "$0")/.."
MEASURE=${MEASURE:-2}
ARGS=(-- --warm-up-time 1 --measurement-time "$MEASURE")
run() { cargo bench --quiet "$@" "${ARGS[@]}" 2>&1 | grep -E "^[a-zA-Z_/<>: (),+.-]+ *time:" || true; }
run -p msec --bench authorize
run -p msec-authn --all-features --bench jwt --bench apikey --bench introspection --bench outbound
run -p msec-ratelimit --all-features --bench ratelimit
run -p msec-validate --all-features --bench validate
run -p msec-crypto --bench crypto
run -p msec-tls --all-features --bench handshake
run -p msec-audit --bench audit
# Paired harnesses: the two sides alternate round by round, so both see the same load (the numbers to quote on a
# shared machine).
echo "--- paired: msec-authn jwt_ratio";       cargo bench --quiet -p msec-authn --bench jwt_ratio 2>/dev/null
echo "--- paired: msec-crypto ratio";          cargo bench --quiet -p msec-crypto --bench ratio 2>/dev/null
echo "--- paired: msec-tls handshake_paired";  MSEC_BENCH_ROUNDS=${MSEC_BENCH_ROUNDS:-300} cargo bench --quiet -p msec-tls --all-features --bench handshake_paired 2>/dev/null
echo "--- criterion medians"
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
python3 perf/bench_table.py "$TARGET_DIR/criterion"
