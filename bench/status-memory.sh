#!/usr/bin/env bash
# `status` beside a resume of the same job: a 1M-row catalog with [deliver], every row's link in the ledger
# and every first message due. Prints each command's peak memory (GNU time's maximum resident set) and wall
# time. `status` counts the messages due without writing them, so it should stay within the resume's peak.
#
#   bench/status-memory.sh               about 1 minute on 2 cores, after the release build
#   BIN=path bench/status-memory.sh      another build's linkbatch (the helper and the inputs are this tree's)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin linkbatch --example bench-helper
bin=${BIN:-target/release/linkbatch} helper=target/release/examples/bench-helper
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
OMISE_SECRET_KEY="skey_test_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
export OMISE_SECRET_KEY CI=true
"$helper" input 1000000 "$work/scale.csv"
# The catalog job, with a message per link to the shop's own address.
cat jobs/catalog-import.toml - >"$work/job.toml" <<'TOML'

[deliver]
to = "orders@example.co.th"
from = "Shop <shop@example.co.th>"
subject = "{name}: {amount_display}"
text = "Pay for {name} here: {payment_uri}"
smtp = "smtps://smtp.example.co.th:465"
TOML
"$helper" ledger "$work/job.toml" "$work/scale.csv" "$work/scale.ledger.jsonl" http://127.0.0.1:1 "$OMISE_SECRET_KEY" 2>/dev/null
measure() { /usr/bin/time -f "%M %e" -o "$work/time" "$@" >"$work/out" 2>&1 || true; read -r kb secs <"$work/time"; echo "$((kb / 1024)) MB, ${secs} s"; }
common=(--input "$work/scale.csv" --ledger "$work/scale.ledger.jsonl")
for round in 1 2 3; do
    echo "status $round: $(measure "$bin" status "$work/job.toml" "${common[@]}")"
    grep -m1 'messages:' "$work/out" || { echo "status said:"; cat "$work/out"; }
    cp "$work/scale.ledger.jsonl" "$work/resume.ledger.jsonl"
    echo "resume $round: $(measure "$bin" run "$work/job.toml" --input "$work/scale.csv" --ledger "$work/resume.ledger.jsonl" \
        --output "$work/out.csv" --base-url http://127.0.0.1:1 -q)"
done
