"""Running the models: logits batched by length (dygraph, the student's and the teacher's), static export,
paddle.inference predictors, ONNX export and ONNX Runtime, each checked against the dygraph model before use, and
fast teacher labelling of transfer sets. Serving (predict.py) imports this, model, data and utils, no training code.
"""
import contextlib
import importlib.util
import logging
import pickle
import os
import subprocess
import sys

import numpy as np
import paddle
from paddle.static import InputSpec
from tqdm import tqdm

import data
from model import STUDENT_INPUTS, TEACHER_INPUTS
from utils import CPU_CORES, WORLD, UserError, gather_shards, scratch_dir, use_all_cores

logger = logging.getLogger("distill")

def batched_logits(run, records, batch_size, collate, progress=None, sharded=False):
    """run(collated batch of numpy arrays) -> logits, over records batched by length (no padding to the longest
    record), returned in the records' order; with a progress bar titled `progress` if given. sharded: the batches
    are shared out among the run's processes (batch i to rank i % size) and their logits gathered on every rank;
    each batch is the one a single process forms, so the logits are those a single process computes."""
    batches = list(data.BucketBatchSampler([data.record_length(r) for r in records], batch_size, shuffle=False))
    mine = batches[WORLD.rank::WORLD.size] if sharded else batches
    parts = []
    shown = progress is not None and WORLD.is_main
    # No bar at all when none is shown: making even a disabled one is a visible share of serving one sentence.
    with tqdm(total=sum(map(len, mine)), desc=progress, unit="example", mininterval=1.0) if shown else \
            contextlib.nullcontext() as bar:
        for indices in mine:
            parts.append(run(collate([records[i] for i in indices])).astype("float32", copy=False))
            if shown:
                bar.update(len(indices))
    if sharded:
        parts = gather_shards(parts, len(batches))
    logits = np.zeros((len(records), parts[0].shape[-1] if parts else 0), dtype="float32")
    for indices, part in zip(batches, parts):
        logits[indices] = part
    return logits


def dygraph_runner(model, input_names):
    """run(batch) -> logits of the dygraph model in eval mode, fed the batch's fields named input_names."""
    model.eval()

    @paddle.no_grad()
    def run(batch):
        return model(**{name: paddle.to_tensor(batch[name]) for name in input_names if name in batch}).numpy()

    return run


def student_logits(model, records, batch_size):
    """Logits of a dygraph student over student records, batched by length, in the records' order."""
    collate = data.student_collate(model.config.padding_idx)
    return batched_logits(dygraph_runner(model, STUDENT_INPUTS), records, batch_size, collate)


def teacher_logits(model, records, batch_size, pad_id, progress=None, sharded=False):
    """Logits of a dygraph teacher over teacher records, batched by length, in the records' order (sharded: see
    batched_logits)."""
    return batched_logits(dygraph_runner(model, TEACHER_INPUTS), records, batch_size, data.teacher_collate(pad_id),
                          progress, sharded)


def export_static(model, input_spec, directory):
    """Save the eval-mode model as a static graph in `directory`; returns the path prefix of its files."""
    model.eval()
    prefix = os.path.join(directory, "model")
    # jit.save converts a copy of forward with to_static, so `model` itself stays a plain dygraph model.
    paddle.jit.save(model, prefix, input_spec=input_spec)
    return prefix


def teacher_input_spec(input_names):
    return [InputSpec([None, None], "int64", name) for name in input_names]


# oneDNN caches primitives per input shape; batches come sorted by length, so each shape is used in one run of
# batches and a small cache suffices while memory stays bounded.
ONEDNN_CACHE = 8


def static_program(model_prefix):
    """The program file of a static export: <prefix>.json (Paddle 3, PIR) or <prefix>.pdmodel (Paddle 2)."""
    program = next((model_prefix + ext for ext in (".json", ".pdmodel") if os.path.exists(model_prefix + ext)), None)
    if program is None:
        raise UserError(f"{model_prefix}.json: missing (nor is there a {os.path.basename(model_prefix)}.pdmodel); "
                        "export the model again")
    return program


def make_predictor(model_prefix, onednn=True, threads=None, onednn_cache=ONEDNN_CACHE):
    """A paddle.inference predictor for an exported model: fp16 on GPU, else on `threads` CPU threads (default: all
    cores), with oneDNN or without (Paddle 3 turns oneDNN on by itself unless told not to); oneDNN keeps the
    primitives of `onednn_cache` input shapes (0: of every shape)."""
    program = static_program(model_prefix)
    config = paddle.inference.Config(program, model_prefix + ".pdiparams")
    config.switch_ir_optim(True)
    config.disable_glog_info()
    device = paddle.get_device()
    if device.startswith("gpu") and paddle.device.is_compiled_with_cuda():
        config.enable_use_gpu(256, int(device.partition(":")[2] or 0), paddle.inference.PrecisionType.Half)
    else:
        config.set_cpu_math_library_num_threads(threads or CPU_CORES)
        if onednn:
            config.enable_mkldnn()
            if onednn_cache:
                config.set_mkldnn_cache_capacity(onednn_cache)
        else:
            config.disable_mkldnn()
    try:
        return paddle.inference.create_predictor(config)
    except (ValueError, RuntimeError, OSError) as error:  # Paddle's errors for a damaged program or weights file
        reason = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise UserError(f"{program} with {model_prefix}.pdiparams: Paddle cannot load them ({reason.strip()}); "
                        "export the model again") from None


def verified_predictor(model, model_prefix, sample):
    """(run, onednn): a runner of the exported model whose logits on `sample` (a collated batch, padded) match the
    dygraph model's, with oneDNN when it agrees and without it otherwise; None when neither agrees. On Paddle 3.3.1
    oneDNN gives wrong logits for MPNet (up to 2.4 apart, at batch 1 too), so no predictor is trusted unchecked."""
    expected = dygraph_runner(model, list(sample))(sample)
    on_gpu = paddle.get_device().startswith("gpu")
    tolerance = 5e-2 if on_gpu else 1e-3  # fp16 on GPU
    for onednn in (False,) if on_gpu else (True, False):
        run = predictor_runner(make_predictor(model_prefix, onednn))
        difference = float(np.abs(run(sample) - expected).max())
        if difference <= tolerance:
            return run, onednn
        logger.warning("paddle.inference%s differs from the dygraph model by up to %.3g on a check batch; not used",
                       " with oneDNN" if onednn else "", difference)
    return None


def predictor_runner(predictor):
    """run(batch) -> the predictor's first output, feeding each of its inputs the batch's field of that name."""
    inputs = {name: predictor.get_input_handle(name) for name in predictor.get_input_names()}
    output = predictor.get_output_handle(predictor.get_output_names()[0])

    def run(batch):
        for name, handle in inputs.items():
            handle.reshape(batch[name].shape)
            handle.copy_from_cpu(batch[name])
        predictor.run()
        return output.copy_to_cpu().astype("float32")

    return run


CHECK_BATCH = 16  # records in the padded batch an fp32 runtime is checked on before it labels
CHECK_RECORDS = 512  # records a bf16 runtime is checked on: its argmax must agree with dygraph's on MIN_AGREEMENT
# bf16 rounding moves MPNet's logits by up to about 0.5, so it flips the odd near-tie: 4 of 5,000 perturbed SST-2
# sentences, 2 or 3 of 512 in the checks of L2A runs, whose new copies are checked every epoch. At 99.5% (at most 2
# of 512) a true rate of 0.6% is refused in 59% of checks (an L2A run stopped so in its fifth epoch); at 98% in 1
# of 3,000. A wrong runtime flips more: oneDNN's MPNet on Paddle 3.3.1 15%, always refused; a dynamic int8
# teacher 2.6%, refused in 78% of checks.
MIN_AGREEMENT = 0.98
LABEL_CHUNK = 16384  # records labelled between two calls of chunk_done: a run cut short keeps what it labelled
PRECISIONS = ("fp32", "bf16")


def cpu_has_bf16():
    """Whether the CPU computes in bf16 natively (AVX512-BF16 or AMX), which OpenVINO then uses."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_labelling_precision(precision, backend):
    """Refuse (UserError) a --teacher_precision that --teacher_backend, the installation or the CPU cannot run: bf16
    runs on OpenVINO only, on a CPU with bf16 instructions."""
    if precision != "bf16":
        return
    if backend not in ("auto", "openvino"):
        raise UserError(f"--teacher_precision bf16: runs on OpenVINO, not --teacher_backend {backend}")
    if importlib.util.find_spec("openvino") is None:
        raise UserError("--teacher_precision bf16: needs the openvino package (pip install -r requirements.txt)")
    if not cpu_has_bf16():
        raise UserError("--teacher_precision bf16: this CPU has no bf16 instructions (AVX512-BF16 or AMX); use fp32")


def label_with_teacher(model, records, batch_size, pad_id, backend="auto", precision="fp32", chunk_done=None):
    """Teacher logits for teacher records in their order, with the chosen backend (see --teacher_backend) and
    precision: the static export run by OpenVINO, ONNX Runtime or paddle.inference once its logits match the dygraph
    model's (fp32: to ONNX_TOLERANCE on a batch; bf16: the same class on MIN_AGREEMENT of CHECK_RECORDS records);
    the dygraph model when no fp32 runtime can be built or none agrees. Records are labelled LABEL_CHUNK at a time,
    chunk_done(start, logits) called after each. A run of several processes shares the batches out among them
    (every rank gets all the logits). The export lives in a scratch directory (utils.scratch_dir) for the call."""
    collate = data.teacher_collate(pad_id)
    with contextlib.ExitStack() as stack:
        run = None
        if backend != "dygraph" and records:
            directory = stack.enter_context(scratch_dir("teacher-export"))  # removed after, or by the next run
            stack.callback(use_all_cores)  # the runtimes changed the math library's threads
            run = _checked_teacher_runner(model, records, collate, backend, precision, directory, stack)
        if run is None:
            run = dygraph_runner(model, TEACHER_INPUTS)
        parts = []
        for start in range(0, len(records), LABEL_CHUNK):
            parts.append(batched_logits(run, records[start:start + LABEL_CHUNK], batch_size, collate,
                                        f"teacher labelling {start // LABEL_CHUNK + 1}/"
                                        f"{-(-len(records) // LABEL_CHUNK)}", sharded=True))
            if chunk_done is not None:
                chunk_done(start, parts[-1])
    return np.concatenate(parts) if parts else np.zeros((0, 0), "float32")


def _checked_teacher_runner(model, records, collate, backend, precision, directory, stack):
    """run(batch) of the teacher exported to `directory`, on the first runtime that matches the dygraph model: for
    bf16 OpenVINO; for fp32 OpenVINO (backend openvino), ONNX Runtime (onnxruntime, or auto where it is installed;
    several times paddle.inference's speed for MPNet, which cannot use oneDNN) or else paddle.inference. None, after
    a warning, when no fp32 runtime does; a bf16 runtime that disagrees is refused (UserError)."""
    sample = collate(records[:CHECK_BATCH])
    try:
        prefix = export_static(model, teacher_input_spec(list(records[0])), directory)
        onnx_path = export_onnx(prefix, os.path.join(directory, "model.onnx")) \
            if backend in ("openvino", "onnxruntime") or backend == "auto" and onnx_available() else None
    except Exception as error:  # any export failure (a family paddle2onnx cannot convert): fall back
        if precision == "bf16":
            raise UserError(f"--teacher_precision bf16: the teacher does not export to ONNX ({type(error).__name__}: "
                            f"{error}); use --teacher_precision fp32") from None
        logger.warning("the teacher does not export (%s: %s); trying paddle.inference", type(error).__name__, error)
        onnx_path = None
        if not os.path.exists(os.path.join(directory, "model.pdiparams")):
            return None
    if precision == "bf16":
        run = stack.enter_context(openvino_in_child(onnx_path, CPU_CORES, "bf16"))
        check_agreement(model, run, records[:CHECK_RECORDS], collate, "--teacher_precision bf16 (OpenVINO)")
        return run
    if onnx_path is not None:
        run = stack.enter_context(openvino_in_child(onnx_path, CPU_CORES, "f32")) if backend == "openvino" \
            else onnx_runner(onnx_path, CPU_CORES)
        if _agrees(model, run, sample):
            return run
    try:
        verified = verified_predictor(model, prefix, sample)
    except Exception as error:  # any predictor failure: the dygraph model still works
        logger.warning("paddle.inference unavailable (%s: %s); labelling with the dygraph model",
                       type(error).__name__, error)
        return None
    if verified is None:
        logger.warning("paddle.inference disagrees with the dygraph model; labelling with the dygraph model")
        return None
    return verified[0]


def _agrees(model, run, sample):
    """Whether run's logits on a collated batch equal the dygraph model's to ONNX_TOLERANCE (else a warning)."""
    difference = float(np.abs(run(sample) - dygraph_runner(model, list(sample))(sample)).max())
    if difference > ONNX_TOLERANCE:
        logger.warning("the ONNX model differs from the dygraph model by up to %.3g on a batch of %d",
                       difference, len(next(iter(sample.values()))))
    return difference <= ONNX_TOLERANCE


def check_agreement(model, run, records, collate, what):
    """Refuse (UserError) a reduced-precision runtime whose argmax differs from the dygraph model's on more than
    1 - MIN_AGREEMENT of records; log the agreement and the largest logit difference."""
    expected = batched_logits(dygraph_runner(model, TEACHER_INPUTS), records, CHECK_BATCH, collate)
    got = batched_logits(run, records, CHECK_BATCH, collate)
    agreement = float((got.argmax(-1) == expected.argmax(-1)).mean())
    difference = float(np.abs(got - expected).max())
    logger.info("%s: the same class as the fp32 teacher on %.2f%% of %d records, logits at most %.3g apart", what,
                100 * agreement, len(records), difference)
    if agreement < MIN_AGREEMENT:
        raise UserError(f"{what}: predicts another class than the fp32 teacher on {1 - agreement:.1%} of "
                        f"{len(records)} records (at most {1 - MIN_AGREEMENT:.1%} allowed); use --teacher_precision "
                        "fp32")


# ---------------------------------------------------------------------------------------------------------------
# OpenVINO, in a child process

ROOT = os.path.dirname(os.path.abspath(__file__))
_CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); import openvino_runtime; "
          "sys.exit(openvino_runtime.serve(*sys.argv[2:]))")


def child_code(code):
    """Python code for `python -c` that first asks the kernel to kill its process when this one dies, however it
    dies (SIGKILL included; Linux's PR_SET_DEATHSIG), and exits if this process is already gone; then runs code. A
    child so started never outlives its run (holding open the files of a removed export)."""
    return ("import ctypes as _c, os as _o, signal as _s\n"
            "try:\n"
            "    _c.CDLL(None).prctl(1, int(_s.SIGKILL))  # PR_SET_DEATHSIG\n"
            "except AttributeError:  # not Linux\n"
            "    pass\n"
            f"if _o.getppid() != {os.getpid()}:\n"
            "    raise SystemExit(1)\n" + code)


@contextlib.contextmanager
def openvino_in_child(onnx_path, threads, precision):
    """run(batch) -> logits of the ONNX model on OpenVINO (precision "f32" or "bf16"), computed in a child process
    for as long as the block lasts (and not longer, however this process ends: child_code): OpenVINO sharing a
    process with Paddle's training has crashed it. run.compute_seconds: the seconds the last batch took in the child,
    the pipe's round trip not counted."""
    child = subprocess.Popen([sys.executable, "-c", child_code(_CHILD), ROOT, onnx_path, str(threads), precision],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        error = _reply(child)
        if error is not None:
            raise UserError(f"OpenVINO cannot run {onnx_path} in {precision}: {error}")

        def run(batch):
            pickle.dump({name: np.asarray(value) for name, value in batch.items()}, child.stdin,
                        protocol=pickle.HIGHEST_PROTOCOL)
            child.stdin.flush()
            logits, run.compute_seconds = _reply(child)
            return logits
        run.compute_seconds = None
        yield run
    finally:
        child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()


def _reply(child):
    try:
        return pickle.load(child.stdout)
    except EOFError:
        raise UserError(f"the OpenVINO process ended unexpectedly (exit code {child.wait()})") from None


# ---------------------------------------------------------------------------------------------------------------
# ONNX Runtime, the student's fastest runtime on CPU

ONNX_OPSET = 13
ONNX_TOLERANCE = 1e-4  # largest logit difference from the dygraph student an ONNX export may show
# paddle2onnx aborts its whole process on an operator it cannot convert, so it runs in a child process.
_PADDLE2ONNX = ("import sys, paddle2onnx\n"
                "paddle2onnx.export(sys.argv[1], sys.argv[2], save_file=sys.argv[3], opset_version=int(sys.argv[4]),"
                " optimize_tool='None')")


def onnx_available():
    """Whether this environment can write and run ONNX students (paddle2onnx, onnx and onnxruntime import)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import paddle2onnx  # noqa: F401
    except ImportError:
        return False
    return True


def export_onnx(model_prefix, path):
    """Convert a static student export (export_static) to an ONNX model at path, with each LSTM fed the lengths of
    the sentences it reads and no zero initial states (onnx_graph), and constants folded (paddle2onnx writes the
    weights as Constant nodes and assembles the LSTM's weights from slices: folded, they become initializers, which
    int8 quantisation needs)."""
    import onnx
    import onnxruntime

    import onnx_graph  # imports onnx, which serving with paddle.inference alone does not need

    program = static_program(model_prefix)
    converted_path = path + ".converted"
    try:
        result = subprocess.run([sys.executable, "-c", child_code(_PADDLE2ONNX), program, model_prefix + ".pdiparams",
                                 converted_path, str(ONNX_OPSET)], capture_output=True, text=True)
        if result.returncode != 0 or not os.path.isfile(converted_path):
            errors = [line for line in result.stderr.splitlines() if "ERROR" in line or "Error" in line]
            raise UserError(f"paddle2onnx could not convert {program}: "
                            f"{(errors or ['exit code %d' % result.returncode])[0]}")
        converted = onnx.load(converted_path)
        onnx_graph.feed_lstm_lengths(converted.graph)
        onnx_graph.drop_zero_initial_states(converted.graph)
        onnx.checker.check_model(converted)
        onnx.save(converted, converted_path)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC  # portable ops only
        options.optimized_model_filepath = path
        options.log_severity_level = 3
        onnxruntime.InferenceSession(converted_path, options, providers=["CPUExecutionProvider"])
    finally:
        if os.path.exists(converted_path):
            os.remove(converted_path)
    return path


def onnx_runner(path, threads=1):
    """run(batch) -> logits of an ONNX model under ONNX Runtime on `threads` intra-op threads, fed the batch's
    fields named as the model's inputs."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for a damaged or foreign file
        raise UserError(f"{path}: ONNX Runtime cannot load it ({str(error).splitlines()[0]}); export the model "
                        "again") from None
    names = [value.name for value in session.get_inputs()]

    def run(batch):
        return session.run(None, {name: batch[name] for name in names})[0].astype("float32")

    return run


def verified_onnx_runner(model, path, samples, threads=1):
    """onnx_runner(path) once its logits match the dygraph model's on each collated batch of samples, else None
    (after a warning naming the difference)."""
    run = onnx_runner(path, threads)
    return run if all(_agrees(model, run, sample) for sample in samples) else None
