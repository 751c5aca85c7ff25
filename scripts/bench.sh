#!/usr/bin/env bash
# The standard benchmark (BENCHMARKS.md): starts the whole system (as `make run`
# does, on ports of its own), then drives it with `routerctl bench`:
#   1. max throughput, NATS inbox     2. max throughput, HTTP inbox
#   3. half load (RATE, 2,000 msgs/s) open loop, NATS   4. the same, HTTP
# Knobs: DURATION (default 20s), RATE (5000), CLIENTS (64), RUNS (which of
# nats-max,http-max,nats-rate,http-rate), OUT (results directory), NATS_SYNC_ALWAYS=1
# (fsync every JetStream write).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-20s}
RATE=${RATE:-2000}
CLIENTS=${CLIENTS:-64}
RUNS=${RUNS:-nats-max,http-max,nats-rate,http-rate}
OUT=${OUT:-bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
data=$(mktemp -d)

export INGEST_ADDR=127.0.0.1:18080 ROUTER_ADDR=127.0.0.1:18081 CAMS_ADDR=127.0.0.1:18001
export CAMS_API_URL=http://127.0.0.1:18001 DELIVERY_ALLOW_PRIVATE_NETWORKS=true
export LOG_LEVEL=${LOG_LEVEL:-warn} GOGC=${GOGC:-200} GOMEMLIMIT=${GOMEMLIMIT:-1GiB}
unset NATS_URL
./bin/msgrouter --data "$data" --nats-port 14223 ${NATS_SYNC_ALWAYS:+--nats-sync-always} > "$OUT/system.log" 2>&1 &
sys=$!
cleanup() { kill -INT "$sys" 2>/dev/null || true; wait "$sys" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT

for url in http://$INGEST_ADDR http://$ROUTER_ADDR http://$CAMS_ADDR; do
  for _ in $(seq 100); do
    curl -fsS "$url/health/ready" > /dev/null 2>&1 && break
    kill -0 "$sys" 2>/dev/null || { echo "the system did not start; see $OUT/system.log"; tail -5 "$OUT/system.log"; exit 1; }
    sleep 0.2
  done
done

ctl=(./bin/routerctl --router-url "http://$ROUTER_ADDR" --ingest-url "http://$INGEST_ADDR"
     --cams-url "http://$CAMS_ADDR" --nats-url nats://127.0.0.1:14223)
run() {
  local name=$1; shift
  case ",$RUNS," in *",$name,"*) ;; *) return 0 ;; esac
  echo "== $name: routerctl bench $*"
  "${ctl[@]}" bench --quiet --warmup 3s --duration "$DURATION" "$@" | tee "$OUT/$name.txt"

}
run nats-max  --inbox nats --clients "$CLIENTS"
run http-max  --inbox http --clients "$CLIENTS"
run nats-rate --inbox nats --rate "$RATE" --clients "$CLIENTS"
run http-rate --inbox http --rate "$RATE" --clients "$CLIENTS"
echo "results in $OUT"
