#!/usr/bin/env bash
# apply.sh: tunes this host for ringo: the sysctl profile, and optionally the CPU
# frequency governor and transparent huge pages. Changes last until reboot.
#
# Usage: kernel-tuning/apply.sh [--dry-run] [--profile FILE] [--governor NAME] [--thp MODE]
#
#   --dry-run        print each planned change as "key: current -> new" ("unchanged",
#                    "kept", "skip (not present)" otherwise); change nothing, save nothing
#   --profile FILE   sysctl profile to apply (default: sysctl.conf next to this script);
#                    keys on its "# raise-only:" lines are never lowered (field by
#                    field for lists such as tcp_rmem)
#   --governor NAME  set scaling_governor of every CPU with cpufreq (e.g. performance)
#   --thp MODE       set transparent huge pages: never or madvise
#   -h, --help       this text
#
# Before changing anything it saves the current value of everything it is about to
# change to the state file. A value already in the state file is kept, so a second run
# keeps the original values and rollback.sh restores the host as it was before the first.
# Keys the host does not have (older kernel, module not loaded) are reported and skipped.
#
# Environment:
#   RINGO_SYSROOT       root holding proc/ and sys/ (default empty: the real /)
#   RINGO_TUNING_STATE  state file (default $RINGO_SYSROOT/var/lib/ringo/kernel-tuning/state)
#
# Exit status: 0 done; 1 a write failed (the others were applied, the state file is kept
# for rollback.sh); 2 bad usage.
set -euo pipefail
shopt -s nullglob

KT_PROG=apply.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$HERE/lib.sh"

dry_run=0
profile=$HERE/sysctl.conf
governor=
thp=
while (($# > 0)); do
  case $1 in
    --dry-run) dry_run=1 ;;
    --profile | --governor | --thp)
      (($# >= 2)) || kt_usage_error "$1 needs a value"
      case $1 in
        --profile) profile=$2 ;;
        --governor) governor=$2 ;;
        --thp) thp=$2 ;;
      esac
      shift
      ;;
    --profile=*) profile=${1#*=} ;;
    --governor=*) governor=${1#*=} ;;
    --thp=*) thp=${1#*=} ;;
    -h | --help)
      kt_help "${BASH_SOURCE[0]}"
      exit 0
      ;;
    *) kt_usage_error "unknown argument '$1'" ;;
  esac
  shift
done

[[ -f $profile && -r $profile ]] || kt_usage_error "profile '$profile' is not a readable file"
if [[ -n $governor && ! $governor =~ ^[a-z0-9_]+$ ]]; then
  kt_usage_error "bad governor name '$governor'"
fi
case $thp in
  '' | never | madvise) ;;
  *) kt_usage_error "--thp takes never or madvise, not '$thp'" ;;
esac

kt_init_root
kt_require_privileges "$dry_run"

# The plan: one entry per file, in the order they are applied.
names=()    # shown name: sysctl key, or /path
paths=()    # path relative to ROOT
currents=() # current value as shown (blanks collapsed; the THP mode word)
saves=()    # value saved for rollback (the file as read; the THP mode word)
news=()     # value to write
states=()   # change | unchanged | kept | skip
notes=()    # reason for kept and skip
optional=() # 1: a failed write is only a warning (sysctl.d "-key")

plan() {
  names+=("$1")
  paths+=("$2")
  currents+=("$3")
  saves+=("$4")
  news+=("$5")
  states+=("$6")
  notes+=("$7")
  optional+=("${8:-0}")
}

# True when decimal integer $1 >= $2, for numbers of any length.
int_ge() {
  local a=$1 b=$2
  while [[ $a == 0?* ]]; do a=${a#0}; done
  while [[ $b == 0?* ]]; do b=${b#0}; done
  if ((${#a} != ${#b})); then
    ((${#a} > ${#b}))
  else
    [[ $a > $b || $a == "$b" ]]
  fi
}

# For a raise-only key: the larger of current and profile value, field by field
# ("4096 131072 33554432" and "4096 131072 16777216" give the first). Fails unless both
# are lists of the same number of integers.
raise_only_merge() {
  local -a have limit out=()
  read -r -a have <<<"$1"
  read -r -a limit <<<"$2"
  ((${#have[@]} == ${#limit[@]} && ${#limit[@]} > 0)) || return 1
  local i
  for i in "${!limit[@]}"; do
    [[ ${have[i]} =~ ^[0-9]+$ && ${limit[i]} =~ ^[0-9]+$ ]] || return 1
    if int_ge "${have[i]}" "${limit[i]}"; then out+=("${have[i]}"); else out+=("${limit[i]}"); fi
  done
  printf '%s' "${out[*]}"
}

# --- sysctl profile -----------------------------------------------------------------
declare -A raise_only=()
raise_re='^[#;][[:space:]]*raise-only:(.*)$'
key_re='^[A-Za-z0-9_][A-Za-z0-9_./-]*$'
lineno=0
while IFS= read -r line || [[ -n $line ]]; do
  lineno=$((lineno + 1))
  line=${line#"${line%%[![:space:]]*}"}
  line=${line%"${line##*[![:space:]]}"}
  [[ -z $line ]] && continue
  if [[ $line =~ $raise_re ]]; then
    read -r -a words <<<"${BASH_REMATCH[1]}"
    for w in "${words[@]}"; do raise_only[$w]=1; done
    continue
  fi
  [[ $line == '#'* || $line == ';'* ]] && continue
  [[ $line == *=* ]] || kt_die "$profile:$lineno: expected 'key = value', got '$line'"
  key=$(kt_norm "${line%%=*}")
  value=$(kt_norm "${line#*=}")
  opt=0
  if [[ $key == -* ]]; then
    opt=1
    key=${key#-}
  fi
  if [[ ! $key =~ $key_re || $key == *..* ]]; then
    kt_die "$profile:$lineno: bad sysctl key '$key' (globs are not supported)"
  fi
  [[ -n $value ]] || kt_die "$profile:$lineno: empty value for $key"
  if [[ $key == */* ]]; then
    path=proc/sys/$key
    key=${key//\//.}
  else
    path=proc/sys/${key//.//}
  fi
  file=$ROOT/$path
  if [[ ! -e $file ]]; then
    plan "$key" "$path" "" "" "$value" skip "not present" "$opt"
  elif ! raw=$(kt_read "$file"); then
    plan "$key" "$path" "" "" "$value" skip "unreadable" "$opt"
  else
    cur=$(kt_norm "$raw")
    want=$value
    if [[ -n ${raise_only[$key]:-} ]] && merged=$(raise_only_merge "$cur" "$value"); then
      want=$merged
    fi
    if [[ $cur == "$value" ]]; then
      plan "$key" "$path" "$cur" "$raw" "$value" unchanged "" "$opt"
    elif [[ $cur == "$want" ]]; then
      plan "$key" "$path" "$cur" "$raw" "$value" kept "not lowered to $value" "$opt"
    else
      plan "$key" "$path" "$cur" "$raw" "$want" change "" "$opt"
    fi
  fi
done <"$profile"

# --- CPU frequency governor ---------------------------------------------------------
if [[ -n $governor ]]; then
  mapfile -t gov_files < <(
    for f in "$ROOT"/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do
      printf '%s\n' "$f"
    done | sort -V
  )
  if ((${#gov_files[@]} == 0)); then
    plan "scaling_governor" "" "" "" "$governor" skip "not present: no cpufreq here (a VM, or fixed frequency)"
  fi
  for file in "${gov_files[@]}"; do
    path=${file#"$ROOT"/}
    name=/$path
    avail_file=$(dirname "$file")/scaling_available_governors
    if ! raw=$(kt_read "$file"); then
      plan "$name" "$path" "" "" "$governor" skip "unreadable"
      continue
    fi
    cur=$(kt_norm "$raw")
    if [[ $cur == "$governor" ]]; then
      plan "$name" "$path" "$cur" "$raw" "$governor" unchanged ""
    elif [[ -r $avail_file ]] && avail=$(kt_read "$avail_file") && [[ " $(kt_norm "$avail") " != *" $governor "* ]]; then
      plan "$name" "$path" "$cur" "$raw" "$governor" skip "$governor not offered; available: $(kt_norm "$avail")"
    else
      plan "$name" "$path" "$cur" "$raw" "$governor" change ""
    fi
  done
fi

# --- transparent huge pages ---------------------------------------------------------
if [[ -n $thp ]]; then
  path=sys/kernel/mm/transparent_hugepage/enabled
  file=$ROOT/$path
  if [[ ! -e $file ]]; then
    plan "/$path" "$path" "" "" "$thp" skip "not present"
  elif ! raw=$(kt_read "$file"); then
    plan "/$path" "$path" "" "" "$thp" skip "unreadable"
  else
    # "always [madvise] never": the bracketed word is the current mode.
    cur=$(kt_norm "$raw")
    if [[ $cur =~ \[([a-z_]+)\] ]]; then cur=${BASH_REMATCH[1]}; fi
    if [[ $cur == "$thp" ]]; then
      plan "/$path" "$path" "$cur" "$cur" "$thp" unchanged ""
    else
      plan "/$path" "$path" "$cur" "$cur" "$thp" change ""
    fi
  fi
fi

# --- save, then apply ---------------------------------------------------------------
if [[ -z $ROOT ]]; then where="/ (this host)"; else where="$ROOT (RINGO_SYSROOT)"; fi
if ((dry_run)); then
  kt_say "apply.sh: dry run on $where: nothing is changed or saved"
else
  kt_say "apply.sh: applying to $where"
fi
kt_say "profile: $profile"

to_save=()
for i in "${!states[@]}"; do
  [[ ${states[i]} == change ]] && to_save+=("${paths[i]}" "${saves[i]}")
done
if ((dry_run)); then
  if ((${#to_save[@]} > 0)); then
    if [[ -f $STATE ]]; then
      kt_say "state: would add values not yet saved to $STATE (saved ones are kept)"
    else
      kt_say "state: would save $((${#to_save[@]} / 2)) original value(s) to $STATE"
    fi
  fi
elif ((${#to_save[@]} > 0)); then
  kt_state_save "${to_save[@]}"
fi

changed=0 unchanged=0 kept=0 skipped=0 failed=0
for i in "${!states[@]}"; do
  name=${names[i]}
  case ${states[i]} in
    unchanged)
      kt_say "$name: ${currents[i]} (unchanged)"
      unchanged=$((unchanged + 1))
      ;;
    kept)
      kt_say "$name: ${currents[i]} (kept: ${notes[i]})"
      kept=$((kept + 1))
      ;;
    skip)
      kt_say "$name: skip (${notes[i]})"
      skipped=$((skipped + 1))
      ;;
    change)
      kt_say "$name: ${currents[i]} -> ${news[i]}"
      if ((dry_run)); then
        changed=$((changed + 1))
      elif err=$(kt_write "$ROOT/${paths[i]}" "${news[i]}"); then
        changed=$((changed + 1))
      elif ((optional[i])); then
        kt_say "$name: not set ($err; optional key)"
        skipped=$((skipped + 1))
      else
        kt_say "$name: FAILED ($err)"
        failed=$((failed + 1))
      fi
      ;;
  esac
done

if ((dry_run)); then
  kt_say "dry run: $changed to change, $unchanged unchanged, $kept kept, $skipped skipped"
else
  kt_say "done: $changed changed, $unchanged unchanged, $kept kept, $skipped skipped, $failed failed"
  if ((failed > 0)); then
    kt_say "the state file $STATE is kept: kernel-tuning/rollback.sh restores what changed"
    exit 1
  fi
fi
