#!/usr/bin/env bash
# Creations per second the sandbox serves: wrk on loopback, keep-alive, POST /links with a form body.
# Usage: bench/sandbox-throughput.sh [SECONDS] [CONNECTIONS]   (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
connections=${2:-32}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 2; }
cargo build --release --quiet
port=$((20000 + RANDOM % 20000))
target/release/linkbatch sandbox --addr "127.0.0.1:$port" --seed 1 >/dev/null &
sandbox=$!
trap 'kill $sandbox 2>/dev/null' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/__sandbox/stats" >/dev/null && break; sleep 0.1; done
wrk -t2 -c"$connections" -d"${seconds}s" -s bench/create.lua "http://127.0.0.1:$port"
curl -s "http://127.0.0.1:$port/__sandbox/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(f"sandbox holds {s[\"links_held\"]} links; answers by status {s[\"requests\"]}; 429s {s[\"rate_limited\"]}")'
