#!/usr/bin/env bash
# Smoke test of the built peers: each one started with one worker on a free port, the four
# routes asked with curl and the bodies checked, then stopped. Usage: smoke.sh [NAME...]
# (default: every peer whose binary is there). Loopback only; exits 1 if any check failed.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ALL="actix hyper may-minihttp glommio monoio-bare monoio-sidering uring-raw uring-tasks gin echo nginx"
names=${*:-$ALL}
PORT=${PORT:-18090}

say() { printf '[peers] %s\n' "$*" >&2; }
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

ECHO_DOC='{"a":"x","b":[1,2.5,null],"c":{"d":true}}'
passed=() failed=()
for name in $names; do
  port=$(free_port "$PORT")
  "$here/run.sh" "$name" "$port" 1 >"/tmp/ringo-peer-$name.log" 2>&1 &
  pid=$!
  up=false
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/plaintext" && { up=true; break; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  errors=()
  if ! $up; then
    errors+=("did not start: $(tail -n 3 "/tmp/ringo-peer-$name.log" | tr '\n' ' ')")
  else
    check() { # what expected_status expected_body expected_type curl-args...
      local what=$1 want_status=$2 want_body=$3 want_type=$4
      shift 4
      local out status body ctype
      out=$(curl -s -w '\n%{http_code} %{content_type}' "$@") || { errors+=("$what: curl failed"); return; }
      body=$(sed '$d' <<<"$out")
      read -r status ctype <<<"$(tail -n 1 <<<"$out")"
      if [ "$status" != "$want_status" ]; then
        errors+=("$what: status $status, want $want_status")
      elif [ -n "$want_body" ] && [ "$body" != "$want_body" ]; then
        errors+=("$what: body '$body', want '$want_body'")
      elif [ -n "$want_type" ] && [[ "$ctype" != "$want_type"* ]]; then
        errors+=("$what: content type '$ctype', want '$want_type'")
      fi
    }
    url="http://127.0.0.1:$port"
    check plaintext 200 'Hello, World!' text/plain "$url/plaintext"
    check json 200 '{"message":"Hello, World!"}' application/json "$url/json"
    # keep-alive: two requests on one connection
    n=$(curl -sv "$url/plaintext" "$url/json" 2>&1 | grep -c 'Re-using existing connection\|Reusing existing connection')
    [ "$n" -ge 1 ] || errors+=("keep-alive: second request did not reuse the connection")
    case $name in
      uring-raw | uring-tasks)
        check 'users (404 here)' 404 '' '' "$url/users/42"
        check 'echo (404 here)' 404 '' '' -X POST -H 'Content-Type: application/json' -d "$ECHO_DOC" "$url/echo"
        ;;
      nginx)
        check users 200 '{"id":"42"}' application/json "$url/users/42"
        check 'echo (fixed doc)' 200 '{"message":"Hello, World!"}' application/json \
          -X POST -H 'Content-Type: application/json' -d "$ECHO_DOC" "$url/echo"
        ;;
      *)
        check users 200 '{"id":"42"}' application/json "$url/users/42"
        check echo 200 "$ECHO_DOC" application/json -X POST -H 'Content-Type: application/json' -d "$ECHO_DOC" "$url/echo"
        check 'echo invalid' 400 '' '' -X POST -H 'Content-Type: application/json' -d '{"a":' "$url/echo"
        ;;
    esac
    check 404 404 '' '' "$url/nope"
  fi
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  if [ ${#errors[@]} -eq 0 ]; then
    passed+=("$name")
    say "$name: ok"
  else
    failed+=("$name")
    for e in "${errors[@]}"; do say "$name: FAIL: $e"; done
  fi
done
say "smoke passed: ${passed[*]:-none}"
[ ${#failed[@]} -eq 0 ] || { say "smoke failed: ${failed[*]}"; exit 1; }
