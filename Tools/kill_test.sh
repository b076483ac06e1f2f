#!/usr/bin/env bash
# Kill test (issue 13): interrupt `flint convert` and `flint unpack` with SIGKILL, SIGTERM or SIGINT at random
# moments and check that (1) the output is never partial: it is either absent or a complete .flint that passes
# `flint inspect --verify`; (2) after SIGTERM/SIGINT no temporary file is left; (3) after any kill, the next
# run into the same folder leaves no temporary file (it removes those of dead processes).
#
#   Tools/kill_test.sh [TRIALS] [MODEL_FOLDER]        (default 30 trials, Tests/Fixtures/models/demo)
#   FLINT=path/to/flint Tools/kill_test.sh            (default .build/debug/flint; build it first)
set -uo pipefail
# Job control on: without it bash starts background commands with SIGINT ignored, so the SIGINT trials would
# test nothing (the convert simply finished).
set -m
cd "$(dirname "$0")/.."
TRIALS=${1:-30}
MODEL=${2:-Tests/Fixtures/models/demo}
FLINT=${FLINT:-.build/debug/flint}
[ -x "$FLINT" ] || { echo "kill_test: $FLINT not built (swift build)"; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# How long an uninterrupted convert and unpack take, to spread the kills over the whole run.
t0=$(date +%s%N); "$FLINT" convert "$MODEL" -o "$WORK/ref.flint" >/dev/null || exit 2; t1=$(date +%s%N)
"$FLINT" pack "$WORK/ref.flint" -o "$WORK/ref.flint.zst" --level 1 >/dev/null || exit 2
t2=$(date +%s%N); "$FLINT" unpack "$WORK/ref.flint.zst" -o "$WORK/ref2.flint" >/dev/null || exit 2; t3=$(date +%s%N)
CONVERT_MS=$(( (t1 - t0) / 1000000 )); UNPACK_MS=$(( (t3 - t2) / 1000000 ))
echo "uninterrupted: convert ${CONVERT_MS} ms, unpack ${UNPACK_MS} ms ($(uptime | sed 's/.*load/load/'))"

failures=0; complete=0; absent=0
temps() { find "$1" -maxdepth 1 -name '*.tmp-*' -o -maxdepth 1 -name '*.verify-*' | sort; }
for i in $(seq 1 "$TRIALS"); do
  signals=(KILL TERM INT); sig=${signals[$((RANDOM % 3))]}
  if (( i % 2 )); then kind=convert; span=$CONVERT_MS; else kind=unpack; span=$UNPACK_MS; fi
  dir="$WORK/t$i"; mkdir -p "$dir"; out="$dir/out.flint"
  cp "$WORK/ref.flint.zst" "$dir/in.flint.zst"
  delay_ms=$(( RANDOM % (span + 20) ))
  if [ $kind = convert ]; then "$FLINT" convert "$MODEL" -o "$out" >/dev/null 2>&1 &
  else "$FLINT" unpack "$dir/in.flint.zst" -o "$out" >/dev/null 2>&1 & fi
  pid=$!
  sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
  kill -s "$sig" "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null; status=$?
  verdict="ok"
  if [ -e "$out" ]; then
    if "$FLINT" inspect "$out" --verify >/dev/null 2>&1; then complete=$((complete + 1)); else verdict="PARTIAL OUTPUT"; fi
  else absent=$((absent + 1)); fi
  left=$(temps "$dir")
  if [ -n "$left" ] && [ "$sig" != KILL ]; then verdict="TEMP LEFT AFTER SIG$sig: $left"; fi
  # The next run into the same folder (another output name) must clean up after a killed one.
  "$FLINT" convert "$MODEL" -o "$dir/next.flint" >/dev/null 2>&1 || verdict="NEXT RUN FAILED"
  left=$(temps "$dir")
  [ -n "$left" ] && verdict="TEMP LEFT AFTER NEXT RUN: $left"
  printf '%2d %-7s SIG%-4s after %4d ms: exit %3d, output %s: %s\n' "$i" "$kind" "$sig" "$delay_ms" "$status" \
    "$([ -e "$out" ] && echo complete || echo absent)" "$verdict"
  [ "$verdict" = ok ] || failures=$((failures + 1))
done
echo "$TRIALS trials: $failures failures; outputs complete $complete, absent $absent"
[ "$failures" -eq 0 ]
