"""An interrupted run, rerun with the same command, ends exactly where an uninterrupted run ends; checkpoints are
written atomically."""
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import paddle
import pytest
from conftest import FAST, ROOT, STUDENT_FAST, data_flags, fails_cleanly
from resumed_runs import assert_same_run, interrupt_at, run_interrupted

import bert_distill
import checkpoint
import distillation
import files
import small
import teacher
import training
import utils
from files import read_json, replace_dir


def test_student_resumes_after_sigterm_between_optimizer_step_and_bookkeeping(task_files, tiny_bert, tmp_path,
                                                                            monkeypatch):
    # Adadelta's accumulators, the LR schedule, dropout's random state and evaluations every 4 steps all have to
    # carry over.
    flags = data_flags(task_files, "sst-2") + STUDENT_FAST + [
        "--vocab_path", os.path.join(tiny_bert, "vocab.txt"), "--max_epoch", "3", "--eval_steps", "4",
        "--optimizer", "adadelta", "--lr_schedule", "linear"]
    small.main(flags + ["--output_dir", str(tmp_path / "straight")])

    make_optimizer = training.make_optimizer

    def interrupting_optimizer(*args, **kwargs):
        optimizer, lr_scheduler = make_optimizer(*args, **kwargs)
        optimizer.step = interrupt_at(13, signal.SIGTERM)(optimizer.step)  # mid-epoch 2, after the update
        return optimizer, lr_scheduler

    monkeypatch.setattr(training, "make_optimizer", interrupting_optimizer)
    resumed = flags + ["--output_dir", str(tmp_path / "resumed")]
    run_interrupted(small.main, resumed, expected_step=13)
    monkeypatch.undo()
    small.main(resumed)
    assert_same_run(tmp_path / "resumed", tmp_path / "straight")


def test_distilled_student_resumes_after_ctrl_c(task_files, tiny_bert, tmp_path, monkeypatch):
    flags = data_flags(task_files, "qqp") + STUDENT_FAST + [
        "--teacher_dir", tiny_bert, "--n_iter", "1", "--max_epoch", "2", "--alpha", "0.5", "--eval_steps", "6",
        "--num_workers", "1", "--cache_dir", str(tmp_path / "cache")]
    straight = bert_distill.main(flags + ["--output_dir", str(tmp_path / "straight")])
    steps_per_epoch = straight["steps"] // 2
    interrupted_at = steps_per_epoch + 6  # a step that is also evaluated: the evaluation runs before stopping
    monkeypatch.setattr(distillation, "distill_loss", interrupt_at(interrupted_at, signal.SIGINT)(
        distillation.distill_loss))
    resumed = flags + ["--output_dir", str(tmp_path / "resumed")]
    run_interrupted(bert_distill.main, resumed, expected_step=interrupted_at)
    monkeypatch.undo()
    bert_distill.main(resumed)
    assert_same_run(tmp_path / "resumed", tmp_path / "straight")


def test_a_run_resumes_when_its_files_are_named_by_another_path(task_files, tiny_bert, tmp_path, monkeypatch):
    train, dev = task_files["sst-2"]
    flags = STUDENT_FAST + ["--task_name", "sst-2", "--vocab_path", os.path.join(tiny_bert, "vocab.txt"),
                            "--max_epoch", "2", "--lr_schedule", "constant", "--output_dir", str(tmp_path / "run")]
    small.main(flags + ["--train_file", train, "--dev_file", dev, "--max_steps", "3"])
    monkeypatch.chdir(os.path.dirname(train))
    results = small.main(flags + ["--train_file", os.path.basename(train), "--dev_file", os.path.relpath(dev)])
    # resumed (with a constant learning rate a rerun may lift --max_steps), not refused as a run with other flags
    assert results["steps"] > 3


@pytest.mark.parametrize("script, length", [("teacher", ["--max_epoch", "2"]), ("small", ["--max_steps", "5"])])
def test_a_resume_that_would_replan_the_learning_rate_schedule_is_refused(capsys, task_files, tiny_bert, tmp_path,
                                                                          script, length):
    """The schedule decays over the run's planned steps: resumed with another length, the run would learn what no
    single command reproduces."""
    main, extra = {"teacher": (teacher.main, FAST + ["--model_name_or_path", tiny_bert]),
                   "small": (small.main, STUDENT_FAST + ["--vocab_path", os.path.join(tiny_bert, "vocab.txt")])}[script]
    flags = data_flags(task_files, "sst-2") + extra + ["--max_train_samples", "32", "--max_dev_samples", "8",
                                                       "--output_dir", str(tmp_path / "run")]
    main(flags + ["--max_steps", "2"])
    before = read_json(str(tmp_path / "run" / "checkpoint" / "state.json"))
    fails_cleanly(capsys, main, flags + length, "holds a checkpoint of a run with other flags", "--max_steps 2 ->",
                  "learning-rate schedule is planned over the run's length")
    assert read_json(str(tmp_path / "run" / "checkpoint" / "state.json")) == before


def test_teacher_resumes_with_its_learning_rate_schedule(task_files, tiny_bert, tmp_path, monkeypatch):
    flags = data_flags(task_files, "sst-2") + FAST + [
        "--model_name_or_path", tiny_bert, "--max_train_samples", "64", "--max_dev_samples", "20",
        "--max_epoch", "3", "--lr", "1e-3"]
    teacher.main(flags + ["--output_dir", str(tmp_path / "straight")])
    monkeypatch.setattr(teacher.F, "cross_entropy", interrupt_at(6, signal.SIGTERM)(teacher.F.cross_entropy))
    resumed = flags + ["--output_dir", str(tmp_path / "resumed")]
    run_interrupted(teacher.main, resumed, expected_step=6)  # 4 steps per epoch: mid-epoch 2
    assert paddle.load(str(tmp_path / "resumed" / "checkpoint" / "lr.pdparams"))["last_epoch"] == 6
    monkeypatch.undo()
    teacher.main(resumed)
    assert_same_run(tmp_path / "resumed", tmp_path / "straight")


def test_a_crash_while_writing_a_checkpoint_keeps_the_previous_one(task_files, tiny_bert, tmp_path, monkeypatch):
    flags = data_flags(task_files, "sst-2") + STUDENT_FAST + [
        "--vocab_path", os.path.join(tiny_bert, "vocab.txt"), "--max_train_samples", "48", "--max_epoch", "3"]
    small.main(flags + ["--output_dir", str(tmp_path / "straight")])
    save = paddle.save
    saved = []

    def crashing_save(obj, path, *args, **kwargs):
        if path.endswith("optimizer.pdopt"):
            saved.append(path)
            if len(saved) == 2:  # the checkpoint at the end of epoch 2, half written
                raise OSError("disk full")
        return save(obj, path, *args, **kwargs)

    monkeypatch.setattr(paddle, "save", crashing_save)
    resumed = flags + ["--output_dir", str(tmp_path / "resumed")]
    with pytest.raises(OSError, match="disk full"):
        small.main(resumed)
    monkeypatch.undo()
    ckpt = tmp_path / "resumed" / "checkpoint"
    assert read_json(str(ckpt / "state.json"))["step"] == 3  # the epoch-1 checkpoint, whole
    assert sorted(os.listdir(ckpt)) == ["best", "lr.pdparams", "model.pdparams", "optimizer.pdopt", "rng.pkl",
                                       "state.json"]
    assert not [name for name in os.listdir(tmp_path / "resumed") if files.staged_name(name)]  # nor its work dir
    small.main(resumed)
    assert_same_run(tmp_path / "resumed", tmp_path / "straight")


def test_a_resumed_run_on_cached_logits_ends_as_the_run_that_labelled_them(task_files, tiny_bert, tmp_path):
    """In separate processes, as a user runs them: labelling with paddle.inference changes the math library's
    threads in its process, which must not change how the student's training rounds afterwards."""
    command = [sys.executable, os.path.join(ROOT, "bert_distill.py")] + data_flags(task_files, "sst-2") + \
        STUDENT_FAST + ["--teacher_dir", tiny_bert, "--n_iter", "1", "--num_workers", "1", "--max_epoch", "2",
                        "--lr_schedule", "constant", "--teacher_backend", "inference",
                        "--cache_dir", str(tmp_path / "cache")]
    subprocess.run(command + ["--output_dir", str(tmp_path / "labelled")], check=True, capture_output=True)
    resumed = command + ["--output_dir", str(tmp_path / "resumed")]
    subprocess.run(resumed + ["--max_steps", "7"], check=True, capture_output=True)  # stops mid-epoch 1
    subprocess.run(resumed, check=True, capture_output=True)
    labelled, resumed = (paddle.load(str(tmp_path / name / "checkpoint" / "model.pdparams"))
                         for name in ("labelled", "resumed"))
    for key, value in labelled.items():
        np.testing.assert_array_equal(np.asarray(resumed[key]), np.asarray(value), err_msg=key)


class Killed(BaseException):
    """SIGKILL as the run sees it: it stops where it is, no checkpoint is written."""


def test_a_best_model_newer_than_the_checkpoint_is_put_back_on_resume(task_files, tiny_bert, tmp_path,
                                                                     monkeypatch):
    flags = data_flags(task_files, "sst-2") + STUDENT_FAST + [
        "--vocab_path", os.path.join(tiny_bert, "vocab.txt"), "--max_epoch", "2", "--eval_steps", "2",
        "--lr_schedule", "constant", "--output_dir", str(tmp_path / "run")]
    scores = iter(range(1000))  # every evaluation is a new best, so best/ is written at every one
    monkeypatch.setattr(training, "classification_metrics", lambda *args: {"acc": next(scores) / 1000})
    writes = []

    def replace_dir_then_kill(build, path):
        replace_dir(build, path)
        writes.append(os.path.basename(path))
        if writes[-1] == "best" and "checkpoint" in writes:  # a best model written after the epoch-1 checkpoint
            raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(training, "replace_dir", replace_dir_then_kill)  # best/
        patch.setattr(checkpoint, "replace_dir", replace_dir_then_kill)  # checkpoint/
        with pytest.raises(Killed):
            small.main(flags)
    run = tmp_path / "run"
    checkpoint_step = read_json(str(run / "checkpoint" / "state.json"))["step"]
    newer_best = paddle.load(str(run / "best" / "model.pdparams"))
    checkpoint_weights = paddle.load(str(run / "checkpoint" / "model.pdparams"))
    assert any(not np.array_equal(newer_best[k], checkpoint_weights[k]) for k in newer_best)

    results = small.main(flags[:-2] + ["--max_steps", str(checkpoint_step), "--output_dir", str(run)])  # ends there
    assert results["best_step"] == checkpoint_step  # its best model is the model at the checkpoint...
    best = paddle.load(str(run / "best" / "model.pdparams"))
    for key, value in checkpoint_weights.items():  # ...and best/ holds it again, not the newer one
        np.testing.assert_array_equal(np.asarray(best[key]), np.asarray(value), err_msg=key)


def test_a_checkpoint_from_before_best_snapshots_keeps_its_best_model(task_files, tiny_bert, tmp_path):
    flags = data_flags(task_files, "sst-2") + STUDENT_FAST + [
        "--vocab_path", os.path.join(tiny_bert, "vocab.txt"), "--max_epoch", "1", "--output_dir", str(tmp_path)]
    small.main(flags)
    shutil.rmtree(tmp_path / "checkpoint" / "best")  # as checkpoints were written before they kept best/
    best = paddle.load(str(tmp_path / "best" / "model.pdparams"))
    small.main(flags)  # resumes, finds nothing left to train
    for key, value in paddle.load(str(tmp_path / "best" / "model.pdparams")).items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(best[key]), err_msg=key)


def write_version(text):
    def build(directory):
        with open(os.path.join(directory, "version"), "w") as f:
            f.write(text)
    return build


def read_version(directory):
    with open(os.path.join(directory, "version")) as f:
        return f.read()


def killed_at(target, args, function=None, wrapper=None):
    """Run target(*args) in a forked child that must die of SIGKILL, as in a crash: nothing of the child's runs
    after. utils' `function` (e.g. "os.replace") may be wrapped by wrapper(original, *its args), to kill there."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            if function is not None:
                module, name = function.split(".")
                owner = getattr(utils, module)
                original = getattr(owner, name)
                setattr(owner, name, lambda *a, **k: wrapper(original, *a, **k))
            target(*args)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def test_replace_dir_never_leaves_a_half_written_or_missing_directory(tmp_path):
    path = str(tmp_path / "checkpoint")
    replace_dir(write_version("1"), path)

    def half_then_crash(directory):
        write_version("2")(directory)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replace_dir(half_then_crash, path)
    assert read_version(path) == "1" and sorted(os.listdir(tmp_path)) == ["checkpoint"]

    # Killed between moving the old version aside and moving the new one in: the old one comes back.
    killed_at(replace_dir, (write_version("3"), path), "os.replace",
              lambda replace, src, dst: kill_self() if dst == path else replace(src, dst))
    assert not os.path.exists(path)
    assert read_version(files.current_dir(path)) == "1"  # where a resume's checks find it meanwhile
    files.recover_dir(path)
    assert read_version(path) == "1" and sorted(os.listdir(tmp_path)) == ["checkpoint"]

    # Killed after the swap but before the old version was deleted: that must not block the next write.
    killed_at(replace_dir, (write_version("4"), path), "shutil.rmtree", lambda rmtree, *args, **kwargs: kill_self())
    assert read_version(path) == "4" and len(os.listdir(tmp_path)) == 2
    replace_dir(write_version("5"), path)
    assert read_version(path) == "5" and sorted(os.listdir(tmp_path)) == ["checkpoint"]

    # Killed while building, or before the work directory was marked: the next write clears it away.
    def half_then_killed(directory):
        write_version("6")(directory)
        kill_self()

    killed_at(replace_dir, (half_then_killed, path))
    assert read_version(path) == "5" and len(os.listdir(tmp_path)) == 2
    replace_dir(write_version("7"), path)
    assert read_version(path) == "7" and sorted(os.listdir(tmp_path)) == ["checkpoint"]
    for killed_after in ("mkdir", "open"):  # mkdtemp's mkdir of the work directory; the mark made, still empty
        killed_at(replace_dir, (write_version("8"), path), f"os.{killed_after}",
                  lambda original, *args, **kwargs: (original(*args, **kwargs), kill_self()))
        assert read_version(path) == "7" and len(os.listdir(tmp_path)) == 2
        replace_dir(write_version("7"), path)
        assert read_version(path) == "7" and sorted(os.listdir(tmp_path)) == ["checkpoint"]

def test_a_checkpoint_that_predates_the_length_check_still_resumes():
    """Checkpoints written before --max_epoch and --max_steps were part of the resume check do not record them;
    they resume (as they did), while one that records another length is refused."""
    given = {"lr": 0.1, "max_epoch": 1, "max_steps": None, checkpoint.WORLD_SIZE: 1, checkpoint.INPUTS: {}}
    checkpoint.check_same_flags("run", {"lr": 0.1, checkpoint.INPUTS: {}}, given)
    with pytest.raises(utils.UserError, match=r"--max_epoch 3 -> 1"):
        checkpoint.check_same_flags("run", {**given, "max_epoch": 3}, given)
