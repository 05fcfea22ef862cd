#!/usr/bin/env bash
# Builds the peer servers that ringo's benchmarks compare against (see README.md here).
#
# - installs what is missing (apt-get: golang-go, Debian's Gin and Echo sources, nginx);
# - Rust peers: `cargo build --release -p peer-NAME` in this workspace, one peer at a time
#   (target/release/NAME), so that one that fails does not stop the others;
# - Go peers: GOPATH mode against Debian's packages, offline (bin/gin, bin/echo);
# - nginx: only checked (run.sh renders nginx/nginx.conf.template).
# Ends with the list of the peers that built and the ones that failed; exits 0 unless
# nothing built. Environment: PEERS (a subset, e.g. "hyper gin"), CARGO_BUILD_JOBS,
# NO_INSTALL=1 (don't apt-get).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here" || exit 1

RUST_PEERS="actix hyper may-minihttp glommio monoio-bare monoio-sidering uring-raw uring-tasks"
GO_PEERS="gin echo"
PEERS=${PEERS:-"$RUST_PEERS $GO_PEERS nginx"}
GOPATH_DEBIAN=/usr/share/gocode

say() { printf '[peers] %s\n' "$*" >&2; }
wanted() { [[ " $PEERS " == *" $1 "* ]]; }

built=() failed=()
ok() { built+=("$1"); say "$1: built"; }
ko() { failed+=("$1 ($2)"); say "$1: FAILED: $2"; }

# --- system packages, only when missing ---
missing=()
needs_go=false
for p in $GO_PEERS; do wanted "$p" && needs_go=true; done
if $needs_go; then
  command -v go >/dev/null 2>&1 || missing+=(golang-go)
  [ -d "$GOPATH_DEBIAN/src/github.com/gin-gonic/gin" ] || missing+=(golang-github-gin-gonic-gin-dev)
  [ -d "$GOPATH_DEBIAN/src/github.com/labstack/echo" ] || missing+=(golang-github-labstack-echo-dev)
  [ -d "$GOPATH_DEBIAN/src/github.com/gomodule/redigo" ] || missing+=(golang-github-gomodule-redigo-dev)
fi
if wanted nginx && ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  missing+=(nginx)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "${NO_INSTALL:-0}" = 1 ]; then
    say "missing packages (NO_INSTALL=1, not installing): ${missing[*]}"
  elif [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null 2>&1; then
    say "missing packages and not root: ${missing[*]}"
  else
    sudo=""
    [ "$(id -u)" != 0 ] && sudo=sudo
    say "installing: ${missing[*]}"
    $sudo apt-get update -qq >&2 || say "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
      || say "apt-get install failed: ${missing[*]}"
  fi
fi

# --- Rust peers ---
rust_wanted=()
for p in $RUST_PEERS; do wanted "$p" && rust_wanted+=("$p"); done
if [ ${#rust_wanted[@]} -gt 0 ]; then
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    for p in "${rust_wanted[@]}"; do ko "$p" "cargo not found"; done
  else
    mkdir -p target
    for p in "${rust_wanted[@]}"; do
      say "$p: cargo build --release -p peer-$p"
      log="target/build-$p.log"
      if cargo build --release -p "peer-$p" >"$log" 2>&1 && [ -x "target/release/$p" ]; then
        ok "$p"
      else
        tail -n 15 "$log" | sed 's/^/    /' >&2
        rm -f "target/release/$p" # no stale binary for run.sh to pick up
        ko "$p" "cargo build failed, see $here/$log"
      fi
    done
  fi
fi

# --- Go peers (GOPATH mode, Debian's sources, offline) ---
mkdir -p bin
[ -n "${HOME:-}" ] || [ -n "${GOCACHE:-}" ] || export GOCACHE="$here/target/go-cache"
for p in $GO_PEERS; do
  wanted "$p" || continue
  if ! command -v go >/dev/null 2>&1; then
    ko "$p" "go not found"
    continue
  fi
  say "$p: go build (GOPATH=$GOPATH_DEBIAN)"
  if (cd "go/$p" && GO111MODULE=off GOPATH="$GOPATH_DEBIAN" GOFLAGS='' GOPROXY=off \
    go build -o "$here/bin/$p" .) >&2; then
    ok "$p"
  else
    rm -f "bin/$p"
    ko "$p" "go build failed"
  fi
done

# --- nginx: nothing to build ---
if wanted nginx; then
  if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
    ok nginx
  else
    ko nginx "nginx not installed"
  fi
fi

say "built: ${built[*]:-none}"
if [ ${#failed[@]} -gt 0 ]; then
  for f in "${failed[@]}"; do say "failed: $f"; done
fi
[ ${#built[@]} -gt 0 ]
