"""Small helpers every module uses: the error type and how scripts end on it, output directories (one run at a
time in each), scratch directories, the run's processes, device and seeding, metrics. Reading and writing files is
in files.py."""
import contextlib
import fcntl
import logging
import multiprocessing
import os
import random
import shutil
import signal
import stat
import sys
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np
import paddle

def _mkl_fast_path_on_amd():
    """Paddle's MKL takes a slow generic code path on AMD processors unless MKL_DEBUG_CPU_TYPE=5 (MKL reads it at its
    first call, so after `import paddle` is early enough). Measured on this project's AMD EPYC, 40 steps of the
    SST-2 student: 43.2 s on 2 threads without it, 10.0 s with it (1 thread: 18.6 and 13.1 s). Left alone on other
    processors, where it could only slow MKL down, and when the user set it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            amd = "AuthenticAMD" in f.read(4096)
    except OSError:
        return
    if amd:
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")


_mkl_fast_path_on_amd()
from paddle.metric import Accuracy
from paddlenlp.metrics import AccuracyAndF1, MultiLabelsMetric


@dataclass(frozen=True)
class World:
    """This process among the processes of one run, as `python -m paddle.distributed.launch` numbers them (its
    environment variables); a script run on its own is rank 0 of 1."""
    rank: int
    size: int
    local_size: int  # processes of the run on this machine

    @property
    def is_main(self):
        """Rank 0: the one process that logs, evaluates and writes the run's files."""
        return self.rank == 0


WORLD = World(rank=int(os.environ.get("PADDLE_TRAINER_ID", 0)), size=int(os.environ.get("PADDLE_TRAINERS_NUM", 1)),
              local_size=int(os.environ.get("PADDLE_LOCAL_SIZE", 1)))
# The cores this process may use: those it may run on (all of them, or those `taskset` allows, for two runs side by
# side), shared among the run's processes on this machine.
CPU_CORES = max(1, len(os.sched_getaffinity(0)) // WORLD.local_size)

logger = logging.getLogger("distill")


class UserError(Exception):
    """Bad input: reported as one line naming the file or flag, with a nonzero exit and no traceback."""


_created_dirs = []  # output directories this process created, removed again when its run fails on bad input


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that every cleanup on the way out runs (temporary
    exports, worker processes, half-written files)."""


def _raise_interrupted(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def run_main(main, argv=None):
    """Run a script's main(argv); how every script ends when it does not end well, in one line on stderr and no
    traceback:
    - bad input (UserError): exit code 2;
    - Ctrl-C, SIGTERM or SIGHUP (the terminal closed, unless nohup ignores it) outside the training loop (which
      checkpoints and exits 130 itself on Ctrl-C and SIGTERM): exit code 130, after every cleanup on the way out
      (temporary exports);
    - an operating-system error (disk full, permission denied, ...), naming the path: exit code 1;
    - the reader of standard output went away (`predict.py ... | head -1`): quietly, exit code 141 as for SIGPIPE.
    An output directory this run created (prepare_output_dir) is then removed, unless it holds a checkpoint to
    resume from (a fault found mid-run: a rerun of the same command goes on from there). Scratch directories that
    killed runs left behind are removed first (sweep_scratch). At the end, the output directories it held (hold_dir)
    are let go."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(logging.INFO if WORLD.is_main else logging.WARNING)  # of several processes, rank 0 logs
    _created_dirs.clear()
    release_dirs()
    # SIGHUP only where it would kill the process outright: under nohup it is ignored, and stays so.
    caught = [signal.SIGTERM] + ([signal.SIGHUP] if signal.getsignal(signal.SIGHUP) == signal.SIG_DFL else [])
    previous = {number: signal.signal(number, _raise_interrupted) for number in caught}
    try:
        sweep_scratch()
        return main(argv)
    except UserError as error:
        _remove_created_dirs()
        _exit(f"error: {error}", 2)
    except KeyboardInterrupt as interruption:
        _remove_created_dirs()
        _exit(f"interrupted ({interruption.args[0] if interruption.args else 'SIGINT'})", 130)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush of stdout is quiet
        sys.exit(141)
    except OSError as error:
        _remove_created_dirs()
        where = f"{error.filename}: " if error.filename else ""
        _exit(f"error: {where}{error.strerror or error}", 1)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        release_dirs()  # after a failed run's directory is removed, so that no other run finds it meanwhile


def _remove_created_dirs():
    for path in reversed(_created_dirs):
        if os.path.exists(os.path.join(path, "checkpoint")):
            logger.info("%s: kept, with the checkpoint a rerun of the same command resumes from", path)
        else:
            shutil.rmtree(path, ignore_errors=True)


def _exit(message, code):
    print(message, file=sys.stderr)
    sys.exit(code)


@contextlib.contextmanager
def interruptions_deferred():
    """Within the block, Ctrl-C, SIGTERM and a caught SIGHUP are recorded in the list it yields instead of raised,
    for the block to wind down where it chooses; leaving it, the first is raised as it would have been. (Raised at
    any instruction, an interruption can break code not written for it: inside multiprocessing.Pool's threads and
    locks it made Pool.terminate() hang.)"""
    pending, previous = [], {}
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if callable(signal.getsignal(number)):  # a Python handler (raising); not ignored, not the default
            previous[number] = signal.signal(number, lambda signum, frame: pending.append(signum))
    try:
        yield pending
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if pending:
            previous[pending[0]](pending[0], None)


def ordered_map(function, items, workers, done=lambda item: None):
    """[function(item) for item in items], computed in this process when workers is 1, else in that many forked
    processes (worker k takes items k, k + workers, ...), which see this process's memory as it was at the fork: only
    the items and the results are pickled. done(item) is called as each result arrives, in order. Ctrl-C or SIGTERM
    kills the workers within 0.1 s and is raised once they are gone; a worker that dies ends the map (RuntimeError)."""
    items = list(items)
    workers = max(1, min(workers, len(items)))
    results = []
    if workers == 1:
        for item in items:
            results.append(function(item))
            done(item)
        return results
    context = multiprocessing.get_context("fork")
    processes, receivers = [], []
    with interruptions_deferred() as pending:
        try:
            for rank in range(workers):
                receiver, sender = context.Pipe(duplex=False)
                process = context.Process(target=_map_worker, args=(function, items[rank::workers], sender),
                                          daemon=True)
                process.start()
                processes.append(process)
                sender.close()  # so that the receiver sees the end of the pipe if the worker dies
                receivers.append(receiver)
            for index, item in enumerate(items):
                rank = index % workers
                while not (pending or receivers[rank].poll(0.1)):
                    pass
                if pending:
                    break
                try:
                    results.append(receivers[rank].recv())
                except EOFError:
                    processes[rank].join()
                    raise RuntimeError(f"a worker process of {function.__name__} died (exit code "
                                       f"{processes[rank].exitcode}); see above, or try --num_workers 1") from None
                done(item)
        finally:
            for process in processes:
                process.kill()  # they hold nothing to clean up; a SIGTERM might find one still in a recording handler
                process.join()
            for receiver in receivers:
                receiver.close()
    return results


def _map_worker(function, items, sender):
    """An ordered_map worker. It keeps the parent's handlers as they were at the fork, which record an interruption
    (interruptions_deferred) and carry on: the parent acts on it, and kills its workers."""
    for item in items:
        sender.send(function(item))


def prepare_output_dir(path, flag="--output_dir"):
    """Create the output directory if it does not exist yet and hold it for the rest of the run (hold_dir), on rank
    0, the one process of a run that writes in it. Call it only after the input has been validated: a directory it
    created is removed again when the run then fails."""
    if WORLD.is_main:
        try:
            os.makedirs(path)
            created = True
        except FileExistsError:
            created = False  # it was there, or another run made it meanwhile: hold_dir tells whether it is in use
        hold_dir(path, flag)  # refused when another run holds it, then never removed as ours (it took it first)
        if created:
            _created_dirs.append(path)
    return path


_held_dirs = {}  # real path of a directory this process holds -> the descriptor holding its lock


def hold_dir(path, flag):
    """Hold an existing output directory for the rest of this run (run_main lets go at its end), so that no other
    run or export writes in it meanwhile; refused in one line when another process holds it. The lock is flock() of
    the directory itself (no lock file to leave behind), released by the kernel when the process ends however it
    ends: a killed run never blocks the next. In a run of several processes only rank 0, the one that writes, holds
    it (the others would find it taken by their own rank 0)."""
    if not WORLD.is_main:
        return
    real = os.path.realpath(path)
    held = _held_dirs.get(real)
    if held is not None and _still_at(held, real):
        return
    if held is not None:  # the directory this process held was removed or replaced since (an earlier main())
        os.close(_held_dirs.pop(real))
    for _ in range(10):
        descriptor = os.open(real, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise UserError(f"{flag} {path}: in use by another process (a run, export or conversion writing it, "
                            f"which holds its lock); wait for it to end or use another {flag}") from None
        except OSError as error:  # a file system without locks: work unprotected rather than not at all
            os.close(descriptor)
            logger.warning("%s %s: cannot be locked (%s); another run could write in it meanwhile", flag, path,
                           error.strerror)
            return
        if _still_at(descriptor, real):
            _held_dirs[real] = descriptor
            return
        os.close(descriptor)  # replace_dir swapped another directory in meanwhile: lock the one there now
    raise UserError(f"{flag} {path}: replaced again and again by another process; wait for it to end")


def _still_at(descriptor, path):
    """Whether the open directory is still the one at path."""
    try:
        return os.path.samestat(os.fstat(descriptor), os.stat(path))
    except OSError:
        return False


def release_dirs():
    """Let go of every directory this process holds (hold_dir)."""
    while _held_dirs:
        os.close(_held_dirs.popitem()[1])


def _forget_held_dirs_in_child():
    """A forked process (an augmentation worker) gets copies of the lock descriptors; it closes them, so that the
    lock ends with the run's own process even if such a child outlives it (closing a copy never unlocks)."""
    for descriptor in _held_dirs.values():
        with contextlib.suppress(OSError):
            os.close(descriptor)
    _held_dirs.clear()


os.register_at_fork(after_in_child=_forget_held_dirs_in_child)


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


def _scratch_path():
    return os.path.join(tempfile.gettempdir(), f"distill-scratch-{os.getuid()}")


def scratch_root():
    """The directory of this user's scratch directories (scratch_dir), in the system's temporary directory
    ($TMPDIR, else /tmp): <tmp>/distill-scratch-<uid>, created on first use, readable by this user only."""
    root = _scratch_path()
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        status = os.lstat(root)
    except OSError as error:
        raise UserError(f"{root}: cannot create the directory for temporary exports ({error.strerror}); set TMPDIR "
                        "to a writable directory") from None
    if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.getuid():
        raise UserError(f"{root}: not a directory of this user (another user's, or a link); remove it or set TMPDIR "
                        "to another directory")
    return root


@contextlib.contextmanager
def _locked(path, blocking=True):
    """An exclusive flock on the directory at path for the block (True), or False without waiting when another
    process holds it (blocking=False). The kernel releases it when the process dies, even by SIGKILL."""
    handle = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(handle)


@contextlib.contextmanager
def scratch_dir(what):
    """A new empty directory for this process's temporary files (a teacher exported for labelling: about 900 MB for
    a bert-base teacher), under scratch_root, named <what>-<pid>-<random>. Removed when the block ends, whatever
    ends it (an error, Ctrl-C, SIGTERM or SIGHUP under run_main); after SIGKILL, which nothing survives, the next
    run of any script removes it (sweep_scratch): each directory is locked while its process uses it, so an unlocked
    one is a dead run's. Several runs may share the root."""
    root = scratch_root()
    sweep_scratch()
    with contextlib.ExitStack() as stack:
        with _locked(root):  # a sweep in another run waits until the new directory is locked
            path = tempfile.mkdtemp(prefix=f"{what}-{os.getpid()}-", dir=root)
            stack.callback(shutil.rmtree, path, ignore_errors=True)
            stack.enter_context(_locked(path))
        yield path


def sweep_scratch():
    """Remove the scratch directories of runs that are gone (killed by SIGKILL, or a lost machine): those no living
    process holds locked. Best effort: a directory that cannot be removed is left for the next sweep."""
    root = _scratch_path()
    try:
        if not os.path.isdir(root) or os.lstat(root).st_uid != os.getuid() or not os.listdir(root):
            return
        with _locked(root):
            for name in os.listdir(root):
                path = os.path.join(root, name)
                if not os.path.isdir(path) or os.path.islink(path):
                    continue
                with _locked(path, blocking=False) as unused:
                    if unused:
                        logger.info("removing %s, left behind by a run that was killed", path)
                        shutil.rmtree(path, ignore_errors=True)
    except OSError:
        pass


_joined = False  # whether this process has joined its run's other processes


def set_device(name):
    """'auto' picks the GPU when Paddle is built with CUDA and one is present; on CPU use every core (of this
    process's share). Under paddle.distributed.launch, also joins the run's other processes (each on its own GPU,
    the one the launcher gave it), so collectives work from here on."""
    if name == "auto":
        name = "gpu" if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0 else "cpu"
    if name == "gpu" and not paddle.device.is_compiled_with_cuda():
        raise UserError("--device gpu: this Paddle build has no CUDA support (install paddlepaddle-gpu)")
    if WORLD.size > 1 and name == "gpu":
        name = f"gpu:{paddle.distributed.ParallelEnv().device_id}"
    paddle.set_device(name)
    global _joined
    if WORLD.size > 1 and not _joined:
        # Paddle 3's libuv TCP store, which rank 0 hosts, can abort rank 0 (SIGABRT, nothing logged) when another
        # rank's disconnect reaches it while rank 0 exits, after a run that wrote everything: 3 of 34 two-process
        # CPU runs of the scaling benchmark here. The socket store (Paddle 2.6's only one): none of 100.
        if "FLAGS_tcp_store_using_libuv" in paddle.base.core.globals():
            paddle.set_flags({"FLAGS_tcp_store_using_libuv": False})
        paddle.distributed.init_parallel_env()
        _joined = True
    if name == "cpu":
        use_all_cores()
    return name


def all_gather(obj):
    """[the obj of rank 0, of rank 1, ...]: every rank's object, on every rank ([obj] for a single process)."""
    if WORLD.size == 1:
        return [obj]
    gathered = []
    paddle.distributed.all_gather_object(gathered, obj)
    return gathered


def barrier():
    """Wait until every process of the run gets here (nothing to wait for alone)."""
    if WORLD.size > 1:
        paddle.distributed.barrier()


def any_rank(flag):
    """Whether flag is true on any rank: a decision all processes take together (e.g. to stop)."""
    if WORLD.size == 1:
        return bool(flag)
    votes = paddle.to_tensor([int(bool(flag))])
    paddle.distributed.all_reduce(votes, op=paddle.distributed.ReduceOp.MAX)
    return bool(votes.item())


def gather_shards(shard, total):
    """The items 0..total-1 in order, on every rank, from each rank's shard: rank r holds items r, r + size,
    r + 2 * size, ... (the work split as items[WORLD.rank::WORLD.size])."""
    if WORLD.size == 1:
        return list(shard)
    items = [None] * total
    for rank, part in enumerate(all_gather(list(shard))):
        items[rank::WORLD.size] = part
    return items


def use_all_cores():
    """Dygraph math on every CPU core. Needed after `import paddle` (which pins OMP_NUM_THREADS to 1 when it is
    unset) and again after a paddle.inference predictor ran in this process: it leaves the math library's thread
    setting changed, and training after in-process labelling would then round differently (weights 1e-8 to 3e-7
    away from a run that read the same logits from the cache)."""
    paddle.base.core.set_num_threads(CPU_CORES)


@contextlib.contextmanager
def random_state_kept():
    """Python's, numpy's and Paddle's global random states put back as they were before the block: work in it that
    may or may not draw (a teacher built, its weights then loaded, only for logits not in the cache yet) leaves
    training's draws as they would be without it."""
    states = random.getstate(), np.random.get_state(), paddle.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        paddle.set_rng_state(states[2])


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


def classification_metrics(logits, labels, task):
    """Accuracy and macro-F1 (the mean over the labels of each one's F1) for every task; precision, recall and F1
    of label 1 where the task reports them (QQP)."""
    logits = paddle.to_tensor(np.asarray(logits, dtype="float32"))
    labels = paddle.to_tensor(np.asarray(labels, dtype="int64").reshape(-1, 1))
    accuracy, per_label = Accuracy(), MultiLabelsMetric(num_labels=len(task.labels))
    accuracy.update(accuracy.compute(logits, labels))
    # One-hot labels: MultiLabelsMetric would read N label ids as one one-hot row when N equals the label count.
    per_label.update(per_label.compute(logits, paddle.nn.functional.one_hot(labels.reshape([-1]), len(task.labels))))
    with warnings.catch_warnings():  # a label absent from dev and predictions: F1 0, and a warning every evaluation
        warnings.simplefilter("ignore", UserWarning)
        macro_f1 = float(per_label.accumulate(average="macro")[2])
    metrics = {"acc": float(accuracy.accumulate()), "macro_f1": macro_f1}
    if task.report_f1:
        metric = AccuracyAndF1()
        metric.update(metric.compute(logits, labels))
        _, precision, recall, f1, _ = metric.accumulate()
        metrics.update(precision=float(precision), recall=float(recall), f1=float(f1))
    return metrics


def softmax(logits):
    """Class probabilities (float64) of a batch of logits."""
    logits = np.asarray(logits, dtype="float64")
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def optimizer_state_out(model, optimizer):
    """The optimizer's state with keys under the model's structured parameter names (fc.weight) instead of Paddle's
    own (linear_3.w_0), which depend on how many layers the process built before: a model built again in another
    process (or after other layers) still finds its state (optimizer_state_in)."""
    return _rename_keys(optimizer.state_dict(), {p.name: n for n, p in model.named_parameters()})


def optimizer_state_in(model, saved_state):
    """optimizer_state_out's state with the keys of this process's parameters, for optimizer.set_state_dict."""
    return _rename_keys(saved_state, {n: p.name for n, p in model.named_parameters()})


def _rename_keys(optimizer_state, names):
    """Optimizer state keys start with a parameter's name: renamed through names (old -> new)."""
    by_length = sorted(names, key=len, reverse=True)  # the longest matching name owns the key

    def rename(key):
        old = next((name for name in by_length if key.startswith(name + "_")), None)
        return key if old is None else names[old] + key[len(old):]
    return {rename(key): value for key, value in optimizer_state.items()}


