#!/bin/sh
# The recorder, end to end: tests/record_target's known allocations are recorded with
# scripts/record and compared with what it does, thread tags included; then each way a
# program can end (exit, _exit, abort, a crash, SIGKILL) and fork.
#   test_record.sh HARNESS RECORDER_LIB RECORD_TARGET
set -u
harness=$1 lib=$2 target=$3
here=$(cd "$(dirname "$0")" && pwd)
export ALLOCTRACE_HARNESS=$harness ALLOCTRACE_LIB=$lib
tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_record.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0

check() { # WHAT CONDITION...
  what=$1; shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $what" >&2; fi
}

record() { # OUT ARGS...: records the target, leaves its exit status in $status
  out=$1; shift
  "$here/../scripts/record" -o "$out" -- "$target" "$@" 2>"$tmp/record.err"
  status=$?
}

# Ids renamed in order of first appearance, so that the allocations before the window
# (the C library's own) do not matter.
window() {
  awk '/^m [0-9]+ 77777$/ { on = 1; mark = $2 }
       on { print }
       on && $1 == "f" && $2 == mark { exit }' "$1" |
    awk '$2 != "-1" && ($1 == "m" || $1 == "f" || $1 == "r" || $1 == "c" || $1 == "a") {
           if (!($2 in id)) id[$2] = n++
           $2 = id[$2]
         }
         { print }'
}

# 1. The exact sequence, on two threads.
cat >"$tmp/want" <<'WANT'
m 0 77777
m 1 100
c 2 1 200
r 1 300
r 3 50
a 4 64 1000
a 5 4096 8192
a 6 256 77
a 7 4096 10
a 8 4096 4096
a 9 16 40
f -1
r 3 0
r 1 400
m 10 5 @1
m 11 24 @1
f 10 @1
f 11
m 12 0
f 12
f 2
f 4
f 5
f 6
f 7
f 8
f 9
f 1
f -1
f 0
WANT
record "$tmp/seq.trace"
check "sequence: exit status $status" [ "$status" -eq 0 ]
window "$tmp/seq.trace" >"$tmp/got"
check "sequence: the recorded trace is the program's" diff -u "$tmp/want" "$tmp/got"
check "sequence: one process, one trace" [ "$(ls "$tmp" | grep -c '^seq.*trace$')" -eq 1 ]
check "sequence: the trace reads without a warning" \
  sh -c "'$harness' info '$tmp/seq.trace' 2>&1 >/dev/null | grep -q . && exit 1 || exit 0"
# the binary trace holds the same ops
record "$tmp/seq.atb"
"$harness" convert "$tmp/seq.atb" "$tmp/seq2.trace"
window "$tmp/seq2.trace" >"$tmp/got2"
check "sequence: recorded as binary, the same" diff -u "$tmp/want" "$tmp/got2"

# 2. Every ending leaves a complete trace with the blocks still live.
for mode in exit:0 _exit:3 abort:134 segv:139; do
  name=${mode%%:*} want_status=${mode#*:}
  record "$tmp/$name.trace.zst" "$name"
  check "$name: exit status $status, expected $want_status" [ "$status" -eq "$want_status" ]
  "$harness" convert "$tmp/$name.trace.zst" "$tmp/$name.txt.trace" 2>"$tmp/$name.warn"
  check "$name: read without a warning" [ ! -s "$tmp/$name.warn" ]
  check "$name: the live blocks are there" grep -q '^m [0-9]* 222222$' "$tmp/$name.txt.trace"
  check "$name: calloc recorded" grep -q '^c [0-9]* 1 111111$' "$tmp/$name.txt.trace"
done

# 3. SIGKILL: what was flushed is read, with a warning that the recording did not finish.
record "$tmp/kill.atb" kill
check "kill: exit status $status, expected 137" [ "$status" -eq 137 ]
"$harness" info "$tmp/kill.atb" >"$tmp/kill.info" 2>"$tmp/kill.warn"
check "kill: the trace is read" [ -s "$tmp/kill.info" ]
check "kill: warned as unfinished" grep -q 'unfinished recording' "$tmp/kill.warn"
ops=$(sed -n 's/^ops *\([0-9]*\):.*/\1/p' "$tmp/kill.info")
check "kill: a million records or more flushed (got ${ops:-none})" [ "${ops:-0}" -ge 1000000 ]

# 4. fork: the child writes its own trace, which starts with the blocks it inherits.
record "$tmp/fork.trace" fork
check "fork: exit status $status" [ "$status" -eq 0 ]
child=$(ls "$tmp" | grep '^fork\.[0-9][0-9]*\.trace$')
check "fork: the child's trace is fork.PID.trace (got '$child')" [ -n "$child" ]
if [ -n "$child" ]; then
  awk '$1 == "m" && $3 == 4242 { id = $2 }
       $1 == "m" && $3 == 4343 { kept = 1 }
       $1 == "f" && $2 == id && kept { freed = 1 }
       $1 == "m" && $3 == 5151 && freed { ok = 1 }
       END { exit !ok }' "$tmp/$child"
  check "fork: inherited blocks, then the child's own ops" [ $? -eq 0 ]
  check "fork: the parent's trace does not hold the child's ops" \
    sh -c "! grep -q ' 5151\$' '$tmp/fork.trace'"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
