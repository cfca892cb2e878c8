"""The contract every script keeps: what a resume and the teacher-logits cache notice (a teacher is its weights,
config and tokenizer files), faults leave no litter (temporary exports removed however a run ends, and swept after a
SIGKILL; a full disk named by its path), and bad input is one line naming the file or flag, exit code 2, nothing
written."""
import os
import shutil

import pytest
from conftest import STUDENT_FAST, data_flags, fails_cleanly

import bert_distill
import convert_teacher
import export_model
import small
import teacher


def copy_teacher(tiny_bert, path):
    shutil.copytree(tiny_bert, path)
    return str(path)


# ---------------------------------------------------------------------------------------------------------------
# 5. One error contract for every script


@pytest.fixture
def every_script(task_files, tiny_bert, tmp_path):
    """Each script with an --output_dir: its main and valid arguments but the --output_dir, which the test adds."""
    sst = data_flags(task_files, "sst-2")
    return {"teacher": (teacher.main, sst + ["--model_name_or_path", tiny_bert, "--device", "cpu"]),
            "small": (small.main, sst + STUDENT_FAST + ["--vocab_path", os.path.join(tiny_bert, "vocab.txt")]),
            "distill": (bert_distill.main, sst + STUDENT_FAST + ["--teacher_dir", tiny_bert, "--cache_dir",
                                                                 str(tmp_path / "cache")]),
            "export": (export_model.main, ["--teacher_dir", tiny_bert, "--task_name", "sst-2"]),
            "convert_teacher": (convert_teacher.main, ["--hf_dir", tiny_bert])}


@pytest.mark.parametrize("script", ["teacher", "small", "distill", "export", "convert_teacher"])
def test_an_empty_output_dir_names_the_flag(capsys, every_script, tmp_path, monkeypatch, script):
    main, argv = every_script[script]
    monkeypatch.chdir(tmp_path)
    fails_cleanly(capsys, main, argv + ["--output_dir", ""], "argument --output_dir: must not be empty")
    assert os.listdir(tmp_path) == []  # nothing written in the current directory


@pytest.mark.parametrize("script, flag", [("distill", "--cache_dir"), ("small", "--vocab_path"),
                                          ("small", "--train_file"), ("distill", "--teacher_dir")])
def test_an_empty_path_names_its_flag(capsys, every_script, tmp_path, script, flag):
    main, argv = every_script[script]
    fails_cleanly(capsys, main, argv + ["--output_dir", str(tmp_path / "out"), flag, ""],
                  f"argument {flag}: must not be empty")


def test_a_vocabulary_with_a_repeated_token_is_refused(capsys, every_script, tiny_bert, tmp_path):
    vocab = tmp_path / "vocab.txt"
    lines = open(os.path.join(tiny_bert, "vocab.txt"), encoding="utf-8").read().splitlines()
    vocab.write_text("\n".join(lines + ["good"]) + "\n", encoding="utf-8")
    main, argv = every_script["small"]
    fails_cleanly(capsys, main, argv + ["--vocab_path", str(vocab), "--output_dir", str(tmp_path / "out")],
                  f"--vocab_path {vocab}:{len(lines) + 1}: token 'good' repeats line {lines.index('good') + 1}")


@pytest.fixture(scope="module")
def truncated_teacher(tiny_bert, tmp_path_factory):
    """A copy of the tiny teacher whose model_state.pdparams lost its second half."""
    directory = copy_teacher(tiny_bert, tmp_path_factory.mktemp("truncated") / "teacher")
    weights = os.path.join(directory, "model_state.pdparams")
    raw = open(weights, "rb").read()
    with open(weights, "wb") as f:
        f.write(raw[:len(raw) // 2])
    return directory


# id -> (script, lambda teacher directory: flags, parts of the message)
TRUNCATED_CASES = {
    "small-vocabulary-beside-it": ("small", lambda t: ["--vocab_path", os.path.join(t, "vocab.txt"), "--emb_dim",
                                                       "64"], ["--embedding auto:", "cannot be read as model weights"]),
    "small-embedding-of-it": ("small", lambda t: ["--embedding", t, "--emb_dim", "64"],
                              ["--embedding", "model_state.pdparams: cannot be read as model weights"]),
    "distill-its-vocabulary": ("distill", lambda t: ["--teacher_dir", t, "--emb_dim", "64"],
                               ["--embedding auto:", "cannot be read as model weights"]),
    "distill-embedding-teacher": ("distill", lambda t: ["--teacher_dir", t, "--embedding", "teacher", "--emb_dim",
                                                        "64"],
                                  ["model_state.pdparams: cannot be read as model weights"]),
    "distill-l2a-neighbours": ("distill", lambda t: ["--teacher_dir", t, "--embedding", "random", "--augment", "l2a",
                                                     "--n_iter", "1"],
                               ["--teacher_dir", "model_state.pdparams: cannot be read as model weights"]),
    "distill-labelling": ("distill", lambda t: ["--teacher_dir", t, "--embedding", "random", "--n_iter", "0",
                                                "--teacher_backend", "dygraph"],
                          ["--teacher_dir", "could not load a sequence classifier"]),
    "teacher": ("teacher", lambda t: ["--model_name_or_path", t], ["--model_name_or_path", "could not load"]),
    "export": ("export", lambda t: ["--teacher_dir", t], ["--teacher_dir", "could not load"]),
}


@pytest.mark.parametrize("case", TRUNCATED_CASES.values(), ids=TRUNCATED_CASES.keys())
def test_a_truncated_teacher_is_refused_by_every_script(capsys, every_script, truncated_teacher, tmp_path, case):
    script, extra, expected = case
    main, argv = every_script[script]
    cache = tmp_path / "cache"
    fails_cleanly(capsys, main, argv + extra(truncated_teacher) + ["--cache_dir", str(cache)] * (script == "distill")
                  + ["--output_dir", str(tmp_path / "out")], *expected)
    assert not [name for name in os.listdir(cache) if name.startswith("logits")] if cache.exists() else True


def test_a_checkpoint_with_the_same_size_vocabulary_in_another_order_is_refused(capsys, task_files, tiny_bert,
                                                                                 tmp_path):
    lines = open(os.path.join(tiny_bert, "vocab.txt"), encoding="utf-8").read().splitlines()
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    a, b = sorted([lines.index("good"), lines.index("bad")])
    there = lines[a]
    lines[a], lines[b] = lines[b], lines[a]
    (second / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    flags = data_flags(task_files, "sst-2") + STUDENT_FAST + ["--max_steps", "1"]
    small.main(flags + ["--vocab_path", str(first / "vocab.txt"), "--output_dir", str(tmp_path / "run")])
    checkpoint = str(tmp_path / "run" / "best")
    fails_cleanly(capsys, small.main, flags + ["--vocab_path", str(second / "vocab.txt"), "--init_from_ckpt",
                                               checkpoint, "--output_dir", str(tmp_path / "next")],
                  f"--init_from_ckpt {checkpoint}: its vocab.txt is not this run's vocabulary",
                  f"id {a} is {there!r} there, {lines[a]!r} here")
    # the same vocabulary, by another path, is accepted
    assert small.main(flags + ["--vocab_path", str(first / "vocab.txt"), "--init_from_ckpt", checkpoint,
                               "--output_dir", str(tmp_path / "same")])["steps"] == 1
