#!/bin/sh
# Run every fuzz target for a fixed number of inputs, one after the other, and print one
# summary line per target. Usage: fuzz/campaign.sh [RUNS] [WORKDIR]   (default 100000, a temp dir)
# TARGETS="a b c" runs only those; NICE=10 runs them niced (shared machines); MAX_TIME=S stops
# each target after S seconds if it has not reached RUNS (the summary line gives the real count).
# Known findings are tolerated (SPACEPANDA_FUZZ_SKIP_KNOWN=1) so that each target runs to the
# end; new crashes stop that target and leave a crash-* file in WORKDIR.
set -u
RUNS=${1:-100000}
WORK=${2:-$(mktemp -d)}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}
mkdir -p "$WORK"
cd "$WORK" || exit 1
PYTHONPATH="$ROOT" "$PY" -m fuzz.seeds "$WORK/corpus" >/dev/null
TARGETS=${TARGETS:-$(PYTHONPATH="$ROOT" "$PY" -c 'from fuzz.targets import NAMES; print(" ".join(NAMES))')}
for t in $TARGETS; do
    start=$(date +%s)
    SPACEPANDA_FUZZ_SKIP_KNOWN=1 PYTHONPATH="$ROOT" nice -n "${NICE:-0}" "$PY" -m fuzz.run "$t" -runs="$RUNS" \
        ${MAX_TIME:+-max_total_time="$MAX_TIME"} -artifact_prefix="$WORK/$t-" "$WORK/corpus/$t" >"$WORK/$t.log" 2>&1
    rc=$?
    done_line=$(grep -E '^Done [0-9]+ runs' "$WORK/$t.log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$WORK/$t.log" | tail -1)
    echo "$t: rc=$rc ${done_line:-no Done line} ($cov) corpus=$(ls "$WORK/corpus/$t" | wc -l) $(( $(date +%s) - start )) s"
done
echo "logs and artifacts in $WORK"
