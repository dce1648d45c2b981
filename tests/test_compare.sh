#!/bin/sh
# scripts/compare on crafted CSVs: each case asserts the exit status and, where it matters,
# what the table names. Usage: test_compare.sh PATH/TO/scripts/compare
# Prints "N passed, N failed" like the C tests.
set -u
compare=${1:?usage: test_compare.sh scripts/compare}
dir=$(mktemp -d /tmp/test_compare.XXXXXX)
trap 'rm -rf "$dir"' EXIT
passed=0
failed=0

# expect STATUS PATTERN ARGS...: runs compare ARGS, wants exit STATUS and PATTERN in its
# output (PATTERN "" for any).
expect() {
  want=$1
  pattern=$2
  shift 2
  out=$("$compare" "$@" 2>&1)
  got=$?
  if [ "$got" -ne "$want" ]; then
    failed=$((failed + 1))
    echo "FAIL: compare $*: exit $got, wanted $want"
    echo "$out" | sed 's/^/    /'
  elif [ -n "$pattern" ] && ! printf '%s\n' "$out" | grep -q -- "$pattern"; then
    failed=$((failed + 1))
    echo "FAIL: compare $*: no '$pattern' in:"
    echo "$out" | sed 's/^/    /'
  else
    passed=$((passed + 1))
  fi
}

header=allocator,params,trace,status,ops,mallocs,frees,reallocs,callocs,memaligns,failed,reps,seconds,seconds_min,seconds_max,ns_per_op,peak_live,peak_footprint,frag1,frag2,frag3,frag4,utilization,internal_frag,peak_rss,message

# row ALLOC PARAMS STATUS SECONDS MIN MAX FRAG4 FOOTPRINT [PEAK_RSS]: 1000 ops a row.
row() {
  ns=""
  [ -n "$4" ] && ns=$(awk "BEGIN { printf \"%.3f\", $4 / 1000 * 1e9 }")
  echo "$1,\"$2\",traces/t.trace,$3,1000,500,500,0,0,0,0,5,$4,$5,$6,$ns,4096,$8,0.1,0.2,0.3,$7,0.5,128,${9:-1000000},"
}

write() { # write FILE ROW...
  f=$1
  shift
  echo "$header" >"$dir/$f"
  for r in "$@"; do echo "$r" >>"$dir/$f"; done
}

a_ok=$(row implicit "fit=best,order=lifo" ok 0.001 0.00095 0.00105 0.250000 8192)
b_ok=$(row bump "" ok 0.0005 0.00049 0.00051 1.000000 8192)
write base.csv "$a_ok" "$b_ok"

# 1. identical files pass
expect 0 "passed: 2 rows matched, 0 regressions" "$dir/base.csv" "$dir/base.csv"

# 2. a deterministic column that changes fails, and the table names it
write frag.csv "$(row implicit "fit=best,order=lifo" ok 0.001 0.00095 0.00105 0.250001 8192)" "$b_ok"
expect 1 "frag4" "$dir/base.csv" "$dir/frag.csv"
write fp.csv "$a_ok" "$(row bump "" ok 0.0005 0.00049 0.00051 1.000000 8200)"
expect 1 "FAIL.*bump on traces/t.trace.*peak_footprint.*8192.*8200" "$dir/base.csv" "$dir/fp.csv"

# 3. the same number written differently is no change (0.25 = 0.250000)
write fmt.csv "$(row implicit "fit=best,order=lifo" ok 0.001 0.00095 0.00105 0.25 8192)" "$b_ok"
expect 0 "" "$dir/base.csv" "$dir/fmt.csv"

# 4. a status change fails
write crash.csv "$(row implicit "fit=best,order=lifo" crashed "" "" "" "" "")" "$b_ok"
expect 1 "status.*ok.*crashed" "$dir/base.csv" "$dir/crash.csv"

# 5. timing: 50% slower with spreads apart fails
write slow.csv "$(row implicit "fit=best,order=lifo" ok 0.0015 0.00145 0.00155 0.250000 8192)" "$b_ok"
expect 1 "ns_per_op.*1000.00.*1500.00.*+50.0%" "$dir/base.csv" "$dir/slow.csv"
# ... but not with --no-timing, nor under a 60% threshold
expect 0 "" --no-timing "$dir/base.csv" "$dir/slow.csv"
expect 0 "" --threshold 60 "$dir/base.csv" "$dir/slow.csv"

# 6. 50% slower median but the new fastest run is within the baseline's spread: noise
write noisy.csv "$(row implicit "fit=best,order=lifo" ok 0.0015 0.001 0.002 0.250000 8192)" "$b_ok"
expect 0 "noise.*spreads overlap" "$dir/base.csv" "$dir/noisy.csv"

# 7. 5% slower, spreads apart: under the 10% default, over a 2% threshold
write five.csv "$(row implicit "fit=best,order=lifo" ok 0.00105 0.00106 0.00107 0.250000 8192)" "$b_ok"
expect 0 "" "$dir/base.csv" "$dir/five.csv"
expect 1 "ns_per_op" --threshold 2 "$dir/base.csv" "$dir/five.csv"

# 7b. a replay shorter than --min-time (1 ms by default) is not judged on time
write short.csv "$a_ok" "$(row bump "" ok 0.001 0.00099 0.00101 1.000000 8192)"
expect 0 "" "$dir/base.csv" "$dir/short.csv"
expect 1 "bump on traces/t.trace.*ns_per_op.*+100.0%" --min-time 0 "$dir/base.csv" "$dir/short.csv"

# 8. faster is reported, not failed; peak_rss (not deterministic) is not compared
write fast.csv "$(row implicit "fit=best,order=lifo" ok 0.0005 0.00049 0.00051 0.250000 8192 9999999)" "$b_ok"
expect 0 "better" "$dir/base.csv" "$dir/fast.csv"

# 9. a row missing from NEW fails; a row only in NEW is a note
write missing.csv "$a_ok"
expect 1 "bump on traces/t.trace.*row.*present.*missing" "$dir/base.csv" "$dir/missing.csv"
expect 0 "new row" "$dir/missing.csv" "$dir/base.csv"

# 10. columns are matched by name: another order and extra columns change nothing
python3 - "$dir/base.csv" "$dir/shuffled.csv" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
cols = list(reversed(list(rows[0].keys()))) + ["p50_ns", "p99_ns"]
with open(sys.argv[2], "w", newline="") as f:
    w = csv.DictWriter(f, cols, restval="7")
    w.writeheader()
    w.writerows(rows)
EOF
expect 0 "passed: 2 rows matched" "$dir/base.csv" "$dir/shuffled.csv"

# 11. --ignore leaves a column out
expect 0 "" --ignore peak_footprint "$dir/base.csv" "$dir/fp.csv"
expect 0 "" --ignore frag1,peak_footprint "$dir/base.csv" "$dir/fp.csv"

# 12. bad input: exit 2 with a message naming the file (and line)
expect 2 "nofile.csv: cannot read" "$dir/base.csv" "$dir/nofile.csv"
write dup.csv "$a_ok" "$b_ok" "$a_ok"
expect 2 "dup.csv:4: a second row for implicit:fit=best,order=lifo" "$dir/base.csv" "$dir/dup.csv"
echo "x,y" >"$dir/nokey.csv"
expect 2 "nokey.csv:1: no column allocator, params, trace" "$dir/base.csv" "$dir/nokey.csv"
expect 2 "" --threshold -1 "$dir/base.csv" "$dir/base.csv"

# 13. instruction CSVs: a tolerance on instructions_per_op, ops exact
ih=allocator,params,trace,instructions,ops,instructions_per_op
printf '%s\n%s\n%s\n' "$ih" "implicit,fit=best,traces/t.trace,100000,1000,100.00" \
  "null,,traces/t.trace,20000,1000,20.00" >"$dir/i-base.csv"
printf '%s\n%s\n%s\n' "$ih" "implicit,fit=best,traces/t.trace,101000,1000,101.00" \
  "null,,traces/t.trace,20000,1000,20.00" >"$dir/i-small.csv"
printf '%s\n%s\n%s\n' "$ih" "implicit,fit=best,traces/t.trace,105000,1000,105.00" \
  "null,,traces/t.trace,20000,1000,20.00" >"$dir/i-big.csv"
printf '%s\n%s\n%s\n' "$ih" "implicit,fit=best,traces/t.trace,100000,999,100.10" \
  "null,,traces/t.trace,20000,1000,20.00" >"$dir/i-ops.csv"
printf '%s\n%s\n' "$ih" "implicit,fit=best,traces/t.trace,100000,1000,100.00" >"$dir/i-missing.csv"
expect 0 "passed: 2 rows matched" "$dir/i-base.csv" "$dir/i-small.csv"
expect 1 "instructions_per_op.*100.00.*105.00.*+5.0%" "$dir/i-base.csv" "$dir/i-big.csv"
expect 0 "" --tolerance 10 "$dir/i-base.csv" "$dir/i-big.csv"
expect 0 "better" "$dir/i-big.csv" "$dir/i-base.csv"
expect 1 "ops.*1000.*999" "$dir/i-base.csv" "$dir/i-ops.csv"
expect 1 "null on traces/t.trace.*missing" "$dir/i-base.csv" "$dir/i-missing.csv"

# 13b. a replay on threads gets --tolerance-threaded (10% by default) instead
ith=allocator,params,trace,instructions,ops,instructions_per_op,threads
printf '%s\n%s\n' "$ith" "locked,,traces/t.trace,100000,1000,100.00,4" >"$dir/t-base.csv"
printf '%s\n%s\n' "$ith" "locked,,traces/t.trace,105000,1000,105.00,4" >"$dir/t-five.csv"
printf '%s\n%s\n' "$ith" "locked,,traces/t.trace,112000,1000,112.00,4" >"$dir/t-twelve.csv"
expect 0 "passed" "$dir/t-base.csv" "$dir/t-five.csv"
expect 1 "instructions_per_op.*+12.0%" "$dir/t-base.csv" "$dir/t-twelve.csv"
expect 1 "instructions_per_op.*+5.0%" --tolerance-threaded 2 "$dir/t-base.csv" "$dir/t-five.csv"

# 14. a results CSV against an instruction CSV is refused
expect 2 "compare like with like" "$dir/base.csv" "$dir/i-base.csv"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
