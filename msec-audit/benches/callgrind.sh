#!/usr/bin/env bash
# Instructions per operation of the `insns` driver, by callgrind (independent of machine load).
#
#   callgrind.sh <driver binary> <scenario>...
#
# Single-threaded scenarios: instructions counted only while the driver's `measured` function runs (setup and
# warm-up excluded), divided by N (env N, default 20000).
# `emit_*` scenarios (a producer and the writer thread): every thread counted, run with N1 and N2 events (env,
# default 5000 and 25000); prints (Ir(N2) - Ir(N1)) / (N2 - N1), so start-up, signing and shutdown cancel out.
set -euo pipefail
bin=$1
shift
n=${N:-20000}
n1=${N1:-5000}
n2=${N2:-25000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
total() {
    valgrind --tool=callgrind "$@" --callgrind-out-file="$out/cg.out" >/dev/null 2>"$out/err" || {
        cat "$out/err" >&2
        exit 1
    }
    grep -E '^(summary|totals):' "$out/cg.out" | head -1 | awk '{print $2}'
}
printf '%-16s %10s\n' scenario 'Ir/op'
for s in "$@"; do
    case $s in
    emit_*)
        a=$(total "$bin" "$s" "$n1")
        b=$(total "$bin" "$s" "$n2")
        awk -v s="$s" -v a="$a" -v b="$b" -v n1="$n1" -v n2="$n2" 'BEGIN { printf "%-16s %10.1f\n", s, (b - a) / (n2 - n1) }'
        ;;
    *)
        ir=$(total --collect-atstart=no '--toggle-collect=*measured*' "$bin" "$s" "$n")
        awk -v s="$s" -v ir="$ir" -v n="$n" 'BEGIN { printf "%-16s %10.1f\n", s, ir / n }'
        ;;
    esac
done
