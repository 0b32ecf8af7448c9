#!/usr/bin/env bash
# The oversell window of `[lifecycle] capacity` (issue 30): a tier with capacity 30 paid 40 times through
# the sandbox at 2 payments a second, with `linkbatch retire` every 5 s beside it, three times with the
# retires starting at another moment of the payments. Prints, for each, the payments that landed (the
# sandbox answered 200) and how many of them were past capacity, then whether the output says sold_out.
# Needs curl and python3; about 70 s.
#
#   bench/oversell.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin linkbatch
bin=$PWD/target/release/linkbatch
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
export OMISE_SECRET_KEY=skey_test_oversell CI=true

for start in 0 1.7 3.3; do
    port=$((20000 + RANDOM % 30000))
    "$bin" sandbox --addr "127.0.0.1:$port" --seed 1 >/dev/null 2>&1 &
    pids+=($!)
    base="http://127.0.0.1:$port"
    for _ in $(seq 100); do curl -sf "$base/__sandbox/stats" >/dev/null && break; sleep 0.05; done
    printf 'event,tier,price,currency,capacity\nGala,Standard,500.00,thb,30\n' >"$work/tickets.csv"
    {
        printf 'name = "oversell"\n[api]\nkind = "links"\n[input]\npath = "%s"\nkey = "{event}-{tier}"\n' "$work/tickets.csv"
        printf '[link]\namount = "{price}"\namount_unit = "major"\ncurrency = "{currency}"\ntitle = "{event} {tier}"\ndescription = "{event} {tier}"\n'
        printf 'multiple = true\n[output]\npath = "%s"\n[lifecycle]\ncapacity = "{capacity}"\n' "$work/out-$start.csv"
    } >"$work/job.toml"
    files=(--base-url "$base" --ledger "$work/ledger-$start.jsonl" -q)
    "$bin" run "$work/job.toml" "${files[@]}"
    link=$(python3 -c "import csv,sys; print(next(csv.DictReader(open(sys.argv[1])))['link_id'])" "$work/out-$start.csv")
    # Payments at 2/s, each answer's status kept.
    (for _ in $(seq 40); do
        curl -s -o /dev/null -w '%{http_code}\n' -X POST "$base/__sandbox/links/$link/pay" >>"$work/paid-$start"
        sleep 0.5
    done) &
    payer=$!
    sleep "$start"
    while kill -0 "$payer" 2>/dev/null; do
        "$bin" retire "$work/job.toml" "${files[@]}" || true
        sleep 5
    done
    wait "$payer" || true
    "$bin" retire "$work/job.toml" "${files[@]}"
    landed=$(grep -c '^200$' "$work/paid-$start" || true)
    reason=$(python3 -c "import csv,sys; print(next(csv.DictReader(open(sys.argv[1])))['retired_reason'])" "$work/out-$start.csv")
    echo "retires from ${start}s: $landed of 40 payments landed, $((landed - 30)) past capacity 30; output: $reason"
    kill "${pids[-1]}" 2>/dev/null || true
done
