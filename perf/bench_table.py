#!/usr/bin/env python3
"""The per-layer ratio table of BENCHMARKS.md, from criterion's results.

Reads every `<target>/criterion/**/new/benchmark.json` + `estimates.json` and prints, for each pair below, the raw
primitive's median time, msec's median time and their ratio (msec / raw; 1.00 = free). Run by perf/bench-summary.sh.

    python3 perf/bench_table.py target/criterion
"""
import json
import os
import re
import sys

# (capability, group regex, raw function regex, msec function regexes). Groups and functions are criterion's ids.
PAIRS = [
    ("authn: JWT", r"jwt/(RS256|ES256|EdDSA)", r"jsonwebtoken::decode \(bare\)",
     [r"msec validator, uncached", r"msec validator, cached"]),
    ("authn: JWT layer", r"jwt/(RS256|ES256|EdDSA)", r"bare service alone \(no layer\)",
     [r"AuthnLayer \+ bare service, cached"]),
    ("authn: API key", r"apikey/verify", r"raw: .*", [r"ApiKeyAuthenticator, x-api-key, MemoryApiKeyStore, sha256"]),
    ("authn: introspection", r"introspection_cached_hit", r"raw: .*", [r"msec: .*"]),
    ("authn: revocation", r"denylist_check", r"raw: .*", [r"msec: .*"]),
    ("authn: outbound token", r"outbound_bearer_cached", r"raw .*", [r"BearerTokenLayer .*"]),
    ("core: policy", r"authorize", r"bare_service", [r"policy_\d+_routes_allow", r"policy_100_routes_deny.*"]),
    ("ratelimit", r"check", r"governor_check_key", [r"msec_local_check"]),
    ("ratelimit: layer", r"layer", r"governor_minimal_layer_with_headers", [r"ratelimit_layer_with_headers"]),
    ("validate", r"validate/(1KiB|64KiB)", r"serde_from_slice\+validate/\d+",
     [r"guard_scan/\d+", r"Valid<Json<T>>_extractor/\d+"]),
    ("crypto: seal", r"crypto_seal", r"ring/(64|1024|65536)", [r"msec/(64|1024|65536)"]),
    ("crypto: seal (random nonce)", r"crypto_seal", r"ring_random_nonce/(64|1024|65536)", [r"msec/(64|1024|65536)"]),
    ("crypto: open", r"crypto_open", r"ring/(64|1024|65536)", [r"msec/(64|1024|65536)"]),
    ("crypto: blind index", r"crypto_blind_index", r"ring_hmac_sha256", [r"msec_compute"]),
    ("tls: new connection", r"handshake_first_request", r"raw: .*", [r"msec_tls::serve .*"]),
    ("tls: identity", r"per_request_identity", r"raw: Arc<PeerIdentity> clone",
     [r"msec: read Arc<PeerIdentity> from request extensions"]),
    ("audit: events", r"audit_write_events", r"baseline .*", [r"msec .*"]),
    ("audit: layer", r"audit_layer_request", r"baseline .*", [r"msec .*"]),
]


def load(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            b = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            e = json.load(f)
        func = b["function_id"] or ""
        if b.get("value_str"):
            func = f"{func}/{b['value_str']}" if func else b["value_str"]
        out[(b["group_id"], func)] = e["median"]["point_estimate"]
    return out


def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def param(func):
    m = re.search(r"/(\d+)$", func)
    return m.group(1) if m else None


def main(root):
    data = load(root)
    groups = sorted({g for g, _ in data})
    print("| capability | group | raw primitive | raw | msec | msec | msec ÷ raw |")
    print("|---|---|---|---:|---|---:|---:|")
    for cap, group_re, raw_re, msec_res in PAIRS:
        for g in groups:
            if not re.fullmatch(group_re, g):
                continue
            funcs = [f for (gg, f) in data if gg == g]
            for raw in sorted(f for f in funcs if re.fullmatch(raw_re, f)):
                for msec_re in msec_res:
                    for m in sorted(f for f in funcs if re.fullmatch(msec_re, f)):
                        if param(raw) != param(m):
                            continue
                        r, t = data[(g, raw)], data[(g, m)]
                        print(f"| {cap} | `{g}` | {raw} | {fmt(r)} | {m} | {fmt(t)} | {t / r:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
