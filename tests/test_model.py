"""Student model, distillation loss and metrics."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from script_output import softmax

from args import parse_args
from checkpoint import RunConfig
from distillation import distill_loss
from model import BiLSTM, StudentConfig
from tasks import TASKS, custom_task
from training import make_optimizer
from utils import classification_metrics


def make_model(is_pair=False, dropout=0.0, activation="tanh", pooling="last"):
    paddle.seed(0)
    return BiLSTM(StudentConfig(vocab_size=50, emb_dim=8, hidden_size=6, num_labels=3, dropout_prob=dropout,
                                activation=activation, is_pair=is_pair, padding_idx=0, pooling=pooling,
                                task_name="sst-2", language="en", use_pieces=True, max_seq_length=128,
                                labels=("0", "1", "2")))


def batch(rows, pad_value=0):
    width = max(len(r) for r in rows)
    ids = [r + [pad_value] * (width - len(r)) for r in rows]
    return paddle.to_tensor(ids, dtype="int64"), paddle.to_tensor([len(r) for r in rows], dtype="int64")


@pytest.mark.parametrize("is_pair", [False, True])
def test_logits_shape(is_pair):
    model = make_model(is_pair)
    ids, lengths = batch([[3, 4, 5], [6, 7], [8]])
    logits = model(ids, lengths, ids, lengths) if is_pair else model(ids, lengths)
    assert logits.shape == [3, 3]


@pytest.mark.parametrize("pooling", ["last", "max"])
def test_padded_steps_do_not_change_the_output(pooling):
    model = make_model(pooling=pooling)
    model.eval()
    alone = model(*batch([[3, 4, 5]])).numpy()
    # the same sentence next to a longer one, padded with pad ids and then with arbitrary ids
    with_pad = model(*batch([[3, 4, 5], [6, 7, 8, 9, 10, 11]])).numpy()[0]
    ids = paddle.to_tensor([[3, 4, 5, 40, 41, 42]], dtype="int64")
    with_junk = model(ids, paddle.to_tensor([3], dtype="int64")).numpy()[0]
    np.testing.assert_allclose(alone[0], with_pad, atol=1e-5)
    np.testing.assert_allclose(alone[0], with_junk, atol=1e-5)


def test_max_pooling_takes_each_feature_s_largest_value_over_the_real_steps():
    model = make_model(pooling="max")
    model.eval()
    ids, lengths = batch([[3, 4, 5, 6], [7, 8]])
    outputs, _ = model.lstm(model.embedder(ids), sequence_length=lengths)
    outputs = outputs.numpy()
    expected = np.stack([outputs[0, :4].max(axis=0), outputs[1, :2].max(axis=0)])
    np.testing.assert_allclose(model.encode(ids, lengths).numpy(), expected, atol=1e-6)
    assert not np.allclose(expected, make_model(pooling="last").encode(ids, lengths).numpy())


def test_siamese_features_are_u_v_product_and_distance():
    model = make_model(is_pair=True, activation="relu")
    model.eval()
    a, la = batch([[3, 4, 5], [9, 8]])
    b, lb = batch([[6, 7], [9, 8, 7, 6]])
    u, v = model.encode(a, la), model.encode(b, lb)
    features = paddle.concat([u, v, u * v, paddle.abs(u - v)], axis=-1)
    expected = model.output_layer(F.relu(model.fc(features)))
    np.testing.assert_allclose(model(a, la, b, lb).numpy(), expected.numpy(), atol=1e-6)
    # the encoder is shared: swapping the questions swaps u and v
    assert not np.allclose(model(a, la, b, lb).numpy(), model(b, lb, a, la).numpy())


def test_dropout_acts_in_training_only():
    model = make_model(dropout=0.5)
    ids, lengths = batch([[3, 4, 5, 6]])
    model.train()
    assert not np.allclose(model(ids, lengths).numpy(), model(ids, lengths).numpy())
    model.eval()
    np.testing.assert_allclose(model(ids, lengths).numpy(), model(ids, lengths).numpy())


@pytest.mark.parametrize("run_flags, steps", [(["--max_epoch", "2"], 10), (["--max_steps", "7"], 7)])
def test_linear_schedule_reaches_zero_at_the_last_step(run_flags, steps):
    run = RunConfig.from_args(parse_args("small", ["--task_name", "sst-2", "--output_dir", "unused", *run_flags]),
                              TASKS["sst-2"])
    total = run.total_steps(5)  # five batches per epoch
    assert total == steps
    optimizer, schedule = make_optimizer(make_model(), "adam", 0.01, "linear", total)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.get_lr())
        schedule.step()
    assert rates[0] == pytest.approx(0.01)
    assert np.all(np.diff(rates) < 0)
    assert rates[-1] == pytest.approx(0.01 / steps)
    assert optimizer.get_lr() == pytest.approx(0.0)


def test_constant_schedule_keeps_the_rate():
    optimizer, schedule = make_optimizer(make_model(), "adam", 0.01, "constant", total_steps=10)
    assert schedule is None and optimizer.get_lr() == pytest.approx(0.01)


def test_distill_loss_formula():
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(4, 2)).astype("float32"), rng.normal(size=(4, 2)).astype("float32")
    labels = np.array([1, -1, 0, -1])  # rows 1 and 3 are augmented copies: no hard label
    mse = ((student - teacher) ** 2).mean()
    labelled = labels >= 0
    ce = -np.log(softmax(student[labelled])[np.arange(2), labels[labelled]]).mean()
    args = [paddle.to_tensor(student), paddle.to_tensor(teacher), paddle.to_tensor(labels)]
    assert float(distill_loss(*args, alpha=0.0, loss="mse", temperature=1)) == pytest.approx(mse, rel=1e-5)
    assert float(distill_loss(*args, alpha=0.3, loss="mse", temperature=1)) == pytest.approx(
        0.3 * ce + 0.7 * mse, rel=1e-5)
    t = 2.0
    p, q = softmax(teacher, t), softmax(student, t)
    kl = (p * (np.log(p) - np.log(q))).sum(-1).mean() * t * t
    assert float(distill_loss(*args, alpha=0.0, loss="kl", temperature=t)) == pytest.approx(kl, rel=1e-4)


def test_distill_loss_without_labelled_rows_is_the_soft_part():
    student, teacher = paddle.to_tensor([[1.0, 0.0]]), paddle.to_tensor([[0.0, 1.0]])
    loss = distill_loss(student, teacher, paddle.to_tensor([-1]), alpha=0.5, loss="mse", temperature=1)
    assert float(loss) == pytest.approx(0.5 * 1.0)


def test_metrics():
    logits = np.array([[0, 1], [0, 1], [1, 0], [1, 0], [0, 1]], dtype="float32")  # predicts 1, 1, 0, 0, 1
    labels = np.array([1, 0, 0, 1, 1])
    # label 0: precision 1/2, recall 1/2; label 1: 2/3 and 2/3
    assert classification_metrics(logits, labels, TASKS["sst-2"]) == {"acc": pytest.approx(0.6),
                                                                      "macro_f1": pytest.approx((1 / 2 + 2 / 3) / 2)}
    qqp = classification_metrics(logits, labels, TASKS["qqp"])
    assert qqp["precision"] == pytest.approx(2 / 3) and qqp["recall"] == pytest.approx(2 / 3)
    assert qqp["f1"] == pytest.approx(2 / 3) and qqp["acc"] == pytest.approx(0.6)


def test_macro_f1_counts_every_label_of_the_task_once():
    # Three labels; "c" is neither predicted nor in the data, so its F1 is 0 and pulls the mean down by a third. Three
    # examples and three labels: a label-id vector as long as a one-hot row must still be read as ids.
    task = custom_task("three", "en", ("a", "b", "c"), False, {})
    logits = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]], dtype="float32")  # predicts a, b, a
    metrics = classification_metrics(logits, np.array([0, 1, 1]), task)
    f1_a, f1_b = 2 * (1 / 2 * 1) / (1 / 2 + 1), 2 * (1 * 1 / 2) / (1 + 1 / 2)
    assert metrics == {"acc": pytest.approx(2 / 3), "macro_f1": pytest.approx((f1_a + f1_b + 0) / 3)}
