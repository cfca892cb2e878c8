"""L2A's learned generator (Feng et al. 2021): G_theta(z|x) over the constrained space of augment's generator P_s,
trained from the reinforced selector's decisions.

G_theta is P_s with learned biases: an edit distance d is drawn with P_s(d) * exp(edit_bias[bucket of d]), the d
positions uniformly as in P_s, and each replacement among the word's candidates with P_s(w) * exp(word_bias[w]).
At zero biases G_theta is P_s, draw for draw. After every selector episode it takes one Adam step on L2A's loss,
a reward-augmented maximum likelihood: raise log G_theta(z|x) of copies in proportion to their weight under the
target q(z|x) ~ P_s(z|x) * exp(pi(z) / tau), where pi(z) in [0, 1] is the policy's keep probability of the copy.
(The paper writes the weight as log P_s(z) + pi(z); taken literally it is negative and the loss unbounded below,
so it is read as RAML's exponentiated reward.) The copies come from G_theta itself (those of the epoch's transfer
set the selector just decided on, labelled by the teacher anyway), so each is weighted by q / G_theta,
self-normalised over the episode: softmax(log P_s - log G_theta + pi / tau). The loss then pulls G_theta towards q:
towards the edit distances and replacement words of the copies the policy keeps, away from those it drops.
"""
import numpy as np
import paddle
import paddle.nn as nn

from augment import EDIT_BUCKETS, LearnedDraws, edit_bucket, edit_distance_probabilities
from utils import optimizer_state_in, optimizer_state_out

MASKED = -1e9  # the log-probability of a padded candidate


class Biases(nn.Layer):
    """G_theta's parameters: a bias per edit-distance bucket and per candidate word, zero at the start (P_s)."""

    def __init__(self, words):
        super().__init__()
        zero = nn.initializer.Constant(0.0)
        self.edit = self.create_parameter([EDIT_BUCKETS], default_initializer=zero)
        self.word = self.create_parameter([max(words, 1)], default_initializer=zero)


class LearnedGenerator:
    """replacements: word -> (candidate words, scores), P_s's table (augment.embedding_neighbours); config: an
    args.GeneratorConfig; augment_config: the run's AugmentConfig (edit_alpha, replace_temperature).
    draws(epoch) gives what the epoch's copies are drawn with (augment.build_transfer_set's `learned`);
    learn(traces, keep_probabilities) takes a step on an episode's copies; state_dict()/set_state_dict() carry it
    into and out of the selector's checkpoint, so a resumed run is exact."""

    def __init__(self, replacements, config, augment_config):
        self.replacements = replacements
        self.alpha, self.temperature = augment_config.edit_alpha, augment_config.replace_temperature
        self.tau = config.generator_temperature
        self.words = sorted({word for candidates, _ in replacements.values() for word in candidates})
        column = {word: i for i, word in enumerate(self.words)}
        # word -> (its candidates' columns in biases.word, P_s's log-probabilities of them)
        self.options = {word: (np.array([column[c] for c in candidates], dtype="int64"),
                               _log_softmax(np.asarray(scores, dtype="float64") / self.temperature))
                        for word, (candidates, scores) in replacements.items() if len(candidates)}
        self.biases = Biases(len(self.words))
        self.optimizer = paddle.optimizer.Adam(learning_rate=config.generator_lr,
                                               parameters=self.biases.parameters())
        self.epoch_biases = None  # (epoch, edit biases, word biases) its copies were drawn with
        self.traces = []  # the trace of each example of the epoch's transfer set (None: not one of its copies)
        self.tally = {"copies": 0, "log_ratio": 0.0}
        self._bucket_probabilities = {}

    def draws(self, epoch):
        """The epoch's LearnedDraws: the biases at the epoch's start (kept, so a run resumed within the epoch
        draws the same copies)."""
        if self.epoch_biases is None or self.epoch_biases[0] != epoch:
            self.epoch_biases = (epoch, self.biases.edit.numpy().copy(), self.biases.word.numpy().copy())
        _, edit_bias, word_bias = self.epoch_biases
        # exp(score / T + bias) = exp((score + T * bias) / T): P_s's draw with the scores moved
        table = {word: (candidates, np.asarray(scores) + self.temperature * word_bias[self.options[word][0]])
                 if word in self.options else (candidates, scores)
                 for word, (candidates, scores) in self.replacements.items()}
        return LearnedDraws(epoch, edit_bias, table)

    def log_ratios(self, traces):
        """log G_theta(z|x) - log P_s(z|x) of each copy (its trace: one (m, d, ((word, choice), ...)) per
        sentence), as a tensor differentiable in the biases."""
        copy_of_side, buckets, bucket_p = [], [], []
        copy_of_edit, chosen, columns, log_p = [], [], [], []
        for i, trace in enumerate(traces):
            for m, d, choices in trace:
                copy_of_side.append(i)
                buckets.append(edit_bucket(d))
                bucket_p.append(self._bucket_distribution(m))
                for word, k in choices:
                    option_columns, option_log_p = self.options[word]
                    copy_of_edit.append(i)
                    chosen.append(option_columns[k])
                    columns.append(option_columns)
                    log_p.append(option_log_p)
        # edit distance: bias[bucket of d] - log sum_b P_s(bucket b) exp(bias[b])
        log_bucket_p = paddle.to_tensor(np.log(np.maximum(np.array(bucket_p), 1e-300)), dtype="float32")
        edit_terms = paddle.gather(self.biases.edit, paddle.to_tensor(np.array(buckets, dtype="int64"))) - \
            paddle.logsumexp(log_bucket_p + self.biases.edit, axis=-1)
        ratio = paddle.zeros([len(traces)], dtype="float32")
        ratio = paddle.index_add(ratio, paddle.to_tensor(np.array(copy_of_side, dtype="int64")), 0, edit_terms)
        if chosen:
            # replacement: bias[w] - log sum_c P_s(c) exp(bias[c]) over the word's candidates c
            width = max(len(c) for c in columns)
            padded_columns = np.zeros((len(columns), width), dtype="int64")
            padded_log_p = np.full((len(columns), width), MASKED, dtype="float32")
            for row, (c, lp) in enumerate(zip(columns, log_p)):
                padded_columns[row, :len(c)], padded_log_p[row, :len(c)] = c, lp
            biases = paddle.gather(self.biases.word, paddle.to_tensor(padded_columns.reshape(-1))).reshape(
                padded_columns.shape)
            replace_terms = paddle.gather(self.biases.word, paddle.to_tensor(np.array(chosen, dtype="int64"))) - \
                paddle.logsumexp(paddle.to_tensor(padded_log_p) + biases, axis=-1)
            ratio = paddle.index_add(ratio, paddle.to_tensor(np.array(copy_of_edit, dtype="int64")), 0,
                                     replace_terms)
        return ratio

    def learn(self, traces, keep_probabilities):
        """One Adam step of the RAML loss over copies drawn from G_theta (their traces) and the policy's keep
        probability of each."""
        if not traces:
            return
        ratio = self.log_ratios(traces)
        logits = -ratio.numpy().astype("float64") + np.asarray(keep_probabilities, dtype="float64") / self.tau
        weights = np.exp(logits - logits.max())
        weights /= weights.sum()
        loss = -(paddle.to_tensor(weights.astype("float32")) * ratio).sum()
        loss.backward()
        self.optimizer.step()
        self.optimizer.clear_grad()
        self.tally["copies"] += len(traces)
        self.tally["log_ratio"] += float(ratio.numpy().sum())

    def report(self):
        """Since the last report, the mean log G_theta / P_s of the copies it learned from (an estimate of
        KL(G_theta || P_s) while they come from G_theta: 0 while it is P_s)."""
        tally, self.tally = self.tally, {"copies": 0, "log_ratio": 0.0}
        return {"generator_log_ratio": tally["log_ratio"] / max(tally["copies"], 1)}

    def _bucket_distribution(self, m):
        """P_s's probability of each edit_bucket for an m-word sentence."""
        if m not in self._bucket_probabilities:
            p = np.zeros(EDIT_BUCKETS)
            np.add.at(p, edit_bucket(np.arange(1, m + 1)), edit_distance_probabilities(m, self.alpha))
            self._bucket_probabilities[m] = p
        return self._bucket_probabilities[m]

    def state_dict(self):
        return {"biases": self.biases.state_dict(), "optimizer": optimizer_state_out(self.biases, self.optimizer),
                "epoch_biases": self.epoch_biases, "tally": self.tally}

    def set_state_dict(self, state):
        self.biases.set_state_dict(state["biases"])
        self.optimizer.set_state_dict(optimizer_state_in(self.biases, state["optimizer"]))
        self.epoch_biases, self.tally = state["epoch_biases"], state["tally"]

    def save(self, path):
        """Its parameters, with the words of its word biases (in their order)."""
        paddle.save({**self.biases.state_dict(), "words": self.words}, path)


def _log_softmax(z):
    return z - z.max() - np.log(np.exp(z - z.max()).sum())
