# shellcheck shell=bash
# Shared helpers for the kernel-tuning scripts; sourced, never run.
#
# Everything reads and writes under $ROOT, taken from RINGO_SYSROOT (empty: the real /),
# so the tests can run every script against a fake /proc and /sys tree.
#
# The state file (RINGO_TUNING_STATE, default $ROOT/var/lib/ringo/kernel-tuning/state)
# holds one line per file a script changed: its path relative to $ROOT, a tab, and the
# value it had before the first change. A path already in the file is never saved again,
# so repeated runs keep the original value; rollback.sh writes them back.

# The root every /proc and /sys path is read from and written to ("" = the real /).
kt_init_root() {
  ROOT=${RINGO_SYSROOT:-}
  while [[ $ROOT == */ ]]; do ROOT=${ROOT%/}; done
  if [[ -n $ROOT && ! -d $ROOT ]]; then
    kt_die "RINGO_SYSROOT=$ROOT is not a directory"
  fi
  STATE=${RINGO_TUNING_STATE:-$ROOT/var/lib/ringo/kernel-tuning/state}
}

kt_say() { printf '%s\n' "$*"; }
kt_die() {
  printf '%s: %s\n' "$KT_PROG" "$*" >&2
  exit 1
}
kt_usage_error() {
  printf '%s: %s (see --help)\n' "$KT_PROG" "$*" >&2
  exit 2
}

# Prints the header comment of the calling script (the lines after the shebang that start
# with '#', without the '# ' prefix) as its --help text.
kt_help() {
  local line
  while IFS= read -r line; do
    case $line in
      '#!'*) continue ;;
      '#'*)
        line=${line#\#}
        printf '%s\n' "${line# }"
        ;;
      *) break ;;
    esac
  done <"$1"
}

# Writing to the real host needs root; a fake root or a dry run does not.
kt_require_privileges() {
  local dry_run=$1
  if [[ $dry_run -eq 0 && -z $ROOT && $EUID -ne 0 ]]; then
    kt_die "changing the host needs root (or use --dry-run to see the plan)"
  fi
}

# Prints a one-line value file without its trailing newline. Fails when the file cannot
# be read or holds more than one line.
kt_read() {
  local value
  value=$(<"$1") 2>/dev/null || return 1
  [[ $value != *$'\n'* ]] || return 1
  printf '%s' "$value"
}

# Writes VALUE and a newline to FILE in one write; on failure prints the reason.
kt_write() {
  local err
  if ! err=$({ printf '%s\n' "$2" >"$1"; } 2>&1); then
    err=${err##*: }
    printf '%s' "${err:-write failed}"
    return 1
  fi
}

# Collapses runs of blanks (tcp_rmem reads back tab-separated) to single spaces.
kt_norm() {
  local -a words
  read -r -a words <<<"$1"
  printf '%s' "${words[*]}"
}

# Parses a CPU list (0-3,6,8-9) into the array KT_CPUS, in the order given, without
# duplicates; returns 1 (KT_CPUS empty) when LIST is not a valid list.
kt_cpus_try() {
  local list=$1 part a b c
  local -A seen=()
  local -a parts
  KT_CPUS=()
  [[ -n $list ]] || return 1
  IFS=, read -r -a parts <<<"$list"
  for part in "${parts[@]}"; do
    if [[ $part =~ ^([0-9]{1,4})-([0-9]{1,4})$ ]]; then
      a=$((10#${BASH_REMATCH[1]}))
      b=$((10#${BASH_REMATCH[2]}))
    elif [[ $part =~ ^[0-9]{1,4}$ ]]; then
      a=$((10#$part))
      b=$a
    else
      KT_CPUS=()
      return 1
    fi
    if ((a > b || b >= 8192)); then
      KT_CPUS=()
      return 1
    fi
    for ((c = a; c <= b; c++)); do
      [[ -n ${seen[$c]:-} ]] && continue
      seen[$c]=1
      KT_CPUS+=("$c")
    done
  done
}

# kt_cpus_try for a command-line option: a bad list is a usage error.
kt_parse_cpus() {
  kt_cpus_try "$1" || kt_usage_error "bad CPU list '$1' (expected e.g. 0-3,6; CPUs below 8192)"
}

# The CPUs of KT_CPUS as the kernel's hex mask: 32-bit groups separated by commas, most
# significant first, the first without leading zeros (0-3 -> f, 2,3 -> c, 32 -> 1,00000000).
kt_cpu_mask() {
  local -a words=()
  local c w n out
  for c in "${KT_CPUS[@]}"; do
    w=$((c / 32))
    words[w]=$(((${words[w]:-0}) | (1 << (c % 32))))
  done
  n=0
  for c in "${KT_CPUS[@]}"; do ((c / 32 + 1 > n)) && n=$((c / 32 + 1)); done
  out=$(printf '%x' "${words[n - 1]:-0}")
  for ((w = n - 2; w >= 0; w--)); do
    out+=$(printf ',%08x' "${words[w]:-0}")
  done
  printf '%s' "$out"
}

# A hex CPU mask in canonical form (no commas, lower case, no leading zeros), so that
# "0000000f", "00000000,0000000f" and "f" compare equal.
kt_norm_mask() {
  local m=${1//,/}
  m=${m,,}
  while [[ $m == 0?* ]]; do m=${m#0}; done
  printf '%s' "${m:-0}"
}

# A CPU list in canonical form: sorted numbers joined by commas ("0-2" -> "0,1,2");
# anything unparsable is returned as it is.
kt_norm_cpulist() {
  local -a KT_CPUS sorted
  if ! kt_cpus_try "$1"; then
    printf '%s' "$1"
    return
  fi
  mapfile -t sorted < <(printf '%s\n' "${KT_CPUS[@]}" | sort -n)
  local IFS=,
  printf '%s' "${sorted[*]}"
}

# Loads the state file into KT_SAVED (path -> original value) and KT_SAVED_ORDER.
kt_state_load() {
  declare -gA KT_SAVED=()
  declare -ga KT_SAVED_ORDER=()
  [[ -f $STATE ]] || return 0
  local line path
  while IFS= read -r line || [[ -n $line ]]; do
    [[ -z $line || $line == '#'* ]] && continue
    [[ $line == *$'\t'* ]] || kt_die "corrupt state file $STATE: '$line'"
    path=${line%%$'\t'*}
    [[ -n ${KT_SAVED[$path]+x} ]] && continue
    KT_SAVED[$path]=${line#*$'\t'}
    KT_SAVED_ORDER+=("$path")
  done <"$STATE"
}

# Adds "path<TAB>value" lines (arguments: path value path value ...) for paths not yet in
# the state file, keeping the values saved before. Written to a temporary file and
# renamed, so a crash never leaves half a state file. Prints what it did.
kt_state_save() {
  kt_state_load
  local -a add=()
  while (($# >= 2)); do
    if [[ -z ${KT_SAVED[$1]+x} ]]; then
      add+=("$1" "$2")
      KT_SAVED[$1]=$2
    fi
    shift 2
  done
  if ((${#add[@]} == 0)); then
    [[ -f $STATE ]] && kt_say "state: $STATE already holds the original values"
    return 0
  fi
  mkdir -p "$(dirname "$STATE")"
  local tmp="$STATE.tmp.$$"
  {
    if [[ -f $STATE ]]; then
      cat "$STATE"
    else
      printf '# ringo kernel-tuning: values before the first change (path under the root, tab, value).\n'
      printf '# rollback.sh writes them back and removes this file. Written %s.\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    fi
    local i
    for ((i = 0; i < ${#add[@]}; i += 2)); do
      printf '%s\t%s\n' "${add[i]}" "${add[i + 1]}"
    done
  } >"$tmp"
  mv -f "$tmp" "$STATE"
  kt_say "state: saved $((${#add[@]} / 2)) original value(s) to $STATE"
}

# The name shown for a state path: sysctl keys as dotted names, others as absolute paths.
kt_display_name() {
  local p=$1
  if [[ $p == proc/sys/* ]]; then
    p=${p#proc/sys/}
    printf '%s' "${p//\//.}"
  else
    printf '/%s' "$p"
  fi
}

# Checks an interface name and that $ROOT/sys/class/net/NAME exists.
kt_check_iface() {
  local iface=$1
  [[ -n $iface ]] || kt_usage_error "--iface is required"
  if [[ ! $iface =~ ^[A-Za-z0-9_.:@-]+$ || $iface == . || $iface == .. ]]; then
    kt_usage_error "bad interface name '$iface'"
  fi
  [[ -e $ROOT/sys/class/net/$iface ]] || kt_die "no network interface '$iface' (see: ip link)"
}

# Parses the options shared by irq-affinity.sh and rps-xps.sh:
#   kt_iface_cpus_args SCRIPT_PATH "$@"
# sets KT_DRY_RUN (0/1), KT_IFACE and KT_CPUS_ARG; --help prints SCRIPT_PATH's header.
# shellcheck disable=SC2034 # the globals are read by the calling script
kt_iface_cpus_args() {
  local script=$1
  shift
  KT_DRY_RUN=0
  KT_IFACE=
  KT_CPUS_ARG=
  while (($# > 0)); do
    case $1 in
      --dry-run) KT_DRY_RUN=1 ;;
      --iface | --cpus)
        (($# >= 2)) || kt_usage_error "$1 needs a value"
        if [[ $1 == --iface ]]; then KT_IFACE=$2; else KT_CPUS_ARG=$2; fi
        shift
        ;;
      --iface=*) KT_IFACE=${1#*=} ;;
      --cpus=*) KT_CPUS_ARG=${1#*=} ;;
      -h | --help)
        kt_help "$script"
        exit 0
        ;;
      *) kt_usage_error "unknown argument '$1'" ;;
    esac
    shift
  done
  [[ -n $KT_IFACE ]] || kt_usage_error "--iface is required"
  [[ -n $KT_CPUS_ARG ]] || kt_usage_error "--cpus is required"
}

# Saves the original values, then applies a plan held in the calling script's arrays
# (same index = same file): paths (relative to $ROOT), labels, currents (normalized;
# "" when absent), saves (raw; "" when absent or unreadable), news; and $dry_run.
#   kt_apply_plan NORMALIZER [IO_ERROR_HINT]
# NORMALIZER puts a value in canonical form so current and new compare; IO_ERROR_HINT is
# added to write errors that say "Input/output error". Prints each change and a summary;
# returns 1 when a write failed.
# shellcheck disable=SC2154 # the plan arrays and dry_run are the caller's
kt_apply_plan() {
  local norm=$1 io_hint=${2:-} i label err
  local -a to_save=()
  for i in "${!paths[@]}"; do
    if [[ -n ${saves[i]} && $("$norm" "${currents[i]}") != "$("$norm" "${news[i]}")" ]]; then
      to_save+=("${paths[i]}" "${saves[i]}")
    fi
  done
  if ((!dry_run && ${#to_save[@]} > 0)); then
    kt_state_save "${to_save[@]}"
  fi
  local changed=0 unchanged=0 skipped=0 failed=0
  for i in "${!paths[@]}"; do
    label=${labels[i]}
    if [[ ! -e $ROOT/${paths[i]} ]]; then
      kt_say "$label: skip (not present)"
      skipped=$((skipped + 1))
    elif [[ -z ${saves[i]} ]]; then
      kt_say "$label: skip (unreadable)"
      skipped=$((skipped + 1))
    elif [[ $("$norm" "${currents[i]}") == "$("$norm" "${news[i]}")" ]]; then
      kt_say "$label: ${currents[i]} (unchanged)"
      unchanged=$((unchanged + 1))
    else
      kt_say "$label: ${currents[i]} -> ${news[i]}"
      if ((dry_run)); then
        changed=$((changed + 1))
      elif err=$(kt_write "$ROOT/${paths[i]}" "${news[i]}"); then
        changed=$((changed + 1))
      else
        [[ -n $io_hint && $err == *"Input/output error"* ]] && err+=": $io_hint"
        kt_say "$label: FAILED ($err)"
        failed=$((failed + 1))
      fi
    fi
  done
  if ((dry_run)); then
    kt_say "dry run: $changed to change, $unchanged unchanged, $skipped skipped"
  else
    kt_say "done: $changed changed, $unchanged unchanged, $skipped skipped, $failed failed"
  fi
  ((failed == 0))
}
