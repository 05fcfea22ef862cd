#!/usr/bin/env bash
# First figures for one shard: ringo serve --shards 1 pinned to CPU 1, wrk pinned to CPU 0.
#
# Scenarios: /plaintext, /plaintext pipelined (depth 16), /json, and connection churn (a new
# connection every 10 requests), on both io backends, interleaved over ROUNDS rounds.
# Reports median req/s, median p99 latency and the shard core's CPU time per request
# (busy jiffies of CPU 1 from /proc/stat over the run / requests answered).
#
# Environment: DURATION (s, default 10), ROUNDS (default 3), CONNECTIONS (default 64),
# SERVER_CPU (default 1), CLIENT_CPU (default 0), BACKENDS (default "uring epoll"),
# RINGO_BIN (skip the build and use this binary), OUT (results folder).
# Loopback only; every run is bounded by DURATION.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
BACKENDS=${BACKENDS:-"uring epoll"}
PORT=${PORT:-18080}
OUT=${OUT:-bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
SCENARIOS="plaintext pipelined json churn"

say() { printf '[bench] %s\n' "$*" >&2; }

command -v wrk >/dev/null || { say "wrk is missing: apt-get install -y wrk"; exit 1; }
if [ -z "${RINGO_BIN:-}" ]; then
  say "building release binary"
  cargo build --release --quiet
  RINGO_BIN=target/release/ringo
fi
mkdir -p "$OUT"
raw="$OUT/raw.csv"
echo "round,backend,scenario,requests,seconds,rps,p99_ms,cpu_us_per_req" > "$raw"

cpu_busy() { # busy jiffies of one CPU
  awk -v cpu="cpu$1" '$1 == cpu { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

to_ms() { # wrk latency value (e.g. 1.23ms, 850.00us, 1.2s) to milliseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
    printf "%.3f", n }'
}

run_scenario() { # backend scenario round
  local backend=$1 scenario=$2 round=$3 url="http://127.0.0.1:$PORT" args=()
  case $scenario in
    plaintext) args=("$url/plaintext") ;;
    json) args=("$url/json") ;;
    pipelined) args=(-s scripts/wrk/pipeline.lua "$url/plaintext") ;;
    churn) args=(-s scripts/wrk/churn.lua "$url/plaintext") ;;
  esac
  local before after out
  before=$(cpu_busy "$SERVER_CPU")
  out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${args[@]}" 2>&1)
  after=$(cpu_busy "$SERVER_CPU")
  local requests seconds p99 rps cpu
  requests=$(awk '/requests in/ { print $1 }' <<<"$out")
  seconds=$(awk '/requests in/ { s = $4; sub(/s,?$/, "", s); print s }' <<<"$out")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
  rps=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
  local hz; hz=$(getconf CLK_TCK)
  cpu=$(awk -v b="$before" -v a="$after" -v r="$requests" -v hz="$hz" 'BEGIN { if (r > 0) printf "%.2f", (a - b) / hz * 1e6 / r; else print "nan" }')
  if grep -q "Socket errors" <<<"$out"; then say "  $(grep 'Socket errors' <<<"$out")"; fi
  echo "$round,$backend,$scenario,$requests,$seconds,$rps,$p99,$cpu" >> "$raw"
  say "  round $round $backend $scenario: ${rps} req/s, p99 ${p99} ms, ${cpu} us CPU/req"
}

server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true; }
trap cleanup EXIT

for round in $(seq 1 "$ROUNDS"); do
  for backend in $BACKENDS; do
    say "round $round/$ROUNDS: starting ringo ($backend) on CPU $SERVER_CPU"
    taskset -c "$SERVER_CPU" "$RINGO_BIN" serve --listen "127.0.0.1:$PORT" --shards 1 --cores "$SERVER_CPU" \
      --io-backend "$backend" --log warn &
    server_pid=$!
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/plaintext" >/dev/null 2>&1 && break; sleep 0.05; done
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$PORT/plaintext" >/dev/null 2>&1 # warm-up
    for scenario in $SCENARIOS; do run_scenario "$backend" "$scenario" "$round"; done
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
  done
done

# Medians (with min-max) per backend and scenario.
summary="$OUT/results.md"
{
  echo "# ringo, one shard ($(date -u +%Y-%m-%d))"
  echo
  echo "CPU: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)."
  echo "Server on CPU $SERVER_CPU, wrk -t1 -c$CONNECTIONS on CPU $CLIENT_CPU, ${DURATION}s per run, median of $ROUNDS interleaved rounds (min-max)."
  echo
  echo "| backend | scenario | req/s | p99 ms | server CPU µs/req |"
  echo "|---|---|---|---|---|"
  for backend in $BACKENDS; do
    for scenario in $SCENARIOS; do
      awk -F, -v b="$backend" -v s="$scenario" '
        function median(arr, n,   i, j, t) {
          for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
          return (n % 2) ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
        }
        $2 == b && $3 == s { n++; r[n] = $6; p[n] = $7; c[n] = $8 }
        END {
          if (n == 0) exit
          mr = median(r, n); lo = r[1]; hi = r[n]
          # wrk cannot time pipelined responses one by one: no p99 for that scenario.
          p99 = (s == "pipelined") ? "n/a" : sprintf("%.2f", median(p, n))
          printf "| %s | %s | %.0f (%.0f-%.0f) | %s | %.2f |\n", b, s, mr, lo, hi, p99, median(c, n)
        }' "$raw"
    done
  done
} > "$summary"
cat "$summary"
say "raw runs: $raw; summary: $summary"
