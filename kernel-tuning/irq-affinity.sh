#!/usr/bin/env bash
# irq-affinity.sh: pins a NIC's interrupts to chosen CPUs, round-robin.
#
# Usage: kernel-tuning/irq-affinity.sh --iface NAME --cpus LIST [--dry-run]
#
#   --iface NAME  network interface, e.g. eth0
#   --cpus LIST   CPUs for its interrupts, e.g. 0-1 or 0,2,4 (taken in this order)
#   --dry-run     print each planned change as "irq N: current -> new"; write nothing
#   -h, --help    this text
#
# The IRQs are the device's MSI/MSI-X vectors, the file names in
# /sys/class/net/NAME/device/msi_irqs/, in numeric order: the first goes to the first CPU
# of LIST, the second to the second, wrapping around, written to
# /proc/irq/N/smp_affinity_list. The values before the first change go to the state
# file (as with apply.sh), so rollback.sh restores them. `ringo doctor --layout`
# proposes the CPUs: the housekeeping core(s), away from the shards.
#
# A running irqbalance moves IRQs again within seconds. The script prints how to keep
# it off these IRQs; it never touches the service itself.
#
# Environment:
#   RINGO_SYSROOT       root holding proc/ and sys/ (default empty: the real /)
#   RINGO_TUNING_STATE  state file (default $RINGO_SYSROOT/var/lib/ringo/kernel-tuning/state)
#
# Exit status: 0 done; 1 no such interface, no MSI IRQs, or a write failed; 2 bad usage.
set -euo pipefail
shopt -s nullglob

KT_PROG="irq-affinity.sh"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$HERE/lib.sh"

kt_iface_cpus_args "${BASH_SOURCE[0]}" "$@"
dry_run=$KT_DRY_RUN
iface=$KT_IFACE
cpus=$KT_CPUS_ARG
kt_parse_cpus "$cpus"
targets=("${KT_CPUS[@]}")

kt_init_root
kt_check_iface "$iface"
kt_require_privileges "$dry_run"

msi_dir=$ROOT/sys/class/net/$iface/device/msi_irqs
irqs=()
for f in "$msi_dir"/*; do
  n=${f##*/}
  [[ $n =~ ^[0-9]+$ ]] && irqs+=("$n")
done
if ((${#irqs[@]} == 0)); then
  kt_die "$iface has no MSI IRQs in /sys/class/net/$iface/device/msi_irqs (a virtual device, or legacy INTx: see /proc/interrupts)"
fi
mapfile -t irqs < <(printf '%s\n' "${irqs[@]}" | sort -n)

if ((dry_run)); then
  kt_say "irq-affinity.sh: dry run: nothing is changed or saved"
fi
kt_say "$iface: ${#irqs[@]} IRQs (${irqs[*]}) round-robin over CPUs ${targets[*]}"

# The plan.
paths=() currents=() saves=() news=() labels=()
for i in "${!irqs[@]}"; do
  irq=${irqs[i]}
  new=${targets[i % ${#targets[@]}]}
  path=proc/irq/$irq/smp_affinity_list
  label="irq $irq"
  # /proc/irq/N/ holds a directory named after the handler, e.g. eth0-TxRx-0.
  for d in "$ROOT/proc/irq/$irq"/*/; do
    d=${d%/}
    label+=" (${d##*/})"
    break
  done
  labels+=("$label")
  paths+=("$path")
  news+=("$new")
  if [[ ! -e $ROOT/$path ]]; then
    currents+=("")
    saves+=("")
  elif raw=$(kt_read "$ROOT/$path"); then
    currents+=("$(kt_norm "$raw")")
    saves+=("$raw")
  else
    currents+=("?")
    saves+=("")
  fi
done

plan_ok=0
kt_apply_plan kt_norm_cpulist "a kernel-managed IRQ, its affinity cannot be set" || plan_ok=1

# irqbalance: explain, never run.
ban_args=""
for irq in "${irqs[@]}"; do ban_args+=" --banirq=$irq"; done
# The CPUs not in --cpus (the shards'), for irqbalance's banned list.
banned="<the shard CPUs, those not in --cpus $cpus>"
if online=$(kt_read "$ROOT/sys/devices/system/cpu/online") && kt_cpus_try "$online"; then
  declare -A mine=()
  for c in "${targets[@]}"; do mine[$c]=1; done
  rest=()
  for c in "${KT_CPUS[@]}"; do [[ -z ${mine[$c]:-} ]] && rest+=("$c"); done
  if ((${#rest[@]} > 0)); then
    banned=$(
      IFS=,
      printf '%s' "${rest[*]}"
    )
  fi
fi
cat <<EOF

irqbalance, when it runs (systemctl is-active irqbalance), rewrites IRQ affinities every
few seconds and undoes this. Either keep it off these IRQs, in /etc/default/irqbalance
(Debian/Ubuntu) or /etc/sysconfig/irqbalance (RHEL/Fedora):
    IRQBALANCE_ARGS="${ban_args# }"
    IRQBALANCE_BANNED_CPULIST=$banned
  (--banirq: never move these IRQs; the banned CPU list: never place any IRQ on the
  shard CPUs), then: systemctl restart irqbalance
or stop it: systemctl stop irqbalance && systemctl disable irqbalance
This script does not run systemctl.
EOF

((plan_ok == 0)) || exit 1
