"""--unlabeled_file: text without labels joins the transfer set; the teacher reads it exactly as its tokenizer
encodes it, the student gets no hard label for it, and a file that is not unlabelled text is refused."""
import os

import pytest
from conftest import STUDENT_FAST, data_flags, fails_cleanly

import augment
import bert_distill
import data
import runtimes
from tasks import TASKS

LABELLED = 40  # --max_train_samples


def write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("task, augment_unlabeled", [("sst-2", False), ("qqp", True)])
def test_unlabelled_text_is_labelled_by_the_teacher_only(task_files, tiny_bert, tmp_path, monkeypatch, task,
                                                         augment_unlabeled):
    train = data.read_split(TASKS[task], "train", task_files[task][0], "train")
    pool = [example.texts for example in train[LABELLED:LABELLED + 30]]
    lines = ["\t".join(texts) for texts in pool + pool[:3] + [train[0].texts]]  # 3 repeats, 1 training example
    unlabeled = write(tmp_path / "pool.txt", lines[:10] + ["", "   "] + lines[10:])  # blank lines are skipped
    seen = {}
    label_with_teacher, make_loader, build_transfer_set = runtimes.label_with_teacher, data.make_loader, \
        augment.build_transfer_set

    def transfer_set(*args, **kwargs):
        seen["transfer"] = build_transfer_set(*args, **kwargs)
        return seen["transfer"]

    def teacher_records(model, records, *args, **kwargs):
        seen["teacher"] = records
        return label_with_teacher(model, records, *args, **kwargs)

    def student_records(records, *args, **kwargs):
        seen["student"] = records
        return make_loader(records, *args, **kwargs)

    monkeypatch.setattr(runtimes, "label_with_teacher", teacher_records)
    monkeypatch.setattr(data, "make_loader", student_records)
    monkeypatch.setattr(augment, "build_transfer_set", transfer_set)
    bert_distill.main(data_flags(task_files, task) + STUDENT_FAST + [
        "--teacher_dir", tiny_bert, "--max_train_samples", str(LABELLED), "--n_iter", "2", "--num_workers", "1",
        "--unlabeled_file", unlabeled, "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "run")]
        + (["--augment_unlabeled"] if augment_unlabeled else []))

    originals = [example.texts for example in train[:LABELLED]] + pool  # repeats left out, in order
    tokenizer = data.load_tokenizer(tiny_bert, "dir")
    for record, texts in zip(seen["teacher"], originals):  # exactly the tokenizer's encoding of the text
        expected = tokenizer(*texts, max_length=128, truncation=True)
        assert record["input_ids"].tolist() == expected["input_ids"]
    labels = [record["label"] for record in seen["student"]]
    assert labels[:LABELLED] == [example.label for example in train[:LABELLED]]
    assert labels[LABELLED:len(originals)] == [data.NO_LABEL] * len(pool)  # no hard label: no CE
    sources = {record["input_ids"].tobytes() for record in seen["teacher"][LABELLED:len(originals)]}
    assert len(sources) == len(pool)
    copied = {example.source for example in seen["transfer"][len(originals):]}
    assert copied and min(copied) < LABELLED
    assert (max(copied) >= LABELLED) == augment_unlabeled  # the unlabelled text is augmented only when asked


@pytest.mark.parametrize("lines, expected", [
    (["a fine film\t1"], ":1: expected one text and no TAB (no label), found 2 tab-separated fields"),
    (["", "  "], "no examples (every line is blank)"),
], ids=["a-labelled-line", "blank"])
def test_a_file_that_is_not_unlabelled_text_is_refused(task_files, tiny_bert, tmp_path, capsys, lines, expected):
    path = write(tmp_path / "pool.txt", lines)
    fails_cleanly(capsys, bert_distill.main, data_flags(task_files, "sst-2") + STUDENT_FAST + [
        "--teacher_dir", tiny_bert, "--unlabeled_file", path, "--output_dir", str(tmp_path / "run")],
        "--unlabeled_file", expected)


def test_a_pair_task_needs_two_texts_per_line(task_files, tiny_bert, tmp_path, capsys):
    path = write(tmp_path / "pool.txt", ["how do i learn python?\twhat is python?", "just one question"])
    fails_cleanly(capsys, bert_distill.main, data_flags(task_files, "qqp") + STUDENT_FAST + [
        "--teacher_dir", tiny_bert, "--unlabeled_file", path, "--output_dir", str(tmp_path / "run")],
        f"--unlabeled_file {path}:2: expected two texts separated by one TAB")


def test_a_missing_unlabelled_file_is_refused(task_files, tiny_bert, tmp_path, capsys):
    fails_cleanly(capsys, bert_distill.main, data_flags(task_files, "sst-2") + STUDENT_FAST + [
        "--teacher_dir", tiny_bert, "--unlabeled_file", str(tmp_path / "nowhere.txt"),
        "--output_dir", str(tmp_path / "run")], "--unlabeled_file", "no such file")
    assert not os.path.exists(tmp_path / "run")
