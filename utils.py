"""Small helpers every module uses: the error type and how scripts end on it, output directories, device and
seeding, metrics, and writing files so that a crash never leaves half of one."""
import hashlib
import json
import logging
import os
import random
import shutil
import sys

import numpy as np
import paddle
from paddle.metric import Accuracy
from paddlenlp.metrics import AccuracyAndF1

# The cores this process may run on: all of them, or those `taskset` allows (two runs side by side).
CPU_CORES = len(os.sched_getaffinity(0))

logger = logging.getLogger("distill")


class UserError(Exception):
    """Bad input: reported as one line naming the file or flag, with a nonzero exit and no traceback."""


_created_dirs = []  # output directories this process created, removed again when its run fails on bad input


def run_main(main, argv=None):
    """Run a script's main(argv). Bad input ends with one message and exit code 2, and the output directory
    that this run created (prepare_output_dir), if any, is removed again; an existing one is left as it was."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    _created_dirs.clear()
    try:
        return main(argv)
    except UserError as error:
        for path in reversed(_created_dirs):
            shutil.rmtree(path, ignore_errors=True)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def prepare_output_dir(path):
    """Create the output directory. Call it only after the input has been validated."""
    if not os.path.isdir(path):
        os.makedirs(path)
        _created_dirs.append(path)
    return path


def check_writable_dir(path, flag):
    """Refuse, before any work, a directory path this run could not write to: an existing file (or a path through
    one), or a directory that is not writable (for a directory still to be made: its nearest existing parent)."""
    existing = os.path.abspath(path)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    where = "" if existing == os.path.abspath(path) else f"{existing} "
    if not os.path.isdir(existing):
        raise UserError(f"{flag} {path}: {where or 'exists and '}is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {where or 'the directory '}is not writable")


def set_device(name):
    """'auto' picks the GPU when Paddle is built with CUDA and one is present; on CPU use every core."""
    if name == "auto":
        name = "gpu" if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0 else "cpu"
    if name == "gpu" and not paddle.device.is_compiled_with_cuda():
        raise UserError("--device gpu: this Paddle build has no CUDA support (install paddlepaddle-gpu)")
    paddle.set_device(name)
    if name == "cpu":
        paddle.base.core.set_num_threads(CPU_CORES)  # import paddle pins OMP_NUM_THREADS to 1 when it is unset
    return name


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


def classification_metrics(logits, labels, task):
    """Accuracy for every task; precision, recall and F1 of the positive class where the task reports them."""
    logits = paddle.to_tensor(np.asarray(logits, dtype="float32"))
    labels = paddle.to_tensor(np.asarray(labels, dtype="int64").reshape(-1, 1))
    metric = AccuracyAndF1() if task.report_f1 else Accuracy()
    metric.update(metric.compute(logits, labels))
    if not task.report_f1:
        return {"acc": float(metric.accumulate())}
    acc, precision, recall, f1, _ = metric.accumulate()
    return {"acc": float(acc), "precision": float(precision), "recall": float(recall), "f1": float(f1)}


def atomic_write(path, write, mode="w"):
    """write(file) into `<path>.tmp`, then rename it to path: a reader sees the old file or the whole new one."""
    tmp = path + ".tmp"
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_cache(path, load, problem):
    """The entry cached at path, or None when there is none or it is bad: load(path) fails, or problem(entry) says
    what is wrong with it (None when nothing is). A bad entry is reported in one warning and moved aside to
    <path>.bad (replacing an older one), so that it is computed again and can still be looked at."""
    if not os.path.exists(path):
        return None
    try:
        entry = load(path)
    except Exception as error:  # a truncated or overwritten file fails in many ways
        wrong = f"unreadable ({type(error).__name__}: {(str(error).splitlines() or [''])[0]})"
    else:
        wrong = problem(entry)
    if wrong is None:
        return entry
    logger.warning("cache %s is bad: %s; moved aside to %s.bad, computing it again", path, wrong, path)
    os.replace(path, path + ".bad")
    return None


def write_cache(path, entry, save, problem, what):
    """Cache a freshly computed entry at path (save(file, entry), written whole or not at all) once problem(entry)
    finds nothing wrong; otherwise nothing is written and a UserError says what (e.g. "--teacher_dir t: the
    teacher's logits") is bad."""
    wrong = problem(entry)
    if wrong is not None:
        raise UserError(f"{what} are bad: {wrong}; not cached in {path}")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    atomic_write(path, lambda f: save(f, entry), "wb")


def write_json(path, obj):
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n"))


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def replace_dir(build, path):
    """Write a directory as `<path>.tmp` with build(tmp_path), then swap it in for `path`, so `path` is always
    complete: the old version until the new one is whole (or, after a crash between the two renames,
    `<path>.old`, which recover_dir puts back)."""
    tmp, old = path + ".tmp", path + ".old"
    recover_dir(path)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    os.makedirs(tmp)
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.exists(path):
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def recover_dir(path):
    """Put back the previous version of a directory when replace_dir was interrupted between its renames."""
    if not os.path.exists(path) and os.path.exists(path + ".old"):
        os.replace(path + ".old", path)


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()
