#!/usr/bin/env bash
# SST-2 8k with the MPNet teacher: the first 8,000 SST-2 training sentences, one teacher epoch at length 64, the
# matched Bi-LSTM baseline (MPNet's vocabulary and embeddings), the student on 20 augmented copies per sentence;
# then the same student with the other 59,349 training sentences as unlabelled text instead of copies.
# Reproduces the "first 8,000" rows of results/README.md (teacher 0.9232, baseline 0.8119, distilled 0.8463;
# with the unlabelled sentences 0.8727). About 1.5 hours on 2 CPU cores (teacher 44 min, labelling 27 + 8 min).
#
#   DATA=/data MPNET=/models/all-mpnet-base-v2 bash recipes/sst2_8k_mpnet.sh
#   SWEEP=1 ...   also runs the other students of the results' "what was tried" table
set -euo pipefail
DATA=${DATA:?set DATA to a folder with SST-2/train.tsv and SST-2/dev.tsv (GLUE SST-2: sentence<TAB>label, header first)}
MPNET=${MPNET:?set MPNET to a PaddleNLP directory of all-mpnet-base-v2 (convert_teacher.py writes one from a HuggingFace folder)}
RUNS=${RUNS:-runs}  # where the runs, the logits cache and the unlabelled file go
SWEEP=${SWEEP:-0}
mkdir -p "$RUNS"
DATA=$(cd "$DATA" && pwd) MPNET=$(cd "$MPNET" && pwd) RUNS=$(cd "$RUNS" && pwd)
cd "$(dirname "$0")/.."

SST="--task_name sst-2 --train_file $DATA/SST-2/train.tsv --dev_file $DATA/SST-2/dev.tsv --max_train_samples 8000"
python teacher.py $SST --model_name_or_path $MPNET --max_seq_length 64 --max_epoch 1 --lr 5e-05 --eval_steps 50 \
    --output_dir $RUNS/teacher-sst-2-8k-mpnet
python small.py $SST --vocab_path $MPNET/vocab.txt --max_seq_length 64 --max_epoch 3 --eval_steps 50 \
    --output_dir $RUNS/small-sst-2-8k
python bert_distill.py $SST --teacher_dir $RUNS/teacher-sst-2-8k-mpnet/best --max_seq_length 64 --max_epoch 2 \
    --eval_steps 100 --cache_dir $RUNS/cache --output_dir $RUNS/distill-sst-2-8k-mpnet-n20   # n_iter 20, the default

# More distinct text instead of copies: sentences 8,001 on, labels dropped, labelled by the teacher alone.
tail -n +8002 $DATA/SST-2/train.tsv | cut -f1 > $RUNS/sst-2-8k-pool.txt
python bert_distill.py $SST --teacher_dir $RUNS/teacher-sst-2-8k-mpnet/best --max_seq_length 64 --n_iter 0 \
    --unlabeled_file $RUNS/sst-2-8k-pool.txt --max_epoch 2 --eval_steps 200 --cache_dir $RUNS/cache \
    --output_dir $RUNS/distill-sst-2-8k-mpnet-pool

if [ "$SWEEP" = 1 ]; then  # n_iter 10: one epoch, hard labels, three epochs, hidden 150, KL at temperature 2
    T="--teacher_dir $RUNS/teacher-sst-2-8k-mpnet/best --max_seq_length 64 --n_iter 10 --eval_steps 100"
    T="$T --cache_dir $RUNS/cache --teacher_backend inference"
    python bert_distill.py $SST $T --max_epoch 1 --output_dir $RUNS/distill-sst-2-8k-mpnet
    python bert_distill.py $SST $T --max_epoch 1 --alpha 0.5 --output_dir $RUNS/distill-sst-2-8k-mpnet-a05
    python bert_distill.py $SST $T --max_epoch 3 --output_dir $RUNS/distill-sst-2-8k-mpnet-e3
    python bert_distill.py $SST $T --max_epoch 3 --hidden_size 150 --output_dir $RUNS/distill-sst-2-8k-mpnet-h150
    python bert_distill.py $SST $T --max_epoch 2 --loss kl --temperature 2.0 \
        --output_dir $RUNS/distill-sst-2-8k-mpnet-kl2
fi
python results_table.py $RUNS/teacher-sst-2-8k-mpnet $RUNS/small-sst-2-8k $RUNS/distill-sst-2-8k-mpnet* \
    --alias DATA=$DATA --alias MPNET=$MPNET --alias RUNS=$RUNS
