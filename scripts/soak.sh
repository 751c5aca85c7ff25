#!/usr/bin/env bash
# Soak: starts the system like bench.sh, then runs MINUTES one-minute open-loop bench
# runs at RATE msgs/s back to back, and after each prints the p99 accept→delivery,
# the router process's resident memory and the size of the outbox tables.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-10}
RATE=${RATE:-2000}
data=$(mktemp -d)
export INGEST_ADDR=127.0.0.1:18080 ROUTER_ADDR=127.0.0.1:18081 CAMS_ADDR=127.0.0.1:18001
export CAMS_API_URL=http://127.0.0.1:18001 DELIVERY_ALLOW_PRIVATE_NETWORKS=true
export LOG_LEVEL=warn GOGC=${GOGC:-200} GOMEMLIMIT=${GOMEMLIMIT:-1GiB}
unset NATS_URL
./bin/msgrouter --data "$data" --nats-port 14223 > "$data/system.log" 2>&1 &
sys=$!
trap 'kill -INT $sys 2>/dev/null; wait $sys 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -fsS "http://$ROUTER_ADDR/health/ready" >/dev/null 2>&1 && curl -fsS "http://$INGEST_ADDR/health/ready" >/dev/null 2>&1 && break; sleep 0.2; done
ctl=(./bin/routerctl --router-url "http://$ROUTER_ADDR" --ingest-url "http://$INGEST_ADDR" --cams-url "http://$CAMS_ADDR" --nats-url nats://127.0.0.1:14223)
db=${DATABASE_URL:-}
printf '%-6s %10s %10s %10s %10s %12s\n' minute delivered/s p99_ms p999_ms rss_MiB outbox_MiB
for m in $(seq "$MINUTES"); do
  out=$("${ctl[@]}" --json bench --quiet --inbox nats --rate "$RATE" --duration 60s --warmup 0s)
  rss=$(awk '/VmRSS/ {printf "%.0f", $2/1024}' /proc/$sys/status)
  outbox=$(psql "$db" -Atc "select round(pg_total_relation_size('outbox')/1048576.0, 1)")
  python3 -c '
import json, sys
r = json.loads(sys.argv[4])
a = r["latency"]["acceptToDelivery"]
dps, p99, p999 = r["deliveredPerSec"], a["p99Ms"], a["p999Ms"]
print(f"{sys.argv[1]:<6} {dps:>10.0f} {p99:>10.1f} {p999:>10.1f} {sys.argv[2]:>10} {sys.argv[3]:>12}")
' "$m" "$rss" "$outbox" "$out"
done
