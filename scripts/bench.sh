#!/usr/bin/env bash
# The standard benchmark (BENCHMARKS.md, issue 11): the system as production runs it —
# separate processes from bin/ (ingest, router, cams) on a nats-server of its own and
# a fresh Postgres database — measured stage by stage with `routerctl bench --stage`:
#   drain   a backlog of COUNT messages preloaded into JetStream with no router, then
#           a router started and timed until the last delivery: NATS and HTTP inbox,
#           for each agent count in DRAIN_AGENTS (1, AGENTS and 256);
#   all     the whole pipeline, HTTP ingest, CLIENTS in flight, closed loop: NATS and
#           HTTP inbox; batches of BATCH offered at BATCH_RATE (open loop); direct
#           JetStream producers offered DIRECT_RATE; single messages offered at
#           OPEN_RATE (open loop: the latency target);
#   ingest  HTTP → JetStream → 202 with the router stopped: single and BATCH.
# Every run prints its own table and CPU budget (µs of CPU per message for each
# process); the end prints one stage table of all runs.
# Knobs: STAGES (drain,all,ingest), DURATION (20s), WARMUP (3s), COUNT (100000),
# CLIENTS (64), AGENTS (16), DRAIN_AGENTS ("1 $AGENTS 256"), BATCH (100), BATCH_RATE (10000 msgs/s offered in batches), OPEN_RATE (5000 msgs/s), DIRECT_RATE (15000 msgs/s), OUT (results directory), PPROF=1 (serve
# pprof: router on 127.0.0.1:16061, ingest on :16062), NATS_SERVER (the nats-server
# binary; default from PATH, else /usr/sbin/nats-server), NATS_PORT, INGEST_ADDR,
# ROUTER_ADDR, CAMS_ADDR (to run beside another bench). Needs createdb/dropdb and a
# Postgres that accepts the current user (PGHOST/PGPORT/PGUSER).
set -euo pipefail
cd "$(dirname "$0")/.."
STAGES=${STAGES:-drain,all,ingest}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-3s}
COUNT=${COUNT:-100000}
CLIENTS=${CLIENTS:-64}
AGENTS=${AGENTS:-16}
DRAIN_AGENTS=${DRAIN_AGENTS:-1 $AGENTS 256}
BATCH=${BATCH:-100}
BATCH_RATE=${BATCH_RATE:-10000}
OPEN_RATE=${OPEN_RATE:-5000}
DIRECT_RATE=${DIRECT_RATE:-15000}
OUT=${OUT:-bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
NATS_PORT=${NATS_PORT:-14231}
NATS_SERVER=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
data=$(mktemp -d)
db=msgrouter_bench_$$
summary="$OUT/summary.tsv"
: > "$summary"

export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432}
export DATABASE_URL="host=$PGHOST port=$PGPORT dbname=$db sslmode=disable${PGUSER:+ user=$PGUSER}"
export NATS_URL=nats://127.0.0.1:$NATS_PORT
export INGEST_ADDR=${INGEST_ADDR:-127.0.0.1:18090} ROUTER_ADDR=${ROUTER_ADDR:-127.0.0.1:18091} CAMS_ADDR=${CAMS_ADDR:-127.0.0.1:18011}
export CAMS_API_URL=http://$CAMS_ADDR DELIVERY_ALLOW_PRIVATE_NETWORKS=true
export LOG_LEVEL=${LOG_LEVEL:-warn} GOGC=${GOGC:-200} GOMEMLIMIT=${GOMEMLIMIT:-1GiB}

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  dropdb --if-exists "$db" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

createdb "$db"
"$NATS_SERVER" -js -sd "$data/jetstream" -a 127.0.0.1 -p "$NATS_PORT" > "$OUT/nats-server.log" 2>&1 &
nats_pid=$!; pids+=("$nats_pid")
for _ in $(seq 150); do
  (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break
  kill -0 "$nats_pid" 2>/dev/null || { echo "nats-server did not start; see $OUT/nats-server.log"; tail -5 "$OUT/nats-server.log"; exit 1; }
  sleep 0.1
done

wait_ready() { # url pid log
  for _ in $(seq 150); do
    curl -fsS "$1/health/ready" > /dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || { echo "a process did not start; see $3"; tail -5 "$3"; exit 1; }
    sleep 0.2
  done
  echo "not ready: $1; see $3"; exit 1
}
start() { # name, env... ; sets $started
  local name=$1; shift
  env "$@" "./bin/$name" >> "$OUT/$name.log" 2>&1 &
  started=$!
}

start cams; cams_pid=$started; pids+=("$cams_pid")
wait_ready "http://$CAMS_ADDR" "$cams_pid" "$OUT/cams.log"
start ingest ${PPROF:+PPROF_ADDR=127.0.0.1:16062}; ingest_pid=$started; pids+=("$ingest_pid")
wait_ready "http://$INGEST_ADDR" "$ingest_pid" "$OUT/ingest.log"
# One router start and stop first: migrations and the durable consumer are not part
# of any stage's figures.
start router; router_pid=$started
wait_ready "http://$ROUTER_ADDR" "$router_pid" "$OUT/router.log"
kill -INT "$router_pid"; wait "$router_pid" || true

cpu=(--cpu "ingest=$ingest_pid" --cpu "cams=$cams_pid" --cpu "nats-server=$nats_pid"
     --cpu "postgres=comm:postgres:$db")
ctl=(./bin/routerctl --router-url "http://$ROUTER_ADDR" --ingest-url "http://$INGEST_ADDR"
     --cams-url "http://$CAMS_ADDR" --nats-url "$NATS_URL")
want() { case ",$STAGES," in *",$1,"*) return 0 ;; esac; return 1; }
run() {
  local name=$1; shift
  echo "== $name: routerctl bench $*"
  # A run that loses a message (or accepts nothing) fails the script at the end;
  # the other stages still run.
  # This machine kind's Postgres runs with autovacuum off; a production server (and
  # the router's janitor, every 30 s) vacuums the hot tables on its own. Without it,
  # dead rows left by earlier runs (every message inserts and deletes an outbox row
  # and updates its messages row) slow the result writes of later runs: vacuum
  # between runs, as autovacuum would, so no run pays for the ones before it.
  psql -q -d "$db" -c "VACUUM ANALYZE" > /dev/null 2>&1 || true
  "${ctl[@]}" bench --quiet --name "$name" --summary "$summary" "${cpu[@]}" "$@" | tee "$OUT/$name.txt" ||
    failed+=("$name")
}
failed=()
router_env=(${PPROF:+PPROF_ADDR=127.0.0.1:16061})
router_cmd="env ${router_env[*]} ./bin/router"

if want drain; then
  for inbox in nats http; do
    for agents in $DRAIN_AGENTS; do
      run "drain-$inbox-$agents" --stage drain --count "$COUNT" --inbox "$inbox" --agents "$agents" \
        --router-cmd "$router_cmd" --router-log "$OUT/router.log" --router-metrics "http://$ROUTER_ADDR/metrics"
    done
  done
fi
if want all || want ingest; then
  if want all; then
    start router "${router_env[@]}"; router_pid=$started; pids+=("$router_pid")
    wait_ready "http://$ROUTER_ADDR" "$router_pid" "$OUT/router.log"
    all=(--stage all --warmup "$WARMUP" --duration "$DURATION" --cpu "router=$router_pid")
    run all-nats "${all[@]}" --inbox nats --clients "$CLIENTS"
    run all-http "${all[@]}" --inbox http --clients "$CLIENTS"
    # Batches at a fixed offered rate (open loop): closed loop, batch ingest outruns
    # the router several times over and the run would only measure a growing backlog.
    run all-nats-batch "${all[@]}" --inbox nats --batch "$BATCH" --clients 8 --rate "$BATCH_RATE" --drain-timeout 120s
    # Latency at a fixed offered load (open loop, single HTTP messages): the p99 and
    # p99.9 accept→delivery target is set at OPEN_RATE msgs/s.
    run all-nats-open "${all[@]}" --inbox nats --rate "$OPEN_RATE" --clients "$CLIENTS"
    # Direct JetStream producers (no HTTP ingest in the path) offered DIRECT_RATE
    # msgs/s, open loop (closed loop, async publishes outrun any router and the run
    # would measure a growing backlog).
    run all-nats-direct "${all[@]}" --inbox nats --mode nats --rate "$DIRECT_RATE" --clients "$CLIENTS" --drain-timeout 120s
    kill -INT "$router_pid"; wait "$router_pid" || true
  fi
  if want ingest; then
    ing=(--stage ingest --warmup "$WARMUP" --duration "$DURATION")
    run ingest "${ing[@]}" --clients "$CLIENTS"
    run ingest-batch "${ing[@]}" --batch "$BATCH" --clients 8
  fi
fi

echo
echo "== stage table (CPU µs per delivered message; per accepted one for ingest). Results in $OUT"
{ printf 'run\tstage\tinbox\tagents\tbatch\tmsgs/s\tp50_ms\tp99_ms\tmissing\tCPU_µs/msg_by_process\n'; cat "$summary"; } | column -t -s $'\t'
if [ "${#failed[@]}" -gt 0 ]; then
  echo "runs with missing messages or nothing accepted: ${failed[*]}"
  exit 1
fi
