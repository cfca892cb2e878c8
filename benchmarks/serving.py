"""Sections size and latency: the models' parameters, and their speed on every runtime (see benchmark.py)."""
import contextlib
import functools
import importlib.util
import os
import statistics

import numpy as np
import paddle

import data
import model as models
import runtimes
from benchmarks.common import SERVING_BATCH_SIZE, STUDENT_EMBEDDINGS, cpu_name, ratio, read_sentences, sst2_student, \
    students, teacher_records, teachers, timed
from utils import CPU_CORES, UserError, scratch_dir, softmax, use_all_cores

DYGRAPH = "dygraph"
PADDLE_ONEDNN_CACHE = f"paddle.inference + oneDNN, cache {runtimes.ONEDNN_CACHE}"  # predict.py's teacher runtime
PADDLE_ONEDNN = "paddle.inference + oneDNN, unbounded cache"
PADDLE = "paddle.inference, no oneDNN"
ONNXRUNTIME, ONNXRUNTIME_INT8 = "ONNX Runtime", "ONNX Runtime, int8"
OPENVINO, OPENVINO_BF16 = "OpenVINO, fp32", "OpenVINO, bf16"
MAX_DISAGREEMENT = 0.01  # a runtime predicting another class than dygraph on more of the sentences is wrong


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


def dygraph_on(model, input_names, threads):
    """dygraph_runner on `threads` CPU threads."""
    run = runtimes.dygraph_runner(model, input_names)

    def on_threads(batch):
        paddle.base.core.set_num_threads(threads)
        return run(batch)
    return on_threads


def serving_runtimes(prefix, onnx_path, int8_path, children=None):
    """name -> make(threads) -> run(batch), for every runtime this exported model can be served by; with children
    (a contextlib.ExitStack) also OpenVINO, whose processes (OpenVINO and Paddle's training in one process have
    crashed) live until it closes: for teachers, whose times a pipe's round trip hardly changes."""
    by_name = {
        PADDLE_ONEDNN_CACHE: lambda t: runtimes.predictor_runner(runtimes.make_predictor(prefix, True, t)),
        PADDLE_ONEDNN: lambda t: runtimes.predictor_runner(runtimes.make_predictor(prefix, True, t, onednn_cache=0)),
        PADDLE: lambda t: runtimes.predictor_runner(runtimes.make_predictor(prefix, False, t)),
    }
    if onnx_path:
        by_name[ONNXRUNTIME] = lambda t: runtimes.onnx_runner(onnx_path, t)
        if children is not None and importlib.util.find_spec("openvino") is not None:
            for name, precision in ((OPENVINO, "f32"), (OPENVINO_BF16, "bf16")):
                if precision == "f32" or runtimes.cpu_has_bf16():
                    by_name[name] = _openvino_child_maker(children, onnx_path, precision)
    if int8_path:
        by_name[ONNXRUNTIME_INT8] = lambda t: runtimes.onnx_runner(int8_path, t)
    return by_name


def _openvino_child_maker(children, onnx_path, precision):
    return lambda threads: children.enter_context(runtimes.openvino_in_child(onnx_path, threads, precision))


def onnx_files(prefix, is_student):
    """(model.onnx, model.int8.onnx) beside a static export, or (None, None) where ONNX is not installed or the
    model does not convert (the int8 one for students only)."""
    if not runtimes.onnx_available():
        return None, None
    try:
        path = runtimes.export_onnx(prefix, prefix + ".onnx")
    except UserError as error:
        print(f"(no ONNX model for {prefix}: {error})")
        return None, None
    return path, runtimes.quantize_onnx(path, prefix + ".int8.onnx") if is_student else None


def latency(args):
    """Every model on every runtime, on 1 thread and on every core: batch-1 latency and batch-64 throughput, then
    each model on its own best runtime against the student on its best, and the student end to end (text in,
    probabilities out) at batch 1."""
    texts = read_sentences(args)
    bert_records, pad_id = teacher_records(args, texts)
    thread_counts = sorted({1, CPU_CORES})
    with scratch_dir("benchmark") as directory, contextlib.ExitStack() as children:
        served, encoders = served_models(args, texts, bert_records, pad_id, directory, children)
        results = []  # (model, runtime, threads, batch-1 seconds, batch-64 sentences/s, share of dygraph's predictions)
        for threads in thread_counts:
            for name, model, input_names, records, collate, served_by in served:
                one_by_one = [collate([record]) for record in records[:args.latency_sentences]]
                by_length = [collate([records[i] for i in indices]) for indices in data.BucketBatchSampler(
                    [data.record_length(r) for r in records], SERVING_BATCH_SIZE, shuffle=False)]
                for runtime, make in [(DYGRAPH, lambda t: dygraph_on(model, input_names, t)), *served_by.items()]:
                    run = make(threads)
                    per_second, predicted = throughput(run, by_length)
                    if runtime == DYGRAPH:
                        reference = predicted
                    results.append((name, runtime, threads, median_latency(run, one_by_one), per_second,
                                    float((predicted == reference).mean())))
        end_to_end = [(name, runtime, student_end_to_end(texts[:args.latency_sentences], encoders[name], collate, run))
                      for name, runtime, collate, run in end_to_end_runs(served[:len(encoders)])]
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
    print_best_against_best(results, thread_counts, served[0][0])
    print(f"\n### end to end: a student serving one sentence at a time as predict.py does (text in, probabilities "
          f"out: WordPiece analysis, ids, batch, run, softmax), 1 thread, median over the first "
          f"{min(args.latency_sentences, len(texts))} sentences, {cpu_name()}\n")
    print("| model | runtime | median ms per sentence |")
    print("| --- | --- | ---: |")
    for name, runtime, seconds in end_to_end:
        print(f"| {name} | {runtime} | {seconds * 1000:.2f} |")


def served_models(args, texts, bert_records, pad_id, directory, children):
    """(served, encoders): (name, model, input names, records, collate, runtime name -> make(threads)) of each
    student, then each teacher, exported under directory; student name -> encode(text) -> its record, as
    predict.py makes it."""
    served, encoders = [], {}
    for i, (name, student, analyzer, vocab) in enumerate(students(args)):
        prefix = runtimes.export_static(student, models.student_input_spec(student.config),
                                        os.path.join(directory, f"student{i}"))
        encoders[name] = functools.partial(encode_student, analyzer, vocab, student.config.max_seq_length)
        records = [encoders[name](s) for s in texts]
        served.append((name, student, models.STUDENT_INPUTS, records, data.student_collate(vocab.pad_id),
                       serving_runtimes(prefix, *onnx_files(prefix, True))))
    for i, (name, bert) in enumerate(teachers(args)):
        prefix = runtimes.export_static(bert, runtimes.teacher_input_spec(list(bert_records[0])),
                                        os.path.join(directory, f"teacher{i}"))
        served.append((name, bert, models.TEACHER_INPUTS, bert_records, data.teacher_collate(pad_id),
                       serving_runtimes(prefix, *onnx_files(prefix, False), children)))
    return served, encoders


def print_best_against_best(results, thread_counts, reference):
    """Each model on its own fastest runtime among those agreeing with dygraph, against the reference student on
    its own fastest, at each thread count."""
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
        student_fastest, student_most = best[reference]
        for name, (fastest, most) in best.items():
            print(f"| {name} | {threads} | {fastest[0]} | {fastest[1] * 1000:.2f} | "
                  f"{ratio(fastest[1] / student_fastest[1])} | {most[0]} | {most[1]:.1f} | "
                  f"{ratio(student_most[1] / most[1])} |")
    print(f"\nRatios against {reference} on its own fastest runtime at the same thread count.")


def end_to_end_runs(students_served):
    """(name, runtime, collate, run on 1 thread) of each student on each of its ONNX Runtime models (fp32, int8),
    or on dygraph when it has none."""
    for name, student, input_names, _, collate, served_by in students_served:
        onnx = [runtime for runtime in (ONNXRUNTIME, ONNXRUNTIME_INT8) if runtime in served_by]
        for runtime in onnx or [DYGRAPH]:
            yield name, runtime, collate, served_by[runtime](1) if onnx else dygraph_on(student, input_names, 1)


def encode_student(analyzer, vocab, max_seq_length, text):
    return data.student_record([analyzer.sentence(text)], vocab, max_seq_length)


def student_end_to_end(texts, encode, collate, run):
    """Median seconds of serving each text with run as predict.py does: analysis, ids, batch, run, softmax."""
    def serve(text):
        return softmax(run(collate([encode(text)])))

    serve(texts[0])
    return statistics.median(timed(lambda: serve(text))[1] for text in texts)
