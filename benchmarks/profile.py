"""Section profile: where a student's serving time goes, operator by operator, by ONNX Runtime's own profiler (see
benchmark.py)."""
import collections
import json
import os

import data
from benchmarks.common import SERVING_BATCH_SIZE, cpu_name, data_source, read_examples
from benchmarks.serving import PREDICT_RUNTIMES, student_exports
from utils import scratch_dir

BETWEEN = "(between operators: ONNX Runtime's executor)"
# What the operator types of a student's ONNX model do, for the reader of the tables.
OPERATORS = ("Gather: the embedding lookup; LSTM, DynamicQuantizeLSTM: the Bi-LSTM, its input projection of every "
             "token and its recurrence; Gemm, MatMulInteger, QGemm: the hidden and output layers; ArgMax, "
             "GatherElements, Max, Add, Less: the max pooling and its mask; QuantizeLinear, DequantizeLinear, "
             "DynamicQuantizeLinear: int8 conversions; Shape, Slice, Reshape, Transpose, Expand, Concat, Cast: "
             "moving tensors about.")


def operator_times(path, batches, directory):
    """(µs per operator type over all the batches, runs): ONNX Runtime's profile of one thread running each batch
    once after an unmeasured warm-up run; the time of the runs outside any operator counted as BETWEEN."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(directory, "profile")
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [value.name for value in session.get_inputs()]
    for batch in [batches[0]] + batches:
        session.run(None, {name: batch[name] for name in names})
    profile_path = session.end_profiling()
    with open(profile_path, encoding="utf-8") as f:
        events = json.load(f)
    os.remove(profile_path)
    runs = sorted((e for e in events if e["cat"] == "Session" and e["name"] == "model_run"), key=lambda e: e["ts"])
    measured = runs[1:]  # the first is the warm-up
    times = collections.Counter()
    for event in events:
        if event["cat"] == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= measured[0]["ts"]:
            times[event["args"]["op_name"]] += event["dur"]
    times[BETWEEN] = max(sum(run["dur"] for run in measured) - sum(times.values()), 0)
    return times, len(measured)


def profile(args):
    """Each student's ONNX Runtime models (fp32, int8, static int8), profiled at batch 1 (the first
    --latency_sentences examples one at a time) and batch 64 (all examples, batched by length): time per operator
    type and its share of the model's run."""
    examples = read_examples(args)
    with scratch_dir("benchmark-profile") as directory:
        for name, _, encode, vocab, _, onnx_paths in student_exports(args, directory):
            records = [encode(example.texts) for example in examples]
            collate = data.student_collate(vocab.pad_id)
            one_by_one = [collate([record]) for record in records[:args.latency_sentences]]
            by_length = [collate([records[i] for i in indices]) for indices in data.BucketBatchSampler(
                [data.record_length(r) for r in records], SERVING_BATCH_SIZE, shuffle=False)]
            for runtime in (runtime for runtime in PREDICT_RUNTIMES if runtime in onnx_paths):
                single, runs = operator_times(onnx_paths[runtime], one_by_one, directory)
                batched, _ = operator_times(onnx_paths[runtime], by_length, directory)
                print_profile(f"{name}, {runtime}", {op: us / runs for op, us in single.items()},
                              {op: us / len(records) for op, us in batched.items()})
    print(f"\nThe examples of {data_source(args)}: batch 1 over the first {len(one_by_one)}, batch "
          f"{SERVING_BATCH_SIZE} over all {len(examples)}, each after a warm-up run. {OPERATORS}")


def print_profile(title, single, batched):
    """A table of µs per operator type (at batch 1 per run, at batch 64 per example) and shares, busiest first."""
    print(f"\n### profile: {title}, ONNX Runtime's profiler, 1 thread, {cpu_name()}\n")
    print(f"| operator type | batch 1: µs per example | share | batch {SERVING_BATCH_SIZE}: µs per example | share |")
    print("| --- | ---: | ---: | ---: | ---: |")
    single_total, batched_total = sum(single.values()), sum(batched.values())
    for op in sorted(set(single) | set(batched), key=lambda op: -single.get(op, 0)):
        print(f"| {op} | {single.get(op, 0):.1f} | {single.get(op, 0) / single_total:.1%} | "
              f"{batched.get(op, 0):.1f} | {batched.get(op, 0) / batched_total:.1%} |")
    print(f"| all | {single_total:.1f} | 100% | {batched_total:.1f} | 100% |")
