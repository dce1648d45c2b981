#!/usr/bin/env bash
# shellcheck disable=SC2015 # "A && ok || bad": ok never fails
# No lost results: a run stopped by SIGINT or SIGTERM keeps every completed row in the final
# CSV (renamed from FILE.partial) and says how many cells were not run; a cell child killed
# from outside becomes a `crashed` row and the run goes on; a full disk stops the run with
# exit 4 and keeps the rows written whole.
# Usage: tests/interrupt.sh HARNESS   (meson passes the harness it built)
set -u
H=$(realpath "${1:?usage: interrupt.sh HARNESS}")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d)
MNT=""
cleanup() {
  [ -n "$MNT" ] && umount "$MNT" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT

pass=0 fail=0 skipped=0
ok() {
  pass=$((pass + 1))
}
bad() {
  fail=$((fail + 1))
  echo "FAIL: $*"
}

# csv_rows FILE: prints the number of data rows if FILE is a CSV whose every line has the
# header's number of fields (quoted fields included); prints "broken: why" otherwise.
csv_rows() {
  python3 - "$1" <<'EOF'
import csv, sys
with open(sys.argv[1], newline="") as f:
    raw = f.read()
lines = raw.split("\n")
rows = list(csv.reader(raw.splitlines()))
if not raw.endswith("\n"):
    print("broken: the last line has no newline (a torn row)")
elif len(rows) != len(lines) - 1:
    print("broken: a field holds a newline")
elif not rows or rows[0][:2] != ["allocator", "params"]:
    print("broken: no header")
else:
    n = len(rows[0])
    short = [i + 1 for i, r in enumerate(rows) if len(r) != n]
    print("broken: lines %s do not have %d fields" % (short, n) if short else len(rows) - 1)
EOF
}

# children PID: the processes whose parent is PID (read from /proc: no procps needed).
children() {
  local f rest pid
  for f in /proc/[0-9]*/stat; do
    read -r rest 2>/dev/null <"$f" || continue
    pid=${rest%% *}
    rest=${rest##*) } # past the command name, which may hold spaces: "STATE PPID ..."
    rest=${rest#* }
    [ "${rest%% *}" = "$1" ] && echo "$pid"
  done
  return 0
}

# wait_rows PARTIAL N PID: waits until PARTIAL holds N rows besides the header (or PID ends).
wait_rows() {
  for _ in $(seq 1200); do
    [ -f "$1" ] && [ "$(wc -l <"$1")" -gt "$2" ] && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

TRACES=("$ROOT"/traces/*.trace "$ROOT"/traces/*.rep)

# --- SIGINT and SIGTERM in the middle of a long run ---
for sig in INT TERM; do
  csv=$T/$sig.csv
  "$H" --alloc=all --reps=20 --quiet --csv="$csv" "${TRACES[@]}" 2>"$T/$sig.err" &
  pid=$!
  if ! wait_rows "$csv.partial" 1 "$pid"; then
    bad "SIG$sig: no row was written before the run ended"
    wait "$pid"
    continue
  fi
  child=$(children "$pid" | head -1)
  kill -s "$sig" "$pid"
  wait "$pid"
  rc=$?
  [ "$rc" = 130 ] && ok || bad "SIG$sig: exit code $rc, wanted 130"
  [ -f "$csv" ] && [ ! -e "$csv.partial" ] && ok || bad "SIG$sig: $csv not renamed from .partial"
  rows=$(csv_rows "$csv")
  case $rows in
  [1-9]*) ok ;;
  *) bad "SIG$sig: $csv: $rows" ;;
  esac
  signum=$(kill -l "$sig")
  total=$(("$("$H" --list | grep -c '^[a-z]')" * ${#TRACES[@]}))
  want="interrupted by signal $signum: $rows of $total cells done, $((total - rows)) not run"
  grep -qF "harness: $want" "$T/$sig.err" && ok ||
    bad "SIG$sig: stderr lacks '$want': $(grep harness: "$T/$sig.err")"
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    bad "SIG$sig: the cell's child $child outlived the harness"
  else
    ok
  fi
done

# --- a cell's child killed from outside: a crashed row, the run goes on ---
"$ROOT/scripts/gen" --seed 5 --ops 400000 --sizes exp:64 --lifetime random --live 2000 \
  -o "$T/long.trace" >/dev/null
"$H" --alloc=implicit,bump --reps=30 --quiet --csv="$T/kill.csv" "$T/long.trace" \
  "$ROOT/traces/edge-cases.trace" 2>"$T/kill.err" &
pid=$!
child=""
for _ in $(seq 1200); do # the CSV is opened after the modules' probes: then a child is a cell
  [ -f "$T/kill.csv.partial" ] && child=$(children "$pid" | head -1)
  [ -n "$child" ] && break
  sleep 0.05
done
[ -n "$child" ] && kill -KILL "$child"
wait "$pid"
rc=$?
[ "$rc" = 1 ] && ok || bad "killed child: exit code $rc, wanted 1 (a cell failed)"
python3 - "$T/kill.csv" <<'EOF' && ok || bad "killed child: rows of $T/kill.csv: $(cat "$T/kill.csv")"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
first = rows[0] if rows else {}
sys.exit(0 if len(rows) == 4 and first["status"] == "crashed"
         and "died of signal 9" in first["message"]
         and all(r["status"] == "ok" for r in rows[1:]) else 1)
EOF
grep -q 'harness: implicit: .*long.trace: the cell died of signal 9' "$T/kill.err" && ok ||
  bad "killed child: stderr lacks the crashed cell: $(cat "$T/kill.err")"

# --- a full disk: exit 4, a clear error, the rows written whole are kept ---
MNT=$T/full
mkdir "$MNT"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=64k tmpfs "$MNT" 2>/dev/null; then
  # Leave one 4 KiB page: room for the header and a few rows, not for 80.
  dd if=/dev/zero of="$MNT/filler" bs=4k count=15 2>/dev/null
  names=()
  for i in $(seq -w 1 40); do
    cp "$ROOT/traces/edge-cases.trace" "$T/e$i.trace"
    names+=("$T/e$i.trace")
  done
  "$H" --alloc=null,bump --reps=1 --warmup=0 --sample=0 --quiet --csv="$MNT/r.csv" \
    "${names[@]}" >/dev/null 2>"$T/full.err"
  rc=$?
  [ "$rc" = 4 ] && ok || bad "full disk: exit code $rc, wanted 4"
  grep -qE "^harness: $MNT/r.csv: cannot write: No space left on device; stopped after [0-9]+ of 80 cells$" \
    "$T/full.err" && [ "$(wc -l <"$T/full.err")" = 1 ] && ok ||
    bad "full disk: stderr: $(cat "$T/full.err")"
  rows=$(csv_rows "$MNT/r.csv" 2>&1)
  case $rows in
  [1-9]*) [ "$rows" -lt 80 ] && ok || bad "full disk: $rows rows in a 4 KiB file?" ;;
  *) bad "full disk: $MNT/r.csv: $rows" ;;
  esac
  [ ! -e "$MNT/r.csv.partial" ] && ok || bad "full disk: r.csv.partial left behind"
  umount "$MNT" && MNT=""
else
  skipped=$((skipped + 1))
  echo "SKIP: full disk: cannot mount a 64 KiB tmpfs (needs root and mount rights)"
fi

echo "$pass passed, $fail failed${skipped:+, $skipped skipped}"
[ "$fail" = 0 ]
