#!/usr/bin/env bash
# Generates the test key pairs checked in beside this script. They protect nothing: they exist so that tests,
# benches and fixtures minted by independent JOSE libraries (see ../fixtures) agree on the same keys.
# Re-running replaces every key and invalidates the committed fixtures; run ../fixtures/mint.py afterwards.
set -euo pipefail
cd "$(dirname "$0")"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa-1.pem
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa-2.pem
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa-pss.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec-p256.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out ec-p384.pem
openssl genpkey -algorithm ED25519 -out ed25519.pem
head -c 48 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=' > hs256.secret
for k in rsa-1 rsa-2 rsa-pss ec-p256 ec-p384 ed25519; do
  openssl pkey -in "$k.pem" -pubout -out "$k.pub.pem"
done
chmod 0644 ./*.pem
