"""The reinforced selector of L2A (Feng et al. 2021): a small policy network decides, for each example of a batch
without a hard label (augmented copies, unlabelled text), whether the student trains on it. State: the teacher's
and the student's outputs on the example; action: keep or drop; reward after each student update: the student's
accuracy (or, smoother, the mean log-probability of the true labels) on a reward split of the labelled training
data after the update minus before; the policy is updated by REINFORCE with a baseline at the end of each episode,
from the discounted returns of its steps.
"""
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

import data
import distillation
import model as models
import runtimes
from utils import optimizer_state_in, optimizer_state_out

FEATURES = 9  # per example, from selection_features


def selection_features(teacher_logits, student_logits):
    """Per example, what the policy sees of the two models: each one's top probability, entropy (over log of the
    number of classes) and margin between its two most likely classes; whether their predictions disagree; the
    total variation distance between their distributions; and a constant."""
    teacher, student = F.softmax(teacher_logits, axis=-1), F.softmax(student_logits, axis=-1)
    classes = float(np.log(teacher.shape[-1]))

    def describe(p):
        top2 = paddle.topk(p, k=2, axis=-1)[0]
        entropy = -(p * paddle.log(paddle.clip(p, min=1e-12))).sum(-1) / classes
        return [top2[:, 0], entropy, top2[:, 0] - top2[:, 1]]

    disagree = (teacher.argmax(-1) != student.argmax(-1)).astype("float32")
    distance = (teacher - student).abs().sum(-1) / 2
    return paddle.stack(describe(teacher) + describe(student) + [disagree, distance, paddle.ones_like(distance)],
                        axis=-1)


class Policy(nn.Layer):
    """Features -> probability of keeping the example."""

    def __init__(self, hidden=16):
        super().__init__()
        self.hidden = nn.Linear(FEATURES, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, features):
        return F.sigmoid(self.out(paddle.tanh(self.hidden(features)))).squeeze(-1)


class ReinforcedSelector:
    """Training's companion (training.fit's `selector`): loss(model, batch) trains the student on the kept rows
    and records the step's decisions; after_step(model) records its reward and, at an episode's end, updates the
    policy; report() gives the keep rate and mean reward since the last report (for eval_log.jsonl);
    state_dict()/set_state_dict() carry everything into and out of a checkpoint, so a resumed run is exact."""

    def __init__(self, config, seed, reward_records, reward_labels, batch_size, soft_loss, generator=None,
                 origins=()):
        """config: an args.SelectorConfig; generator: a generator.LearnedGenerator that learns from the policy's
        decisions on its copies (batches then carry each example's index in generator.traces); origins: the
        distillation.ORIGINS of the examples it decides on, each kept apart in report() when there are several
        (batches then carry each example's origin, its index in distillation.ORIGINS)."""
        self.config, self.generator = config, generator
        self.origins = list(origins) if len(origins) > 1 else []
        self.reward_records, self.reward_labels, self.batch_size = reward_records, np.asarray(reward_labels), batch_size
        self.soft_loss = soft_loss  # (student logits, teacher logits, labels) -> loss, over the kept rows
        self.policy = Policy()
        # Initialised from the seed alone: Paddle's global generator has drawn more or less by now (a teacher
        # loaded, or its logits read from the cache), and a resumed run must start from the same policy.
        init = np.random.default_rng((seed, 3))
        for parameter in self.policy.parameters():
            fan_in = parameter.shape[0] if len(parameter.shape) == 2 else None
            parameter.set_value((init.normal(size=parameter.shape) / np.sqrt(fan_in) if fan_in else
                                 np.zeros(parameter.shape)).astype("float32"))
        self.optimizer = paddle.optimizer.Adam(learning_rate=config.selector_lr, parameters=self.policy.parameters())
        self.rng = np.random.default_rng((seed, 1))
        self.episode = []  # [features, actions, reward, (generator's traces, their keep probabilities)] per step
        self.baseline = None  # running mean of the returns
        self.score_now = None  # the student's reward-split score (accuracy or likelihood) after the last update
        self.tally = self._empty_tally()

    def _empty_tally(self):
        return {"offered": 0, "kept": 0, "rewards": [], **{f"offered_{o}": 0 for o in self.origins},
                **{f"kept_{o}": 0 for o in self.origins}}

    def reward_score(self, model):
        logits = runtimes.student_logits(model, self.reward_records, self.batch_size)
        model.train()
        if self.config.selector_reward == "accuracy":
            return float((logits.argmax(-1) == self.reward_labels).mean())
        log_probabilities = F.log_softmax(paddle.to_tensor(logits), axis=-1).numpy()
        return float(log_probabilities[np.arange(len(self.reward_labels)), self.reward_labels].mean())

    def loss(self, model, batch):
        per_example = self.config.selector_reward == "influence"
        if self.score_now is None and not per_example:
            self.score_now = self.reward_score(model)
        logits, output_inputs = _with_output_inputs(model, batch)
        candidates = (batch["label"] == data.NO_LABEL).numpy()
        features = selection_features(batch["logits"], logits.detach()).numpy()[candidates]
        with paddle.no_grad():
            keep_probability = self.policy(paddle.to_tensor(features)).numpy() if len(features) else np.zeros(0)
        actions = self.rng.random(len(features)) < keep_probability
        keep = np.ones(len(candidates), dtype=bool)
        keep[candidates] = actions
        drawn = None
        if self.generator is not None:  # the generator's copies among the candidates (not unlabelled text)
            traces = [self.generator.traces[i] for i in batch["index"].numpy()[candidates]]
            has_trace = np.array([trace is not None for trace in traces], dtype=bool)
            drawn = ([trace for trace in traces if trace is not None], keep_probability[has_trace])
        reward = None
        if per_example and len(actions):  # keeping a helpful example, or dropping a harmful one, is rewarded
            rows = paddle.to_tensor(np.flatnonzero(candidates))
            benefit = self.influence(model, output_inputs.detach().numpy()[candidates],
                                     paddle.gather(logits.detach(), rows), paddle.gather(batch["logits"], rows),
                                     paddle.gather(batch["label"], rows))
            reward = np.where(actions, benefit, -benefit)
            self.tally["rewards"].append(float(reward.mean()))
        self.episode.append([features, actions, reward, drawn])
        self.tally["offered"] += len(actions)
        self.tally["kept"] += int(actions.sum())
        if self.origins:
            origins = batch["origin"].numpy()[candidates]
            for origin in self.origins:
                mine = origins == distillation.ORIGINS.index(origin)
                self.tally[f"offered_{origin}"] += int(mine.sum())
                self.tally[f"kept_{origin}"] += int(actions[mine].sum())
        if not keep.any():
            return (logits * 0).sum()  # nothing kept: no update
        rows = paddle.to_tensor(np.flatnonzero(keep))
        return self.soft_loss(paddle.gather(logits, rows), paddle.gather(batch["logits"], rows),
                              paddle.gather(batch["label"], rows))

    def influence(self, model, output_inputs, logits, teacher_logits, labels):
        """Per candidate, the first-order benefit of its update to the reward split: the dot product of the
        gradient its distillation loss gives the student's output layer with the gradient the reward split's
        cross-entropy gives it (positive: a step on the candidate lowers the reward split's loss). Both gradients
        are outer products (of the loss's gradient in the logits and the layer's input), so the dot product is a
        product of two small Gram matrices."""
        logits = paddle.to_tensor(logits.numpy(), stop_gradient=False)
        delta = paddle.grad(self.soft_loss(logits, teacher_logits, labels), logits)[0].numpy()
        reward_inputs, reward_logits = [], []
        model.eval()
        with paddle.no_grad():
            collate = data.student_collate(model.config.padding_idx)
            for start in range(0, len(self.reward_records), self.batch_size):
                chunk = collate(self.reward_records[start:start + self.batch_size])
                chunk_logits, chunk_inputs = _with_output_inputs(
                    model, {name: paddle.to_tensor(value) for name, value in chunk.items()})
                reward_logits.append(chunk_logits.numpy())
                reward_inputs.append(chunk_inputs.numpy())
        model.train()
        reward_logits = np.concatenate(reward_logits)
        reward_delta = F.softmax(paddle.to_tensor(reward_logits), axis=-1).numpy()
        reward_delta[np.arange(len(self.reward_labels)), self.reward_labels] -= 1  # d CE / d logits
        return ((delta @ reward_delta.T) * (output_inputs @ np.concatenate(reward_inputs).T + 1)).mean(axis=1)

    def after_step(self, model):
        if self.config.selector_reward != "influence":  # the step's reward: the reward split's score, after - before
            before, self.score_now = self.score_now, self.reward_score(model)
            self.episode[-1][2] = self.score_now - before
            self.tally["rewards"].append(self.score_now - before)
        if len(self.episode) == self.config.episode_steps:
            self.update()

    def update(self):
        """REINFORCE over the finished episode: each step's decisions are pushed towards the actions taken in
        proportion to the step's discounted return minus a running mean of returns (the baseline); with the
        influence reward, each decision in proportion to its own reward (over their root mean square)."""
        if self.config.selector_reward == "influence":
            rewards = [step[2] for step in self.episode if step[2] is not None]
            scale = np.sqrt(np.mean(np.concatenate(rewards) ** 2)) if rewards else 0.0
            advantages = [np.zeros(0) if step[2] is None or scale == 0 else step[2] / scale for step in self.episode]
        else:
            rewards = np.array([step[2] for step in self.episode])
            returns = np.zeros_like(rewards)
            running = 0.0
            for t in reversed(range(len(rewards))):
                running = rewards[t] + self.config.selector_gamma * running
                returns[t] = running
            advantages = returns - (returns.mean() if self.baseline is None else self.baseline)
            self.baseline = returns.mean() if self.baseline is None else 0.9 * self.baseline + 0.1 * returns.mean()
        loss = 0.0
        decisions = sum(len(step[1]) for step in self.episode)
        for (features, actions, *_), advantage in zip(self.episode, advantages):
            if len(actions) == 0 or not np.any(advantage):
                continue
            p = self.policy(paddle.to_tensor(features))
            taken = paddle.to_tensor(actions.astype("float32"))
            log_probability = taken * paddle.log(p + 1e-8) + (1 - taken) * paddle.log(1 - p + 1e-8)
            weight = paddle.to_tensor(np.broadcast_to(advantage, actions.shape).astype("float32"))
            loss = loss - (weight * log_probability).sum() / decisions
        if isinstance(loss, paddle.Tensor):
            loss.backward()
            self.optimizer.step()
            self.optimizer.clear_grad()
        if self.generator is not None:
            self.generator.learn([trace for step in self.episode for trace in step[3][0]],
                                 np.concatenate([step[3][1] for step in self.episode]))
        self.episode = []

    def report(self):
        """Keep rate (and that of each origin) and mean reward since the last report."""
        tally = self.tally
        report = {"keep_rate": tally["kept"] / max(tally["offered"], 1),
                  **{f"keep_rate_{o}": tally[f"kept_{o}"] / max(tally[f"offered_{o}"], 1) for o in self.origins},
                  "reward": float(np.mean(tally["rewards"])) if tally["rewards"] else 0.0}
        self.tally = self._empty_tally()
        return {**report, **self.generator.report()} if self.generator is not None else report

    def state_dict(self):
        return {"policy": self.policy.state_dict(), "optimizer": optimizer_state_out(self.policy, self.optimizer),
                "rng": self.rng.bit_generator.state, "episode": self.episode, "baseline": self.baseline,
                "score_now": self.score_now, "tally": self.tally,
                "generator": None if self.generator is None else self.generator.state_dict()}

    def set_state_dict(self, state):
        self.policy.set_state_dict(state["policy"])
        self.optimizer.set_state_dict(optimizer_state_in(self.policy, state["optimizer"]))
        self.rng.bit_generator.state = state["rng"]
        self.episode, self.baseline = state["episode"], state["baseline"]
        self.score_now, self.tally = state["score_now"], state["tally"]
        if self.generator is not None:
            self.generator.set_state_dict(state["generator"])

    def save(self, path):
        paddle.save(self.policy.state_dict(), path)


def _with_output_inputs(model, batch):
    """(the student's logits of a batch, the input of its output layer: what the logits are linear in)."""
    captured = []
    hook = model.output_layer.register_forward_pre_hook(lambda layer, inputs: captured.append(inputs[0]))
    try:
        logits = model(**models.student_inputs(batch))
    finally:
        hook.remove()
    return logits, captured[0]
