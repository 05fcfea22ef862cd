#!/usr/bin/env bash
# rollback.sh: puts back the values that apply.sh, irq-affinity.sh and rps-xps.sh saved
# before their first change, exactly as they were read, then removes the state file.
#
# Usage: kernel-tuning/rollback.sh [--dry-run]
#
#   --dry-run   print each restore as "name: current -> saved"; change nothing and keep
#               the state file
#   -h, --help  this text
#
# With no state file there is nothing to restore: it says so and exits 0. A saved file
# that no longer exists (a NIC removed, a module unloaded) is reported and skipped. When
# a write fails the state file is kept, so the rollback can be run again.
#
# Environment:
#   RINGO_SYSROOT       root holding proc/ and sys/ (default empty: the real /)
#   RINGO_TUNING_STATE  state file (default $RINGO_SYSROOT/var/lib/ringo/kernel-tuning/state)
#
# Exit status: 0 restored, or nothing to restore; 1 a write failed; 2 bad usage.
set -euo pipefail

KT_PROG=rollback.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$HERE/lib.sh"

dry_run=0
while (($# > 0)); do
  case $1 in
    --dry-run) dry_run=1 ;;
    -h | --help)
      kt_help "${BASH_SOURCE[0]}"
      exit 0
      ;;
    *) kt_usage_error "unknown argument '$1'" ;;
  esac
  shift
done

kt_init_root
if [[ ! -f $STATE ]]; then
  kt_say "rollback.sh: no saved state at $STATE: nothing to restore"
  exit 0
fi
kt_require_privileges "$dry_run"
kt_state_load

if ((dry_run)); then
  kt_say "rollback.sh: dry run: nothing is changed; state file $STATE"
else
  kt_say "rollback.sh: restoring from $STATE"
fi

# The value as shown: blanks collapsed, and the THP file as its bracketed mode word.
shown() {
  local v
  v=$(kt_norm "$2")
  if [[ $1 == */transparent_hugepage/* && $v =~ \[([a-z_]+)\] ]]; then
    v=${BASH_REMATCH[1]}
  fi
  printf '%s' "$v"
}

restored=0 unchanged=0 skipped=0 failed=0
# Newest first, the reverse of the order the changes were made.
for ((i = ${#KT_SAVED_ORDER[@]} - 1; i >= 0; i--)); do
  path=${KT_SAVED_ORDER[i]}
  saved=${KT_SAVED[$path]}
  name=$(kt_display_name "$path")
  file=$ROOT/$path
  if [[ ! -e $file ]]; then
    kt_say "$name: skip (not present)"
    skipped=$((skipped + 1))
    continue
  fi
  if ! raw=$(kt_read "$file"); then
    raw="?"
  fi
  cur=$(shown "$path" "$raw")
  if [[ $raw == "$saved" || $cur == "$(shown "$path" "$saved")" && $path == */transparent_hugepage/* ]]; then
    kt_say "$name: $cur (unchanged)"
    unchanged=$((unchanged + 1))
    continue
  fi
  kt_say "$name: $cur -> $(kt_norm "$saved")"
  if ((dry_run)); then
    restored=$((restored + 1))
  elif err=$(kt_write "$file" "$saved"); then
    restored=$((restored + 1))
  else
    kt_say "$name: FAILED ($err)"
    failed=$((failed + 1))
  fi
done

if ((dry_run)); then
  kt_say "dry run: $restored to restore, $unchanged unchanged, $skipped skipped"
  exit 0
fi
kt_say "done: $restored restored, $unchanged unchanged, $skipped skipped, $failed failed"
if ((failed > 0)); then
  kt_say "state file kept: run rollback.sh again once the failures are fixed"
  exit 1
fi
rm -f "$STATE"
kt_say "state: removed $STATE"
