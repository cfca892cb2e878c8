#!/usr/bin/env bash
# L2A as the paper describes it (docs/little-labelled-data.md): the learned generator, source-domain text and the
# per-decision influence reward, against the rules, on the two data-scarce protocols, three seeds each:
# - 1,000 labelled SST-2 sentences (the protocol of recipes/little_labelled.sh, whose seed-42 teacher it re-makes);
# - the paper's extreme, 40 labelled sentences per class (the first 40 positive and the first 40 negative), the
#   rest of SST-2 unused, with a teacher fine-tuned on those 80.
# Source text: the first 1,000 sentences of a related domain's unlabelled text (movie-review sentences; none may be
# an SST-2 dev sentence); the rules and L2A's fixed generator with the same text are its controls. On 40 sentences
# per class the baseline (Bi-LSTM alone), the rules, L2A's fixed generator and its selector run too. A student takes
# a few minutes on 80 sentences, 10 to 50 on 1,000 (2 cores), up to an hour or more with source text; about 20 hours
# in all. The runs with source text label tens of thousands of new copies an epoch: their teacher runs in bf16
# (OpenVINO, checked against fp32 before it labels) where the CPU has bf16 instructions (PRECISION=fp32|bf16
# chooses).
#
#   DATA=/data MPNET=/models/all-mpnet-base-v2 SOURCE=/data/movie-reviews/sentences.txt bash recipes/l2a_learned.sh
set -euo pipefail
DATA=${DATA:?set DATA to a folder with SST-2/train.tsv and SST-2/dev.tsv (GLUE SST-2: sentence<TAB>label, header first)}
MPNET=${MPNET:?set MPNET to a PaddleNLP directory of all-mpnet-base-v2 (convert_teacher.py writes one from a HuggingFace folder)}
SOURCE=${SOURCE:?set SOURCE to a file of related-domain sentences, one per line}
RUNS=${RUNS:-runs}
PRECISION=${PRECISION:-$(grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo && echo bf16 || echo fp32)}
mkdir -p "$RUNS"
DATA=$(cd "$DATA" && pwd) MPNET=$(cd "$MPNET" && pwd) RUNS=$(cd "$RUNS" && pwd)
SOURCE=$(cd "$(dirname "$SOURCE")" && pwd)/$(basename "$SOURCE")
cd "$(dirname "$0")/.."

head -n 1001 $DATA/SST-2/train.tsv > $RUNS/sst-2-1k.tsv  # the header and the first 1,000 sentences
awk -F'\t' 'NR == 1 || ($2 == 1 && positive++ < 40) || ($2 == 0 && negative++ < 40)' $DATA/SST-2/train.tsv \
    > $RUNS/sst-2-40pc.tsv
L2A="--augment l2a --selector reinforce"
SRC="--source_file $SOURCE --max_source_samples 1000 --teacher_precision $PRECISION"
for size in 1k 40pc; do
    SCARCE="--task_name sst-2 --train_file $RUNS/sst-2-$size.tsv --dev_file $DATA/SST-2/dev.tsv --max_seq_length 64"
    # 80 sentences make 3 teacher steps an epoch: 10 epochs there
    python teacher.py $SCARCE --model_name_or_path $MPNET --max_epoch $([ $size = 1k ] && echo 3 || echo 10) \
        --lr 5e-05 --output_dir $RUNS/teacher-sst-2-$size
    T="--teacher_dir $RUNS/teacher-sst-2-$size/best --cache_dir $RUNS/cache"
    for seed in 1 2 3; do
        # 40 per class only: the baselines (the 1,000-sentence protocol has them from recipes/little_labelled.sh)
        # and the influence reward over three seeds
        if [ $size = 40pc ]; then
            python small.py $SCARCE --vocab_path $MPNET/vocab.txt --max_epoch 50 --eval_steps 50 --seed $seed \
                --output_dir $RUNS/small-$size-e50-s$seed
            python bert_distill.py $SCARCE $T --seed $seed --output_dir $RUNS/rules-$size-s$seed
            python bert_distill.py $SCARCE $T --seed $seed --augment l2a --output_dir $RUNS/l2a-$size-s$seed
            python bert_distill.py $SCARCE $T --seed $seed $L2A --output_dir $RUNS/l2a-selector-$size-s$seed
            python bert_distill.py $SCARCE $T --seed $seed $L2A --generator learned --selector_reward influence \
                --output_dir $RUNS/learned-influence-$size-s$seed
        fi
        # the source text's controls: the rules, and L2A's fixed generator without the selector, with the same text
        python bert_distill.py $SCARCE $T --seed $seed $SRC --output_dir $RUNS/rules-source-$size-s$seed
        python bert_distill.py $SCARCE $T --seed $seed --augment l2a $SRC --output_dir $RUNS/l2a-source-$size-s$seed
        python bert_distill.py $SCARCE $T --seed $seed $L2A --generator learned --output_dir $RUNS/learned-$size-s$seed
        python bert_distill.py $SCARCE $T --seed $seed $L2A --generator learned $SRC \
            --output_dir $RUNS/learned-source-$size-s$seed
    done
done

SCARCE="--task_name sst-2 --train_file $RUNS/sst-2-1k.tsv --dev_file $DATA/SST-2/dev.tsv --max_seq_length 64"
T="--teacher_dir $RUNS/teacher-sst-2-1k/best --cache_dir $RUNS/cache"
# Ablation, three seeds, with the source text (where the +2 target holds): the generator kept at P_s (learning
# rate 0), its copies still drawn anew each epoch and still selected: is it the learning?
for seed in 1 2 3; do
    python bert_distill.py $SCARCE $T --seed $seed $L2A --generator learned --generator_lr 0 $SRC \
        --output_dir $RUNS/redrawn-source-1k-s$seed
done
# Diagnostic, seed 1: the influence reward without source text.
python bert_distill.py $SCARCE $T --seed 1 $L2A --generator learned --selector_reward influence \
    --output_dir $RUNS/learned-influence-1k-s1

python results_table.py $RUNS/teacher-sst-2-40pc $RUNS/*-40pc*-s? $RUNS/rules-source-1k-s? $RUNS/l2a-source-1k-s? \
    $RUNS/learned*-1k-s? $RUNS/redrawn-source-1k-s? --over_seeds --alias DATA=$DATA --alias MPNET=$MPNET \
    --alias RUNS=$RUNS --alias SOURCE=$SOURCE
