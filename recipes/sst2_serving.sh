#!/usr/bin/env bash
# Students for serving (docs/serving.md, "Serving on every CPU"): after recipes/sst2_full.sh, three narrower students
# distilled from its teacher and cached logits with its student flags: hidden 150 with the teacher's 768-wide
# word-piece embeddings, and with those embeddings projected by PCA to 300 and to 128 dimensions; then the speed of
# every student on every runtime against the teacher on this machine. About 40 minutes of training on 2 cores, and
# 10 minutes of measurement, which must have the machine to itself.
#
#   DATA=/data RUNS=runs bash recipes/sst2_serving.sh
set -euo pipefail
DATA=${DATA:?set DATA to a folder with SST-2/train.tsv and SST-2/dev.tsv (GLUE SST-2: sentence<TAB>label, header first)}
RUNS=${RUNS:-runs}
PRECISION=${PRECISION:-$(grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo && echo bf16 || echo fp32)}
DATA=$(cd "$DATA" && pwd) RUNS=$(cd "$RUNS" && pwd)
cd "$(dirname "$0")/.."
[ -d "$RUNS/teacher-sst-2-mpnet/best" ] || { echo "no $RUNS/teacher-sst-2-mpnet/best: run recipes/sst2_full.sh first" >&2; exit 2; }

SST="--task_name sst-2 --train_file $DATA/SST-2/train.tsv --dev_file $DATA/SST-2/dev.tsv"
T="--teacher_dir $RUNS/teacher-sst-2-mpnet/best --max_seq_length 64 --n_iter 10 --max_epoch 2 --batch_size 256
   --eval_steps 500 --teacher_precision $PRECISION --teacher_batch_size 64 --cache_dir $RUNS/cache"
python bert_distill.py $SST $T --hidden_size 150 --output_dir $RUNS/distill-sst-2-mpnet-h150
for dim in 300 128; do
    python bert_distill.py $SST $T --hidden_size 150 --embedding teacher --emb_dim $dim \
        --output_dir $RUNS/distill-sst-2-mpnet-h150-e$dim
done

tail -n +2 $DATA/SST-2/train.tsv | cut -f1 > $RUNS/sst-2-train-sentences.txt  # calibration text for static int8
lscpu
python benchmark.py --sections latency profile --teacher_dir $RUNS/teacher-sst-2-mpnet/best \
    --student_dir $RUNS/distill-sst-2-mpnet/best $RUNS/distill-sst-2-mpnet-h150/best \
    $RUNS/distill-sst-2-mpnet-h150-e300/best $RUNS/distill-sst-2-mpnet-h150-e128/best \
    --data_file $DATA/SST-2/dev.tsv --num_sentences 872 --latency_sentences 200 \
    --calibration_file $RUNS/sst-2-train-sentences.txt
