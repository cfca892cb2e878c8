#!/usr/bin/env bash
# QQP with the MPNet teacher: a sample of 21,001 training pairs (the figures' data: 2,496 dev pairs), length 64; the
# teacher fine-tuned two epochs, the matched Bi-LSTM baseline (MPNet's vocabulary and embeddings, siamese; 3 and 10
# epochs), the student on 10 augmented copies per pair (QQP's default), batches of 256, three epochs.
# The teacher labels in bf16 (OpenVINO) where the CPU has bf16 instructions, else in fp32 (PRECISION=fp32|bf16
# chooses).
#
#   DATA=/data MPNET=/models/all-mpnet-base-v2 bash recipes/qqp_mpnet.sh
set -euo pipefail
DATA=${DATA:?set DATA to a folder with QQP/train.tsv and QQP/dev.tsv (GLUE layout: id qid1 qid2 question1 question2 is_duplicate)}
MPNET=${MPNET:?set MPNET to a PaddleNLP directory of all-mpnet-base-v2 (convert_teacher.py writes one from a HuggingFace folder)}
RUNS=${RUNS:-runs}
PRECISION=${PRECISION:-$(grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo && echo bf16 || echo fp32)}
mkdir -p "$RUNS"
DATA=$(cd "$DATA" && pwd) MPNET=$(cd "$MPNET" && pwd) RUNS=$(cd "$RUNS" && pwd)
cd "$(dirname "$0")/.."

QQP="--task_name qqp --train_file $DATA/QQP/train.tsv --dev_file $DATA/QQP/dev.tsv --max_seq_length 64"
python teacher.py $QQP --model_name_or_path $MPNET --max_epoch 2 --lr 5e-5 --eval_steps 200 \
    --output_dir $RUNS/teacher-qqp-mpnet
python small.py $QQP --vocab_path $MPNET/vocab.txt --max_epoch 3 --eval_steps 100 --output_dir $RUNS/small-qqp-mpnet
# the 3-epoch baseline's best checkpoint was its last: also 10 epochs (the MiniLM protocol's), the best of both reported
python small.py $QQP --vocab_path $MPNET/vocab.txt --max_epoch 10 --eval_steps 100 --output_dir $RUNS/small-qqp-mpnet-10ep
python bert_distill.py $QQP --teacher_dir $RUNS/teacher-qqp-mpnet/best --max_epoch 3 --eval_steps 300 \
    --teacher_precision $PRECISION --teacher_batch_size 64 --cache_dir $RUNS/cache --output_dir $RUNS/distill-qqp-mpnet
python results_table.py $RUNS/teacher-qqp-mpnet $RUNS/small-qqp-mpnet* $RUNS/distill-qqp-mpnet* \
    --alias DATA=$DATA --alias MPNET=$MPNET --alias RUNS=$RUNS
