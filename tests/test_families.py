"""Teachers of every family (BERT, ERNIE, MPNet, BERT with a SentencePiece tokenizer), each a tiny model built from a
config: the teacher reads its own tokenizer's encoding, the fast labelling path matches dygraph, and teacher ->
baseline -> distillation runs end to end."""
import logging
import os

import numpy as np
import paddle
import pytest
from conftest import FAST, data_flags

import bert_distill
import data
import model
import runtimes
import small
import teacher
import tiny_models
from files import read_json
from tasks import TASKS

FAMILIES = tiny_models.TEACHER_FAMILIES
WORDPIECE = ("bert", "ernie", "mpnet")


@pytest.fixture(scope="module")
def teacher_dirs(tmp_path_factory):
    return {family: tiny_models.write_tiny_teacher(str(tmp_path_factory.mktemp(family)), family)
            for family in FAMILIES}


def dev_examples(task_files, task, limit=25):
    return data.read_split(TASKS[task], "dev", task_files[task][1], "dev", limit)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("task", ["sst-2", "qqp", "chnsenticorp"])
def test_the_teacher_reads_exactly_its_tokenizer_s_encoding(teacher_dirs, task_files, family, task):
    tokenizer = data.load_tokenizer(teacher_dirs[family], "--teacher_dir")
    language = TASKS[task].language
    encoder = data.TeacherEncoder(tokenizer, 20, language)
    assert ("token_type_ids" in encoder.input_names) == (family in ("bert", "ernie"))
    examples = dev_examples(task_files, task) + [data.Example(("good " * 30,) * len(TASKS[task].text_columns), 0)]
    for example in examples:
        expected = tokenizer(*example.texts, max_length=20, truncation=True)
        record = encoder.texts(example.texts)
        assert set(record) == set(encoder.input_names)
        for name in record:
            assert record[name].tolist() == expected[name], (name, example.texts)
        if family in WORDPIECE and language == "en":  # an unaugmented copy's words give the same ids
            analyzer = data.make_analyzer("en", teacher_dirs[family], "--teacher_dir")
            words = encoder.sentences(analyzer.sentences(example.texts))
            assert {k: v.tolist() for k, v in words.items()} == {k: v.tolist() for k, v in record.items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_fast_labelling_matches_the_dygraph_teacher_one_example_at_a_time(teacher_dirs, task_files, caplog, family):
    bert = model.load_teacher(teacher_dirs[family], num_labels=2)
    with paddle.no_grad():  # logits of a few units, as a trained teacher gives (random weights give ~0.05)
        for parameter in bert.parameters():
            if parameter.ndim == 2:
                parameter.set_value(parameter * 20)
    tokenizer = data.load_tokenizer(teacher_dirs[family], "--teacher_dir")
    task = "chnsenticorp" if family == "bert-sentencepiece" else "qqp"
    encoder = data.TeacherEncoder(tokenizer, 32, TASKS[task].language)
    records = [encoder.texts(ex.texts) for ex in dev_examples(task_files, task, 40)]
    assert len({data.record_length(r) for r in records}) > 3  # padded batches of several shapes
    one_by_one = np.concatenate([runtimes.teacher_logits(bert, [r], 1, tokenizer.pad_token_id) for r in records])
    assert np.abs(one_by_one).max() > 1
    # also: padding (its pad id) is masked; and for MPNet, whose oneDNN logits are wrong on Paddle 3.3.1 (off by
    # about 7 here), the checked predictor runs without oneDNN
    for backend in ("onnxruntime", "inference"):
        with caplog.at_level(logging.WARNING, logger="distill"):
            fast = runtimes.label_with_teacher(bert, records, 8, tokenizer.pad_token_id, backend)
        np.testing.assert_allclose(fast, one_by_one, atol=1e-3)
    assert "ONNX" not in caplog.text  # every family converts to ONNX and agrees


@pytest.mark.parametrize("family", FAMILIES)
def test_teacher_baseline_and_distillation_end_to_end(teacher_dirs, task_files, tmp_path, family):
    task = "chnsenticorp" if family == "bert-sentencepiece" else "sst-2"
    flags = data_flags(task_files, task) + FAST
    teacher.main(flags + ["--model_name_or_path", teacher_dirs[family], "--lr", "1e-3",
                          "--output_dir", str(tmp_path / "teacher")])
    best = str(tmp_path / "teacher" / "best")
    student = ["--hidden_size", "32"] + (["--vocab_path", os.path.join(best, "vocab.txt")] if task == "sst-2" else [])
    baseline = small.main(flags + student + ["--output_dir", str(tmp_path / "small")])
    distilled = bert_distill.main(flags + ["--hidden_size", "32", "--teacher_dir", best, "--n_iter", "2",
                                           "--num_workers", "1", "--cache_dir", str(tmp_path / "cache"),
                                           "--output_dir", str(tmp_path / "distill")])
    for results, run in ((baseline, "small"), (distilled, "distill")):
        assert read_json(str(tmp_path / run / "results.json"))["metrics"] == results["metrics"]
        saved = model.load_student(str(tmp_path / run / "best"))
        dev = data.read_split(TASKS[task], "dev", task_files[task][1], "dev")
        logits = runtimes.student_logits(saved.model, saved.records(dev), 16)
        assert (logits.argmax(-1) == [ex.label for ex in dev]).mean() == pytest.approx(results["metrics"]["acc"])
    config = model.load_student(str(tmp_path / "distill" / "best")).config
    # WordPiece students start from the teacher's word-piece embeddings (--embedding auto): the teacher's width
    assert config.emb_dim == (64 if task == "sst-2" else 300) and config.use_pieces == (task == "sst-2")
