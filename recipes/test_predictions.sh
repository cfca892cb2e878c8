#!/usr/bin/env bash
# Blind test predictions of trained runs, for whoever holds the test labels to score them: each run's best/ is
# exported (export_model.py, fp32) and predict.py labels the texts of a test file without labels, writing
# $OUT/<run>/test_predictions.tsv: one line per test text in file order, label<TAB>probability of each label
# (OUT=results unless set: OUT=results/scarce for the data-scarce runs, which have their own table there).
# The test file is a task's test.tsv: a header line, the text in the last column (SST-2: sentence; ChnSentiCorp:
# qid<TAB>text_a). Nothing is chosen on these texts: the runs and their checkpoints are fixed before.
#
#   TEST=/data/SST-2/test.tsv bash recipes/test_predictions.sh runs/teacher-sst-2-mpnet runs/distill-sst-2-mpnet
set -euo pipefail
TEST=${TEST:?set TEST to a test.tsv: a header line, then one example per line with its text in the last column}
OUT=${OUT:-$(dirname "$0")/../results}
[ $# -ge 1 ] || { echo "usage: TEST=test.tsv $0 RUN_DIR..." >&2; exit 2; }
[ -f "$TEST" ] || { echo "TEST $TEST: no such file" >&2; exit 2; }
[ -d "$OUT" ] || { echo "OUT $OUT: no such folder" >&2; exit 2; }
for run in "$@"; do
    [ -f "$run/results.json" ] && [ -d "$run/best" ] || { echo "$run: no results.json and best/ (not a finished run)" >&2; exit 2; }
done
RUNS=$(for run in "$@"; do (cd "$run" && pwd); done)
TEST=$(cd "$(dirname "$TEST")" && pwd)/$(basename "$TEST")
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
tail -n +2 "$TEST" | awk -F'\t' '{print $NF}' > "$scratch/texts.txt"

for run in $RUNS; do
    script=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['script'])" "$run/results.json")
    source_flag=$([ "$script" = teacher ] && echo --teacher_dir || echo --student_dir)
    python export_model.py $source_flag "$run/best" --output_dir "$scratch/export"
    mkdir -p "$OUT/$(basename "$run")"
    out="$OUT/$(basename "$run")/test_predictions.tsv"
    python predict.py --model_dir "$scratch/export" --input_file "$scratch/texts.txt" > "$scratch/predictions.tsv"
    mv "$scratch/predictions.tsv" "$out"
    rm -rf "$scratch/export"
    echo "$out: $(wc -l < "$out") predictions"
done
