#!/usr/bin/env bash
# Little labelled data (docs/little-labelled-data.md): 1,000 labelled SST-2 sentences, the rest of SST-2's training
# sentences (66,349, labels dropped) as an unlabelled pool, the MPNet teacher at length 64. Three seeds per recipe:
# the teacher's own spread (seeds 42, 2, 3; every student learns from the seed-42 teacher), the Bi-LSTM baseline
# (50 epochs), rule-based augmentation, L2A's generator, L2A + the reinforced selector, and the selector with the
# pool; then the one-seed diagnostics. Reproduces the seeds table of results/README.md. About 7 hours on 2 cores.
#
#   DATA=/data MPNET=/models/all-mpnet-base-v2 bash recipes/little_labelled.sh
set -euo pipefail
DATA=${DATA:?set DATA to a folder with SST-2/train.tsv and SST-2/dev.tsv (GLUE SST-2: sentence<TAB>label, header first)}
MPNET=${MPNET:?set MPNET to a PaddleNLP directory of all-mpnet-base-v2 (convert_teacher.py writes one from a HuggingFace folder)}
RUNS=${RUNS:-runs}
mkdir -p "$RUNS"
DATA=$(cd "$DATA" && pwd) MPNET=$(cd "$MPNET" && pwd) RUNS=$(cd "$RUNS" && pwd)
cd "$(dirname "$0")/.."

head -n 1001 $DATA/SST-2/train.tsv > $RUNS/sst-2-1k.tsv                 # the header and the first 1,000 sentences
tail -n +1002 $DATA/SST-2/train.tsv | cut -f1 > $RUNS/sst-2-pool.txt    # the rest, labels dropped
SCARCE="--task_name sst-2 --train_file $RUNS/sst-2-1k.tsv --dev_file $DATA/SST-2/dev.tsv --max_seq_length 64"
python teacher.py $SCARCE --model_name_or_path $MPNET --max_epoch 3 --lr 5e-05 --output_dir $RUNS/teacher-sst-2-1k
for seed in 2 3; do   # the teacher's own spread
    python teacher.py $SCARCE --model_name_or_path $MPNET --max_epoch 3 --lr 5e-05 --seed $seed \
        --output_dir $RUNS/teacher-sst-2-1k-s$seed
done
T="--teacher_dir $RUNS/teacher-sst-2-1k/best --cache_dir $RUNS/cache"
for seed in 1 2 3; do
    python small.py $SCARCE --vocab_path $MPNET/vocab.txt --max_epoch 50 --eval_steps 50 --seed $seed \
        --output_dir $RUNS/small-1k-e50-s$seed
    python bert_distill.py $SCARCE $T --seed $seed --output_dir $RUNS/rules-1k-s$seed
    python bert_distill.py $SCARCE $T --seed $seed --augment l2a --output_dir $RUNS/l2a-1k-s$seed
    python bert_distill.py $SCARCE $T --seed $seed --augment l2a --selector reinforce \
        --output_dir $RUNS/l2a-selector-1k-s$seed
    python bert_distill.py $SCARCE $T --seed $seed --augment l2a --selector reinforce \
        --unlabeled_file $RUNS/sst-2-pool.txt --max_epoch 3 --output_dir $RUNS/pool-1k-s$seed
    python bert_distill.py $SCARCE $T --seed $seed --augment l2a --selector reinforce \
        --selector_reward likelihood --selector_lr 0.01 --output_dir $RUNS/l2a-selector-ll-lr2-1k-s$seed
done

# Diagnostics, seed 1: more copies; a larger reward split; a smoother reward; a faster policy; the pool without
# the selector, in 3 and 6 epochs.
python bert_distill.py $SCARCE $T --seed 1 --n_iter 50 --output_dir $RUNS/rules-n50-1k-s1
python bert_distill.py $SCARCE $T --seed 1 --augment l2a --selector reinforce --reward_fraction 0.3 \
    --output_dir $RUNS/l2a-selector-rf03-1k-s1
python bert_distill.py $SCARCE $T --seed 1 --augment l2a --selector reinforce --selector_reward likelihood \
    --output_dir $RUNS/l2a-selector-ll-1k-s1
python bert_distill.py $SCARCE $T --seed 1 --augment l2a --selector reinforce --selector_lr 0.01 \
    --output_dir $RUNS/l2a-selector-lr2-1k-s1
python bert_distill.py $SCARCE $T --seed 1 --augment l2a --unlabeled_file $RUNS/sst-2-pool.txt --max_epoch 3 \
    --output_dir $RUNS/l2a-pool-1k-s1
python bert_distill.py $SCARCE $T --seed 1 --augment l2a --unlabeled_file $RUNS/sst-2-pool.txt --max_epoch 6 \
    --output_dir $RUNS/l2a-pool-e6-1k-s1

python results_table.py $RUNS/teacher-sst-2-1k* $RUNS/small-1k-* $RUNS/*-1k-s? --over_seeds \
    --alias DATA=$DATA --alias MPNET=$MPNET --alias RUNS=$RUNS
