#!/usr/bin/env bash
# How often each command opens the input, counted by strace on the 24-row monthly job against a standalone
# sandbox and its mail catcher: run --deliver, deliver --remind, refresh and status.
#
#   bench/input-opens.sh               about 20 seconds after the build (apt-get install strace curl)
#   BIN=path bench/input-opens.sh      another build's linkbatch
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${BIN:-}" ] || cargo build --release --quiet --bin linkbatch
bin=${BIN:-target/release/linkbatch}
work=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
"$bin" sandbox --seed 7 --addr "127.0.0.1:$port" --smtp-addr "127.0.0.1:$((port + 1))" >"$work/sandbox.log" 2>&1 &
sandbox=$!
trap 'kill "$sandbox" 2>/dev/null; rm -rf "$work"' EXIT
until curl -sf "http://127.0.0.1:$port/__sandbox/stats" >/dev/null; do sleep 0.2; done
# Any skey_test_ key is a test account to the sandbox: one made for this run.
export OMISE_SECRET_KEY="skey_test_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
job=(jobs/monthly-subscriptions.toml --var billing_month=2026-12 --ledger "$work/trial.jsonl")
api=(--base-url "http://127.0.0.1:$port" --limit 50/s --output "$work/trial.csv")
mail=(--smtp "smtp://127.0.0.1:$((port + 1))")
opens() {
    strace -f -e trace=openat -o "$work/trace" "$bin" "$@" >/dev/null 2>&1 || true
    echo "$(grep -c 'subscriptions.csv' "$work/trace") opens: $1 $(printf '%s ' "${@:2}" | grep -o -- '--remind\|--deliver' || true)"
}
opens run "${job[@]}" "${api[@]}" "${mail[@]}" --deliver
opens deliver "${job[@]}" "${api[@]}" "${mail[@]}" --remind
opens refresh "${job[@]}" "${api[@]}"
opens status "${job[@]}"
