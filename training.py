"""What the three training scripts share: the training loop (fit) and its parts (stop on signal, evaluation record),
the student optimizer and the student's setup. The checkpoint and what a resume must match are in checkpoint.py."""
import contextlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass

import paddle
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

import data
import embeddings
import model as models
import runtimes
from checkpoint import Checkpoint, LoopState
from files import recover_dir, replace_dir, write_json
from utils import WORLD, UserError, any_rank, barrier, classification_metrics, set_device, set_seed

logger = logging.getLogger("distill")

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


def fit(run, model, optimizer, loader, loss_fn, evaluate, save_model, lr_scheduler=None, selector=None,
        loader_of_epoch=None):
    """The training loop of every script: loss_fn(model, batch) -> loss; evaluate(model) -> metrics; save_model(model,
    directory) writes a model that loads on its own; selector: a selector.ReinforcedSelector (loss_fn is its loss);
    loader_of_epoch(epoch): the loader of each epoch, when its data changes (as many batches as loader, epoch 0's).
    Evaluates every run.eval_steps and each epoch end (the best model in <output_dir>/best), checkpoints then and on
    Ctrl-C or SIGTERM (exit code 130), resumes from <output_dir>/checkpoint; returns and writes results.json. Under
    paddle.distributed.launch each process trains a DataParallel copy on its share of the batches; rank 0 alone
    evaluates, shows progress, writes and returns the results (the others return None)."""
    if len(loader) == 0:
        raise UserError(f"{len(loader.batch_sampler.lengths)} training examples make fewer batches of --batch_size "
                        f"{loader.batch_sampler.batch_size} than the {WORLD.size} processes of the run")
    trained = paddle.DataParallel(model) if WORLD.size > 1 else model
    checkpoint = Checkpoint(run.output_dir, model, optimizer, lr_scheduler, selector)
    state = checkpoint.resume(run.resume_flags) or _fresh_state(run)
    recorder = EvalRecorder(run, evaluate, save_model, state) if WORLD.is_main else None
    last_step = run.total_steps(len(loader))
    started = time.time() - state.train_seconds

    def evaluate_and_save():
        if recorder is not None and not state.evaluated_now():
            recorder(model)
        state.train_seconds = time.time() - started
        checkpoint.save(state)  # a run killed outright (SIGKILL, a lost machine) loses at most eval_steps

    model.train()
    stopping = False  # every rank decides it together (any_rank), at the same points of the loop
    closing_recorder = contextlib.closing(recorder) if recorder else contextlib.nullcontext()
    with stop_requests() as stop, closing_recorder, progress_bar(run, last_step, state) as bar:
        while state.step < last_step and not stopping:
            if loader_of_epoch is not None:
                loader = loader_of_epoch(state.epoch)
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
                _report_step(run, bar, state, loss, batch, time.time() - step_started, time.time() - started)
                if state.step % run.eval_steps == 0:
                    evaluate_and_save()
                if state.step >= last_step:
                    break
            if state.batch_in_epoch == len(loader):  # the epoch is complete
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                evaluate_and_save()
                stopping = any_rank(stop)
        if stopping or any_rank(stop):
            state.train_seconds = time.time() - started
            checkpoint.save(state)
            logger.info("interrupted (%s): checkpoint saved in %s at step %d; rerun the same command to resume",
                        (stop or ["on another rank"])[0], checkpoint.directory, state.step)
            sys.exit(130)
        evaluate_and_save()
    results = write_results(run, state) if WORLD.is_main else None
    barrier()  # no rank leaves (tearing down its connections) while rank 0 still writes
    return results


def _fresh_state(run):
    """The LoopState of a run starting from scratch."""
    # Training's random draws (dropout) start from the seed whatever the setup drew before, e.g. loading the
    # teacher only when its logits are not cached yet; +1 keeps them apart from the initialisation's draws.
    set_seed(run.seed + 1 + WORLD.rank)
    return LoopState(flags=run.resume_flags)


def _report_step(run, bar, state, loss, batch, step_seconds, run_seconds):
    """The progress bar after a step, and every run.logging_steps a log line."""
    examples = len(next(iter(batch.values())))
    bar.set_postfix(loss=f"{loss:.4f}", examples_per_s=f"{examples / max(step_seconds, 1e-9):.0f}", refresh=False)
    bar.update()
    if state.step % run.logging_steps == 0:
        logger.info("epoch %d step %d/%d loss %.4f (%.1f steps/s)", state.epoch, state.step, bar.total, loss,
                    state.step / max(run_seconds, 1e-9))


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


def scored_on_test(run, results, task, metrics_of_saved):
    """With a test split (a --dataset_dir holding test.txt): the results with the best model's metrics on it
    (metrics_of_saved(model_dir, test examples)), also in results.json; the results as they are otherwise and on
    every rank but the first."""
    if results is None or "test" not in task.files:
        return results
    test = data.read_split(task, "test", task.files["test"], "--dataset_dir")
    results["test_metrics"] = metrics_of_saved(os.path.join(run.output_dir, "best"), test)
    write_json(os.path.join(run.output_dir, "results.json"), results)
    print(f"{run.script} {run.task_name} best model on test.txt: {_fmt(results['test_metrics'])}", flush=True)
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
    task: object  # tasks.Task
    train: list  # training Examples
    pools: dict  # name -> Examples without labels, none repeating a training example's texts or each other's
    analyzer: data.Analyzer
    vocab: data.StudentVocab
    model: models.BiLSTM
    dev_records: list
    eval_batch_size: int

    def evaluate(self, model, records=None):
        """The metrics of the model on dev (or on records)."""
        records = self.dev_records if records is None else records
        labels = [record["label"] for record in records]
        return classification_metrics(runtimes.student_logits(model, records, self.eval_batch_size), labels,
                                      self.task)

    def evaluate_saved(self, model_dir, examples):
        """The metrics on examples of the student saved in model_dir."""
        return self.evaluate(models.load_student(model_dir, "--output_dir").model, self.records(examples))

    def save(self, model, directory):
        models.save_student(model, self.vocab, directory)

    def records(self, examples):
        """The student records of Examples (their texts analysed, their labels)."""
        return data.student_records(examples, self.analyzer, self.vocab, self.model.config.max_seq_length)


def student_setup(args, task, teacher_dir=None, pools=None):
    """Seed, device, data, vocabulary (of the training examples and those of pools: name -> Examples without labels,
    each kept without the ones whose texts a training example, an earlier pool or an earlier line has), model (with
    --embedding and --init_from_ckpt) and dev records, from the student flags: the one place the two student
    scripts' mains share."""
    set_seed(args.seed)
    set_device(args.device)
    train, dev = data.load_examples(task, args.train_file, args.dev_file, args.max_train_samples,
                                    args.max_dev_samples)
    kept, known = {}, list(train)
    for name, examples in (pools or {}).items():
        kept[name] = data.unseen(examples, known)
        known += kept[name]
    analyzer, vocab = data.build_student_side(task, known, args.tokenization, args.vocab_path,
                                              args.max_vocab_size, args.min_freq, teacher_dir)
    weights = embeddings.embedding_matrix(args.embedding, vocab, args.seed, args.emb_dim, teacher_dir)
    if weights is not None and args.emb_dim and args.emb_dim != weights.shape[1]:
        raise UserError(f"--emb_dim {args.emb_dim} differs from the {weights.shape[1]}-d vectors of --embedding")
    config = models.StudentConfig(
        vocab_size=len(vocab), emb_dim=weights.shape[1] if weights is not None else (args.emb_dim or 300),
        hidden_size=args.hidden_size, num_labels=len(task.labels), dropout_prob=args.dropout_prob,
        activation=args.activation, is_pair=task.is_pair, padding_idx=vocab.pad_id, pooling=args.pooling,
        task_name=task.name, language=task.language, use_pieces=vocab.use_pieces,
        max_seq_length=args.max_seq_length, labels=task.labels)
    model = models.BiLSTM(config, weights)
    if args.init_from_ckpt:
        models.load_student_weights(model, args.init_from_ckpt, vocab=vocab)
    dev_records = data.student_records(dev, analyzer, vocab, args.max_seq_length)
    return StudentSetup(task, train, kept, analyzer, vocab, model, dev_records, args.batch_size)
