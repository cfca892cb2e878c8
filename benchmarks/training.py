"""Sections distill_cost, labelling, augmentation and scaling: what distillation costs (see benchmark.py)."""
import contextlib
import functools
import importlib.util
import os
import pathlib
import subprocess
import sys

import numpy as np
import paddle

import augment
import data
import distillation
import model as models
import quantization
import runtimes
import training
from args import AugmentConfig
from benchmarks.common import DISTILL_DEFAULTS, SST2, cpu_name, random_student, read_examples, teacher_records, timed
from benchmarks.serving import ONNXRUNTIME, onnx_files
from files import read_json, write_json
from utils import CPU_CORES, WORLD, UserError, all_gather, any_rank, barrier, scratch_dir, set_seed

BENCHMARK_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmark.py")


def distill_cost(args):
    student, analyzer, vocab = random_student(args, "teacher")
    bert = models.load_teacher(args.teacher_dir, num_labels=2, flag="--teacher_dir")
    examples = read_examples(args)
    sentences = [analyzer.sentence(example.texts[0]) for example in examples]
    bert_records, pad_id = teacher_records(args, examples)
    logits, labelling_seconds = timed(lambda: runtimes.label_with_teacher(bert, bert_records, args.batch_size, pad_id,
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
            return distillation.distill_loss(model(**models.student_inputs(batch)),
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
        batch = {name: np.pad(value, padding, constant_values=pad_id if name == "input_ids" else 0)
                 for name, value in batch.items()}  # the fields the teacher's tokenizer makes
        parts.append(model(**{name: paddle.to_tensor(value) for name, value in batch.items()}).numpy())
    return np.concatenate(parts)


def labelling(args):
    """Teacher logits per second of the same sentences on every runtime that can label them, with each one's
    agreement with dygraph (the share of sentences given the same class, the largest logit difference)."""
    model = models.load_teacher(args.teacher_dir, num_labels=2, flag="--teacher_dir")
    model.eval()
    records, pad_id = teacher_records(args, read_examples(args))
    size, collate = args.batch_size, data.teacher_collate(pad_id)
    with scratch_dir("benchmark") as directory, contextlib.ExitStack() as children:
        prefix, export_seconds = timed(lambda: runtimes.export_static(
            model, runtimes.teacher_input_spec(list(records[0])), directory))
        (plain, onednn), build_seconds = timed(lambda: (runtimes.make_predictor(prefix, onednn=False),
                                                         runtimes.make_predictor(prefix)))
        onnx_path, convert_seconds = timed(lambda: onnx_files(prefix).get(ONNXRUNTIME))
        runs = [
            ("(a) dygraph, padded to max_seq_length",
             lambda: padded_dygraph_logits(model, records, size, pad_id, args.max_seq_length)),
            ("(b) dygraph, length buckets", lambda: runtimes.teacher_logits(model, records, size, pad_id)),
            ("(c) paddle.inference, no oneDNN, length buckets",
             lambda: runtimes.batched_logits(runtimes.predictor_runner(plain), records, size, collate)),
            ("(d) paddle.inference + oneDNN, length buckets (--teacher_backend inference)",
             lambda: runtimes.batched_logits(runtimes.predictor_runner(onednn), records, size, collate)),
        ]
        if onnx_path:
            int8_path = quantization.quantize_dynamic(onnx_path, os.path.join(directory, "model.int8.onnx"))
            runs += [(name, functools.partial(runtimes.batched_logits, run, records, size, collate)) for name, run in (
                ("(e) ONNX Runtime fp32 (--teacher_precision fp32)", runtimes.onnx_runner(onnx_path, CPU_CORES)),
                ("(f) ONNX Runtime, dynamic int8 quantisation", runtimes.onnx_runner(int8_path, CPU_CORES)))]
            if importlib.util.find_spec("openvino") is not None:
                for name, precision in (("(g) OpenVINO fp32 (--teacher_backend openvino)", "f32"),
                                        ("(h) OpenVINO bf16 (--teacher_precision bf16)", "bf16")):
                    if precision == "f32" or runtimes.cpu_has_bf16():
                        run = children.enter_context(runtimes.openvino_in_child(onnx_path, CPU_CORES, precision))
                        runs.append((name, functools.partial(runtimes.batched_logits, run, records, size, collate)))
        results = [(name, *timed(label_all)) for name, label_all in runs]
    reference_logits, reference_seconds = results[0][1:]
    today = dict((name[:3], seconds) for name, _, seconds in results).get("(e)", reference_seconds)
    lengths = [data.record_length(r) for r in records]
    print(f"\n### labelling: {len(records)} sentences of {args.data_file}, teacher {args.teacher_dir}, {cpu_name()}\n")
    print(f"batch size {size}, max_seq_length {args.max_seq_length}, tokens per sentence: mean "
          f"{np.mean(lengths):.1f}, max {max(lengths)}; {paddle.get_device()}\n")
    print("| labelling | sentences/s | speed-up vs (a) | vs (e) | same class as (a) | max abs logit diff vs (a) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, logits, seconds in results:
        agreement = (logits.argmax(-1) == reference_logits.argmax(-1)).mean()
        print(f"| {name} | {len(records) / seconds:.1f} | {reference_seconds / seconds:.1f}x | {today / seconds:.2f}x "
              f"| {agreement:.2%} | {np.abs(logits - reference_logits).max():.1e} |")
    print(f"\nOne-off costs, not in the table: export {export_seconds:.1f} s, building both predictors "
          f"{build_seconds:.1f} s, converting to ONNX {convert_seconds:.1f} s.")


def augmentation(args):
    """Build the transfer set of the first --num_sentences sentences with bert_distill.py's default augmentation
    and --n_iter copies: POS tagging (once; cached afterwards), then augmentation in one process and on every core."""
    default = DISTILL_DEFAULTS.get_default
    analyzer = data.make_analyzer("en", args.teacher_dir, "--teacher_dir")
    examples = data.read_split(SST2, "dev", args.data_file, "--data_file", args.num_sentences)
    config = AugmentConfig(n_iter=args.n_iter, use_pieces=True)  # bert_distill.py's defaults, WordPiece student
    pos_model = default("pos_model")
    with scratch_dir("benchmark") as cache:
        tags, tag_seconds = timed(lambda: augment.pos_tags(examples, analyzer, "en", pos_model, cache))
    rows, sets = [], []
    for workers in sorted({1, CPU_CORES}):
        transfer, seconds = timed(lambda: augment.build_transfer_set(examples, analyzer, config, tags,
                                                                  default("seed"), workers))
        rows.append((f"augmentation, {workers} process{'es' if workers > 1 else ''}", seconds, len(transfer)))
        sets.append(transfer)
    print(f"\n### augmentation: {len(examples)} sentences of {args.data_file}, n_iter {config.n_iter}, p_mask "
          f"{config.p_mask}, p_pos {config.p_pos}, p_ng {config.p_ng}, n-grams {config.ngram_min}-{config.ngram_max}\n")
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
    with scratch_dir("benchmark") as directory:
        # (processes, threads each): one process on one core (taskset), on every core, one process per core
        for processes, threads in ((1, 1), (1, cores), (cores, 1)):
            out = os.path.join(directory, f"{processes}x{threads}.json")
            launcher = ["-m", "paddle.distributed.launch", "--nproc_per_node", str(processes), "--log_dir",
                        os.path.join(directory, f"log-{processes}")] if processes > 1 else []
            pinned = ["taskset", "-c", str(min(os.sched_getaffinity(0)))] if processes * threads < cores else []
            command = [*pinned, sys.executable, *launcher, BENCHMARK_SCRIPT, "--scaling_worker", out,
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
              f"| {row['labelling_seconds']:.3f} | {one['labelling_seconds'] / row['labelling_seconds']:.2f}x | "
              f"{row['epoch_seconds']:.3f} | {one['epoch_seconds'] / row['epoch_seconds']:.2f}x |")
    differences = [np.abs(row["logits"] - one["logits"]).max() for row in rows.values()]
    print(f"\nLargest logit difference from the 1-process labelling: {max(differences):.1e} (0: bit for bit).")


def scaling_worker(args):
    """One process of a scaling run (rank 0 writes the timings to --scaling_worker): label --num_sentences with the
    teacher as bert_distill.py does, then train the student on them for two epochs, timing the second."""
    examples = read_examples(args)
    texts = [example.texts[0] for example in examples]
    set_seed(0)  # the same teacher in every process, also when its classifier is new (not fine-tuned)
    bert = models.load_teacher(args.teacher_dir, num_labels=2, flag="--teacher_dir")
    bert_records, pad_id = teacher_records(args, examples)
    barrier()
    logits, labelling_seconds = timed(lambda: runtimes.label_with_teacher(bert, bert_records, args.batch_size, pad_id))
    barrier()
    labelling_seconds = max(all_gather(labelling_seconds))
    student, analyzer, vocab = random_student(args, "teacher")
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
        return distillation.distill_loss(model(**models.student_inputs(batch)), batch["logits"], batch["label"],
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
    barrier()  # as at the end of training.fit: no rank leaves (tearing down its connections) while rank 0 writes
