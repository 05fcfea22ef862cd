#!/usr/bin/env bash
# Runs one peer server in the foreground: run.sh NAME PORT WORKERS
#
# NAME: actix hyper may-minihttp glommio monoio-bare monoio-sidering uring-raw uring-tasks
#       (target/release/NAME),
#       uring-raw-single (uring-raw with URING_RAW_SINGLESHOT=1: single-shot accept and
#       recv into the connection's own buffer, to measure what multishot and provided
#       buffers are worth),
#       gin echo (bin/NAME), nginx (nginx/nginx.conf.template rendered into a fresh
#       directory, `nginx -g 'daemon off;' -c FILE`); the proxies ringo-proxy (the
#       repository's examples/proxy) and nginx-proxy (nginx/nginx-proxy.conf.template),
#       which forward to UPSTREAM=host:port; ringo-redis (examples/redis_get) and
#       gin-redis (bin/gin -redis), one Redis GET per request from REDIS=host:port,
#       and /items/:id (ringo-redis: straight to Redis; gin-redis: cache-aside in an
#       in-process map; ringo-items: `ringo serve --redis`, the local cache) (REDIS and
#       UPSTREAM are set by scripts/bench); ringo-rt (the repository's
#       examples/shard_runtime: uring-raw's answers on ringo's own shard runtime, src/rt).
# HOST (default 127.0.0.1) is the address to listen on. Build first with ./build.sh.
# The process is exec'd, so the caller's pid is the server's pid (kill it to stop it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if [ $# -ne 3 ]; then
  echo "usage: $0 NAME PORT WORKERS" >&2
  echo "peers: actix hyper may-minihttp glommio monoio-bare monoio-sidering uring-raw uring-tasks uring-raw-single gin echo nginx ringo-proxy nginx-proxy ringo-redis gin-redis ringo-items ringo-rt" >&2
  exit 2
fi
name=$1 port=$2 workers=$3
host=${HOST:-127.0.0.1}

need() { # binary
  if [ ! -x "$1" ]; then
    echo "[peers] $name is not built ($1 missing): run $here/build.sh" >&2
    exit 1
  fi
}

case $name in
  actix | hyper | may-minihttp | glommio | monoio-bare | monoio-sidering | uring-raw | uring-tasks)
    bin="$here/target/release/$name"
    need "$bin"
    exec "$bin" --host "$host" --port "$port" --workers "$workers"
    ;;
  uring-raw-single)
    bin="$here/target/release/uring-raw"
    need "$bin"
    URING_RAW_SINGLESHOT=1 exec "$bin" --host "$host" --port "$port" --workers "$workers"
    ;;
  gin | echo)
    bin="$here/bin/$name"
    need "$bin"
    exec "$bin" -host "$host" -port "$port" -workers "$workers"
    ;;
  ringo-rt)
    # examples/shard_runtime.rs: the raw peers' fixed answers on ringo's shard runtime.
    bin="$here/../../target/release/examples/shard_runtime"
    need "$bin"
    exec "$bin" --host "$host" --port "$port" --workers "$workers"
    ;;
  ringo-redis)
    # examples/redis_get.rs: one Redis GET per request through the shard's client.
    bin="$here/../../target/release/examples/redis_get"
    need "$bin"
    : "${REDIS:?ringo-redis needs REDIS=host:port}"
    exec "$bin" --listen "$host:$port" --redis "$REDIS" --shards "$workers"
    ;;
  ringo-items)
    # The default app with --redis: /items/:id through the shard's local cache.
    bin="$here/../../target/release/ringo"
    need "$bin"
    : "${REDIS:?ringo-items needs REDIS=host:port}"
    exec "$bin" serve --listen "$host:$port" --redis "redis://$REDIS" --shards "$workers" --admin "" --log warn
    ;;
  gin-redis)
    bin="$here/bin/gin"
    need "$bin"
    : "${REDIS:?gin-redis needs REDIS=host:port}"
    exec "$bin" -host "$host" -port "$port" -workers "$workers" -redis "$REDIS"
    ;;
  ringo-proxy)
    # examples/proxy.rs: ringo::client's proxy_to in front of $UPSTREAM.
    bin="$here/../../target/release/examples/proxy"
    need "$bin"
    : "${UPSTREAM:?ringo-proxy needs UPSTREAM=host:port}"
    exec "$bin" --listen "$host:$port" --upstream "http://$UPSTREAM" --shards "$workers"
    ;;
  nginx | nginx-proxy)
    nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
    need "$nginx_bin"
    template="$here/nginx/nginx.conf.template"
    if [ "$name" = nginx-proxy ]; then
      : "${UPSTREAM:?nginx-proxy needs UPSTREAM=host:port}"
      template="$here/nginx/nginx-proxy.conf.template"
    fi
    # One directory per port, replaced on each start: pid file, error log, temp paths.
    dir="${TMPDIR:-/tmp}/ringo-peer-nginx-$port"
    rm -rf "$dir"
    mkdir -p "$dir"
    chmod 755 "$dir"
    sed -e "s|WORKERS|$workers|g" -e "s|HOST|$host|g" -e "s|PORT|$port|g" -e "s|TMPDIR|$dir|g" \
      -e "s|UPSTREAM|${UPSTREAM:-}|g" "$template" > "$dir/nginx.conf"
    exec "$nginx_bin" -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;'
    ;;
  *)
    echo "[peers] unknown peer: $name" >&2
    exit 2
    ;;
esac
