"""End to end on tiny data in each task layout: teacher fine-tuning, baseline, distillation; outputs load back."""
import json
import os

import numpy as np
import paddle
import pytest
from conftest import FAST, STUDENT_FAST, data_flags, student_eval, teacher_eval
from paddlenlp.transformers import BertForSequenceClassification

import bert_distill
import data
import embeddings
import small
import teacher
from files import read_json
from tasks import TASKS


@pytest.fixture(scope="module")
def teachers(task_files, tiny_bert, tmp_path_factory):
    """Fine-tune the tiny BERT once per task."""
    out = {}
    for task in task_files:
        output_dir = str(tmp_path_factory.mktemp(f"teacher-{task}"))
        results = teacher.main(data_flags(task_files, task) + FAST + [
            "--model_name_or_path", tiny_bert, "--output_dir", output_dir, "--max_epoch", "2", "--lr", "1e-3"])
        out[task] = (output_dir, results)
    return out


@pytest.mark.parametrize("task", ["sst-2", "qqp", "chnsenticorp"])
def test_teacher_saves_a_loadable_best_model(teachers, task_files, task):
    output_dir, results = teachers[task]
    on_disk = read_json(os.path.join(output_dir, "results.json"))
    assert on_disk["metrics"] == results["metrics"] and on_disk["script"] == "teacher"
    assert ("f1" in on_disk["metrics"]) == (task == "qqp")
    metrics = teacher_eval(os.path.join(output_dir, "best"), task, task_files[task][1])
    assert metrics["acc"] == pytest.approx(results["metrics"]["acc"], abs=1e-6)


@pytest.mark.parametrize("task", ["sst-2", "qqp", "chnsenticorp"])
def test_baseline_trains_and_its_best_model_reproduces_its_metric(task_files, tiny_bert, tmp_path, task):
    output_dir = str(tmp_path / "small")
    vocab = ["--vocab_path", os.path.join(tiny_bert, "vocab.txt")] if task != "chnsenticorp" else []
    results = small.main(data_flags(task_files, task) + STUDENT_FAST + vocab + [
        "--output_dir", output_dir, "--max_epoch", "6", "--optimizer", "adam", "--lr", "0.01"])
    assert sorted(os.listdir(output_dir)) == ["best", "checkpoint", "eval_log.jsonl", "results.json"]
    assert results["steps"] == 6 * 10  # 160 examples in batches of 16
    reloaded = student_eval(os.path.join(output_dir, "best"), task, task_files[task][1])
    assert reloaded["acc"] == pytest.approx(results["metrics"]["acc"], abs=1e-6)
    if task == "sst-2":
        assert results["metrics"]["acc"] > 0.6  # learns the sentiment words (chance is about 0.5)
    log = [json.loads(line) for line in open(os.path.join(output_dir, "eval_log.jsonl"))]
    assert max(r["acc"] for r in log) == results["metrics"]["acc"]


@pytest.mark.parametrize("task", ["sst-2", "qqp", "chnsenticorp"])
def test_distillation_runs_the_teacher_once_per_transfer_example(teachers, task_files, tmp_path, monkeypatch, task):
    rows = []
    forward = BertForSequenceClassification.forward

    def counting_forward(self, input_ids, *args, **kwargs):
        rows.append(input_ids.shape[0])
        return forward(self, input_ids, *args, **kwargs)

    monkeypatch.setattr(BertForSequenceClassification, "forward", counting_forward)
    teacher_dir = os.path.join(teachers[task][0], "best")
    # fp32: the counting forward does not export, so the teacher labels in dygraph (bf16, which a CPU with bf16
    # instructions takes by default, needs the ONNX export and refuses the run)
    flags = data_flags(task_files, task) + STUDENT_FAST + [
        "--teacher_dir", teacher_dir, "--n_iter", "3", "--max_epoch", "2", "--cache_dir", str(tmp_path / "cache"),
        "--alpha", "0.2", "--save_transfer_set", "--num_workers", "1", "--teacher_precision", "fp32"]
    results = bert_distill.main(flags + ["--output_dir", str(tmp_path / "run1")])
    lines = open(tmp_path / "run1" / "transfer_set.tsv", encoding="utf-8").read().splitlines()
    transfer_size = len(lines) - 1
    assert transfer_size > 160  # originals plus augmented copies
    assert sum(rows) == transfer_size  # one teacher pass over the transfer set for both epochs
    assert results["steps"] == 2 * -(-transfer_size // 16)
    assert lines[1].split("\t")[-3] in ("0", "1") and lines[-1].split("\t")[-3] == "-1"
    rows.clear()
    again = bert_distill.main(flags + ["--output_dir", str(tmp_path / "run2")])
    assert sum(rows) == 0  # a rerun takes the cached logits
    assert again["metrics"] == results["metrics"]  # and, with the same seed, trains the same student
    reloaded = student_eval(os.path.join(tmp_path, "run1", "best"), task, task_files[task][1])
    assert reloaded["acc"] == pytest.approx(results["metrics"]["acc"], abs=1e-6)


def test_teacher_embedding_init_copies_the_word_pieces(teachers, task_files, tmp_path):
    teacher_dir = os.path.join(teachers["sst-2"][0], "best")
    vocab = data.StudentVocab(data.load_vocab_file(os.path.join(teacher_dir, "vocab.txt")), use_pieces=True,
                              model_dir=teacher_dir)
    state = paddle.load(os.path.join(teacher_dir, "model_state.pdparams"))
    expected = next(v for k, v in state.items() if k.endswith("word_embeddings.weight"))
    for choice in ("teacher", "auto"):
        weights = embeddings.embedding_matrix(choice, vocab, seed=0, teacher_dir=teacher_dir)
        np.testing.assert_allclose(weights, np.asarray(expected))
        assert weights.shape[1] == 64
    assert embeddings.embedding_matrix("auto", vocab, seed=0, emb_dim=32) is None  # another size asked for: random


def test_embedding_init_from_a_vector_file(task_files, tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("3 4\ngood 1 2 3 4\nawful -1 -2 -3 -4\nnotinvocab 9 9 9 9\n", encoding="utf-8")
    train = data.read_split(TASKS["sst-2"], "train", task_files["sst-2"][0], "train")
    _, vocab = data.build_student_side(TASKS["sst-2"], train, tokenization="word")
    weights = embeddings.embedding_matrix(str(vectors), vocab, seed=42)
    assert weights.shape == (len(vocab), 4)
    np.testing.assert_allclose(weights[vocab.vocab["good"]], [1, 2, 3, 4])
    np.testing.assert_allclose(weights[vocab.vocab["awful"]], [-1, -2, -3, -4])
    assert np.abs(weights[vocab.vocab["movie"]]).max() < 1  # not in the file: small random values
    assert not weights[vocab.pad_id].any()
