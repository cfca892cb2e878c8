"""The paddle.inference labelling path gives the dygraph teacher's logits, in the input order."""
import logging

import numpy as np
import paddle
import pytest

import data
import model as models
import runtimes
from tasks import TASKS


@pytest.fixture(scope="module")
def bert(tiny_bert):
    paddle.set_device("cpu")
    tokenizer = data.load_tokenizer(tiny_bert, "--teacher_dir")
    return models.load_teacher(tiny_bert), tokenizer


def encode(task_files, task, tokenizer, max_seq_length=32):
    """Dev examples of the task as teacher inputs (one sentence, or a sentence pair for qqp)."""
    task_spec = TASKS[task]
    examples = data.read_split(task_spec, "dev", task_files[task][1], "--dev_file")
    encoder = data.TeacherEncoder(tokenizer, max_seq_length, task_spec.language)
    return [encoder.texts(ex.texts) for ex in examples]


@pytest.mark.parametrize("backend", ["onnxruntime", "inference"])
@pytest.mark.parametrize("task", ["sst-2", "qqp"])
def test_fast_backends_match_dygraph(bert, task_files, task, caplog, backend):
    model, tokenizer = bert
    encoded = encode(task_files, task, tokenizer)
    assert len({len(record["input_ids"]) for record in encoded}) > 3  # batches of several shapes
    if task == "qqp":
        assert all(record["token_type_ids"].max() == 1 for record in encoded)
    reference = runtimes.teacher_logits(model, encoded, 16, tokenizer.pad_token_id)
    with caplog.at_level(logging.WARNING, logger="distill"):
        logits = runtimes.label_with_teacher(model, encoded, 16, tokenizer.pad_token_id, backend)
    assert not caplog.records, f"the {backend} backend fell back"
    np.testing.assert_allclose(logits, reference, atol=1e-4)
    assert (logits.argmax(-1) == reference.argmax(-1)).all()


def test_logits_come_back_in_input_order(bert, task_files):
    model, tokenizer = bert
    encoded = encode(task_files, "sst-2", tokenizer)[:12]
    lengths = [len(record["input_ids"]) for record in encoded]
    assert lengths != sorted(lengths)  # the batches are sorted by length, so order must be restored
    logits = runtimes.label_with_teacher(model, encoded, 4, tokenizer.pad_token_id, "inference")
    with paddle.no_grad():
        one_by_one = np.concatenate([model(**{name: paddle.to_tensor(value[None]) for name, value in record.items()})
                                     .numpy() for record in encoded])
    np.testing.assert_allclose(logits, one_by_one, atol=1e-4)


def test_falls_back_to_dygraph_with_one_warning(bert, task_files, caplog, monkeypatch):
    model, tokenizer = bert
    encoded = encode(task_files, "sst-2", tokenizer)[:8]

    def broken_predictor(*args, **kwargs):
        raise RuntimeError("no predictor")

    monkeypatch.setattr(runtimes, "make_predictor", broken_predictor)
    with caplog.at_level(logging.WARNING, logger="distill"):
        logits = runtimes.label_with_teacher(model, encoded, 4, tokenizer.pad_token_id, "inference")
    assert len(caplog.records) == 1 and "no predictor" in caplog.text
    np.testing.assert_allclose(logits, runtimes.teacher_logits(model, encoded, 4, tokenizer.pad_token_id), atol=1e-6)


@pytest.mark.parametrize("wrong", [(True,), (True, False)])
def test_a_predictor_that_disagrees_with_dygraph_is_not_used(bert, task_files, caplog, monkeypatch, wrong):
    """oneDNN gave wrong MPNet logits on Paddle 3.3.1: a predictor is checked first, oneDNN off is tried next, and
    dygraph labels when no predictor agrees."""
    model, tokenizer = bert
    encoded = encode(task_files, "sst-2", tokenizer)[:20]
    make_predictor, predictor_runner = runtimes.make_predictor, runtimes.predictor_runner
    built = []

    def predictor(prefix, onednn=True):
        built.append(onednn)
        return make_predictor(prefix, onednn)

    def runner(predictor):
        run = predictor_runner(predictor)
        return (lambda batch: run(batch) + 3.0) if built[-1] in wrong else run  # wrong logits

    monkeypatch.setattr(runtimes, "predictor_runner", runner)
    monkeypatch.setattr(runtimes, "make_predictor", predictor)
    with caplog.at_level(logging.WARNING, logger="distill"):
        logits = runtimes.label_with_teacher(model, encoded, 4, tokenizer.pad_token_id, "inference")
    assert built == [True, False]
    assert len(caplog.records) == len(wrong) + (len(wrong) == 2)  # one per rejected predictor, then the fallback
    np.testing.assert_allclose(logits, runtimes.teacher_logits(model, encoded, 4, tokenizer.pad_token_id), atol=1e-4)


def test_an_onnx_teacher_that_disagrees_gives_way_to_paddle_inference(bert, task_files, caplog, monkeypatch):
    model, tokenizer = bert
    encoded = encode(task_files, "sst-2", tokenizer)[:20]
    onnx_runner, built = runtimes.onnx_runner, []

    def wrong_runner(path, threads=1):
        built.append(path)
        run = onnx_runner(path, threads)
        return lambda batch: run(batch) + 3.0

    monkeypatch.setattr(runtimes, "onnx_runner", wrong_runner)
    with caplog.at_level(logging.WARNING, logger="distill"):
        logits = runtimes.label_with_teacher(model, encoded, 4, tokenizer.pad_token_id, "auto")
    assert len(built) == 1 and len(caplog.records) == 1 and "ONNX model differs" in caplog.text
    np.testing.assert_allclose(logits, runtimes.teacher_logits(model, encoded, 4, tokenizer.pad_token_id), atol=1e-4)
