#!/usr/bin/env bash
# Instructions per /v1/hello request of axum_api (callgrind: all server threads, user space), on one reused ES256
# token after a warm-up; the dump is kept for callgrind_annotate.
#
#   perf/instructions.sh                       # this checkout's release axum_api, 2 000 requests
#   N=5000 perf/instructions.sh path/to/axum_api label
#
# Needs valgrind (Debian package `valgrind`) and python3. BENCHMARKS.md ("Where the time goes") quotes it.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2000}
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN=${1:-$TARGET_DIR/release/examples/axum_api}
LABEL=${2:-axum_api}
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
cargo build --quiet --release -p msec-test-support --bin perf-issuer
[ -n "${1:-}" ] || cargo build --quiet --release --example axum_api
ISSUER="$TARGET_DIR/release/perf-issuer"
W=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"' EXIT
"$ISSUER" es256 3210 "$W/tokens" 10 > "$W/issuer.log" &
PIDS+=($!)
for _ in $(seq 1 600); do grep -q ready "$W/issuer.log" 2>/dev/null && break; sleep 0.5; done
MSEC_ADDR=127.0.0.1:3010 MSEC_ISSUER=http://127.0.0.1:3210 MSEC_JWKS_URL=http://127.0.0.1:3210/jwks.json \
  MSEC_INSECURE_HTTP_JWKS=1 MSEC_AUDIENCE=orders-api MSEC_AUDIT_DIR="$W/audit" \
  MSEC_KEYRING="$W/keyring.json" MSEC_RATE_PER_MINUTE=1000000000 MSEC_IP_RATE_PER_MINUTE=1000000000 \
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$W/cg.%p" "$BIN" > "$W/api.log" 2>&1 &
VPID=$!
PIDS+=($VPID)
for _ in $(seq 1 600); do curl -fs -o /dev/null http://127.0.0.1:3010/healthz && break; sleep 0.5; done
TOKEN=$(head -1 "$W/tokens")
requests() {
  python3 - "$1" "$TOKEN" <<'PY'
import http.client, sys
n, tok = int(sys.argv[1]), sys.argv[2]
c = http.client.HTTPConnection("127.0.0.1", 3010)
for _ in range(n):
    c.request("GET", "/v1/hello", headers={"authorization": "Bearer " + tok})
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
PY
}
requests 300
sleep 1
callgrind_control -z "$VPID" > /dev/null
requests "$N"
sleep 1
callgrind_control -d "$VPID" > /dev/null
sleep 1
DUMP=$(ls "$W"/cg.*.1)
TOTAL=$(grep -E "^(summary|totals):" "$DUMP" | tail -1 | awk '{print $2}')
mkdir -p perf/results
cp "$DUMP" "perf/results/callgrind-$LABEL.out"
echo "$LABEL: $((TOTAL / N)) instructions per request (dump: perf/results/callgrind-$LABEL.out)"
