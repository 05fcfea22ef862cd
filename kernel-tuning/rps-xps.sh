#!/usr/bin/env bash
# rps-xps.sh: steers a NIC's receive processing (RPS) and transmit queue choice (XPS)
# to a set of CPUs.
#
# Usage: kernel-tuning/rps-xps.sh --iface NAME --cpus LIST [--dry-run]
#
#   --iface NAME  network interface, e.g. eth0
#   --cpus LIST   CPUs, e.g. 0-3 or 2,3
#   --dry-run     print each planned change as "file: current -> new"; write nothing
#   -h, --help    this text
#
# Writes the CPU mask of LIST in hex (0-3 -> f, 2,3 -> c, 32 -> 1,00000000) to every
# /sys/class/net/NAME/queues/rx-*/rps_cpus and tx-*/xps_cpus. RPS: packets received on
# a queue are processed by the protocol stack on these CPUs (hashed per flow) rather
# than on the CPU that took the interrupt: worth it when the NIC has fewer queues than
# the CPUs that should share the work (a one-queue virtio NIC); with a queue per core it
# only adds inter-processor interrupts. XPS: a socket sending from one of these CPUs
# picks among these transmit queues. The values before the first
# change go to the state file (as with apply.sh), so rollback.sh restores them.
#
# Environment:
#   RINGO_SYSROOT       root holding proc/ and sys/ (default empty: the real /)
#   RINGO_TUNING_STATE  state file (default $RINGO_SYSROOT/var/lib/ringo/kernel-tuning/state)
#
# Exit status: 0 done; 1 no such interface, no queues, or a write failed; 2 bad usage.
set -euo pipefail
shopt -s nullglob

KT_PROG="rps-xps.sh"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$HERE/lib.sh"

kt_iface_cpus_args "${BASH_SOURCE[0]}" "$@"
dry_run=$KT_DRY_RUN
iface=$KT_IFACE
cpus=$KT_CPUS_ARG
kt_parse_cpus "$cpus"
mask=$(kt_cpu_mask)

kt_init_root
kt_check_iface "$iface"
kt_require_privileges "$dry_run"

queues=$ROOT/sys/class/net/$iface/queues
mapfile -t rx < <(for q in "$queues"/rx-*; do printf '%s\n' "${q##*/}"; done | sort -V)
mapfile -t tx < <(for q in "$queues"/tx-*; do printf '%s\n' "${q##*/}"; done | sort -V)
if ((${#rx[@]} + ${#tx[@]} == 0)); then
  kt_die "$iface has no queues in /sys/class/net/$iface/queues"
fi

if ((dry_run)); then
  kt_say "rps-xps.sh: dry run: nothing is changed or saved"
fi
kt_say "$iface: CPUs $cpus = mask $mask, for ${#rx[@]} rx queue(s) (rps_cpus) and ${#tx[@]} tx queue(s) (xps_cpus)"

paths=() currents=() saves=() news=() labels=()
for q in "${rx[@]}"; do paths+=("sys/class/net/$iface/queues/$q/rps_cpus"); done
for q in "${tx[@]}"; do paths+=("sys/class/net/$iface/queues/$q/xps_cpus"); done
for path in "${paths[@]}"; do
  labels+=("/$path")
  news+=("$mask")
  if [[ -e $ROOT/$path ]] && raw=$(kt_read "$ROOT/$path"); then
    currents+=("$(kt_norm "$raw")")
    saves+=("$raw")
  else
    currents+=("")
    saves+=("")
  fi
done

kt_apply_plan kt_norm_mask || exit 1
