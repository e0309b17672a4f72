#!/usr/bin/env bash
# Whole-stack load test (issue 10): in one run, interleaved round by round,
#   bare   GET /bare/hello on axum_api (no msec layer at all),
#   msec   GET /v1/hello on axum_api (the whole stack: audit, firewall, client IP, rate limits, JWT, policy)
#          with one token reused by the client, and with a new token on every request,
#   peer   GET /v1/hello on perf/peer-stack (jwt-authorizer + tower_governor), same tokens,
# for RS256 and ES256 tokens minted by msec-test-support's perf-issuer (which also serves the JWKS).
# Prints a table, writes perf/results/<date>.csv + .md and perf/results/whole-stack.svg.
#
#   perf/run.sh                    # defaults: 3 rounds of 8 s per target, 64 connections, 2 wrk threads
#   ROUNDS=5 DURATION=15s CONNS=128 perf/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
NEW_DURATION=${NEW_DURATION:-4s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ALGS=${ALGS:-"rs256 es256"}
OUT=perf/results
mkdir -p "$OUT"

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)"
  if [ "$(id -u)" = 0 ]; then apt-get install -y -q wrk >/dev/null; else sudo apt-get install -y -q wrk >/dev/null; fi
fi

echo "building (release)"
cargo build --quiet --release --example axum_api
cargo build --quiet --release -p msec-test-support --bin perf-issuer
cargo build --quiet --release --manifest-path perf/peer-stack/Cargo.toml
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
API="$TARGET_DIR/release/examples/axum_api"
ISSUER="$TARGET_DIR/release/perf-issuer"
PEER="perf/peer-stack/target/release/msec-peer-stack"

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

wait_http() { for _ in $(seq 1 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; echo "not up: $1" >&2; exit 1; }

# wrk <url> [extra args] -> "requests_per_second p99_ms"
measure() {
  local url=$1; shift
  local out
  out=$(wrk -t "$THREADS" -c "$CONNS" --latency "$@" "$url")
  if echo "$out" | grep -q "Non-2xx"; then echo "$out" >&2; echo "non-2xx answers from $url" >&2; exit 1; fi
  echo "$out" | awk '
    /Requests\/sec/ { rps = $2 }
    $1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us/, "", v); p = v / 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v); p = v } else { sub(/s/, "", v); p = v * 1000 } }
    /requests in/ { n = $1 }
    END { printf "%s %.3f %s\n", rps, p, n }'
}

CSV="$OUT/$(date +%Y-%m-%d).csv"
echo "alg,scenario,round,requests_per_second,p99_ms,requests" > "$CSV"
for alg in $ALGS; do
  echo "== $alg"
  ntok=120000
  "$ISSUER" "$alg" 3200 "$WORK/tokens-$alg" "$ntok" > "$WORK/issuer.log" &
  PIDS+=($!)
  for _ in $(seq 1 600); do grep -q ready "$WORK/issuer.log" 2>/dev/null && break; sleep 0.5; done
  rm -rf "$WORK/data"; mkdir -p "$WORK/data"
  MSEC_ADDR=127.0.0.1:3000 MSEC_ISSUER=http://127.0.0.1:3200 MSEC_JWKS_URL=http://127.0.0.1:3200/jwks.json \
    MSEC_INSECURE_HTTP_JWKS=1 MSEC_AUDIENCE=orders-api MSEC_AUDIT_DIR="$WORK/data/audit" \
    MSEC_KEYRING="$WORK/data/keyring.json" MSEC_RATE_PER_MINUTE=1000000000 MSEC_IP_RATE_PER_MINUTE=1000000000 \
    RUST_LOG=warn "$API" > "$WORK/api.log" 2>&1 &
  PIDS+=($!)
  PEER_ADDR=127.0.0.1:3100 PEER_JWKS_URL=http://127.0.0.1:3200/jwks.json PEER_ISSUER=http://127.0.0.1:3200 \
    PEER_AUDIENCE=orders-api "$PEER" > "$WORK/peer.log" 2>&1 &
  PIDS+=($!)
  wait_http http://127.0.0.1:3000/healthz
  wait_http http://127.0.0.1:3100/bare/hello
  token=$(head -1 "$WORK/tokens-$alg")
  auth="authorization: Bearer $token"
  # Warm-up: keys fetched, caches filled, connections made.
  wrk -t1 -c4 -d1s -H "$auth" http://127.0.0.1:3000/v1/hello >/dev/null
  wrk -t1 -c4 -d1s -H "$auth" http://127.0.0.1:3100/v1/hello >/dev/null
  for r in $(seq 1 "$ROUNDS"); do
    for s in bare msec_cached peer_cached; do
      case $s in
        bare) m=$(measure http://127.0.0.1:3000/bare/hello -d "$DURATION") ;;
        msec_cached) m=$(measure http://127.0.0.1:3000/v1/hello -d "$DURATION" -H "$auth") ;;
        peer_cached) m=$(measure http://127.0.0.1:3100/v1/hello -d "$DURATION" -H "$auth") ;;
      esac
      echo "$alg,$s,$r,${m// /,}" >> "$CSV"
      printf '  round %s %-12s %s\n' "$r" "$s" "$m"
    done
    for s in msec_new_token peer_new_token; do
      port=$([ "$s" = msec_new_token ] && echo 3000 || echo 3100)
      m=$(TOKENS="$WORK/tokens-$alg" WRK_THREADS=$THREADS measure "http://127.0.0.1:$port/v1/hello" -d "$NEW_DURATION" -s perf/new-token.lua)
      n=${m##* }
      [ "$n" -le "$ntok" ] || echo "  note: $s sent $n requests for $ntok tokens; some tokens were reused" >&2
      echo "$alg,$s,$r,${m// /,}" >> "$CSV"
      printf '  round %s %-12s %s\n' "$r" "$s" "$m"
    done
  done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
done

python3 perf/summarize.py "$CSV" "$OUT/whole-stack.svg" | tee "${CSV%.csv}.md"
