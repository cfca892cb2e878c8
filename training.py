"""What the three training scripts share: the training loop (fit) and its parts (run config, stop on signal,
evaluation record, checkpoint), the student optimizer and the student's setup."""
import contextlib
import dataclasses
import json
import logging
import os
import pickle
import random
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import paddle
import paddle.nn.functional as F
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from tasks import TASKS
import data
import model as models
from utils import WORLD, UserError, all_gather, any_rank, barrier, check_writable_dir, classification_metrics, \
    file_sha256, optimizer_state_in, optimizer_state_out, read_json, recover_dir, replace_dir, set_device, set_seed, \
    write_json

logger = logging.getLogger("distill")

# Flags that may differ when a run resumes: where and how long it runs, and how it reports; any other change
# (data, model, optimisation, augmentation) would silently mix two runs in one checkpoint.
FLAGS_A_RESUME_MAY_CHANGE = {"output_dir", "device", "max_epoch", "max_steps", "eval_steps", "logging_steps",
                             "visualdl", "num_workers", "cache_dir", "teacher_backend", "teacher_batch_size",
                             "save_transfer_set"}
INPUTS = "input_sha256"  # the key of the input files' hashes among the flags a checkpoint records
# The key of the number of processes among them: each process's share of the batches depends on it, so a run resumes
# only with as many processes as it started with (--batch_size is per process).
WORLD_SIZE = "world_size"
# What a run writes in its --output_dir (each also as <name>.tmp or <name>.old while it is being replaced).
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
    inputs: dict = field(default_factory=dict)  # flag -> sha256 of the file it names (input_hashes)

    @classmethod
    def from_args(cls, args, metric):
        return cls(script=args.script, task_name=args.task_name, output_dir=args.output_dir, metric=metric,
                   seed=args.seed, max_epoch=args.max_epoch, max_steps=args.max_steps, eval_steps=args.eval_steps,
                   logging_steps=args.logging_steps, visualdl=args.visualdl,
                   flags=dict(sorted({**vars(args), WORLD_SIZE: WORLD.size}.items())), inputs=input_hashes(args))

    def total_steps(self, steps_per_epoch):
        return self.max_steps or steps_per_epoch * self.max_epoch

    @property
    def resume_flags(self):
        """What a resumed run must share with its checkpoint: the flags a rerun may not change, and the contents of
        the input files."""
        return {**{k: v for k, v in self.flags.items() if k not in FLAGS_A_RESUME_MAY_CHANGE}, INPUTS: self.inputs}


def input_hashes(args):
    """flag -> sha256 of the input file it names: data files, vocabulary, embedding vectors, and the weights of a
    local teacher (or of the local model a teacher is fine-tuned from)."""
    files = {flag: getattr(args, flag, None)
             for flag in ("train_file", "dev_file", "unlabeled_file", "vocab_path", "embedding")}
    for flag in ("teacher_dir", "model_name_or_path"):
        directory = getattr(args, flag, None)
        try:
            files[flag] = models.teacher_weights_path(directory) if directory and os.path.isdir(directory) else None
        except UserError:
            pass  # a directory without weights is reported where the teacher is loaded
    try:
        return {flag: file_sha256(path) for flag, path in files.items() if path and os.path.isfile(path)}
    except OSError as error:
        flag = next(flag for flag, path in files.items() if path == error.filename)
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


@contextlib.contextmanager
def stop_requests():
    """Within the block, Ctrl-C or SIGTERM only asks to stop: the yielded list receives the signal's name, so the
    loop can stop between steps, where model, optimizer and state agree and a checkpoint resumes exactly. A second
    signal acts at once (the last complete checkpoint stays), except in a run of several processes: there
    paddle.distributed.launch passes one Ctrl-C or SIGTERM on as up to three SIGTERMs 0.2 s apart (and kills the
    processes 30 s later), so the later ones are ignored."""
    requested = []

    def request(signum, frame):
        requested.append(signal.Signals(signum).name)
        if WORLD.size == 1:
            restore()

    def restore():
        for number, handler in previous.items():
            signal.signal(number, handler)

    previous = {number: signal.signal(number, request) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        restore()


def check_output_dir(run):
    """Refuse, before any work, an --output_dir this run must not write to: one it cannot create or write, one
    holding a checkpoint of a run with other flags, and a non-empty one holding no checkpoint and files that are not
    a run's. A directory holding only a run's files but no checkpoint is a run stopped in its first epoch: it starts
    over."""
    check_writable_dir(run.output_dir, "--output_dir")
    if not os.path.isdir(run.output_dir):
        return
    checkpoint = os.path.join(run.output_dir, "checkpoint")
    if not os.path.exists(checkpoint):
        checkpoint += ".old"  # a checkpoint interrupted between the renames of replace_dir, which the run puts back
    if os.path.exists(os.path.join(checkpoint, "state.json")):
        check_same_flags(run.output_dir, read_json(os.path.join(checkpoint, "state.json"))["flags"], run.resume_flags)
        return
    others = sorted(name for name in os.listdir(run.output_dir) if not _is_run_file(name))
    if others:
        raise UserError(f"--output_dir {run.output_dir}: not empty and not a run's output ({', '.join(others[:3])}"
                        f"{', ...' if len(others) > 3 else ''}); use a new or empty --output_dir")


def _is_run_file(name):
    base, extension = os.path.splitext(name)
    return name in RUN_FILES or extension in (".tmp", ".old") and base in RUN_FILES


def check_same_flags(output_dir, saved_flags, flags):
    """Refuse to resume a checkpoint in output_dir saved with other flags (those a rerun may not change) or from
    input files that have changed since at the same paths, naming them."""
    saved_flags = {WORLD_SIZE: 1, **saved_flags}  # checkpoints written before runs had several processes
    differing = sorted(k for k in set(saved_flags) | set(flags)
                       if k != INPUTS and not _same_value(saved_flags.get(k), flags.get(k)))
    saved_inputs = saved_flags.get(INPUTS, {})  # checkpoints written before the inputs were hashed have none
    changed = [flag for flag, digest in flags.get(INPUTS, {}).items()
               if flag not in differing and saved_inputs.get(flag, digest) != digest]
    if changed and not differing:
        raise UserError(f"--output_dir {output_dir} holds a checkpoint of a run that read other contents from "
                        f"{', '.join(f'--{flag} {flags[flag]}' for flag in changed)} (the file changed since); "
                        "restore the file to resume, or use another --output_dir")
    if differing:
        changes = ", ".join(f"{_flag_name(k)} {_shown(saved_flags.get(k))} -> {_shown(flags.get(k))}"
                            for k in differing)
        raise UserError(f"--output_dir {output_dir} holds a checkpoint of a run with other flags ({changes}); rerun "
                        f"with the same flags to resume, or use another --output_dir")


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


class EvalRecorder:
    """Evaluates the model, records each evaluation (eval_log.jsonl, VisualDL with --visualdl, the log) in the
    LoopState, and keeps the best model by the run's metric in <output_dir>/best."""

    def __init__(self, run, evaluate, save_model, state):
        self.run, self.evaluate, self.save_model, self.state = run, evaluate, save_model, state
        self.best_dir = os.path.join(run.output_dir, "best")
        recover_dir(self.best_dir)
        # The log restarts from the checkpoint's history, so evaluations after the checkpoint that a crash lost
        # and the rerun repeats are not logged twice.
        self.log_path = os.path.join(run.output_dir, "eval_log.jsonl")
        with open(self.log_path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(record) + "\n" for record in state.history)
        self.vdl_writer = _visualdl_writer(run)

    def __call__(self, model):
        state = self.state
        metrics = self.evaluate(model)
        model.train()
        record = {"step": state.step, "epoch": state.epoch, **metrics}
        state.history.append(record)
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.vdl_writer is not None:
            for name, value in metrics.items():
                self.vdl_writer.add_scalar(f"dev/{name}", value, state.step)
        improved = state.best is None or metrics[self.run.metric] > state.best[self.run.metric]
        if improved:
            state.best, state.best_step = metrics, state.step
            replace_dir(lambda d: self.save_model(model, d), self.best_dir)
        logger.info("eval step %d: %s%s", state.step, _fmt(metrics), " (best)" if improved else "")

    def close(self):
        if self.vdl_writer is not None:
            self.vdl_writer.close()


def _visualdl_writer(run):
    """A VisualDL LogWriter on <output_dir>/vdl with --visualdl, or None (also when visualdl does not import)."""
    if not run.visualdl:
        return None
    try:
        from visualdl import LogWriter
    except ImportError:
        logger.warning("--visualdl: the visualdl package does not import; logging to eval_log.jsonl only")
        return None
    return LogWriter(logdir=os.path.join(run.output_dir, "vdl"))


def fit(run, model, optimizer, loader, loss_fn, evaluate, save_model, lr_scheduler=None, selector=None):
    """The training loop of every script: loss_fn(model, batch) -> scalar loss; evaluate(model) -> metrics;
    save_model(model, directory) writes a model directory that loads on its own; selector: a
    selector.ReinforcedSelector whose loss is loss_fn, told after every step (after_step) and checkpointed.

    Evaluates every run.eval_steps and at each epoch end, keeps the best model in <output_dir>/best, resumes from
    <output_dir>/checkpoint, saves a checkpoint at each evaluation, each epoch end and on Ctrl-C or SIGTERM (then exits with code
    130), and returns (and writes) <output_dir>/results.json.

    Launched as several processes (paddle.distributed.launch), each trains a paddle.DataParallel copy on its share
    of the batches (gradients averaged over the processes), and they stop together; rank 0 alone evaluates, shows
    progress and writes, and returns the results (the others return None).
    """
    if len(loader) == 0:
        raise UserError(f"{len(loader.batch_sampler.lengths)} training examples make fewer batches of --batch_size "
                        f"{loader.batch_sampler.batch_size} than the {WORLD.size} processes of the run")
    trained = paddle.DataParallel(model) if WORLD.size > 1 else model
    checkpoint = Checkpoint(run.output_dir, model, optimizer, lr_scheduler, selector)
    state = checkpoint.resume(run.resume_flags)
    if state is None:
        state = LoopState(flags=run.resume_flags)
        # Training's random draws (dropout) start from the seed whatever the setup drew before, e.g. loading the
        # teacher only when its logits are not cached yet; +1 keeps them apart from the initialisation's draws.
        set_seed(run.seed + 1 + WORLD.rank)
    recorder = EvalRecorder(run, evaluate, save_model, state) if WORLD.is_main else None
    last_step = run.total_steps(len(loader))
    started = time.time() - state.train_seconds

    def evaluate_and_record():
        if recorder is not None:
            recorder(model)

    def save_checkpoint():
        state.train_seconds = time.time() - started
        checkpoint.save(state)

    model.train()
    stopping = False  # every rank decides it together (any_rank), at the same points of the loop
    closing_recorder = contextlib.closing(recorder) if recorder else contextlib.nullcontext()
    with stop_requests() as stop, closing_recorder, progress_bar(run, last_step, state) as bar:
        while state.step < last_step and not stopping:
            loader.batch_sampler.set_epoch(state.epoch)
            for index, batch in enumerate(loader):
                if index < state.batch_in_epoch:
                    continue  # resumed mid-epoch: these batches were already trained on
                stopping = any_rank(stop)
                if stopping:
                    break
                step_started = time.time()
                loss = train_step(trained, optimizer, lr_scheduler, loss_fn, batch)
                if selector is not None:
                    selector.after_step(model)
                state.step, state.batch_in_epoch = state.step + 1, index + 1
                examples = len(next(iter(batch.values())))
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False,
                                examples_per_s=f"{examples / max(time.time() - step_started, 1e-9):.0f}")
                bar.update()
                if state.step % run.logging_steps == 0:
                    logger.info("epoch %d step %d/%d loss %.4f (%.1f steps/s)", state.epoch, state.step, last_step,
                                loss, state.step / max(time.time() - started, 1e-9))
                if state.step % run.eval_steps == 0:
                    evaluate_and_record()
                    save_checkpoint()  # a run killed outright (SIGKILL, a lost machine) loses at most eval_steps
                if state.step >= last_step:
                    break
            if state.batch_in_epoch == len(loader):
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                if not state.evaluated_now():
                    evaluate_and_record()
                save_checkpoint()
                stopping = any_rank(stop)
        stopping = stopping or any_rank(stop)
        if stopping:
            save_checkpoint()
            logger.info("interrupted (%s): checkpoint saved in %s at step %d; rerun the same command to resume",
                        (stop or ["on another rank"])[0], checkpoint.directory, state.step)
            sys.exit(130)
        if not state.evaluated_now():
            evaluate_and_record()
    save_checkpoint()
    results = write_results(run, state) if WORLD.is_main else None
    barrier()  # no rank leaves (tearing down its connections) while rank 0 still writes
    return results


def train_step(model, optimizer, lr_scheduler, loss_fn, batch):
    loss = loss_fn(model, batch)
    loss.backward()
    optimizer.step()
    optimizer.clear_grad()
    if lr_scheduler is not None:
        lr_scheduler.step()
    return float(loss)


@contextlib.contextmanager
def progress_bar(run, last_step, state):
    """A tqdm bar over the run's steps, with log lines printed above it."""
    with logging_redirect_tqdm(), tqdm(total=last_step, initial=state.step, desc=f"{run.script} {run.task_name}",
                                       unit="step", mininterval=1.0, dynamic_ncols=True,
                                       disable=not WORLD.is_main) as bar:
        yield bar


def write_results(run, state):
    results = {"task": run.task_name, "script": run.script, "metric": run.metric, "metrics": state.best,
               "best_step": state.best_step, "steps": state.step, "train_seconds": round(state.train_seconds, 1),
               "world_size": WORLD.size, "flags": run.flags}
    write_json(os.path.join(run.output_dir, "results.json"), results)
    print(f"{run.script} {run.task_name} best at step {state.best_step}: {_fmt(state.best)}", flush=True)
    return results


def _fmt(metrics):
    return " ".join(f"{k}={v:.4f}" for k, v in metrics.items())


# ---------------------------------------------------------------------------------------------------------------
# Shared by small.py and bert_distill.py


# Learning rate when --lr is not given, per student optimizer.
DEFAULT_LR = {"adadelta": 1.0, "adam": 1e-3}


def make_optimizer(model, name, lr, lr_schedule, total_steps, rho=0.95):
    """The student optimizer (adadelta or adam, gradients clipped at norm 5; lr None: DEFAULT_LR), and its LR
    schedule: None for a constant rate, or linear decay to 0 over total_steps."""
    lr = DEFAULT_LR[name] if lr is None else lr
    schedule = None
    if lr_schedule == "linear":
        schedule = paddle.optimizer.lr.PolynomialDecay(lr, decay_steps=total_steps, end_lr=0.0)
    rate = schedule or lr
    clip = paddle.nn.ClipGradByNorm(5.0)
    if name == "adadelta":
        return paddle.optimizer.Adadelta(learning_rate=rate, rho=rho, epsilon=1e-6, parameters=model.parameters(),
                                         grad_clip=clip), schedule
    return paddle.optimizer.Adam(learning_rate=rate, parameters=model.parameters(), grad_clip=clip), schedule


@dataclass
class StudentSetup:
    """What both student scripts start from."""
    train: list  # training Examples
    unlabeled: list  # Examples without labels, none repeating a training example's texts or each other's
    analyzer: data.Analyzer
    vocab: data.StudentVocab
    model: models.BiLSTM
    dev_records: list
    eval_batch_size: int

    def evaluate(self, model):
        labels = [record["label"] for record in self.dev_records]
        return classification_metrics(models.student_logits(model, self.dev_records, self.eval_batch_size), labels,
                                      TASKS[model.config.task_name])

    def save(self, model, directory):
        models.save_student(model, self.vocab, directory)


def student_setup(args, task, teacher_dir=None, unlabeled=()):
    """Seed, device, data, vocabulary (of the training and any unlabelled examples), model (with --embedding and
    --init_from_ckpt) and dev records, from the student flags: the one place the two student scripts' mains share."""
    set_seed(args.seed)
    set_device(args.device)
    train, dev = data.load_examples(task, args.train_file, args.dev_file, args.max_train_samples,
                                    args.max_dev_samples)
    unlabeled = data.unseen(unlabeled, train)
    analyzer, vocab = data.build_student_side(task, train + unlabeled, args.tokenization, args.vocab_path,
                                              args.max_vocab_size, args.min_freq, teacher_dir)
    weights = models.embedding_matrix(args.embedding, vocab, args.seed, args.emb_dim, teacher_dir)
    if weights is not None and args.emb_dim and args.emb_dim != weights.shape[1]:
        raise UserError(f"--emb_dim {args.emb_dim} differs from the {weights.shape[1]}-d vectors of --embedding")
    config = models.StudentConfig(
        vocab_size=len(vocab), emb_dim=weights.shape[1] if weights is not None else (args.emb_dim or 300),
        hidden_size=args.hidden_size, num_labels=len(task.labels), dropout_prob=args.dropout_prob,
        activation=args.activation, is_pair=task.is_pair, padding_idx=vocab.pad_id, pooling=args.pooling,
        task_name=args.task_name, language=task.language, use_pieces=vocab.use_pieces,
        max_seq_length=args.max_seq_length, labels=task.labels)
    model = models.BiLSTM(config, weights)
    if args.init_from_ckpt:
        models.load_student_weights(model, args.init_from_ckpt)
    dev_records = [data.student_record(analyzer.sentences(ex.texts), vocab, args.max_seq_length, ex.label)
                   for ex in dev]
    return StudentSetup(train, unlabeled, analyzer, vocab, model, dev_records, args.batch_size)


def distill_loss(student_logits, teacher_logits, labels, alpha, loss, temperature):
    """alpha * CE(student, label) over labelled rows + (1 - alpha) * soft loss against the teacher's logits.

    Rows with label NO_LABEL (-1: augmented copies, unlabelled text) get no CE. The soft loss is MSE on logits (the
    paper), or T^2 * KL(teacher || student) on temperature-softened distributions.
    """
    if loss == "mse":
        soft = F.mse_loss(student_logits, teacher_logits)
    else:
        soft = F.kl_div(F.log_softmax(student_logits / temperature, axis=-1),
                        F.softmax(teacher_logits / temperature, axis=-1), reduction="batchmean") * temperature ** 2
    if alpha == 0:
        return soft
    labelled = labels >= 0
    if not bool(labelled.any()):
        return (1 - alpha) * soft
    hard = F.cross_entropy(student_logits[labelled], labels[labelled])
    return alpha * hard + (1 - alpha) * soft
