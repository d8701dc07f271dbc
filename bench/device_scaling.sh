#!/usr/bin/env bash
# bench/scaling.py on a many-core machine (16 cores), within ~6 minutes; no network needed.
#
# Run from the repository root of a copy of this working tree with its prebuilt .venv beside it:
#     OUT=/some/dir bench/device_scaling.sh
# Writes $OUT/scaling.json (the JSON document), $OUT/scaling.png (the speedup curves) and
# $OUT/scaling.log (progress, also on stderr), plus $OUT/machine.txt (cores, CPU, memory).
#
# Sizes: the combine on 16 HSC-size frames (4176x2048, ~1.6 GB of files), best of 1; ISR and
# end to end on min(48, max(4, 3n)) HSC detectors for n = 1, 2, 4, 8, 16 workers (48 with 16).
# Estimated on 16 cores: combine ~1.5 min, simulation ~15 s, ISR ~30 s, end to end ~1.5 min.
# A hard limit (SCALING_TIMEOUT_S, default 340 s) stops it in time; the log then says how far it got.
set -euo pipefail

OUT="${OUT:-$PWD/scaling-out}"
mkdir -p "$OUT"
MAX_WORKERS="${MAX_WORKERS:-16}"
TIMEOUT_S="${SCALING_TIMEOUT_S:-340}"

# the venv's interpreter; where its base interpreter is not on this machine, any python3 with the
# venv's site-packages on the path. The library comes from this tree either way (an editable
# install points at the directory it was built in).
PY=.venv/bin/python
export PYTHONPATH="$PWD/layers/isrflow${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import numpy, isrflow" 2>/dev/null; then
    SITE=$(ls -d .venv/lib/python3*/site-packages | head -1)
    PY=$(command -v python3.11 || command -v python3)
    export PYTHONPATH="$PYTHONPATH:$PWD/$SITE"
    "$PY" -c "import numpy, isrflow" || { echo "no usable python for .venv" >&2; exit 2; }
fi
export MPLBACKEND=Agg OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
export TMPDIR="${TMPDIR:-/tmp}"

{
    echo "nproc: $(nproc)"
    grep -m1 "model name" /proc/cpuinfo || true
    grep MemTotal /proc/meminfo || true
    "$PY" -V
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt" >&2

echo "[device_scaling] bench/scaling.py --max-workers $MAX_WORKERS (limit ${TIMEOUT_S} s)" >&2
start=$(date +%s)
status=0
timeout --signal=INT --kill-after=15 "$TIMEOUT_S" \
    "$PY" bench/scaling.py --max-workers "$MAX_WORKERS" --repeat 1 --out-png "$OUT/scaling.png" \
    > "$OUT/scaling.json" 2> >(tee "$OUT/scaling.log" >&2) || status=$?
echo "[device_scaling] exit $status after $(( $(date +%s) - start )) s; $(wc -c < "$OUT/scaling.json") bytes of JSON" >&2
exit "$status"
