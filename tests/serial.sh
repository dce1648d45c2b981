#!/usr/bin/env bash
# --serial and the YAML key `serial`: a thread-safe module replays a multi-threaded trace on
# its threads by default, and on one thread when asked. Usage: serial.sh HARNESS TRACE
set -euo pipefail
H=$1
TRACE=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
passed=0 failed=0

# threads_of CSV: the `threads` column of the CSV's one row.
threads_of() {
  awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "threads") c = i } NR == 2 { print $c }' "$1"
}

check() { # check WHAT EXPECTED ACTUAL
  if [ "$2" = "$3" ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL: $1: expected $2, got $3" >&2
  fi
}

common=(--alloc=system --reps 1 --warmup 0 --sample 0 --quiet)
"$H" "${common[@]}" --csv "$T/threads.csv" "$TRACE"
n=$(threads_of "$T/threads.csv")
[ "$n" -gt 1 ] && check "default: real threads" yes yes || check "default: real threads" ">1" "$n"
"$H" "${common[@]}" --serial --csv "$T/serial.csv" "$TRACE"
check "--serial" 1 "$(threads_of "$T/serial.csv")"
printf 'allocators: [system]\ntraces: [%s]\nreps: 1\nwarmup: 0\nsample: 0\nquiet: true\nserial: true\ncsv: %s\n' \
  "$(realpath "$TRACE")" "$T/yaml.csv" >"$T/serial.yaml"
"$H" --config "$T/serial.yaml"
check "serial: true" 1 "$(threads_of "$T/yaml.csv")"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
