"""Sections size and latency: the models' parameters, and their speed on every runtime (see benchmark.py)."""
import collections
import contextlib
import importlib.util
import os
import statistics

import numpy as np
import paddle

import data
import model as models
import runtimes
import quantization
from benchmarks.common import SERVING_BATCH_SIZE, STUDENT_EMBEDDINGS, calibration_examples, cpu_name, data_source, \
    random_student, ratio, read_examples, student_encoder, students, task_of, teacher_records, teachers, timed
from exported import probabilities_of
from utils import CPU_CORES, UserError, scratch_dir, use_all_cores

DYGRAPH = "dygraph"
PADDLE_ONEDNN_CACHE = f"paddle.inference + oneDNN, cache {runtimes.ONEDNN_CACHE}"  # predict.py's teacher runtime
PADDLE_ONEDNN = "paddle.inference + oneDNN, unbounded cache"
PADDLE = "paddle.inference, no oneDNN"
ONNXRUNTIME, ONNXRUNTIME_INT8, ONNXRUNTIME_STATIC = "ONNX Runtime", "ONNX Runtime, int8", "ONNX Runtime, static int8"
OPENVINO, OPENVINO_BF16 = "OpenVINO, fp32", "OpenVINO, bf16"
OPENVINO_INT8 = "OpenVINO, int8 (static QDQ)"
PREDICT_RUNTIMES = (ONNXRUNTIME, ONNXRUNTIME_INT8, ONNXRUNTIME_STATIC)  # what predict.py serves a student with
# A runtime whose dev accuracy is more than this under its model's dygraph accuracy is not that model's best
# runtime, however fast: agreement with dygraph is shown but decides nothing, as an int8 student can change a few
# predictions (98.8% agreement) for as many right as wrong.
MAX_ACCURACY_DROP = 0.005
Row = collections.namedtuple("Row", "model runtime threads seconds per_second agreement accuracy")


def parameter_counts(model, embedding):
    """Parameters of the model: all, and all but the (word) embedding table."""
    total = sum(int(np.prod(p.shape)) for p in model.parameters())
    return total, total - int(np.prod(embedding.shape))


def size(args):
    rows, task = [], task_of(args)
    for embedding, init in STUDENT_EMBEDDINGS:
        student, _, vocab = random_student(args, embedding)
        if embedding == "teacher" and not vocab.use_pieces:
            continue  # a student of words has no teacher's embeddings
        name = (f"Bi-LSTM student: vocab {len(vocab)}, emb {student.embedder.weight.shape[1]} ({init}), "
                f"hidden {student.config.hidden_size}")
        rows.append((name, *parameter_counts(student, student.embedder.weight)))
    for name, bert in teachers(args):
        rows.append((name, *parameter_counts(bert, bert.get_input_embeddings().weight)))
    student_total, student_rest = rows[0][1:]
    print(f"\n### size: parameters ({task.name}, {len(task.labels)} classes), teacher {args.teacher_dir}\n")
    print("| model | parameters | float32 MB | × student | without the word embeddings | × student |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, total, rest in rows:
        print(f"| {name} | {total:,} | {total * 4 / 2**20:.1f} | {total / student_total:.1f}x | {rest:,} | "
              f"{rest / student_rest:.1f}x |")
    print("\n× student: against the first row, the student as distilled from this teacher (--embedding teacher).")


def model_seconds(run, batch):
    """(logits, seconds) of one batch: by the clock in this process; a runtime in a child process (OpenVINO) reports
    its own compute time (run.compute_seconds), the pipe's round trip not counted."""
    logits, seconds = timed(lambda: run(batch))
    child_seconds = getattr(run, "compute_seconds", None)
    return logits, seconds if child_seconds is None else child_seconds


def median_latency(run, batches):
    run(batches[0])  # warm-up
    return statistics.median(model_seconds(run, batch)[1] for batch in batches)


def throughput(run, batches):
    """(sentences per second, the predicted classes) over the batches, after a warm-up batch."""
    run(batches[0])  # warm-up
    logits, seconds = zip(*(model_seconds(run, batch) for batch in batches))
    return len(np.concatenate(logits)) / sum(seconds), np.concatenate(logits).argmax(-1)


def dygraph_on(model, input_names, threads):
    """dygraph_runner on `threads` CPU threads."""
    run = runtimes.dygraph_runner(model, input_names)

    def on_threads(batch):
        paddle.base.core.set_num_threads(threads)
        return run(batch)
    return on_threads


def serving_runtimes(prefix, onnx_paths):
    """name -> make(threads, children) -> run(batch), for every runtime this exported model can be served by
    (onnx_paths: onnx_files'). OpenVINO runs in a process of its own (OpenVINO and Paddle's training in one process
    have crashed), entered into children (a contextlib.ExitStack) and ended with it."""
    by_name = {
        PADDLE_ONEDNN_CACHE: lambda t, _: runtimes.predictor_runner(runtimes.make_predictor(prefix, True, t)),
        PADDLE_ONEDNN: lambda t, _: runtimes.predictor_runner(runtimes.make_predictor(prefix, True, t,
                                                                                      onednn_cache=0)),
        PADDLE: lambda t, _: runtimes.predictor_runner(runtimes.make_predictor(prefix, False, t)),
    }
    for name, path in onnx_paths.items():
        if name in PREDICT_RUNTIMES:
            by_name[name] = _onnx_runtime_maker(path)
    if importlib.util.find_spec("openvino") is not None:
        best_precision = "bf16" if runtimes.cpu_has_bf16() else "f32"  # for what the QDQ model leaves unquantised
        for name, source, precision in ((OPENVINO, ONNXRUNTIME, "f32"), (OPENVINO_BF16, ONNXRUNTIME, "bf16"),
                                        (OPENVINO_INT8, "qdq", best_precision)):
            if source in onnx_paths and (precision == "f32" or runtimes.cpu_has_bf16()):
                by_name[name] = _openvino_child_maker(onnx_paths[source], precision)
    return by_name


def _onnx_runtime_maker(path):
    return lambda threads, _: runtimes.onnx_runner(path, threads)


def _openvino_child_maker(onnx_path, precision):
    return lambda threads, children: children.enter_context(runtimes.openvino_in_child(onnx_path, threads, precision))


def onnx_files(prefix, student=False, calibration=None):
    """{runtime name: ONNX model} beside a static export: ONNXRUNTIME (model.onnx); for a student also
    ONNXRUNTIME_INT8 (dynamic int8) and, with calibration (collated batches), ONNXRUNTIME_STATIC (static int8, the
    LSTM dynamic) and "qdq" (static int8 with the LSTM in fp32, which OpenVINO reads). Empty where ONNX is not
    installed or the model does not convert."""
    if not runtimes.onnx_available():
        return {}
    try:
        files = {ONNXRUNTIME: runtimes.export_onnx(prefix, prefix + ".onnx")}
    except UserError as error:
        print(f"(no ONNX model for {prefix}: {error})")
        return {}
    if student:
        files[ONNXRUNTIME_INT8] = quantization.quantize_dynamic(files[ONNXRUNTIME], prefix + ".int8.onnx")
        if calibration:
            files[ONNXRUNTIME_STATIC] = quantization.quantize_static(files[ONNXRUNTIME], prefix + ".static.onnx",
                                                                     calibration)
            files["qdq"] = quantization.quantize_static(files[ONNXRUNTIME], prefix + ".qdq.onnx", calibration,
                                                        lstm="fp32")
    return files


def student_exports(args, directory):
    """(name, model, encode(texts) -> record, vocab, static export prefix, onnx_files) of each student, exported
    under directory, its static int8 models calibrated on calibration_examples (when there are some)."""
    calibration = calibration_examples(args)
    for i, (name, student, analyzer, vocab) in enumerate(students(args)):
        prefix = runtimes.export_static(student, models.student_input_spec(student.config),
                                        os.path.join(directory, f"student{i}"))
        batches = calibration and quantization.calibration_batches(calibration, analyzer, vocab,
                                                                   student.config.max_seq_length)
        yield (name, student, student_encoder(analyzer, vocab, student.config.max_seq_length), vocab, prefix,
               onnx_files(prefix, True, batches))


def latency(args):
    """Every model on every runtime, on 1 thread and on every core: batch-1 latency, batch-64 throughput, dev
    accuracy and agreement with dygraph; then each model on its own best runtime (the fastest within
    MAX_ACCURACY_DROP of its dygraph accuracy) against the student on its best, and the students end to end (text in,
    probabilities out) at batch 1, with what the text's analysis takes of it."""
    examples = read_examples(args)
    bert_records, pad_id = teacher_records(args, examples)
    thread_counts = sorted({1, CPU_CORES})
    with scratch_dir("benchmark") as directory:
        served, encoders = served_models(args, examples, bert_records, pad_id, directory)
        results = []
        for threads in thread_counts:
            for name, model, input_names, records, collate, served_by in served:
                one_by_one = [collate([record]) for record in records[:args.latency_sentences]]
                sampler = list(data.BucketBatchSampler([data.record_length(r) for r in records], SERVING_BATCH_SIZE,
                                                       shuffle=False))
                by_length = [collate([records[i] for i in indices]) for indices in sampler]
                labels = np.array([examples[i].label for indices in sampler for i in indices])
                for runtime, make in [(DYGRAPH, lambda t, _: dygraph_on(model, input_names, t)), *served_by.items()]:
                    with contextlib.ExitStack() as children:  # a runtime's own process lives for its row
                        run = make(threads, children)
                        per_second, predicted = throughput(run, by_length)
                        if runtime == DYGRAPH:
                            reference = predicted
                        results.append(Row(name, runtime, threads, median_latency(run, one_by_one), per_second,
                                           float((predicted == reference).mean()), float((predicted == labels).mean())))
        end_to_end = [(name, runtime, *student_end_to_end(examples[:args.latency_sentences], encoders[name], collate,
                                                          run))
                      for name, runtime, collate, run in end_to_end_runs(served[:len(encoders)])]
    use_all_cores()
    lengths = [data.record_length(r) for r in bert_records]
    task = task_of(args)
    print(f"\n### latency: {task.name} examples of {data_source(args)}, teacher {args.teacher_dir}, {cpu_name()}\n")
    print(f"batch 1: median over the first {min(args.latency_sentences, len(examples))} examples one at a time, in "
          f"input order; batch {SERVING_BATCH_SIZE}: all {len(examples)} examples, batched by length; teacher tokens "
          f"per example: mean {np.mean(lengths):.1f}, max {max(lengths)}. Model time only (tokenised beforehand; "
          f"OpenVINO: the time in its own process). Dev accuracy: of the batch-{SERVING_BATCH_SIZE} predictions, "
          f"against the labels of the {len(examples)} examples.\n")
    print(f"| model | runtime | threads | batch 1: median ms | batch {SERVING_BATCH_SIZE}: sentences/s | "
          "dev accuracy | predictions as dygraph's |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for row in results:
        print(f"| {row.model} | {row.runtime} | {row.threads} | {row.seconds * 1000:.2f} | {row.per_second:.1f} | "
              f"{row.accuracy:.4f} | {row.agreement:.1%} |")
    print_best_against_best(results, thread_counts, served[0][0])
    model_ms = {(row.model, row.runtime): row.seconds for row in results if row.threads == 1}
    print(f"\n### end to end: a student serving one example at a time as predict.py does (text in, probabilities "
          f"out: analysis, ids, batch, run, softmax), 1 thread, median over the first "
          f"{min(args.latency_sentences, len(examples))} examples, {cpu_name()}\n")
    print("| model | runtime | end to end ms | model ms (batch 1) | end to end - model ms | share | of which text to "
          "ids ms |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, runtime, seconds, encoding in end_to_end:
        rest = seconds - model_ms[name, runtime]
        print(f"| {name} | {runtime} | {seconds * 1000:.3f} | {model_ms[name, runtime] * 1000:.3f} | "
              f"{rest * 1000:.3f} | {rest / seconds:.0%} | {encoding * 1000:.3f} |")
    print("\nend to end - model: what serving adds to the model's run (the text's analysis into words and pieces, "
          "their ids, batching, softmax); text to ids: the analysis and ids alone.")


def served_models(args, examples, bert_records, pad_id, directory):
    """(served, encoders): (name, model, input names, records, collate, runtime name -> make(threads, children)) of
    each student, then each teacher, exported under directory; student name -> encode(texts) -> its record, as
    predict.py makes it."""
    served, encoders = [], {}
    for name, student, encode, vocab, prefix, onnx_paths in student_exports(args, directory):
        encoders[name] = encode
        served.append((name, student, models.STUDENT_INPUTS, [encode(example.texts) for example in examples],
                       data.student_collate(vocab.pad_id), serving_runtimes(prefix, onnx_paths)))
    for i, (name, bert) in enumerate(teachers(args)):
        prefix = runtimes.export_static(bert, runtimes.teacher_input_spec(list(bert_records[0])),
                                        os.path.join(directory, f"teacher{i}"))
        served.append((name, bert, models.TEACHER_INPUTS, bert_records, data.teacher_collate(pad_id),
                       serving_runtimes(prefix, onnx_files(prefix))))
    return served, encoders


def print_best_against_best(results, thread_counts, reference):
    """Each model on its own fastest runtime among those within MAX_ACCURACY_DROP of its dygraph accuracy, against
    the reference student on its own fastest, at each thread count."""
    dygraph = {(row.model, row.threads): row.accuracy for row in results if row.runtime == DYGRAPH}
    good = [row for row in results if row.accuracy >= dygraph[row.model, row.threads] - MAX_ACCURACY_DROP - 1e-9]
    left_out = sorted({(row.model, row.runtime) for row in results} - {(row.model, row.runtime) for row in good})
    if left_out:
        print(f"\nLeft out of the comparisons below, more than {MAX_ACCURACY_DROP * 100:g} points of dev accuracy "
              f"under their model in dygraph: {'; '.join(', '.join(pair) for pair in left_out)}.")
    print(f"\n### best against best: each model on its own fastest runtime within {MAX_ACCURACY_DROP * 100:g} points "
          f"of its dygraph dev accuracy, {cpu_name()}\n")
    print(f"| model | threads | batch 1: fastest runtime | dev acc (points vs reference) | median ms | student faster "
          f"by | batch {SERVING_BATCH_SIZE}: fastest runtime | dev acc (points vs reference) | sentences/s | student "
          "faster by |")
    print("| --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for threads in thread_counts:
        rows = [row for row in good if row.threads == threads]
        fastest = {model: min((r for r in rows if r.model == model), key=lambda r: r.seconds) for model in
                   dict.fromkeys(r.model for r in rows)}
        most = {model: max((r for r in rows if r.model == model), key=lambda r: r.per_second) for model in fastest}
        baseline = dygraph[reference, threads]

        def accuracy(row):
            return f"{row.accuracy:.4f} ({(row.accuracy - baseline) * 100:+.2f})"
        for model in fastest:
            b1, b64 = fastest[model], most[model]
            print(f"| {model} | {threads} | {b1.runtime} | {accuracy(b1)} | {b1.seconds * 1000:.2f} | "
                  f"{ratio(b1.seconds / fastest[reference].seconds)} | {b64.runtime} | {accuracy(b64)} | "
                  f"{b64.per_second:.1f} | {ratio(most[reference].per_second / b64.per_second)} |")
    print(f"\nRatios against {reference} on its own fastest runtime at the same thread count; points of dev accuracy "
          "against the same student in dygraph (fp32).")


def end_to_end_runs(students_served):
    """(name, runtime, collate, run on 1 thread) of each student on each of the ONNX Runtime models predict.py can
    serve it with (fp32, int8, static int8), or on dygraph when it has none."""
    for name, student, input_names, _, collate, served_by in students_served:
        onnx = [runtime for runtime in PREDICT_RUNTIMES if runtime in served_by]
        for runtime in onnx or [DYGRAPH]:
            yield name, runtime, collate, served_by[runtime](1, None) if onnx else dygraph_on(student, input_names, 1)


def student_end_to_end(examples, encode, collate, run):
    """(median seconds of serving each example alone as predict.py does: analysis, ids, batch, run, softmax; median
    seconds of its analysis and ids alone)."""
    def serve(example):
        return probabilities_of([example.texts], encode, run, collate, SERVING_BATCH_SIZE, 0)

    serve(examples[0])
    return (statistics.median(timed(lambda: serve(example))[1] for example in examples),
            statistics.median(timed(lambda: encode(example.texts))[1] for example in examples))
