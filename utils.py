"""Helpers shared by the scripts: errors, device, seeding, metrics, checkpoints and the training loop."""
import json
import logging
import os
import pickle
import random
import shutil
import signal
import sys
import time

import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

# The cores this process may run on: all of them, or those `taskset` allows (two runs side by side).
CPU_CORES = len(os.sched_getaffinity(0))
# Paddle reads OMP_NUM_THREADS when it is imported and pins it to 1 if unset.
os.environ.setdefault("OMP_NUM_THREADS", str(CPU_CORES))
import paddle  # noqa: E402

logger = logging.getLogger("distill")


class UserError(Exception):
    """Bad input: reported as one line naming the file or flag, with a nonzero exit and no traceback."""


def run_main(main, argv=None):
    """Run a script's main(argv); bad input ends with one message and exit code 2, and whatever
    the run had created in its output directory is removed again."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        return main(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def prepare_output_dir(path):
    """Create the output directory. Call it only after the input has been validated."""
    os.makedirs(path, exist_ok=True)
    return path


def set_device(name):
    """'auto' picks the GPU when Paddle is built with CUDA and one is present; on CPU use every core."""
    if name == "auto":
        name = "gpu" if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0 else "cpu"
    if name == "gpu" and not paddle.device.is_compiled_with_cuda():
        raise UserError("--device gpu: this Paddle build has no CUDA support (install paddlepaddle-gpu)")
    paddle.set_device(name)
    if name == "cpu":
        paddle.base.core.set_num_threads(CPU_CORES)
    return name


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


def classification_metrics(logits, labels, task):
    """Accuracy for every task; precision, recall and F1 of the positive class where the task reports them."""
    preds = np.asarray(logits).argmax(-1)
    labels = np.asarray(labels)
    metrics = {"acc": float((preds == labels).mean()) if len(labels) else 0.0}
    if task.report_f1:
        true_pos = float(((preds == 1) & (labels == 1)).sum())
        precision = true_pos / max((preds == 1).sum(), 1)
        recall = true_pos / max((labels == 1).sum(), 1)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        metrics.update(precision=precision, recall=recall, f1=f1)
    return metrics


def write_json(path, obj):
    """Write JSON through a temporary file and a rename, so a crash never leaves half a file."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


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


def total_steps(args, loader):
    return args.max_steps or len(loader) * args.max_epoch


def fit(args, model, optimizer, train_loader, loss_fn, evaluate, save_model, task, lr_scheduler=None):
    """The training loop of every script.

    loss_fn(model, batch) -> scalar loss; evaluate(model) -> metrics dict; save_model(model, dir) writes a model
    directory that can be loaded on its own. Evaluates every --eval_steps and at each epoch end, keeps the best
    model by the task's metric in <output_dir>/best, resumes from <output_dir>/checkpoint when one is there, saves
    a checkpoint at each epoch end and on Ctrl-C or SIGTERM (then exits with code 130), and writes
    <output_dir>/results.json at the end. A tqdm bar shows the progress, loss and speed.
    """
    ckpt_dir = os.path.join(args.output_dir, "checkpoint")
    flags = {k: v for k, v in vars(args).items() if k not in FLAGS_A_RESUME_MAY_CHANGE}
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best": None, "best_step": None, "history": [],
             "train_seconds": 0.0, "flags": flags}
    recover_dir(ckpt_dir)
    recover_dir(os.path.join(args.output_dir, "best"))
    if os.path.exists(os.path.join(ckpt_dir, "state.json")):
        check_resumable(ckpt_dir, flags)
        state = _load_checkpoint(ckpt_dir, model, optimizer, lr_scheduler)
        logger.info("resumed from %s at step %d (epoch %d)", ckpt_dir, state["step"], state["epoch"])
    else:
        # Training's random draws (dropout) start from the seed whatever the setup drew before, e.g. loading the
        # teacher only when its logits are not cached yet; +1 keeps them apart from the initialisation's draws.
        set_seed(args.seed + 1)
    # The log restarts from the checkpoint's history, so evaluations after the checkpoint that a crash lost and
    # the rerun repeats are not logged twice.
    eval_log = os.path.join(args.output_dir, "eval_log.jsonl")
    with open(eval_log, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(record) + "\n" for record in state["history"])
    steps_per_epoch = len(train_loader)
    last_step = total_steps(args, train_loader)
    vdl_writer = _visualdl_writer(args)

    def run_eval():
        metrics = evaluate(model)
        model.train()
        record = {"step": state["step"], "epoch": state["epoch"], **metrics}
        state["history"].append(record)
        with open(eval_log, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if vdl_writer is not None:
            for name, value in metrics.items():
                vdl_writer.add_scalar(f"dev/{name}", value, state["step"])
        improved = state["best"] is None or metrics[task.metric] > state["best"][task.metric]
        if improved:
            state["best"], state["best_step"] = metrics, state["step"]
            replace_dir(lambda d: save_model(model, d), os.path.join(args.output_dir, "best"))
        logger.info("eval step %d: %s%s", state["step"], _fmt(metrics), " (best)" if improved else "")

    # Ctrl-C or SIGTERM only asks to stop: the loop stops between steps, where model, optimizer and state agree,
    # so the checkpoint resumes exactly. A second signal acts at once (the last complete checkpoint stays).
    stop_signals = []

    def request_stop(signum, frame):
        stop_signals.append(signal.Signals(signum).name)
        for number, handler in previous_handlers.items():
            signal.signal(number, handler)

    previous_handlers = {number: signal.signal(number, request_stop) for number in (signal.SIGINT, signal.SIGTERM)}
    start = time.time() - state["train_seconds"]
    model.train()
    with logging_redirect_tqdm(), tqdm(total=last_step, initial=state["step"], desc=f"{args.script} {args.task_name}",
                                       unit="step", mininterval=1.0, dynamic_ncols=True) as bar:
        try:
            while state["step"] < last_step and not stop_signals:
                train_loader.batch_sampler.set_epoch(state["epoch"])
                for batch_index, batch in enumerate(train_loader):
                    if batch_index < state["batch_in_epoch"]:
                        continue  # resumed mid-epoch: these batches were already trained on
                    if stop_signals:
                        break
                    batch_start = time.time()
                    loss = loss_fn(model, batch)
                    loss.backward()
                    optimizer.step()
                    optimizer.clear_grad()
                    if lr_scheduler is not None:
                        lr_scheduler.step()
                    state["step"] += 1
                    state["batch_in_epoch"] = batch_index + 1
                    bar.set_postfix(loss=f"{float(loss):.4f}", refresh=False,
                                    examples_per_s=f"{len(batch[0]) / max(time.time() - batch_start, 1e-9):.0f}")
                    bar.update()
                    if state["step"] % args.logging_steps == 0:
                        logger.info("epoch %d step %d/%d loss %.4f (%.1f steps/s)", state["epoch"], state["step"],
                                    last_step, float(loss), state["step"] / max(time.time() - start, 1e-9))
                    if state["step"] % args.eval_steps == 0:
                        run_eval()
                    if state["step"] >= last_step:
                        break
                if state["batch_in_epoch"] == steps_per_epoch:
                    state["epoch"] += 1
                    state["batch_in_epoch"] = 0
                    if not _evaluated_at(state):
                        run_eval()
                    state["train_seconds"] = time.time() - start
                    _save_checkpoint(ckpt_dir, model, optimizer, lr_scheduler, state)
            if stop_signals:
                state["train_seconds"] = time.time() - start
                _save_checkpoint(ckpt_dir, model, optimizer, lr_scheduler, state)
                logger.info("interrupted (%s): checkpoint saved in %s at step %d; rerun the same command to resume",
                            stop_signals[0], ckpt_dir, state["step"])
                sys.exit(130)
            if not _evaluated_at(state):
                run_eval()
        finally:
            for number, handler in previous_handlers.items():
                signal.signal(number, handler)
            if vdl_writer is not None:
                vdl_writer.close()
    state["train_seconds"] = time.time() - start
    _save_checkpoint(ckpt_dir, model, optimizer, lr_scheduler, state)
    return write_results(args, task, state)


def _visualdl_writer(args):
    """A VisualDL LogWriter on <output_dir>/vdl with --visualdl, or None (also when visualdl does not import)."""
    if not args.visualdl:
        return None
    try:
        from visualdl import LogWriter
    except ImportError:
        logger.warning("--visualdl: the visualdl package does not import; logging to eval_log.jsonl only")
        return None
    return LogWriter(logdir=os.path.join(args.output_dir, "vdl"))


def write_results(args, task, state):
    flags = {k: v for k, v in sorted(vars(args).items())}
    results = {"task": args.task_name, "script": args.script, "metric": task.metric, "metrics": state["best"],
               "best_step": state["best_step"], "steps": state["step"],
               "train_seconds": round(state["train_seconds"], 1), "flags": flags}
    write_json(os.path.join(args.output_dir, "results.json"), results)
    print(f"{args.script} {args.task_name} best at step {state['best_step']}: {_fmt(state['best'])}", flush=True)
    return results


def _evaluated_at(state):
    return bool(state["history"]) and state["history"][-1]["step"] == state["step"]


def _fmt(metrics):
    return " ".join(f"{k}={v:.4f}" for k, v in metrics.items())


def _save_checkpoint(ckpt_dir, model, optimizer, lr_scheduler, state):
    def build(d):
        paddle.save(model.state_dict(), os.path.join(d, "model.pdparams"))
        paddle.save(_rename_keys(optimizer.state_dict(), {p.name: n for n, p in model.named_parameters()}),
                    os.path.join(d, "optimizer.pdopt"))
        if lr_scheduler is not None:
            paddle.save(lr_scheduler.state_dict(), os.path.join(d, "lr.pdparams"))
        with open(os.path.join(d, "rng.pkl"), "wb") as f:
            pickle.dump({"python": random.getstate(), "numpy": np.random.get_state(),
                         "paddle": paddle.get_rng_state()}, f)
        write_json(os.path.join(d, "state.json"), state)
    replace_dir(build, ckpt_dir)


# Flags that may differ when a run resumes: where and how long it runs, and how it reports; any other change
# (data, model, optimisation, augmentation) would silently mix two runs in one checkpoint.
FLAGS_A_RESUME_MAY_CHANGE = {"output_dir", "device", "max_epoch", "max_steps", "eval_steps", "logging_steps",
                             "visualdl", "num_workers", "cache_dir", "teacher_backend", "teacher_batch_size",
                             "save_transfer_set"}


def check_resumable(ckpt_dir, flags):
    """Refuse to resume a checkpoint written with other flags, naming them (before anything is loaded)."""
    saved = read_json(os.path.join(ckpt_dir, "state.json")).get("flags", flags)
    differing = sorted(k for k in set(saved) | set(flags) if saved.get(k) != flags.get(k))
    if differing:
        changes = ", ".join(f"--{k} {saved.get(k)} -> {flags.get(k)}" for k in differing)
        raise UserError(f"--output_dir {os.path.dirname(ckpt_dir)} holds a checkpoint of a run with other flags "
                        f"({changes}); rerun with the same flags to resume, or use another --output_dir")


def _load_checkpoint(ckpt_dir, model, optimizer, lr_scheduler):
    model.set_state_dict(paddle.load(os.path.join(ckpt_dir, "model.pdparams")))
    optimizer.set_state_dict(_rename_keys(paddle.load(os.path.join(ckpt_dir, "optimizer.pdopt")),
                                          {n: p.name for n, p in model.named_parameters()}))
    if lr_scheduler is not None:
        lr_scheduler.set_state_dict(paddle.load(os.path.join(ckpt_dir, "lr.pdparams")))
    with open(os.path.join(ckpt_dir, "rng.pkl"), "rb") as f:
        rng = pickle.load(f)
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    paddle.set_rng_state(rng["paddle"])
    return read_json(os.path.join(ckpt_dir, "state.json"))


def _rename_keys(optimizer_state, names):
    """Optimizer state keys start with a parameter's name. Paddle's own names (linear_3.w_0) depend on how many
    layers the process built before, so checkpoints store the model's structured names (fc.weight) instead,
    and a model built again in the same process (or built after other layers) still finds its state."""
    by_length = sorted(names, key=len, reverse=True)  # the longest matching name owns the key

    def rename(key):
        old = next((name for name in by_length if key.startswith(name + "_")), None)
        return key if old is None else names[old] + key[len(old):]
    return {rename(key): value for key, value in optimizer_state.items()}
