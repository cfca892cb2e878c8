#!/usr/bin/env bash
# ChnSentiCorp with the multilingual-e5-small teacher: all 9,600 training examples at length 128 (the default; 256
# in stage 5).
#  1. The teacher's learning rate, chosen on a subset: one epoch on the first 2,400 examples at each of 2e-5, 5e-5
#     and 1e-4; the best dev accuracy picks LR (set LR to skip the sweep). About 7 minutes each on 2 CPU cores.
#  2. The teacher fine-tuned three epochs on one schedule at LR (about 65 minutes).
#  3. The matched Bi-LSTM baseline (jieba words, random embeddings, the defaults, 3 epochs).
#  4. Its students (n_iter 4, hard labels mixed in: --alpha 0.5, 2 epochs), without and with the unlabelled review
#     pool (ChnSentiCorp/pool.txt, one sentence a line), labelled once by the teacher.
#  5. Reviews read to 256 tokens instead of 128 (12.8% of the training reviews are longer than 128 e5 tokens): the
#     teacher (three epochs at LR, about 75 minutes), its matched baseline and its student with the pool.
#
#   DATA=/data E5=/models/multilingual-e5-small bash recipes/chnsenticorp_e5.sh
#   ONE_EPOCH=1 ...   instead the earlier one-epoch protocol (teacher one epoch at 5e-5, student n_iter 4, 3 epochs)
set -euo pipefail
DATA=${DATA:?set DATA to a folder with ChnSentiCorp/train.tsv (label<TAB>text_a) and ChnSentiCorp/dev.tsv (qid<TAB>label<TAB>text_a)}
E5=${E5:?set E5 to a PaddleNLP directory of multilingual-e5-small (convert_teacher.py writes one from a HuggingFace folder)}
RUNS=${RUNS:-runs}
mkdir -p "$RUNS"
DATA=$(cd "$DATA" && pwd) E5=$(cd "$E5" && pwd) RUNS=$(cd "$RUNS" && pwd)
cd "$(dirname "$0")/.."

ZH="--task_name chnsenticorp --train_file $DATA/ChnSentiCorp/train.tsv --dev_file $DATA/ChnSentiCorp/dev.tsv"
if [ "${ONE_EPOCH:-0}" = 1 ]; then
    python teacher.py $ZH --model_name_or_path $E5 --max_epoch 1 --lr 5e-05 --eval_steps 100 \
        --output_dir $RUNS/teacher-chnsenticorp-e5
    python small.py $ZH --max_epoch 3 --eval_steps 75 --output_dir $RUNS/small-chnsenticorp-defaults
    python bert_distill.py $ZH --teacher_dir $RUNS/teacher-chnsenticorp-e5/best --n_iter 4 --eval_steps 300 \
        --cache_dir $RUNS/cache --max_epoch 3 --teacher_backend inference --output_dir $RUNS/distill-chnsenticorp-e5
else
    if [ -z "${LR:-}" ]; then
        for lr in 2e-5 5e-5 1e-4; do
            python teacher.py $ZH --model_name_or_path $E5 --max_train_samples 2400 --max_epoch 1 --lr $lr \
                --eval_steps 50 --output_dir $RUNS/teacher-chnsenticorp-e5-2400-lr$lr
        done
        LR=$(python -c 'import json, sys
best = {lr: json.load(open(f"{sys.argv[1]}-lr{lr}/results.json"))["metrics"]["acc"] for lr in sys.argv[2:]}
print(max(best, key=best.get))' $RUNS/teacher-chnsenticorp-e5-2400 2e-5 5e-5 1e-4)
        echo "learning rate chosen on the subset: $LR"
    fi
    python teacher.py $ZH --model_name_or_path $E5 --max_epoch 3 --lr $LR --eval_steps 100 \
        --output_dir $RUNS/teacher-chnsenticorp-e5-3ep
    python small.py $ZH --max_epoch 3 --eval_steps 75 --output_dir $RUNS/small-chnsenticorp-defaults
    T="--teacher_dir $RUNS/teacher-chnsenticorp-e5-3ep/best --n_iter 4 --eval_steps 300 --cache_dir $RUNS/cache"
    python bert_distill.py $ZH $T --max_epoch 2 --alpha 0.5 --output_dir $RUNS/distill-chnsenticorp-e5-3ep-a05
    python bert_distill.py $ZH $T --max_epoch 2 --alpha 0.5 --unlabeled_file $DATA/ChnSentiCorp/pool.txt \
        --output_dir $RUNS/distill-chnsenticorp-e5-3ep-pool
    L="--max_seq_length 256"
    python teacher.py $ZH $L --model_name_or_path $E5 --max_epoch 3 --lr $LR --eval_steps 100 \
        --output_dir $RUNS/teacher-chnsenticorp-e5-3ep-len256
    python small.py $ZH $L --max_epoch 3 --eval_steps 75 --output_dir $RUNS/small-chnsenticorp-len256
    python bert_distill.py $ZH $L --teacher_dir $RUNS/teacher-chnsenticorp-e5-3ep-len256/best --n_iter 4 \
        --eval_steps 300 --cache_dir $RUNS/cache --max_epoch 2 --alpha 0.5 \
        --unlabeled_file $DATA/ChnSentiCorp/pool.txt --output_dir $RUNS/distill-chnsenticorp-e5-3ep-len256-pool
fi
python results_table.py $RUNS/teacher-chnsenticorp-e5* $RUNS/small-chnsenticorp-* $RUNS/distill-chnsenticorp-e5* \
    --alias DATA=$DATA --alias E5=$E5 --alias RUNS=$RUNS
