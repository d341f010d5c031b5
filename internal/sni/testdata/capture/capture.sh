#!/bin/bash
# Recaptures the hellos in ../hellos. Needs Go, and from Debian's packages
# openssl, curl and chromium (apt-get install -y openssl curl chromium).
# Run from the repository root: bash internal/sni/testdata/capture/capture.sh
set -eu
dir=internal/sni/testdata/hellos
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/capture" ./internal/sni/testdata/capture

for preset in mlkem x25519 nosni; do
	"$tmp/capture" -go "$preset" -out "$dir/go-$preset.bin"
done

# serve NAME starts capture on a fixed port and returns once it listens;
# capture takes one connection, saves its hello and exits.
port=18443
serve() {
	"$tmp/capture" -addr "127.0.0.1:$port" -out "$dir/$1.bin" 2>"$tmp/$1.log" &
	capture=$!
	until grep -q listening "$tmp/$1.log"; do sleep 0.1; done
}

serve openssl
openssl s_client -connect "127.0.0.1:$port" -servername svc.example.test \
	-alpn h2,http/1.1 </dev/null >/dev/null 2>&1 || true
wait "$capture"

serve curl
curl -sk --resolve "svc.example.test:$port:127.0.0.1" "https://svc.example.test:$port/" \
	>/dev/null 2>&1 || true
wait "$capture"

serve chromium
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	--disable-background-networking --disable-component-update --disable-sync \
	--user-data-dir="$tmp/profile" --host-resolver-rules="MAP * 127.0.0.1" \
	"https://svc.example.test:$port/" >/dev/null 2>&1 &
browser=$!
wait "$capture"
kill "$browser"
wait "$browser" || true
