"""Bad input ends with one clear message naming the file or flag, a nonzero exit, and nothing written."""
import os
import subprocess
import sys

import pytest
from conftest import ROOT, STUDENT_FAST, data_flags, fails_cleanly

import bert_distill
import model
import small
import teacher
from utils import run_main


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def student_flags(tiny_bert, tmp_path):
    return STUDENT_FAST + ["--vocab_path", os.path.join(tiny_bert, "vocab.txt"), "--output_dir", str(tmp_path / "out")]


def test_missing_file(capsys, task_files, student_flags, tmp_path):
    flags = ["--task_name", "sst-2", "--train_file", str(tmp_path / "nope.tsv"), "--dev_file", task_files["sst-2"][1]]
    fails_cleanly(capsys, small.main, flags + student_flags, "--train_file", "nope.tsv", "no such file")


def test_malformed_line(capsys, task_files, student_flags, tmp_path):
    bad = write(tmp_path / "train.tsv", "sentence\tlabel\na fine film\t1\nno label here\n")
    flags = ["--task_name", "sst-2", "--train_file", bad, "--dev_file", task_files["sst-2"][1]]
    fails_cleanly(capsys, small.main, flags + student_flags, "--train_file", f"{bad}:3", "expected 2")


def test_label_outside_the_label_set(capsys, task_files, student_flags, tmp_path):
    bad = write(tmp_path / "dev.tsv", "qid\tlabel\ttext_a\n0\t1\t很好\n1\t2\t很差\n")
    flags = ["--task_name", "chnsenticorp", "--train_file", task_files["chnsenticorp"][0], "--dev_file", bad]
    fails_cleanly(capsys, small.main, flags + student_flags, "--dev_file", f"{bad}:3", "label '2'")


def test_not_utf8(capsys, task_files, student_flags, tmp_path):
    bad = tmp_path / "train.tsv"
    bad.write_bytes("sentence\tlabel\ncaf\xe9\t1\n".encode("latin-1"))
    flags = ["--task_name", "sst-2", "--train_file", str(bad), "--dev_file", task_files["sst-2"][1]]
    fails_cleanly(capsys, small.main, flags + student_flags, "--train_file", "not UTF-8")


def test_unknown_task(capsys, task_files, student_flags):
    flags = ["--task_name", "mnli", "--train_file", task_files["sst-2"][0], "--dev_file", task_files["sst-2"][1]]
    fails_cleanly(capsys, small.main, flags + student_flags, "--task_name", "invalid choice: 'mnli'")


def test_teacher_directory_without_weights(capsys, task_files, tiny_bert, tmp_path):
    empty = tmp_path / "teacher"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    out = ["--output_dir", str(tmp_path / "out")]
    fails_cleanly(capsys, bert_distill.main, data_flags(task_files, "sst-2") + STUDENT_FAST + out + [
        "--teacher_dir", str(empty)], "--teacher_dir", str(empty), "model_state.pdparams")
    fails_cleanly(capsys, teacher.main, data_flags(task_files, "sst-2") + out + [
        "--model_name_or_path", str(empty)], "--model_name_or_path", "no model weights")


def test_checkpoint_with_another_vocabulary(capsys, task_files, student_flags, tmp_path):
    words_dir = str(tmp_path / "words")
    small.main(data_flags(task_files, "sst-2") + STUDENT_FAST + ["--tokenization", "word", "--output_dir", words_dir,
                                                                  "--max_steps", "1"])
    ckpt = os.path.join(words_dir, "best")
    fails_cleanly(capsys, small.main, data_flags(task_files, "sst-2") + student_flags + ["--init_from_ckpt", ckpt],
                  "--init_from_ckpt", ckpt, "vocabulary has")


def test_vocabulary_without_special_tokens(capsys, task_files, student_flags, tmp_path):
    vocab = write(tmp_path / "vocab.txt", "good\nbad\n")
    flags = data_flags(task_files, "sst-2") + student_flags + ["--vocab_path", vocab]
    fails_cleanly(capsys, small.main, flags, "--vocab_path", vocab, "special tokens")


def test_command_line_exit_has_no_traceback(task_files, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "small.py"), "--task_name", "qqp", "--train_file",
                             str(tmp_path / "missing.tsv"), "--dev_file", task_files["qqp"][1], "--output_dir",
                             str(out)], capture_output=True, text=True, cwd=str(tmp_path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: --train_file {tmp_path / 'missing.tsv'}: no such file"
    assert not out.exists()


def test_resuming_with_other_flags_is_refused(capsys, task_files, student_flags):
    # a constant learning rate, so that a longer run may resume (a schedule over the run's length may not)
    flags = data_flags(task_files, "sst-2") + student_flags + ["--lr_schedule", "constant", "--max_steps", "2"]
    small.main(flags)
    output_dir = flags[flags.index("--output_dir") + 1]
    before = sorted(os.listdir(output_dir))
    with pytest.raises(SystemExit):
        run_main(small.main, flags + ["--lr", "0.5", "--max_steps", "4"])
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--lr (not given) -> 0.5" in message and "max_steps" not in message and output_dir in message
    assert sorted(os.listdir(output_dir)) == before  # the earlier run is left as it was
    assert small.main(flags + ["--max_steps", "4"])["steps"] == 4  # more steps with the same flags resume


@pytest.mark.parametrize("flag", ["--train_file", "--vocab_path"])
def test_resuming_after_an_input_file_changed_is_refused(capsys, task_files, tiny_bert, student_flags, tmp_path,
                                                         flag):
    train, vocab = tmp_path / "train.tsv", tmp_path / "vocab.txt"
    train.write_bytes(open(task_files["sst-2"][0], "rb").read())
    vocab.write_bytes(open(os.path.join(tiny_bert, "vocab.txt"), "rb").read())
    flags = ["--task_name", "sst-2", "--train_file", str(train), "--dev_file", task_files["sst-2"][1]] + \
        student_flags + ["--vocab_path", str(vocab), "--lr_schedule", "constant", "--max_steps", "2"]
    small.main(flags)
    output_dir = flags[flags.index("--output_dir") + 1]
    before = sorted(os.listdir(output_dir))
    changed = {"--train_file": train, "--vocab_path": vocab}[flag]
    with open(changed, "a", encoding="utf-8") as f:
        f.write("a line added later\t1\n" if flag == "--train_file" else "addedlater\n")
    fails_cleanly(capsys, small.main, flags + ["--max_steps", "4"], output_dir, f"{flag} {changed}", "changed")
    assert sorted(os.listdir(output_dir)) == before


def test_teacher_of_another_task(capsys, task_files, tiny_bert, tmp_path):
    teacher_dir = str(tmp_path / "teacher")
    teacher.main(data_flags(task_files, "qqp") + ["--model_name_or_path", tiny_bert, "--output_dir", teacher_dir,
                                                  "--max_steps", "1", "--device", "cpu"])
    best = os.path.join(teacher_dir, "best")
    assert model.teacher_task(best) == {"task_name": "qqp", "labels": ["0", "1"], "language": "en", "is_pair": True,
                                        "max_seq_length": 128}
    fails_cleanly(capsys, bert_distill.main, data_flags(task_files, "sst-2") + STUDENT_FAST + [
        "--teacher_dir", best, "--output_dir", str(tmp_path / "out")], "--teacher_dir", "fine-tuned on qqp")
