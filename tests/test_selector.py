"""--selector reinforce: REINFORCE pushes the keep probability towards rewarded decisions, the reward split is held
out of training, keep rate and reward are logged, and a run interrupted mid-episode resumes exactly."""
import json
import os
import signal

import numpy as np
import paddle
import pytest
from conftest import STUDENT_FAST, data_flags
from resumed_runs import assert_same_run, interrupt_at, run_interrupted

import bert_distill
import data
import distillation
import model as models
import plot_curves
import selector
from args import SelectorConfig
from files import read_json
from tasks import TASKS


def keep_probability(policy, features):
    with paddle.no_grad():
        return policy(paddle.to_tensor(features)).numpy()


def test_the_policy_update_keeps_more_of_what_was_rewarded():
    chooser = selector.ReinforcedSelector(SelectorConfig(episode_steps=2, selector_gamma=0.0, selector_lr=0.05), 0,
                                          [], [], 8, soft_loss=None)
    rng = np.random.default_rng(0)
    rewarded = rng.uniform(0, 1, size=(6, selector.FEATURES)).astype("float32")
    punished = rng.uniform(-1, 0, size=(6, selector.FEATURES)).astype("float32")
    before = keep_probability(chooser.policy, rewarded), keep_probability(chooser.policy, punished)
    for _ in range(5):  # five episodes: keeping `rewarded` raised the accuracy, keeping `punished` lowered it
        chooser.episode = [[rewarded, np.ones(6, bool), 0.1], [punished, np.ones(6, bool), -0.1]]
        chooser.update()
    after = keep_probability(chooser.policy, rewarded), keep_probability(chooser.policy, punished)
    assert (after[0] > before[0]).all() and (after[1] < before[1]).all()


def test_dropping_what_was_rewarded_lowers_its_keep_probability():
    chooser = selector.ReinforcedSelector(SelectorConfig(episode_steps=2, selector_gamma=0.5, selector_lr=1e-3), 0,
                                          [], [], 8, soft_loss=None)
    features = np.random.default_rng(1).normal(size=(4, selector.FEATURES)).astype("float32")
    before = keep_probability(chooser.policy, features)
    chooser.baseline = 0.0
    chooser.episode = [[features, np.zeros(4, bool), 0.2], [features[:0], np.zeros(0, bool), 0.0]]
    chooser.update()  # dropping them was rewarded (return 0.2 above the baseline): drop them more often
    after = keep_probability(chooser.policy, features)
    assert np.log(1 - after).sum() > np.log(1 - before).sum()  # the taken actions' log-probability rose


@pytest.mark.parametrize("reward", ["accuracy", "likelihood"])
def test_the_likelihood_reward_sees_what_accuracy_misses(reward, monkeypatch):
    """An update that makes the student surer of the right label without flipping a prediction: no accuracy
    reward, a likelihood reward of the mean log-probability gained by the true labels."""
    labels = np.array([0, 1, 1])
    before = np.array([[0.2, 0.0], [0.0, 0.1], [0.3, 0.0]], "float32")  # right, right, wrong
    after = np.array([[1.2, 0.0], [0.0, 2.1], [0.3, 0.2]], "float32")  # the same predictions
    outputs = iter([before, after])
    monkeypatch.setattr(selector.runtimes, "student_logits", lambda model, records, batch_size: next(outputs))
    chooser = selector.ReinforcedSelector(SelectorConfig(episode_steps=5, selector_gamma=0.9, selector_lr=1e-3,
                                                         selector_reward=reward), 0, [None] * 3, labels, 8, None)
    model = paddle.nn.Linear(1, 1)
    chooser.score_now = chooser.reward_score(model)
    chooser.episode = [[np.zeros((0, selector.FEATURES), "float32"), np.zeros(0, bool), None]]
    chooser.after_step(model)

    def mean_log_probability(logits):
        return np.mean(np.log(np.exp(logits[np.arange(3), labels]) / np.exp(logits).sum(-1)))

    expected = 0.0 if reward == "accuracy" else mean_log_probability(after) - mean_log_probability(before)
    assert chooser.episode[-1][2] == pytest.approx(expected, abs=1e-6)
    if reward == "likelihood":
        assert expected > 0.3


def tiny_student(num_labels=3):
    from model import BiLSTM, StudentConfig

    paddle.seed(0)
    model = BiLSTM(StudentConfig(vocab_size=50, emb_dim=8, hidden_size=6, num_labels=num_labels, dropout_prob=0.0,
                                 activation="tanh", is_pair=False, padding_idx=0, pooling="max", task_name="t",
                                 language="en", use_pieces=False, max_seq_length=16, labels=("a", "b", "c")))
    return model


def records(rng, count, labels):
    return [{"ids": rng.integers(1, 50, size=length).astype("int64"), "lengths": int(length), "label": int(label)}
            for length, label in zip(rng.integers(2, 9, size=count), labels)]


@pytest.mark.parametrize("loss", ["mse", "kl"])
def test_the_influence_reward_is_the_dot_product_of_the_two_output_layer_gradients(loss):
    """Each candidate's benefit equals <d its share of the distillation loss / d output layer, d the reward split's
    mean cross-entropy / d output layer>, both taken by autograd over the weight and the bias."""
    rng = np.random.default_rng(0)
    model = tiny_student()
    reward = records(rng, 7, rng.integers(0, 3, size=7))
    batch = {k: paddle.to_tensor(v) for k, v in data.student_collate(0)(records(rng, 5, [data.NO_LABEL] * 5)).items()}
    teacher = paddle.to_tensor(rng.normal(size=(5, 3)).astype("float32"))

    def soft_loss(student_logits, teacher_logits, labels):
        return distillation.distill_loss(student_logits, teacher_logits, labels, 0.0, loss, 2.0)

    chooser = selector.ReinforcedSelector(SelectorConfig(selector_reward="influence"), 0, reward,
                                          [r["label"] for r in reward], 4, soft_loss)
    model.eval()
    logits, output_inputs = selector._with_output_inputs(model, batch)
    benefit = chooser.influence(model, output_inputs.numpy(), logits.detach(), teacher, batch["label"])

    layer = [model.output_layer.weight, model.output_layer.bias]
    model.eval()
    reward_batch = {k: paddle.to_tensor(v) for k, v in data.student_collate(0)(reward).items()}
    reward_loss = paddle.nn.functional.cross_entropy(model(**models.student_inputs(reward_batch)),
                                                     paddle.to_tensor(np.array([r["label"] for r in reward])))
    reward_gradient = paddle.grad(reward_loss, layer)
    for i in range(5):
        # candidate i's share of the batch's loss: the loss with only its row attached to the model
        own = paddle.concat([model(**models.student_inputs(batch))[i:i + 1], logits.detach()[:i], logits.detach()[i + 1:]])
        order = [i] + [j for j in range(5) if j != i]
        gradient = paddle.grad(soft_loss(own, paddle.gather(teacher, paddle.to_tensor(order)), batch["label"]), layer)
        expected = sum(float((g * r).sum()) for g, r in zip(gradient, reward_gradient))
        assert benefit[i] == pytest.approx(expected, rel=1e-4, abs=1e-9)
    assert np.ptp(benefit) > 0


def test_the_influence_reward_keeps_what_helps_and_drops_what_harms():
    chooser = selector.ReinforcedSelector(SelectorConfig(episode_steps=2, selector_lr=0.05,
                                                         selector_reward="influence"), 0, [], [], 8, soft_loss=None)
    rng = np.random.default_rng(0)
    helpful = rng.uniform(0, 1, size=(6, selector.FEATURES)).astype("float32")
    harmful = rng.uniform(-1, 0, size=(6, selector.FEATURES)).astype("float32")
    before = keep_probability(chooser.policy, helpful), keep_probability(chooser.policy, harmful)
    for _ in range(5):  # each decision rewarded on its own: +benefit when kept, -benefit when dropped
        features = np.concatenate([helpful, harmful])
        actions = rng.random(12) < 0.5
        benefit = np.r_[np.full(6, 0.3), np.full(6, -0.3)]
        chooser.episode = [[features, actions, np.where(actions, benefit, -benefit)],
                           [features[:0], np.zeros(0, bool), None]]
        chooser.update()
    after = keep_probability(chooser.policy, helpful), keep_probability(chooser.policy, harmful)
    assert (after[0] > before[0]).all() and (after[1] < before[1]).all()


def distill_flags(task_files, tiny_bert, tmp_path):
    return data_flags(task_files, "sst-2") + STUDENT_FAST + [
        "--teacher_dir", tiny_bert, "--n_iter", "2", "--num_workers", "1", "--max_epoch", "2", "--eval_steps", "6",
        "--selector", "reinforce", "--episode_steps", "4", "--reward_fraction", "0.2",
        "--cache_dir", str(tmp_path / "cache")]


def test_the_selector_trains_logs_and_resumes_exactly(task_files, tiny_bert, tmp_path, monkeypatch):
    flags = distill_flags(task_files, tiny_bert, tmp_path)
    straight = bert_distill.main(flags + ["--output_dir", str(tmp_path / "straight"), "--save_transfer_set"])
    log = [json.loads(line) for line in (tmp_path / "straight" / "eval_log.jsonl").read_text().splitlines()]
    assert all(0 <= record["keep_rate"] <= 1 and -1 <= record["reward"] <= 1 for record in log)
    assert 0 < np.mean([record["keep_rate"] for record in log]) < 1
    # The reward split (20% of the 160 labelled examples) is held out of the transfer set.
    train = data.read_split(TASKS["sst-2"], "train", task_files["sst-2"][0], "train")
    kept, held = distillation.reward_split(train, 0.2, 42)
    assert len(held) == 32
    lines = (tmp_path / "straight" / "transfer_set.tsv").read_text(encoding="utf-8").splitlines()[1:]
    assert sum(line.split("\t")[1] != "-1" for line in lines) == len(kept)

    interrupted_at = straight["steps"] // 2 + 2  # mid-epoch 2, mid-episode
    monkeypatch.setattr(distillation, "distill_loss", interrupt_at(interrupted_at, signal.SIGTERM)(
        distillation.distill_loss))
    resumed = flags + ["--output_dir", str(tmp_path / "resumed"), "--save_transfer_set"]
    run_interrupted(bert_distill.main, resumed, expected_step=interrupted_at)
    assert os.path.exists(tmp_path / "resumed" / "checkpoint" / "selector.pdparams")
    monkeypatch.undo()
    bert_distill.main(resumed)
    assert_same_run(tmp_path / "resumed", tmp_path / "straight")
    policies = [paddle.load(str(tmp_path / name / "selector_policy.pdparams")) for name in ("straight", "resumed")]
    for key, value in policies[0].items():
        np.testing.assert_array_equal(np.asarray(policies[1][key]), np.asarray(value), err_msg=key)
    assert read_json(str(tmp_path / "resumed" / "results.json"))["metrics"] == straight["metrics"]
    png = str(tmp_path / "keep-rate.png")
    plot_curves.main([str(tmp_path / "straight"), "--metric", "keep_rate", "--output", png])
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_run_with_the_influence_reward(task_files, tiny_bert, tmp_path):
    bert_distill.main(distill_flags(task_files, tiny_bert, tmp_path) + ["--selector_reward", "influence", "--selector_lr", "0.05", "--max_epoch", "1",
                               "--output_dir", str(tmp_path / "run")])
    log = [json.loads(line) for line in (tmp_path / "run" / "eval_log.jsonl").read_text().splitlines()]
    assert all(0 <= record["keep_rate"] <= 1 for record in log)
    assert any(record["reward"] != 0 for record in log)  # every decision gets a reward of its own
