#!/usr/bin/env bash
# Instructions per operation of an `insns` driver, by callgrind (independent of machine load).
#
#   callgrind.sh <driver binary> <scenario>...
#
# Runs each scenario with N operations (env N, default 20000) and counts instructions only while the driver's
# `measured` function runs (setup, warm-up and one-off calibration excluded), divided by N.
set -euo pipefail
bin=$1
shift
n=${N:-20000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '%-28s %10s\n' scenario 'Ir/op'
for s in "$@"; do
    valgrind --tool=callgrind --collect-atstart=no '--toggle-collect=*measured*' \
        --callgrind-out-file="$out/cg.out" "$bin" "$s" "$n" >/dev/null 2>"$out/err" || {
        cat "$out/err" >&2
        exit 1
    }
    ir=$(grep -E '^(summary|totals):' "$out/cg.out" | head -1 | awk '{print $2}')
    awk -v s="$s" -v ir="$ir" -v n="$n" 'BEGIN { printf "%-28s %10.1f\n", s, ir / n }'
done
