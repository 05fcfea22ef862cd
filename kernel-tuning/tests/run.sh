#!/usr/bin/env bash
# tests/run.sh: tests the kernel-tuning scripts on fake /proc and /sys trees.
#
# Usage: kernel-tuning/tests/run.sh
#
# Every script runs with RINGO_SYSROOT set to a fresh fake root under `mktemp -d` (the
# run helper refuses any other root), so the real host's settings are never read or
# changed. Prints "ok - NAME" or "not ok - NAME" (with the script's output) per check,
# then "N passed, M failed"; exits 1 when a check failed. Needs only bash and coreutils
# (diffutils for diff); runs shellcheck on the scripts when it is installed.
set -euo pipefail

KT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
unset RINGO_SYSROOT RINGO_TUNING_STATE
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ringo-kernel-tuning.XXXXXX")
[[ -n $TMP && -d $TMP ]] || exit 1
trap 'rm -rf -- "$TMP"' EXIT

passed=0
failed=0
OUT=""
RC=0

ok() {
  passed=$((passed + 1))
  printf 'ok - %s\n' "$1"
}
not_ok() {
  failed=$((failed + 1))
  printf 'not ok - %s\n' "$1"
  shift
  local line
  for line in "$@"; do printf '#   %s\n' "$line"; done
  if [[ -n $OUT ]]; then
    printf '#   last output:\n'
    while IFS= read -r line; do printf '#     %s\n' "$line"; done <<<"$OUT"
  fi
}
assert_eq() { # name expected actual
  if [[ $2 == "$3" ]]; then ok "$1"; else not_ok "$1" "expected: '$2'" "actual:   '$3'"; fi
}
assert_rc() { # name expected-status
  assert_eq "$1 (exit $2)" "$2" "$RC"
}
assert_out() { # name line: OUT has this exact line
  if grep -qxF -- "$2" <<<"$OUT"; then ok "$1"; else not_ok "$1" "no line: '$2'"; fi
}
assert_out_has() { # name text: OUT contains this text
  if grep -qF -- "$2" <<<"$OUT"; then ok "$1"; else not_ok "$1" "no text: '$2'"; fi
}
assert_value() { # name file expected: file content with blanks collapsed
  local v=MISSING
  [[ -f $2 ]] && v=$(tr -s '[:space:]' ' ' <"$2" | sed 's/ $//')
  assert_eq "$1" "$3" "$v"
}
assert_same_tree() { # name expected-tree actual-tree
  local d
  if d=$(diff -r "$2" "$3" 2>&1); then ok "$1"; else not_ok "$1" "trees differ:" "$d"; fi
}
assert_missing() { # name path
  if [[ ! -e $2 ]]; then ok "$1"; else not_ok "$1" "exists: $2"; fi
}

# Runs a script with RINGO_SYSROOT=ROOT; sets OUT (stdout and stderr) and RC.
run() { # root script [args...]
  local root=$1
  shift
  case $root in
    "$TMP"/?*) ;;
    *)
      echo "refusing to run with root '$root' outside $TMP" >&2
      exit 99
      ;;
  esac
  if OUT=$(RINGO_SYSROOT=$root bash "$@" 2>&1); then RC=0; else RC=$?; fi
}

put() { # root path value: writes value and a newline, making the directories
  mkdir -p "$(dirname "$1/$2")"
  printf '%s\n' "$3" >"$1/$2"
}

# A fake host: sysctls with typical defaults (busy_read missing, as without
# CONFIG_NET_RX_BUSY_POLL), 2 CPUs with cpufreq, THP, and eth0 with 3 MSI IRQs and two
# rx and two tx queues.
make_root() {
  local r=$1 irq q
  mkdir -p "$r"
  put "$r" proc/sys/net/core/somaxconn 4096
  put "$r" proc/sys/net/ipv4/tcp_max_syn_backlog 1024
  put "$r" proc/sys/net/core/netdev_max_backlog 1000
  put "$r" proc/sys/net/ipv4/tcp_fin_timeout 60
  put "$r" proc/sys/net/ipv4/tcp_tw_reuse 2
  put "$r" proc/sys/net/ipv4/ip_local_port_range $'32768\t60999'
  put "$r" proc/sys/net/core/rmem_max 212992
  put "$r" proc/sys/net/core/wmem_max 212992
  put "$r" proc/sys/net/ipv4/tcp_rmem $'4096\t131072\t6291456'
  put "$r" proc/sys/net/ipv4/tcp_wmem $'4096\t65536\t4194304'
  put "$r" proc/sys/net/core/busy_poll 0
  put "$r" proc/sys/fs/nr_open 1073741816
  put "$r" proc/sys/fs/file-max 812345
  put "$r" proc/sys/kernel/io_uring_disabled 2
  put "$r" sys/devices/system/cpu/online 0-1
  for cpu in 0 1; do
    put "$r" "sys/devices/system/cpu/cpu$cpu/cpufreq/scaling_governor" powersave
    put "$r" "sys/devices/system/cpu/cpu$cpu/cpufreq/scaling_available_governors" "performance powersave"
  done
  put "$r" sys/kernel/mm/transparent_hugepage/enabled "always [madvise] never"
  for irq in 40 41 42; do
    put "$r" "sys/class/net/eth0/device/msi_irqs/$irq" msix
    put "$r" "proc/irq/$irq/smp_affinity_list" 0-1
    mkdir -p "$r/proc/irq/$irq/eth0-TxRx-$((irq - 40))"
  done
  for q in 0 1; do
    put "$r" "sys/class/net/eth0/queues/rx-$q/rps_cpus" 0
    put "$r" "sys/class/net/eth0/queues/tx-$q/xps_cpus" 0
  done
}

# What the kernel does after a write to the THP file: it shows every mode, the chosen
# one in brackets.
fake_kernel() {
  local f=$1/sys/kernel/mm/transparent_hugepage/enabled mode m line=""
  [[ -f $f ]] || return 0
  mode=$(<"$f")
  [[ $mode == *'['* ]] && return 0
  for m in always madvise never; do
    if [[ $m == "$mode" ]]; then line+="[$m] "; else line+="$m "; fi
  done
  printf '%s\n' "${line% }" >"$f"
}

scripts=(apply.sh rollback.sh irq-affinity.sh rps-xps.sh)

# --- --help ----------------------------------------------------------------------------
for s in "${scripts[@]}"; do
  run "$TMP/help" "$KT/$s" --help
  assert_rc "$s --help" 0
  assert_out_has "$s --help shows usage" "Usage: kernel-tuning/$s"
  run "$TMP/help" "$KT/$s" --no-such-option
  assert_rc "$s rejects an unknown option" 2
done
assert_missing "--help touches nothing" "$TMP/help"

# --- apply.sh --dry-run ---------------------------------------------------------------
R=$TMP/dry
make_root "$R"
cp -a "$R" "$TMP/dry.before"
run "$R" "$KT/apply.sh" --dry-run --governor performance --thp never
assert_rc "dry run" 0
assert_out "dry run: somaxconn" "net.core.somaxconn: 4096 -> 65535"
assert_out "dry run: tcp_max_syn_backlog" "net.ipv4.tcp_max_syn_backlog: 1024 -> 65535"
assert_out "dry run: netdev_max_backlog" "net.core.netdev_max_backlog: 1000 -> 16384"
assert_out "dry run: tcp_fin_timeout" "net.ipv4.tcp_fin_timeout: 60 -> 15"
assert_out "dry run: tcp_tw_reuse" "net.ipv4.tcp_tw_reuse: 2 -> 1"
assert_out "dry run: multi-value port range" "net.ipv4.ip_local_port_range: 32768 60999 -> 10240 65535"
assert_out "dry run: rmem_max" "net.core.rmem_max: 212992 -> 16777216"
assert_out "dry run: wmem_max" "net.core.wmem_max: 212992 -> 16777216"
assert_out "dry run: tcp_rmem" "net.ipv4.tcp_rmem: 4096 131072 6291456 -> 4096 131072 16777216"
assert_out "dry run: raise-only list merged field by field" \
  "net.ipv4.tcp_wmem: 4096 65536 4194304 -> 4096 65536 16777216"
assert_out "dry run: equal value is unchanged" "net.core.busy_poll: 0 (unchanged)"
assert_out "dry run: missing key skipped" "net.core.busy_read: skip (not present)"
assert_out "dry run: raise-only key not lowered" "fs.nr_open: 1073741816 (kept: not lowered to 2097152)"
assert_out "dry run: file-max" "fs.file-max: 812345 -> 4194304"
assert_out "dry run: io_uring_disabled" "kernel.io_uring_disabled: 2 -> 0"
assert_out "dry run: governor cpu0" "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor: powersave -> performance"
assert_out "dry run: governor cpu1" "/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor: powersave -> performance"
assert_out "dry run: THP shows the bracketed mode" "/sys/kernel/mm/transparent_hugepage/enabled: madvise -> never"
assert_out "dry run: summary" "dry run: 15 to change, 1 unchanged, 1 kept, 1 skipped"
assert_same_tree "dry run changes nothing" "$TMP/dry.before" "$R"
assert_missing "dry run saves no state" "$R/var/lib/ringo/kernel-tuning/state"

# --- apply.sh, twice, then rollback.sh: byte-for-byte -----------------------------------
R=$TMP/apply
make_root "$R"
cp -a "$R" "$TMP/apply.before"
STATE_FILE=$R/var/lib/ringo/kernel-tuning/state
run "$R" "$KT/apply.sh" --governor performance --thp never
fake_kernel "$R"
assert_rc "apply" 0
assert_out "apply: summary" "done: 15 changed, 1 unchanged, 1 kept, 1 skipped, 0 failed"
assert_out "apply: reports the state file" "state: saved 15 original value(s) to $STATE_FILE"
P=$R/proc/sys
assert_value "apply: somaxconn" "$P/net/core/somaxconn" 65535
assert_value "apply: tcp_max_syn_backlog" "$P/net/ipv4/tcp_max_syn_backlog" 65535
assert_value "apply: netdev_max_backlog" "$P/net/core/netdev_max_backlog" 16384
assert_value "apply: tcp_fin_timeout" "$P/net/ipv4/tcp_fin_timeout" 15
assert_value "apply: tcp_tw_reuse" "$P/net/ipv4/tcp_tw_reuse" 1
assert_value "apply: ip_local_port_range" "$P/net/ipv4/ip_local_port_range" "10240 65535"
assert_value "apply: rmem_max" "$P/net/core/rmem_max" 16777216
assert_value "apply: wmem_max" "$P/net/core/wmem_max" 16777216
assert_value "apply: tcp_rmem" "$P/net/ipv4/tcp_rmem" "4096 131072 16777216"
assert_value "apply: tcp_wmem" "$P/net/ipv4/tcp_wmem" "4096 65536 16777216"
assert_value "apply: busy_poll" "$P/net/core/busy_poll" 0
assert_value "apply: nr_open kept" "$P/fs/nr_open" 1073741816
assert_value "apply: file-max" "$P/fs/file-max" 4194304
assert_value "apply: io_uring_disabled" "$P/kernel/io_uring_disabled" 0
assert_missing "apply: a missing key is not created" "$P/net/core/busy_read"
assert_value "apply: governor cpu0" "$R/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor" performance
assert_value "apply: governor cpu1" "$R/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor" performance
assert_value "apply: THP" "$R/sys/kernel/mm/transparent_hugepage/enabled" "always madvise [never]"
if grep -qxF $'proc/sys/net/ipv4/tcp_rmem\t4096\t131072\t6291456' "$STATE_FILE"; then
  ok "apply: state holds the original bytes (tabs)"
else
  not_ok "apply: state holds the original bytes (tabs)" "$(cat "$STATE_FILE")"
fi
if grep -qxF $'sys/kernel/mm/transparent_hugepage/enabled\tmadvise' "$STATE_FILE"; then
  ok "apply: state holds the THP mode word"
else
  not_ok "apply: state holds the THP mode word" "$(cat "$STATE_FILE")"
fi
assert_eq "apply: state has one line per change" 15 "$(grep -vc '^#' "$STATE_FILE")"

cp -a "$R" "$TMP/apply.once"
run "$R" "$KT/apply.sh" --governor performance --thp never
fake_kernel "$R"
assert_rc "second apply" 0
assert_out "second apply: nothing to change" "done: 0 changed, 15 unchanged, 2 kept, 1 skipped, 0 failed"
assert_out "second apply: somaxconn unchanged" "net.core.somaxconn: 65535 (unchanged)"
assert_same_tree "second apply changes nothing further (state included)" "$TMP/apply.once" "$R"

# Someone changes a value between applies: apply fixes it but keeps the original.
put "$R" proc/sys/net/core/somaxconn 8192
run "$R" "$KT/apply.sh" --governor performance --thp never
assert_out "third apply after a drift: fixes it" "net.core.somaxconn: 8192 -> 65535"
assert_out "third apply after a drift: no new state" "state: $STATE_FILE already holds the original values"
if grep -qxF $'proc/sys/net/core/somaxconn\t4096' "$STATE_FILE" &&
  ! grep -qF $'somaxconn\t8192' "$STATE_FILE"; then
  ok "third apply keeps the original saved value"
else
  not_ok "third apply keeps the original saved value" "$(cat "$STATE_FILE")"
fi

# The IRQ and RPS/XPS scripts add their originals to the same state.
run "$R" "$KT/irq-affinity.sh" --iface eth0 --cpus 1
assert_rc "irq-affinity on the applied host" 0
run "$R" "$KT/rps-xps.sh" --iface eth0 --cpus 0-1
assert_rc "rps-xps on the applied host" 0
assert_eq "state grew by 3 IRQs and 4 queues" 22 "$(grep -vc '^#' "$STATE_FILE")"

cp -a "$R" "$TMP/apply.tuned"
run "$R" "$KT/rollback.sh" --dry-run
assert_rc "rollback --dry-run" 0
assert_out "rollback --dry-run: planned line" "net.core.somaxconn: 65535 -> 4096"
assert_out "rollback --dry-run: multi-value line" "net.ipv4.tcp_rmem: 4096 131072 16777216 -> 4096 131072 6291456"
assert_same_tree "rollback --dry-run changes nothing, keeps the state" "$TMP/apply.tuned" "$R"

run "$R" "$KT/rollback.sh"
fake_kernel "$R"
assert_rc "rollback" 0
assert_out "rollback: summary" "done: 22 restored, 0 unchanged, 0 skipped, 0 failed"
assert_out "rollback: THP line" "/sys/kernel/mm/transparent_hugepage/enabled: never -> madvise"
assert_out "rollback: irq line" "/proc/irq/40/smp_affinity_list: 1 -> 0-1"
assert_missing "rollback removes the state file" "$STATE_FILE"
rm -r "${R:?}/var" # the state directory apply created; everything else must be as before
assert_same_tree "rollback restores every original byte" "$TMP/apply.before" "$R"

# --- rollback.sh without state ---------------------------------------------------------
R=$TMP/nostate
make_root "$R"
cp -a "$R" "$TMP/nostate.before"
run "$R" "$KT/rollback.sh"
assert_rc "rollback without state" 0
assert_out_has "rollback without state says so" "nothing to restore"
assert_same_tree "rollback without state is a no-op" "$TMP/nostate.before" "$R"

# --- RINGO_TUNING_STATE, missing keys, governors and THP absent -------------------------
R=$TMP/sparse
make_root "$R"
rm -r "$R/sys/devices/system/cpu/cpu0" "$R/sys/devices/system/cpu/cpu1" "$R/sys/kernel"
cat >"$TMP/small.conf" <<'EOF'
# a profile without raise-only lines: values may go down
net.core.somaxconn = 1024
net.nonexistent.key = 1
-net.optional.missing = 3
  fs.file-max=100000
EOF
export RINGO_TUNING_STATE=$TMP/elsewhere/state
run "$R" "$KT/apply.sh" --profile "$TMP/small.conf" --governor performance --thp madvise
assert_rc "missing keys are not fatal" 0
assert_out "missing key skipped" "net.nonexistent.key: skip (not present)"
assert_out "optional missing key skipped" "net.optional.missing: skip (not present)"
assert_out "no cpufreq: governor skipped" \
  "scaling_governor: skip (not present: no cpufreq here (a VM, or fixed frequency))"
assert_out "no THP: skipped" "/sys/kernel/mm/transparent_hugepage/enabled: skip (not present)"
assert_value "a profile without raise-only lowers" "$R/proc/sys/net/core/somaxconn" 1024
assert_value "key=value without spaces" "$R/proc/sys/fs/file-max" 100000
if [[ -f $RINGO_TUNING_STATE ]]; then ok "RINGO_TUNING_STATE is honoured"; else not_ok "RINGO_TUNING_STATE is honoured"; fi
assert_missing "no state under the root then" "$R/var"
run "$R" "$KT/rollback.sh"
assert_rc "rollback from RINGO_TUNING_STATE" 0
assert_value "rollback from RINGO_TUNING_STATE restores" "$R/proc/sys/net/core/somaxconn" 4096
assert_missing "rollback removes RINGO_TUNING_STATE" "$RINGO_TUNING_STATE"
unset RINGO_TUNING_STATE

# A governor the CPU does not offer is skipped.
R=$TMP/gov
make_root "$R"
run "$R" "$KT/apply.sh" --dry-run --governor ondemand
assert_out "unoffered governor skipped" \
  "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor: skip (ondemand not offered; available: performance powersave)"
# A raise-only list already above the profile in every field is kept.
put "$R" proc/sys/net/ipv4/tcp_rmem $'4096\t131072\t33554432'
run "$R" "$KT/apply.sh" --dry-run
assert_out "raise-only list kept" "net.ipv4.tcp_rmem: 4096 131072 33554432 (kept: not lowered to 4096 131072 16777216)"
run "$R" "$KT/apply.sh" --thp always
assert_rc "--thp always refused" 2
run "$R" "$KT/apply.sh" --profile "$TMP/no-such-file"
assert_rc "missing profile refused" 2
printf 'net.core.somaxconn\n' >"$TMP/bad.conf"
run "$R" "$KT/apply.sh" --profile "$TMP/bad.conf"
assert_rc "malformed profile line refused" 1
assert_out_has "malformed profile line named" "bad.conf:1: expected 'key = value'"
run "$TMP/no-such-root" "$KT/apply.sh" --dry-run
assert_rc "missing RINGO_SYSROOT refused" 1

# --- irq-affinity.sh ---------------------------------------------------------------------
R=$TMP/irq
make_root "$R"
cp -a "$R" "$TMP/irq.before"
run "$R" "$KT/irq-affinity.sh" --iface eth0 --cpus 2,3 --dry-run
assert_rc "irq-affinity --dry-run" 0
assert_out "irq dry run: 40" "irq 40 (eth0-TxRx-0): 0-1 -> 2"
assert_out "irq dry run: 41" "irq 41 (eth0-TxRx-1): 0-1 -> 3"
assert_out "irq dry run: 42 wraps around" "irq 42 (eth0-TxRx-2): 0-1 -> 2"
assert_same_tree "irq-affinity --dry-run writes nothing" "$TMP/irq.before" "$R"
run "$R" "$KT/irq-affinity.sh" --iface eth0 --cpus 2,3
assert_rc "irq-affinity" 0
assert_value "irq 40 -> cpu 2" "$R/proc/irq/40/smp_affinity_list" 2
assert_value "irq 41 -> cpu 3" "$R/proc/irq/41/smp_affinity_list" 3
assert_value "irq 42 -> cpu 2 (round-robin)" "$R/proc/irq/42/smp_affinity_list" 2
assert_out_has "irqbalance: --banirq advice" 'IRQBALANCE_ARGS="--banirq=40 --banirq=41 --banirq=42"'
assert_out_has "irqbalance: banned CPU list advice" "IRQBALANCE_BANNED_CPULIST="
assert_out_has "irqbalance: stop advice" "systemctl stop irqbalance"
run "$R" "$KT/irq-affinity.sh" --iface eth0 --cpus 0-1
assert_value "cpus 0-1: irq 40 -> 0" "$R/proc/irq/40/smp_affinity_list" 0
assert_value "cpus 0-1: irq 41 -> 1" "$R/proc/irq/41/smp_affinity_list" 1
assert_value "cpus 0-1: irq 42 -> 0" "$R/proc/irq/42/smp_affinity_list" 0
assert_out_has "banned list is the CPUs not given" "IRQBALANCE_BANNED_CPULIST=<the shard CPUs"
run "$R" "$KT/irq-affinity.sh" --iface eth0 --cpus 0
assert_out_has "banned list from the online CPUs" "IRQBALANCE_BANNED_CPULIST=1"
run "$R" "$KT/irq-affinity.sh" --iface eth0 --cpus 0
assert_out "irq-affinity again: unchanged" "irq 40 (eth0-TxRx-0): 0 (unchanged)"
run "$R" "$KT/irq-affinity.sh" --iface eth9 --cpus 0
assert_rc "irq-affinity: unknown interface" 1
run "$R" "$KT/irq-affinity.sh" --iface eth0 --cpus 3-1
assert_rc "irq-affinity: bad CPU list" 2
run "$R" "$KT/irq-affinity.sh" --iface eth0
assert_rc "irq-affinity: --cpus required" 2
mkdir -p "$R/sys/class/net/veth0"
run "$R" "$KT/irq-affinity.sh" --iface veth0 --cpus 0
assert_rc "irq-affinity: interface without MSI IRQs" 1

# --- rps-xps.sh ----------------------------------------------------------------------------
R=$TMP/rps
make_root "$R"
cp -a "$R" "$TMP/rps.before"
run "$R" "$KT/rps-xps.sh" --iface eth0 --cpus 0-3 --dry-run
assert_rc "rps-xps --dry-run" 0
assert_out "rps dry run: rx-0" "/sys/class/net/eth0/queues/rx-0/rps_cpus: 0 -> f"
assert_out "rps dry run: tx-1" "/sys/class/net/eth0/queues/tx-1/xps_cpus: 0 -> f"
assert_same_tree "rps-xps --dry-run writes nothing" "$TMP/rps.before" "$R"
run "$R" "$KT/rps-xps.sh" --iface eth0 --cpus 0-3
assert_rc "rps-xps 0-3" 0
for q in rx-0/rps_cpus rx-1/rps_cpus tx-0/xps_cpus tx-1/xps_cpus; do
  assert_value "cpus 0-3 -> f in $q" "$R/sys/class/net/eth0/queues/$q" f
done
run "$R" "$KT/rps-xps.sh" --iface eth0 --cpus 2,3
for q in rx-0/rps_cpus rx-1/rps_cpus tx-0/xps_cpus tx-1/xps_cpus; do
  assert_value "cpus 2,3 -> c in $q" "$R/sys/class/net/eth0/queues/$q" c
done
put "$R" sys/class/net/eth0/queues/rx-0/rps_cpus 0000000c
run "$R" "$KT/rps-xps.sh" --iface eth0 --cpus 3,2
assert_out "zero-padded mask compares equal" "/sys/class/net/eth0/queues/rx-0/rps_cpus: 0000000c (unchanged)"
run "$R" "$KT/rps-xps.sh" --iface eth0 --cpus 0,33 --dry-run
assert_out_has "mask past 32 CPUs uses comma groups" "mask 2,00000001"
run "$R" "$KT/rps-xps.sh" --iface eth0 --cpus 1,3,5-7 --dry-run
assert_out_has "mask of 1,3,5-7 is ea" "mask ea"
run "$R" "$KT/rps-xps.sh" --iface eth9 --cpus 0
assert_rc "rps-xps: unknown interface" 1
run "$R" "$KT/rps-xps.sh" --iface eth0 --cpus x
assert_rc "rps-xps: bad CPU list" 2

# --- shellcheck ---------------------------------------------------------------------------
if command -v shellcheck >/dev/null; then
  OUT=""
  if d=$(cd "$KT" && shellcheck -x "${scripts[@]}" lib.sh tests/run.sh 2>&1); then
    ok "shellcheck"
  else
    not_ok "shellcheck" "$d"
  fi
else
  ok "shellcheck # skip: not installed"
fi

printf '%d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
