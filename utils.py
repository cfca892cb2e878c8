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

# Paddle reads OMP_NUM_THREADS when it is imported and pins it to 1 if unset.
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
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
        paddle.base.core.set_num_threads(os.cpu_count() or 1)
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
    """Write a directory as `<path>.tmp` with build(tmp_path), then swap it in for `path`."""
    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    build(tmp)
    old = path + ".old"
    if os.path.exists(path):
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


class StopTraining(Exception):
    pass


def _raise_stop(signum, frame):
    raise StopTraining(signal.Signals(signum).name)


def fit(args, model, optimizer, train_loader, loss_fn, evaluate, save_model, task, lr_scheduler=None):
    """The training loop of every script.

    loss_fn(model, batch) -> scalar loss; evaluate(model) -> metrics dict; save_model(model, dir) writes a model
    directory that can be loaded on its own. Evaluates every --eval_steps and at each epoch end, keeps the best
    model by the task's metric in <output_dir>/best, resumes from <output_dir>/checkpoint when one is there, saves
    a checkpoint on Ctrl-C or SIGTERM, and writes <output_dir>/results.json at the end.
    """
    ckpt_dir = os.path.join(args.output_dir, "checkpoint")
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best": None, "best_step": None, "history": [],
             "train_seconds": 0.0}
    if os.path.exists(os.path.join(ckpt_dir, "state.json")):
        state = _load_checkpoint(ckpt_dir, model, optimizer, lr_scheduler)
        logger.info("resumed from %s at step %d (epoch %d)", ckpt_dir, state["step"], state["epoch"])
    steps_per_epoch = len(train_loader)
    total_steps = args.max_steps or steps_per_epoch * args.max_epoch

    def run_eval():
        metrics = evaluate(model)
        model.train()
        record = {"step": state["step"], "epoch": state["epoch"], **metrics}
        state["history"].append(record)
        with open(os.path.join(args.output_dir, "eval_log.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        improved = state["best"] is None or metrics[task.metric] > state["best"][task.metric]
        if improved:
            state["best"], state["best_step"] = metrics, state["step"]
            replace_dir(lambda d: save_model(model, d), os.path.join(args.output_dir, "best"))
        logger.info("eval step %d: %s%s", state["step"], _fmt(metrics), " (best)" if improved else "")

    previous_handler = signal.signal(signal.SIGTERM, _raise_stop)
    start = time.time() - state["train_seconds"]
    model.train()
    try:
        while state["step"] < total_steps:
            train_loader.batch_sampler.set_epoch(state["epoch"])
            for batch_index, batch in enumerate(train_loader):
                if batch_index < state["batch_in_epoch"]:
                    continue  # resumed mid-epoch: these batches were already trained on
                loss = loss_fn(model, batch)
                loss.backward()
                optimizer.step()
                optimizer.clear_grad()
                if lr_scheduler is not None:
                    lr_scheduler.step()
                state["step"] += 1
                state["batch_in_epoch"] = batch_index + 1
                if state["step"] % args.logging_steps == 0:
                    logger.info("epoch %d step %d/%d loss %.4f (%.1f steps/s)", state["epoch"], state["step"],
                                total_steps, float(loss), state["step"] / max(time.time() - start, 1e-9))
                if state["step"] % args.eval_steps == 0:
                    run_eval()
                if state["step"] >= total_steps:
                    break
            if state["batch_in_epoch"] == steps_per_epoch:
                state["epoch"] += 1
                state["batch_in_epoch"] = 0
                if not _evaluated_at(state):
                    run_eval()
                state["train_seconds"] = time.time() - start
                _save_checkpoint(ckpt_dir, model, optimizer, lr_scheduler, state)
        if not _evaluated_at(state):
            run_eval()
    except (KeyboardInterrupt, StopTraining) as reason:
        state["train_seconds"] = time.time() - start
        _save_checkpoint(ckpt_dir, model, optimizer, lr_scheduler, state)
        logger.info("interrupted (%s): checkpoint saved in %s; rerun the same command to resume", reason, ckpt_dir)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    state["train_seconds"] = time.time() - start
    _save_checkpoint(ckpt_dir, model, optimizer, lr_scheduler, state)
    return write_results(args, task, state)


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
        paddle.save(optimizer.state_dict(), os.path.join(d, "optimizer.pdopt"))
        if lr_scheduler is not None:
            paddle.save(lr_scheduler.state_dict(), os.path.join(d, "lr.pdparams"))
        with open(os.path.join(d, "rng.pkl"), "wb") as f:
            pickle.dump({"python": random.getstate(), "numpy": np.random.get_state(),
                         "paddle": paddle.get_rng_state()}, f)
        write_json(os.path.join(d, "state.json"), state)
    replace_dir(build, ckpt_dir)


def _load_checkpoint(ckpt_dir, model, optimizer, lr_scheduler):
    model.set_state_dict(paddle.load(os.path.join(ckpt_dir, "model.pdparams")))
    optimizer.set_state_dict(paddle.load(os.path.join(ckpt_dir, "optimizer.pdopt")))
    if lr_scheduler is not None:
        lr_scheduler.set_state_dict(paddle.load(os.path.join(ckpt_dir, "lr.pdparams")))
    with open(os.path.join(ckpt_dir, "rng.pkl"), "rb") as f:
        rng = pickle.load(f)
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    paddle.set_rng_state(rng["paddle"])
    return read_json(os.path.join(ckpt_dir, "state.json"))
