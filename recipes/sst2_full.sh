#!/usr/bin/env bash
# Full-scale SST-2 with the MPNet teacher: all 67,349 training sentences, one teacher epoch at length 64, the matched
# Bi-LSTM baseline (MPNet's vocabulary and embeddings), the student on 10 augmented copies per sentence (batches of
# 256, two epochs), and the same student with unlabelled movie-review sentences added to its transfer set.
# On 2 CPU cores the teacher epoch (2,105 steps) takes about 2.5 hours, labelling the transfer set (501,580
# examples) half an hour in bf16 and each student an hour or more. The teacher labels in bf16 (OpenVINO) where the
# CPU has bf16 instructions, else in fp32 (PRECISION=fp32|bf16 chooses). SEEDS="42 1 2" repeats the baseline
# and both students on more seeds (each seed augments anew, so its copies are labelled anew: about 70 minutes a
# student).
#
#   DATA=/data MPNET=/models/all-mpnet-base-v2 MOVIE_REVIEWS=/data/movie-reviews/sentences.txt \
#       bash recipes/sst2_full.sh
set -euo pipefail
DATA=${DATA:?set DATA to a folder with SST-2/train.tsv and SST-2/dev.tsv (GLUE SST-2: sentence<TAB>label, header first)}
MPNET=${MPNET:?set MPNET to a PaddleNLP directory of all-mpnet-base-v2 (convert_teacher.py writes one from a HuggingFace folder)}
# One unlabelled movie-review sentence per line, no header, none of them an SST-2 dev sentence (leave this unset to
# skip the last run).
MOVIE_REVIEWS=${MOVIE_REVIEWS:-}
RUNS=${RUNS:-runs}
SEEDS=${SEEDS:-42}
PRECISION=${PRECISION:-$(grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo && echo bf16 || echo fp32)}
mkdir -p "$RUNS"
DATA=$(cd "$DATA" && pwd) MPNET=$(cd "$MPNET" && pwd) RUNS=$(cd "$RUNS" && pwd)
[ -z "$MOVIE_REVIEWS" ] || MOVIE_REVIEWS=$(cd "$(dirname "$MOVIE_REVIEWS")" && pwd)/$(basename "$MOVIE_REVIEWS")
cd "$(dirname "$0")/.."

SST="--task_name sst-2 --train_file $DATA/SST-2/train.tsv --dev_file $DATA/SST-2/dev.tsv"
python teacher.py $SST --model_name_or_path $MPNET --max_seq_length 64 --max_epoch 1 --lr 5e-5 --eval_steps 100 \
    --output_dir $RUNS/teacher-sst-2-mpnet
T="--teacher_dir $RUNS/teacher-sst-2-mpnet/best --max_seq_length 64 --n_iter 10 --max_epoch 2 --batch_size 256
   --eval_steps 500 --teacher_precision $PRECISION --teacher_batch_size 64"
for seed in $SEEDS; do
    suffix=$([ $seed = 42 ] || echo -s$seed)  # seed 42 (the default) keeps the table's run names
    python small.py $SST --vocab_path $MPNET/vocab.txt --max_seq_length 64 --max_epoch 3 --eval_steps 200 \
        --seed $seed --output_dir $RUNS/small-sst-2-mpnet$suffix
    python bert_distill.py $SST $T --seed $seed --cache_dir $RUNS/cache --output_dir $RUNS/distill-sst-2-mpnet$suffix
    if [ -n "$MOVIE_REVIEWS" ]; then
        python bert_distill.py $SST $T --seed $seed --unlabeled_file $MOVIE_REVIEWS --cache_dir $RUNS/cache \
            --output_dir $RUNS/distill-sst-2-mpnet-reviews$suffix
    fi
done
python results_table.py $RUNS/teacher-sst-2-mpnet $RUNS/small-sst-2-mpnet $RUNS/distill-sst-2-mpnet \
    $RUNS/distill-sst-2-mpnet-reviews --alias DATA=$DATA --alias MPNET=$MPNET --alias RUNS=$RUNS
[ "$SEEDS" = 42 ] || python results_table.py $RUNS/teacher-sst-2-mpnet $RUNS/small-sst-2-mpnet* \
    $RUNS/distill-sst-2-mpnet $RUNS/distill-sst-2-mpnet-s* $RUNS/distill-sst-2-mpnet-reviews* --over_seeds \
    --alias DATA=$DATA --alias MPNET=$MPNET --alias RUNS=$RUNS
