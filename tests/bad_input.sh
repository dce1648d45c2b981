#!/usr/bin/env bash
# Bad input: malformed traces, unusable files, bad command lines and config files. Each case
# asserts the documented exit code (src/cli.h) and that standard error holds exactly one line,
# "harness: ...", naming the file, the line and the problem (checked by substrings).
# Usage: tests/bad_input.sh HARNESS   (meson passes the harness it built)
set -u
H=$(realpath "${1:?usage: bad_input.sh HARNESS}")
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
chmod 755 "$T" # the unreadable-file case runs as nobody, who must reach the directory
cd "$T" || exit 1

pass=0 fail=0 skipped=0
FAST=(--quiet --reps=1 --warmup=0 --sample=0 --timeout=60)

# expect CODE SUBSTRING... -- ARGS...: runs the harness (with FAST, and --alloc=bump unless
# ARGS choose modules, unless ARGS start with "raw"), checks the exit code, one stderr line
# starting "harness: ", and every substring; with no substring, an empty stderr.
expect() {
  local code=$1 subs=() args
  shift
  while [ "$1" != -- ]; do
    subs+=("$1")
    shift
  done
  shift
  if [ "${1:-}" = raw ]; then
    shift
    args=("$@")
  else
    args=("${FAST[@]}" "$@")
    local choose=' --(alloc|config)='
    [[ " $* " =~ $choose ]] || args=(--alloc=bump "${args[@]}")
  fi
  timeout 60 "${RUNAS[@]}" "$H" "${args[@]}" >out 2>err </dev/null
  local rc=$? why=""
  [ "$rc" = "$code" ] || why="exit code $rc, wanted $code"
  local n
  n=$(wc -l <err)
  if [ ${#subs[@]} = 0 ]; then
    [ -n "$why" ] || [ ! -s err ] || why="stderr is not empty"
  elif [ -z "$why" ] && { [ "$n" != 1 ] || ! head -c 9 err | grep -q '^harness: '; }; then
    why="stderr has $n lines, wanted one 'harness: ...' line"
  fi
  for s in "${subs[@]}"; do
    [ -n "$why" ] || grep -qF -- "$s" err || why="stderr lacks '$s'"
  done
  if [ -z "$why" ]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: harness ${args[*]}: $why"
    sed 's/^/  stderr: /' err | head -5 | cat -v
  fi
}
RUNAS=()

# check WHAT COMMAND...: a pass if COMMAND succeeds, else a failure saying WHAT.
check() {
  local what=$1
  shift
  if "$@"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: $what"
    sed 's/^/  stderr: /' err 2>/dev/null | head -3 | cat -v
  fi
}

absent() {
  for f; do [ ! -e "$f" ] || return 1; done
}

# clean_run ARGS...: the harness (FAST, bump) succeeds and says nothing on stderr.
clean_run() {
  "$H" "${FAST[@]}" --alloc=bump "$@" >out 2>err && [ ! -s err ]
}

skip() {
  skipped=$((skipped + 1))
  echo "SKIP: $*"
}

# --- malformed traces: exit 3, nothing run ---
printf 'alloctrace 1\nm 1 10\nm 2' >truncated.trace
expect 3 'truncated.trace:3:' 'missing size' -- truncated.trace
printf 'allocTr' >truncated-header.trace
expect 3 'truncated-header.trace:1:' 'not a trace' -- truncated-header.trace
printf 'alloctrace 1\nm 1 281474976710657\n' >huge.trace
expect 3 'huge.trace:2:' 'larger than any allocation can be' -- huge.trace
printf 'alloctrace 1\nm 1 999999999999999999999999\n' >overflow.trace
expect 3 'overflow.trace:2:' "size '999999999999999999999999' is too large" -- overflow.trace
printf 'alloctrace 1\nm 1 8\nm 2 -5\n' >negative.trace
expect 3 'negative.trace:3:' 'size -5 is negative' -- negative.trace
printf 'alloctrace 1\nm 9223372036854775808 8\n' >id63.trace
expect 3 'id63.trace:2:' 'id 9223372036854775808 is out of range' -- id63.trace
printf 'alloctrace 1\nm 18446744073709551616 8\n' >id64.trace
expect 3 'id64.trace:2:' 'is too large' -- id64.trace
printf 'alloctrace 1\nf -2\n' >negid.trace
expect 3 'negid.trace:2:' 'id -2 is negative' -- negid.trace
printf 'alloctrace 1\nm 1 8\nf 4\n' >unknown-free.trace
expect 3 'unknown-free.trace:3:' 'free of id 4, which was never allocated' -- unknown-free.trace
printf 'alloctrace 1\nm 1 8\nf 1\nf 1\n' >double-free.trace
expect 3 'double-free.trace:4:' 'double free of id 1 (freed at line 3)' -- double-free.trace
printf 'alloctrace 1\nm 1 8\nf 1\nr 1 9\n' >realloc-freed.trace
expect 3 'realloc-freed.trace:4:' 'realloc of id 1, which was freed at line 3' -- realloc-freed.trace
printf 'alloctrace 1\nm 1 8\nm 1 8\n' >live-again.trace
expect 3 'live-again.trace:3:' 'still live (allocated at line 2)' -- live-again.trace
printf 'm 1 8\nf 1\n' >no-header.trace
expect 3 'no-header.trace:1:' "expected the header 'alloctrace 1'" -- no-header.trace
printf 'allocrace 1\nm 1 8\n' >magic.trace
expect 3 'magic.trace:1:' 'not a trace' -- magic.trace
printf 'alloctrace 2\nm 1 8\n' >version.trace
expect 3 'version.trace:1:' 'unsupported trace version 2' -- version.trace
printf 'alloctrace\nm 1 8\n' >no-version.trace
expect 3 'no-version.trace:1:' 'missing version' -- no-version.trace
printf 'alloctrace 1 extra\n' >header-junk.trace
expect 3 'header-junk.trace:1:' 'unexpected text after the header' -- header-junk.trace
: >empty.trace
expect 3 'empty.trace: empty file' -- empty.trace
printf '# only a comment\n\n   \n' >comments.trace
expect 3 'comments.trace:3:' 'empty trace: no header line' -- comments.trace
mkdir adir
expect 3 'adir: is a directory' -- adir
expect 3 'missing.trace: No such file or directory' -- missing.trace
mkfifo fifo.trace # opening a FIFO must not wait for a writer
expect 3 'fifo.trace: not a regular file' -- fifo.trace
expect 3 '/dev/zero: not a regular file' -- /dev/zero
printf 'alloctrace 1\nm 1 \xff\xfe\n' >utf8-number.trace
expect 3 'utf8-number.trace:2:' "size '\\xff\\xfe' is not a number" -- utf8-number.trace
printf 'alloctrace 1\n\xc3\x28 1 8\n' >utf8-event.trace
expect 3 'utf8-event.trace:2:' "unknown event '\\xc3(' (expected m, f, r, c, a or x)" -- utf8-event.trace
printf 'alloctrace 1\nm 1 8 \033]0;owned\007\n' >escape.trace
expect 3 'escape.trace:2:' "unexpected '\\x1b]0;owned\\x07' at the end of the line" -- escape.trace
printf '\xff\xfea\0l\0l\0o\0c\0\n\0' >utf16.trace
expect 3 'utf16.trace:1:' 'binary data or UTF-16 text' -- utf16.trace
head -c 3000 "$H" >elf.trace
expect 3 'elf.trace:1:' 'not a trace' -- elf.trace
printf 'alloctrace 1\nm 1 8\0\n' >nul.trace
expect 3 'nul.trace:2:' "size '8\\x00' is not a number" -- nul.trace
{ printf 'alloctrace 1\nm 1 '; head -c 1000000 /dev/zero | tr '\0' 7; printf '\n'; } >longline.trace
expect 3 'longline.trace:2:' "size '777" "...' is too large" -- longline.trace
printf 'alloctrace 1\r\nm 1 8\r\nf 2\r\n' >crlf-bad.trace
expect 3 'crlf-bad.trace:3:' 'free of id 2, which was never allocated' -- crlf-bad.trace
printf 'alloctrace 1\rm 1 8\rf 1\r' >cr-only.trace
expect 3 'cr-only.trace:1:' 'unexpected text after the header' -- cr-only.trace
printf 'alloctrace 1\nq 1 8\n' >event.trace
expect 3 'event.trace:2:' "unknown event 'q'" -- event.trace
printf 'alloctrace 1\nm 1 8 @70000\n' >thread.trace
expect 3 'thread.trace:2:' 'thread 70000 is out of range' -- thread.trace
printf 'alloctrace 1\na 1 48 8\n' >align.trace
expect 3 'align.trace:2:' 'alignment 48 is not a power of two' -- align.trace
printf 'alloctrace 1\nc 1 140737488355328 2\n' >calloc.trace
expect 3 'calloc.trace:2:' 'calloc of 140737488355328 x 2 bytes is larger' -- calloc.trace
printf 'alloctrace 1\nm 1 8 9\n' >junk.trace
expect 3 'junk.trace:2:' "unexpected '9' at the end of the line" -- junk.trace
printf '10 2 3\n' >short-header.rep
expect 3 'short-header.rep:1:' 'the .rep header has 3 of its four numbers' -- short-header.rep
printf '10\n2\n3\n1\nz 1 2\n' >event.rep
expect 3 'event.rep:5:' "unknown .rep event 'z' (expected a, f or r)" -- event.rep
printf '10 2 3 1\nm 1 2\n' >text-event.rep
expect 3 'text-event.rep:2:' "unknown .rep event 'm'" -- text-event.rep
printf '10 2 3 1\r\na 1\r\n' >missing.rep
expect 3 'missing.rep:2:' 'missing size' -- missing.rep
printf '10 2 3 1\na 0 8\nf 0\nf 0\n' >double.rep
expect 3 'double.rep:4:' 'double free of id 0 (freed at line 3)' -- double.rep
# A bad trace after a good one: nothing runs, not even the good one.
printf 'alloctrace 1\nm 1 8\nf 1\n' >good.trace
expect 3 'double-free.trace:4:' -- --csv=out.csv good.trace double-free.trace
check "a refused trace list left a CSV behind" absent out.csv out.csv.partial

# Binary traces ("ATRB"), when this harness has them: a converted trace, then damaged.
if "$H" convert good.trace base.atb 2>/dev/null; then
  python3 - <<'EOF'
import struct
b = open("base.atb", "rb").read()
def w(name, data):
    open(name, "wb").write(data)
w("trunc.atb", b[:-1])
w("header.atb", b[:20])
w("version.atb", b[:4] + struct.pack("<H", 9) + b[6:])
w("meta.atb", b[:24] + struct.pack("<I", 1 << 30) + b[28:])
w("trailing.atb", b + b"\0\0")
w("magic.atb", b"ATRX" + b[4:])
w("code.atb", b[:32] + b"\x0e" + b[33:])
w("unfinished.atb", b[:6] + b"\0" * 18 + b[24:] + b"\x20")  # no completion mark, a torn record
EOF
  expect 3 'trunc.atb: record 2' 'truncated binary trace: the file ends inside the record' \
    -- trunc.atb
  expect 3 'header.atb: truncated binary trace: the file ends inside its 32-byte header' \
    -- header.atb
  expect 3 'version.atb: unsupported binary trace version 9' -- version.atb
  expect 3 'meta.atb: corrupt header: metadata of 1073741824 bytes' -- meta.atb
  expect 3 'trailing.atb: record 3' '2 bytes follow the 2 records the header announces' \
    -- trailing.atb
  expect 3 'magic.atb:1: not a trace: binary data' -- magic.atb
  expect 3 'code.atb: record 1 (byte 32): corrupt record: unknown record byte 0x0e' -- code.atb
  expect 0 'harness: warning: unfinished.atb: unfinished recording' -- unfinished.atb
else
  skip "binary trace cases: this harness has no 'convert'"
fi

# Unreadable file: root reads anything, so this case runs as nobody.
printf 'alloctrace 1\nm 1 8\n' >secret.trace
chmod 000 secret.trace
if command -v setpriv >/dev/null && [ "$(id -u)" = 0 ] &&
  setpriv --reuid=nobody --regid=nogroup --clear-groups "$H" --help >/dev/null 2>&1; then
  RUNAS=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
  expect 3 'secret.trace: Permission denied' -- secret.trace
  RUNAS=()
elif [ "$(id -u)" != 0 ]; then
  expect 3 'secret.trace: Permission denied' -- secret.trace
else
  skip "unreadable file: running as root and setpriv cannot switch to nobody"
fi

# --- accepted oddities: exit 0, or a warning line ---
printf 'alloctrace 1\r\nm 1 8\r\nr 1 16 # comment\r\nf 1\r\n' >crlf.trace
check "a CRLF trace was refused" clean_run crlf.trace
printf '\xef\xbb\xbfalloctrace 1\nm 1 8\nf 1\n' >bom.trace
check "a trace with a UTF-8 byte-order mark was refused" clean_run bom.trace
printf 'alloctrace 1\n# no events\n' >no-ops.trace
check "a trace without ops was refused" clean_run --csv=no-ops.csv no-ops.trace
check "a trace without ops has a rate" python3 -c '
import csv, sys
r = next(csv.DictReader(open("no-ops.csv")))
sys.exit(r["ops"] != "0" or r["ops_per_sec"] != "" or r["ns_per_op"] != "")'
printf '10\n2\n5\n1\na 0 8\nf 0\n' >count.rep
expect 0 'harness: warning: count.rep: the .rep header announces 5 ops but 2 follow' -- count.rep

# --- command lines: exit 2 ---
expect 2 "unknown or incomplete option '--bogus'" -- --bogus good.trace
expect 2 "unknown or incomplete option '--reps'" -- raw good.trace --reps
expect 2 "unknown or incomplete option '-x'" -- -x good.trace
expect 2 "--reps: 'abc' is not a whole number from 1 to 101" -- --reps=abc good.trace
expect 2 "--reps: '0' is not a whole number" -- --reps=0 good.trace
expect 2 "--reps: '-3' is not a whole number" -- --reps=-3 good.trace
expect 2 "--reps: '99999999999999999999' is not a whole number" -- --reps=99999999999999999999 good.trace
expect 2 "--warmup: '1.5' is not a whole number" -- --warmup=1.5 good.trace
expect 2 "--timeout: '-1' is not a number of seconds" -- --timeout=-1 good.trace
expect 2 "--timeout: 'nan' is not a number of seconds" -- --timeout=nan good.trace
expect 2 "--sample: 'x' is not a whole number" -- --sample=x good.trace
expect 2 "--pin: '100000' is not a whole number" -- --pin=100000 good.trace
expect 2 'no trace given' -- raw --quiet
expect 2 "--alloc: unknown module 'nope' (see ./harness --list)" -- --alloc=nope good.trace
expect 2 "--alloc: empty module name" -- --alloc=implicit:fit=best,:x good.trace
expect 2 "--alloc: no module named in ','" -- --alloc=, good.trace
expect 2 "implicit: unknown parameter 'zz' (see ./harness --list)" -- --alloc=implicit:zz=1 good.trace
expect 2 "implicit: parameter 'fit' is not key=value" -- --alloc=implicit:fit good.trace
expect 2 "--alloc: parameter 'fit=best' comes before any module name" -- --alloc=fit=best good.trace
expect 2 "--alloc=implicit:fit=worst: implicit: parameter 'fit': 'worst' is not one of" \
  -- --alloc=bump --alloc=implicit:fit=worst good.trace
expect 2 "--alloc=implicit:fit=\\x1b[31m: implicit: parameter 'fit': '\\x1b[31m' is not" \
  -- --alloc=implicit:fit=$'\e[31m' good.trace
expect 2 "--region: '1.5G' is not a size from 1M to 64T" -- --region=1.5G good.trace
expect 2 "--region: '65T' is not a size from 1M to 64T" -- --region=65T good.trace
expect 2 "--region: '512K' is not a size from 1M to 64T" -- --region=512K good.trace
# A region the machine cannot reserve: address space capped at 4 GiB, 64T asked.
if (ulimit -v 4194304 && "$H" --help >/dev/null 2>&1) 2>/dev/null; then
  ( # in a subshell, for the limit: its verdict comes back as the exit status
    before=$fail
    ulimit -v 4194304
    expect 2 '--region: cannot reserve a region of 70368744177664 bytes' -- --region=64T good.trace
    exit $((fail > before))
  ) && pass=$((pass + 1)) || fail=$((fail + 1))
else
  skip "--region=64T under ulimit -v: the harness cannot start with 4 GiB of address space" \
    "(a sanitizer build reserves terabytes of shadow)"
fi
# Huge regions where the machine can reserve them (47-bit address space): a run in seconds
# (resident pages are counted below the module's break, not over terabytes), or a clear error.
reserved_or_refused() {
  timeout 60 "$H" "${FAST[@]}" --alloc=bump,implicit --check --region="$1" good.trace >out 2>err
  local rc=$?
  [ $rc = 0 ] || { [ $rc = 2 ] && grep -q "^harness: --region: cannot reserve" err; }
}
check "--region=64T: neither a run nor a clear refusal" reserved_or_refused 64T
check "--region=32T: neither a run nor a clear refusal" reserved_or_refused 32T

# --- output files: exit 4, checked before anything runs ---
expect 4 'harness: adir: cannot write: Is a directory' -- --csv=adir good.trace
expect 4 'nodir/x.csv: cannot write: No such file or directory' -- --csv=nodir/x.csv good.trace
# Devices are written in place, never replaced by a renamed FILE.partial. The test makes its
# own nodes: a harness with that bug must not replace the machine's /dev/null.
if mknod full c 1 7 2>/dev/null && mknod null c 1 3 2>/dev/null && (: >null) 2>/dev/null; then
  expect 4 'harness: full: cannot write: No space left on device' -- --csv=full good.trace
  check "--csv=full replaced the device" test -c full
  check "--csv=null failed" clean_run --csv=null good.trace
  check "--csv=null replaced the device" test -c null
else
  skip "--csv to a device: cannot make usable device nodes here (needs root, no nodev)"
fi
expect 4 'nodir/s.csv: cannot write: No such file or directory' \
  -- --csv=out2.csv --series=nodir/s.csv good.trace
check "a refused --series left a CSV behind" absent out2.csv out2.csv.partial

cp good.trace keep.trace
expect 2 'harness: keep.trace: is also a trace of this run; results are not written over it' \
  -- --csv=keep.trace keep.trace
check "--csv over a trace changed the trace" cmp -s good.trace keep.trace
expect 2 'harness: ./good.trace: is also a trace of this run' -- --series=./good.trace good.trace
expect 2 'harness: both.csv: --csv and --series name the same file' \
  -- --csv=both.csv --series=both.csv good.trace

# --- a trace bigger than the region: rows with failed counts, a warning, exit 5 ---
printf 'alloctrace 1\nm 1 100\nm 2 700000\nm 3 700000\nf 2\nf 3\nf 1\n' >big.trace
expect 5 'big.trace:4: the trace needs 1400100 bytes live here, more than the 1048576-byte region' \
  -- --region=1M --alloc=bump,implicit --csv=big.csv big.trace
python3 - big.csv <<'EOF' && pass=$((pass + 1)) || fail=$((fail + 1))
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
ok = len(rows) == 2 and all(r["status"] == "ok" and int(r["failed"]) > 0 for r in rows)
if not ok:
    print("FAIL: big.csv rows:", rows)
sys.exit(0 if ok else 1)
EOF

# --- config files (--config), when this harness has them ---
if "$H" --help | grep -q -- --config; then
  cfg() { # cfg FILE TEXT: writes an experiment file; TEXT is a printf format (escapes)
    # shellcheck disable=SC2059
    printf -- "$2" >"$1"
  }
  cfg syntax.yaml 'traces: [good.trace\nreps: 2\n'
  expect 2 'syntax.yaml:2:5:' "did not find expected ',' or ']'" -- --config=syntax.yaml
  cfg unknown.yaml 'traces: [good.trace]\nrepz: 2\n'
  expect 2 'unknown.yaml:2:1:' "unknown setting 'repz' (known: " -- --config=unknown.yaml
  cfg twice.yaml 'traces: [good.trace]\nreps: 2\nreps: 3\n'
  expect 2 'twice.yaml:3:1:' "setting 'reps' given twice (first at line 2)" -- --config=twice.yaml
  cfg noglob.yaml 'traces: [good.trace, "nothing-*.trace"]\n'
  expect 2 'noglob.yaml:1:22:' "traces: no file matches 'nothing-*.trace'" -- --config=noglob.yaml
  cfg reps.yaml 'traces: [good.trace]\nreps: many\n'
  expect 2 'reps.yaml:2:7:' "reps: 'many' is not a whole number from 1 to 101" \
    -- --config=reps.yaml
  cfg bigreps.yaml 'traces: [good.trace]\nreps: 99999999999999999999999\n'
  expect 2 'bigreps.yaml:2:7:' 'is not a whole number' -- --config=bigreps.yaml
  cfg region.yaml 'traces: [good.trace]\nregion: 64Q\n'
  expect 2 'region.yaml:2:9:' "region: '64Q' is not a size from 1M to 64T" -- --config=region.yaml
  cfg flag.yaml 'traces: [good.trace]\ncheck: maybe\n'
  expect 2 'flag.yaml:2:8:' "check: expected true or false, found 'maybe'" -- --config=flag.yaml
  cfg module.yaml 'traces: [good.trace]\nallocators: [nope]\n'
  expect 2 'module.yaml:2:14:' "unknown module 'nope'" -- --config=module.yaml
  cfg param.yaml 'traces: [good.trace]\nallocators:\n  - name: implicit\n    params: {zz: 1}\n'
  expect 2 'param.yaml:4:14:' "implicit: unknown parameter 'zz'" -- --config=param.yaml
  cfg value.yaml 'traces: [good.trace]\nallocators:\n  - name: implicit\n    params: {fit: worst}\n'
  expect 2 "implicit: parameter 'fit': 'worst' is not one of first next best" \
    -- --config=value.yaml
  cfg empty.yaml ''
  expect 2 'empty.yaml:1:1:' 'the file is empty' -- --config=empty.yaml
  cfg list.yaml '- a\n- b\n'
  expect 2 'list.yaml:1:1:' 'expected a mapping of settings' -- --config=list.yaml
  cfg utf8.yaml 'traces: [good.trace]\ndescription: "\xff\xfe"\n'
  expect 2 'utf8.yaml:2:15:' 'invalid leading UTF-8 octet' -- --config=utf8.yaml
  cfg escape.yaml 'traces: [good.trace]\nreps: "\\e]0;owned\\a\\nX"\n'
  expect 2 'escape.yaml:2:7:' "reps: '\\x1b]0;owned\\x07\\x0aX' is not a whole number" \
    -- --config=escape.yaml
  cfg tab.yaml 'traces:\n\t- good.trace\n'
  expect 2 'tab.yaml:2:1:' 'found character that cannot start any token' -- --config=tab.yaml
  cfg alias.yaml 'traces: [good.trace]\nreps: *x\n'
  expect 2 'alias.yaml:2:7:' 'found undefined alias' -- --config=alias.yaml
  python3 -c "print('traces: ' + '[' * 3000 + ']' * 3000)" >deep.yaml
  expect 2 'deep.yaml:1:10:' 'traces: expected a file name or a glob, found a list' \
    -- --config=deep.yaml
  expect 2 'missing.yaml: cannot read: No such file or directory' -- --config=missing.yaml
  expect 2 'adir: cannot read: Is a directory' -- --config=adir
  cfg crlf.yaml 'traces: [good.trace]\r\nreps: 1\r\n'
  expect 0 -- --config=crlf.yaml
else
  skip "config cases: this harness has no --config"
fi

total=$((pass + fail))
echo "$total inputs tried: $pass passed, $fail failed, $skipped skipped"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
