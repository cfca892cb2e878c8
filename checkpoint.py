"""A run's identity and its checkpoint: the run config, the output directory's checks, the flags and input files a
resumed run must share, and the checkpoint (model, optimizer, schedule, random state, loop state) written whole or
not at all and resumed exactly."""
import dataclasses
import logging
import os
import pickle
import random
import shutil
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import paddle

import model as models
from args import FLAGS_THAT_SHAPE_NOTHING
from files import current_dir, file_sha256, read_json, recover_dir, replace_dir, staged_name, write_json
from utils import WORLD, UserError, all_gather, barrier, check_writable_dir, hold_dir, optimizer_state_in, \
    optimizer_state_out

logger = logging.getLogger("distill")

# Flags that may differ when a run resumes: those that shape nothing it learns, and how often it evaluates; any other
# change (data, model, optimisation, augmentation) would silently mix two runs in one checkpoint. How long it runs
# may change only where the learning rate follows no schedule planned over the run's length (--lr_schedule
# constant): elsewhere the resumed run would learn what no single command reproduces.
FLAGS_A_RESUME_MAY_CHANGE = FLAGS_THAT_SHAPE_NOTHING | {"eval_steps"}
LENGTH_FLAGS = {"max_epoch", "max_steps"}
INPUTS = "input_sha256"  # the key of the input files' hashes among the flags a checkpoint records
# The key of the number of processes among them: each process's share of the batches depends on it, so a run resumes
# only with as many processes as it started with (--batch_size is per process).
WORLD_SIZE = "world_size"
# What a run writes in its --output_dir (each also under a temporary name while it is being written: staged_name).
RUN_FILES = {"best", "checkpoint", "eval_log.jsonl", "results.json", "vdl", "transfer_set.tsv",
             "selector_policy.pdparams"}


@dataclass(frozen=True)
class RunConfig:
    """What the training loop needs to know of a run."""
    script: str
    task_name: str
    output_dir: str
    metric: str  # the dev metric that picks the best model
    seed: int
    max_epoch: int
    max_steps: Optional[int]  # overrides max_epoch
    eval_steps: int
    logging_steps: int
    visualdl: bool
    flags: dict  # every flag of the run and its world_size, for results.json and for refusing to resume otherwise
    inputs: dict = field(default_factory=dict)  # flag -> sha256 of what it names (input_hashes)

    @classmethod
    def from_args(cls, args, task):
        """The run of a training script's parsed flags (its fields of the same names, straight from them) on the
        task (data.load_task)."""
        flags = dict(sorted({**vars(args), WORLD_SIZE: WORLD.size}.items()))
        named = {spec.name: flags[spec.name] for spec in dataclasses.fields(cls)
                 if spec.name in flags and spec.name not in ("task_name", "metric")}
        return cls(**named, task_name=task.name, metric=args.metric or task.metric, flags=flags,
                   inputs=input_hashes(args, task))

    def total_steps(self, steps_per_epoch):
        return self.max_steps or steps_per_epoch * self.max_epoch

    @property
    def resume_flags(self):
        """What a resumed run must share with its checkpoint: the flags a rerun may not change, and the contents of
        the input files."""
        constant_lr = self.flags.get("lr_schedule") == "constant"
        may_change = FLAGS_A_RESUME_MAY_CHANGE | (LENGTH_FLAGS if constant_lr else set())
        return {**{k: v for k, v in self.flags.items() if k not in may_change}, INPUTS: self.inputs}


def input_hashes(args, task):
    """What the run reads, by flag: for a file (data files, vocabulary, embedding vectors) the sha256 of its
    contents; for --dataset_dir, file name -> sha256 of label.txt and each split's file; for a local model
    directory, file name -> sha256 of each of its files that shape the run: a teacher's (--teacher_dir, or the local
    model --model_name_or_path fine-tunes) weights, config and tokenizer files (models.teacher_files), an
    --embedding directory's weights."""
    files = {flag: getattr(args, flag, None)
             for flag in ("train_file", "dev_file", "unlabeled_file", "source_file", "vocab_path", "embedding")}
    files = {flag: path for flag, path in files.items() if path and os.path.isfile(path)}
    directories = {}
    for flag in ("teacher_dir", "model_name_or_path", "embedding"):
        directory = getattr(args, flag, None)
        if directory and os.path.isdir(directory):
            try:
                directories[flag] = models.teacher_files(directory, f"--{flag}") if flag != "embedding" else \
                    [models.teacher_weights_path(directory, "--embedding")]
            except UserError:
                pass  # a directory without weights is reported where the model is read
    flag = None
    try:
        hashes = {}
        for flag, path in files.items():
            hashes[flag] = file_sha256(path)
        for flag, paths in directories.items():
            hashes[flag] = {os.path.basename(path): file_sha256(path) for path in paths}
        if task.files:
            flag = "dataset_dir"
            paths = [os.path.join(args.dataset_dir, "label.txt"), *task.files.values()]
            hashes[flag] = {os.path.basename(path): file_sha256(path) for path in paths}
        return hashes
    except OSError as error:
        raise UserError(f"--{flag} {error.filename}: cannot be read ({error.strerror})") from None


@dataclass
class LoopState:
    """Where training is; saved in the checkpoint as state.json."""
    flags: dict
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of the current epoch already trained on
    best: Optional[dict] = None  # metrics of the best evaluation
    best_step: Optional[int] = None
    history: list = field(default_factory=list)  # every evaluation: {"step", "epoch", **metrics}
    train_seconds: float = 0.0

    def evaluated_now(self):
        return bool(self.history) and self.history[-1]["step"] == self.step


def check_output_dir(run):
    """Refuse, before any work, an --output_dir this run must not write to: one it cannot create or write, one
    holding a checkpoint of a run with other flags, and a non-empty one holding no checkpoint and files that are not
    a run's. A directory holding only a run's files but no checkpoint is a run stopped in its first epoch: it starts
    over. An existing directory is held from here on (hold_dir): a second run into it is refused while this one
    runs (one into a new directory: when it creates it, prepare_output_dir)."""
    check_writable_dir(run.output_dir, "--output_dir")
    if not os.path.isdir(run.output_dir):
        return
    hold_dir(run.output_dir, "--output_dir")
    # A checkpoint interrupted between the renames of replace_dir is still there, which the run puts back.
    checkpoint = current_dir(os.path.join(run.output_dir, "checkpoint")) or os.path.join(run.output_dir, "checkpoint")
    if os.path.exists(os.path.join(checkpoint, "state.json")):
        check_same_flags(run.output_dir, read_json(os.path.join(checkpoint, "state.json"))["flags"], run.resume_flags)
        return
    others = sorted(name for name in os.listdir(run.output_dir) if not _is_run_file(name))
    if others:
        raise UserError(f"--output_dir {run.output_dir}: not empty and not a run's output ({', '.join(others[:3])}"
                        f"{', ...' if len(others) > 3 else ''}); use a new or empty --output_dir")


def _is_run_file(name):
    return name in RUN_FILES or staged_name(name) in RUN_FILES


def check_same_flags(output_dir, saved_flags, flags):
    """Refuse to resume a checkpoint in output_dir saved with other flags (those a rerun may not change) or from
    input files that have changed since at the same paths, naming them."""
    saved_flags = {WORLD_SIZE: 1, **saved_flags}  # checkpoints written before runs had several processes
    # Checkpoints written before the run's length was part of the check do not record it: it cannot be compared.
    saved_flags.update((key, flags[key]) for key in LENGTH_FLAGS & set(flags) if key not in saved_flags)
    differing = sorted(k for k in set(saved_flags) | set(flags)
                       if k != INPUTS and not _same_value(saved_flags.get(k), flags.get(k)))
    saved_inputs = saved_flags.get(INPUTS, {})  # checkpoints written before the inputs were hashed have none
    changed = {flag: _what_changed(saved_inputs[flag], digest) for flag, digest in flags.get(INPUTS, {}).items()
               if flag not in differing and flag in saved_inputs}
    changed = {flag: what for flag, what in changed.items() if what}
    if changed and not differing:
        inputs = ", ".join(f"--{flag} {flags[flag]} ({what} changed since)" for flag, what in changed.items())
        raise UserError(f"--output_dir {output_dir} holds a checkpoint of a run that read other contents from "
                        f"{inputs}; restore {'them' if len(changed) > 1 else 'it'} to resume, or use another "
                        "--output_dir")
    if differing:
        changes = ", ".join(f"{_flag_name(k)} {_shown(saved_flags.get(k))} -> {_shown(flags.get(k))}"
                            for k in differing)
        why = " (the learning-rate schedule is planned over the run's length)" if LENGTH_FLAGS & set(differing) else ""
        raise UserError(f"--output_dir {output_dir} holds a checkpoint of a run with other flags ({changes}){why}; "
                        "rerun with the same flags to resume, or use another --output_dir")


class Checkpoint:
    """<output_dir>/checkpoint: model, optimizer, LR schedule, random state and LoopState, written whole or not at
    all (replace_dir), with a snapshot of <output_dir>/best as it was then (hard links: best/ is replaced, never
    changed in place). Resuming puts that best/ back, so that best/ always agrees with the resumed state, also when
    a run was killed after a best model newer than its checkpoint. In a run of several processes, rank 0 writes it
    with every rank's random state; the others read it."""

    def __init__(self, output_dir, model, optimizer, lr_scheduler, selector=None):
        self.directory = os.path.join(output_dir, "checkpoint")
        self.best_dir = os.path.join(output_dir, "best")
        self.model, self.optimizer, self.lr_scheduler, self.selector = model, optimizer, lr_scheduler, selector
        if WORLD.is_main:
            recover_dir(self.directory)
        barrier()  # the others read the checkpoint once rank 0 has put it back

    def resume(self, flags):
        """The saved LoopState with model, optimizer and random state restored, or None when there is no checkpoint.
        Refuses (before loading anything) a checkpoint written with other flags, naming them."""
        if not os.path.exists(os.path.join(self.directory, "state.json")):
            return None
        saved = read_json(os.path.join(self.directory, "state.json"))
        check_same_flags(os.path.dirname(self.directory), saved["flags"], flags)
        self.model.set_state_dict(paddle.load(os.path.join(self.directory, "model.pdparams")))
        self.optimizer.set_state_dict(optimizer_state_in(
            self.model, paddle.load(os.path.join(self.directory, "optimizer.pdopt"))))
        if self.lr_scheduler is not None:
            self.lr_scheduler.set_state_dict(paddle.load(os.path.join(self.directory, "lr.pdparams")))
        if self.selector is not None:
            self.selector.set_state_dict(paddle.load(os.path.join(self.directory, "selector.pdparams")))
        with open(os.path.join(self.directory, "rng.pkl"), "rb") as f:
            rng = pickle.load(f)
        rng = rng[WORLD.rank] if isinstance(rng, list) else rng  # one per rank (a dict: written by an older version)
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        paddle.set_rng_state(rng["paddle"])
        if WORLD.is_main:
            self._restore_best(saved["best"] is not None)
        logger.info("resumed from %s at step %d (epoch %d)", self.directory, saved["step"], saved["epoch"])
        return LoopState(**saved)

    def _restore_best(self, has_best):
        recover_dir(self.best_dir)
        saved_best = os.path.join(self.directory, "best")
        if os.path.isdir(saved_best):
            replace_dir(lambda directory: _snapshot(saved_best, directory), self.best_dir)
        elif not has_best:
            shutil.rmtree(self.best_dir, ignore_errors=True)
        # else: a checkpoint written before checkpoints kept best/; its best/ stays as it is

    def save(self, state):
        """Called by every rank (they hand rank 0 their random state); rank 0 writes."""
        rng = all_gather({"python": random.getstate(), "numpy": np.random.get_state(),
                          "paddle": paddle.get_rng_state()})
        if not WORLD.is_main:
            return

        def build(directory):
            paddle.save(self.model.state_dict(), os.path.join(directory, "model.pdparams"))
            paddle.save(optimizer_state_out(self.model, self.optimizer),
                        os.path.join(directory, "optimizer.pdopt"))
            if self.selector is not None:
                paddle.save(self.selector.state_dict(), os.path.join(directory, "selector.pdparams"))
            if self.lr_scheduler is not None:
                paddle.save(self.lr_scheduler.state_dict(), os.path.join(directory, "lr.pdparams"))
            with open(os.path.join(directory, "rng.pkl"), "wb") as f:
                pickle.dump(rng, f)
            write_json(os.path.join(directory, "state.json"), dataclasses.asdict(state))
            if os.path.isdir(self.best_dir):
                _snapshot(self.best_dir, os.path.join(directory, "best"))
        replace_dir(build, self.directory)


def _snapshot(source, target):
    """Copy directory source to target as hard links, or as copies where the file system has none."""
    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    shutil.copytree(source, target, copy_function=link, dirs_exist_ok=True)


def _what_changed(saved, now):
    """What differs between an input's hashes in a checkpoint and now (input_hashes), or None: "the file" for a
    file; for a directory, "its " and the names of its files that changed, appeared or went. A checkpoint written
    before a teacher's files were hashed one by one holds the sha256 of its weights alone."""
    if not isinstance(now, dict):
        return None if saved == now else "the file"
    if not isinstance(saved, dict):
        weights = next(name for name in now if name in ("model_state.pdparams",) + models.TORCH_WEIGHTS)
        saved = {weights: saved}
        now = {weights: now[weights]}
    names = sorted(name for name in set(saved) | set(now) if saved.get(name) != now.get(name))
    return f"its {', '.join(names)}" if names else None


def _same_value(saved, given):
    """Equal flag values, or two spellings of one existing path (../data/train.tsv and /work/data/train.tsv); the
    input hashes tell whether its contents changed."""
    if saved == given:
        return True
    return isinstance(saved, str) and isinstance(given, str) and os.path.exists(given) and \
        os.path.realpath(saved) == os.path.realpath(given)


def _flag_name(key):
    return "processes (world size)" if key == WORLD_SIZE else f"--{key}"


def _shown(flag_value):
    return "(not given)" if flag_value is None else flag_value
