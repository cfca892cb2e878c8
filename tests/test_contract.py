"""The contract every script keeps: what a resume and the teacher-logits cache notice (a teacher is its weights,
config and tokenizer files), faults leave no litter (temporary exports removed however a run ends, and swept after a
SIGKILL; a full disk named by its path), and bad input is one line naming the file or flag, exit code 2, nothing
written."""
import os

import pytest
from conftest import STUDENT_FAST, data_flags, fails_cleanly

import bert_distill
import convert_teacher
import export_model
import small
import teacher


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
