"""Runs of two processes under paddle.distributed.launch (CPU, gloo): the transfer set labelled in shards is the
cache a single process writes, byte for byte; rank 0 alone writes the run; an interrupted two-process run resumes
exactly."""
import os
import signal
import subprocess
import sys

import numpy as np
import paddle
import pytest
from conftest import FAST, ROOT, STUDENT_FAST, data_flags, fails_cleanly, student_eval, teacher_eval

import bert_distill
from files import read_json

LAUNCH = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2"]


def launched(script, argv, log_dir, env=None, expected_code=0):
    """Run script (a path) under paddle.distributed.launch with two processes; returns rank 1's log."""
    done = subprocess.run(LAUNCH + ["--log_dir", str(log_dir), script] + argv, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)
    assert done.returncode == expected_code, done.stdout[-3000:] + done.stderr[-3000:]
    with open(os.path.join(log_dir, "workerlog.1")) as f:
        return f.read()


def distill_flags(task_files, tiny_bert, cache_dir):
    return data_flags(task_files, "sst-2") + STUDENT_FAST + [
        "--teacher_dir", tiny_bert, "--n_iter", "2", "--num_workers", "1", "--max_epoch", "2", "--eval_steps", "5",
        "--lr_schedule", "linear", "--dropout_prob", "0.2", "--cache_dir", str(cache_dir)]


@pytest.fixture(scope="module")
def two_process_run(task_files, tiny_bert, tmp_path_factory):
    base = tmp_path_factory.mktemp("two-processes")
    flags = distill_flags(task_files, tiny_bert, base / "cache")
    rank1_log = launched(os.path.join(ROOT, "bert_distill.py"), flags + ["--output_dir", str(base / "run")],
                         base / "log")
    return flags, base, rank1_log


def logits_cache(cache_dir):
    (name,) = [name for name in os.listdir(cache_dir) if name.startswith("logits")]
    with open(os.path.join(cache_dir, name), "rb") as f:
        return name, f.read()


def test_sharded_labelling_writes_the_single_process_cache(two_process_run, task_files, tiny_bert, tmp_path):
    flags, base, _ = two_process_run
    single = bert_distill.main(distill_flags(task_files, tiny_bert, tmp_path / "cache") + [
        "--output_dir", str(tmp_path / "single")])
    assert logits_cache(tmp_path / "cache") == logits_cache(base / "cache")  # same key, same bytes
    # Each process trains on half of each epoch's batches (the odd one out left out), with the same batch size.
    batches_per_epoch = single["steps"] // 2
    assert read_json(str(base / "run" / "results.json"))["steps"] == 2 * (batches_per_epoch // 2)


def test_rank_0_alone_writes_the_run(two_process_run, task_files):
    _, base, rank1_log = two_process_run
    run = base / "run"
    results = read_json(str(run / "results.json"))
    assert results["world_size"] == 2 and results["flags"]["world_size"] == 2
    assert sorted(os.listdir(run)) == ["best", "checkpoint", "eval_log.jsonl", "results.json"]
    assert len((run / "eval_log.jsonl").read_text().splitlines()) == len(read_json(
        str(run / "checkpoint" / "state.json"))["history"])
    assert "best at step" not in rank1_log and "eval step" not in rank1_log  # rank 1 neither reports nor evaluates
    assert student_eval(str(run / "best"), "sst-2", task_files["sst-2"][1]) == results["metrics"]


def test_rank_0_hosts_the_socket_store_which_does_not_abort_at_exit(two_process_run):
    _, base, _ = two_process_run
    rank0_log = (base / "log" / "workerlog.0").read_text()
    assert "server starts to listen" in rank0_log and "create libuv server" not in rank0_log


def test_two_processes_resume_exactly_after_sigterm(two_process_run, tmp_path):
    flags, base, _ = two_process_run
    argv = flags + ["--output_dir", str(tmp_path / "resumed")]
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "interrupted_script.py")
    launched(script, ["bert_distill"] + argv, tmp_path / "log1", env={"INTERRUPT_AT_STEP": "7"},
             expected_code=signal.SIGTERM)
    state = read_json(str(tmp_path / "resumed" / "checkpoint" / "state.json"))
    straight = read_json(str(base / "run" / "results.json"))
    assert 7 <= state["step"] < straight["steps"] and not (tmp_path / "resumed" / "results.json").exists()
    launched(os.path.join(ROOT, "bert_distill.py"), argv, tmp_path / "log2")
    resumed = read_json(str(tmp_path / "resumed" / "results.json"))
    for key in ("metrics", "best_step", "steps"):
        assert resumed[key] == straight[key], key
    for name in ("checkpoint/model.pdparams", "best/model.pdparams"):
        expected, actual = (paddle.load(str(root / name)) for root in (base / "run", tmp_path / "resumed"))
        for key, value in expected.items():
            np.testing.assert_array_equal(np.asarray(actual[key]), np.asarray(value), err_msg=f"{name} {key}")


def test_a_run_resumes_only_with_as_many_processes(two_process_run, capsys):
    flags, base, _ = two_process_run
    fails_cleanly(capsys, bert_distill.main, flags + ["--output_dir", str(base / "run")],
                  "processes (world size) 2 -> 1")


def test_two_processes_fine_tune_the_teacher(task_files, tiny_bert, tmp_path):
    flags = data_flags(task_files, "qqp") + FAST + ["--model_name_or_path", tiny_bert, "--max_epoch", "2",
                                                    "--lr", "1e-3", "--output_dir", str(tmp_path / "teacher")]
    launched(os.path.join(ROOT, "teacher.py"), flags, tmp_path / "log")
    results = read_json(str(tmp_path / "teacher" / "results.json"))
    assert results["world_size"] == 2 and results["steps"] == 2 * (160 // 16 // 2)  # 10 batches an epoch, 5 each
    metrics = teacher_eval(str(tmp_path / "teacher" / "best"), "qqp", task_files["qqp"][1])
    assert metrics == pytest.approx(results["metrics"], abs=1e-6)
