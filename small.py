"""Bi-LSTM student, trained alone on hard labels (the baseline).

    python small.py --task_name sst-2 --train_file ../shared/data/SST-2/train.tsv \
        --dev_file ../shared/data/SST-2/dev.tsv --vocab_path teachers/sst-2/best/vocab.txt \
        --output_dir small_models/sst-2
"""
import os

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

import data
from args import parse_args
from utils import UserError, classification_metrics, fit, prepare_output_dir, read_json, run_main, set_device, \
    set_seed, total_steps, write_json


EMBEDDING_INIT_STD = 0.1


class BiLSTM(nn.Layer):
    """Embedding -> Bi-LSTM (final forward and backward states, or the max over time of its outputs)
    -> [siamese features] -> hidden layer -> logits."""

    def __init__(self, vocab_size, emb_dim, hidden_size, num_labels, dropout_prob, activation, is_pair,
                 padding_idx=0, pooling="last", embedding_weights=None):
        super().__init__()
        # Paddle's default (Xavier) gives a large vocabulary vectors of norm ~0.1 that Adadelta barely moves;
        # N(0, 0.1) per value, as for words missing from pretrained vectors below, trains from the first epoch.
        self.embedder = nn.Embedding(vocab_size, emb_dim, padding_idx=padding_idx, weight_attr=paddle.ParamAttr(
            initializer=nn.initializer.Normal(std=EMBEDDING_INIT_STD)))
        if embedding_weights is not None:
            self.embedder.weight.set_value(embedding_weights.astype("float32"))
        # nn.LSTM ignores its own dropout with one layer, so dropout acts on embeddings and features instead.
        self.dropout = nn.Dropout(dropout_prob)
        self.lstm = nn.LSTM(emb_dim, hidden_size, direction="bidirect")
        self.is_pair = is_pair
        self.pooling = pooling
        features = hidden_size * 2 * (4 if is_pair else 1)
        self.fc = nn.Linear(features, hidden_size)
        self.activation = {"tanh": paddle.tanh, "relu": F.relu}[activation]
        self.output_layer = nn.Linear(hidden_size, num_labels)

    def encode(self, ids, lengths):
        embedded = self.dropout(self.embedder(ids))
        outputs, (last_hidden, _) = self.lstm(embedded, sequence_length=lengths)
        if self.pooling == "last":
            return paddle.concat([last_hidden[-2], last_hidden[-1]], axis=-1)  # forward, backward
        real = F.sequence_mask(lengths, maxlen=paddle.shape(ids)[1], dtype=outputs.dtype).unsqueeze(-1)
        masked = outputs + (real - 1) * 1e4  # padded steps never win
        # Gathered at the arg-max: paddle.max's backward is ~50x slower on CPU (Paddle 3.3, [256, 20, 600]).
        return paddle.take_along_axis(masked, masked.argmax(axis=1, keepdim=True), axis=1).squeeze(1)

    def forward(self, ids, lengths, ids2=None, lengths2=None):
        features = self.encode(ids, lengths)
        if self.is_pair:
            other = self.encode(ids2, lengths2)
            features = paddle.concat([features, other, features * other, paddle.abs(features - other)], axis=-1)
        hidden = self.activation(self.fc(self.dropout(features)))
        return self.output_layer(self.dropout(hidden))


def embedding_matrix(args, vocab, teacher_dir=None):
    """Initial embedding weights for --embedding, or None for random init."""
    choice = args.embedding
    if choice == "random":
        return None
    if choice == "teacher":
        if not teacher_dir:
            raise UserError("--embedding teacher needs a teacher (--teacher_dir)")
        choice = teacher_dir
    if os.path.isdir(choice):
        if not vocab.use_pieces:
            raise UserError(f"--embedding {choice}: BERT embeddings need --tokenization wordpiece (its vocabulary)")
        weights = bert_word_embeddings(choice)
        if weights.shape[0] != len(vocab):
            raise UserError(f"--embedding {choice}: {weights.shape[0]} word pieces, but the student vocabulary has "
                            f"{len(vocab)} (use that model's vocab.txt as --vocab_path)")
        return weights
    if os.path.isfile(choice):
        vectors = _read_vector_file(choice)
    else:
        from paddlenlp.embeddings import TokenEmbedding

        try:
            embedding = TokenEmbedding(choice)
        except Exception as error:
            raise UserError(f"--embedding {choice}: neither a file nor a loadable TokenEmbedding ({error})") from None
        vectors = {t: embedding.search(t)[0] for t in embedding.vocab.token_to_idx}
    dim = len(next(iter(vectors.values())))
    rng = np.random.default_rng(args.seed)
    weights = rng.normal(0, EMBEDDING_INIT_STD, (len(vocab), dim)).astype("float32")
    found = 0
    for token, index in vocab.vocab.token_to_idx.items():
        vector = vectors.get(token)
        if vector is not None:
            weights[index] = vector
            found += 1
    weights[vocab.pad_id] = 0
    print(f"embedding: {found}/{len(vocab)} vocabulary entries found in {choice}")
    return weights


def bert_word_embeddings(model_dir):
    """The word-piece embedding matrix of a BERT directory, from Paddle or safetensors weights."""
    paddle_weights = os.path.join(model_dir, "model_state.pdparams")
    torch_weights = os.path.join(model_dir, "model.safetensors")
    if os.path.isfile(paddle_weights):
        state = paddle.load(paddle_weights)
    elif os.path.isfile(torch_weights):
        from safetensors.numpy import load_file

        state = load_file(torch_weights)
    else:
        raise UserError(f"--embedding {model_dir}: no model_state.pdparams or model.safetensors")
    key = next((k for k in state if k.endswith("word_embeddings.weight")), None)
    if key is None:
        raise UserError(f"--embedding {model_dir}: its weights have no word_embeddings")
    return np.asarray(state[key], dtype="float32")


def _read_vector_file(path):
    vectors = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            parts = line.rstrip().split(" ")
            if number == 1 and len(parts) == 2:
                continue  # word2vec text header: count and size
            try:
                vectors[parts[0]] = np.asarray(parts[1:], dtype="float32")
            except ValueError:
                raise UserError(f"--embedding {path}:{number}: expected a word then numbers") from None
    sizes = {len(v) for v in vectors.values()}
    if len(sizes) != 1:
        raise UserError(f"--embedding {path}: vectors of different sizes {sorted(sizes)[:3]} or none at all")
    return vectors


MODEL_KEYS = ("vocab_size", "emb_dim", "hidden_size", "num_labels", "dropout_prob", "activation", "is_pair",
              "padding_idx", "pooling")


def build_student(args, task, vocab, teacher_dir=None):
    """The student model and its config, from flags, --embedding and --init_from_ckpt."""
    weights = embedding_matrix(args, vocab, teacher_dir)
    config = {"vocab_size": len(vocab), "emb_dim": weights.shape[1] if weights is not None else (args.emb_dim or 300),
              "hidden_size": args.hidden_size, "num_labels": len(task.labels), "dropout_prob": args.dropout_prob,
              "activation": args.activation, "is_pair": task.is_pair, "padding_idx": vocab.pad_id,
              "pooling": args.pooling}
    if weights is not None and args.emb_dim and args.emb_dim != weights.shape[1]:
        raise UserError(f"--emb_dim {args.emb_dim} differs from the {weights.shape[1]}-d vectors of --embedding")
    model = BiLSTM(**config, embedding_weights=weights)
    if args.init_from_ckpt:
        load_student_weights(model, config, args.init_from_ckpt)
    return model, config


def saved_student_config(directory, flag):
    """config.json of a student directory written by small.py or bert_distill.py, once its weights are found too."""
    for name in ("config.json", "model.pdparams"):
        if not os.path.isfile(os.path.join(directory, name)):
            raise UserError(f"{flag} {directory}: missing {name} (not a student directory)")
    config = read_json(os.path.join(directory, "config.json"))
    config.setdefault("pooling", "last")  # students saved before --pooling existed
    return config


def load_student_weights(model, config, ckpt_dir, flag="--init_from_ckpt"):
    """Load a student directory's weights after checking that its config (and vocabulary size) match."""
    saved = saved_student_config(ckpt_dir, flag)
    weights_path = os.path.join(ckpt_dir, "model.pdparams")
    if saved["vocab_size"] != config["vocab_size"]:
        raise UserError(f"{flag} {ckpt_dir}: checkpoint vocabulary has {saved['vocab_size']} entries, "
                        f"this run's has {config['vocab_size']} (use the same --vocab_path)")
    differing = {k: (saved.get(k), v) for k, v in config.items() if k != "dropout_prob" and saved.get(k) != v}
    if differing:
        raise UserError(f"{flag} {ckpt_dir}: model settings differ: {differing}")
    state = paddle.load(weights_path)
    if tuple(state["embedder.weight"].shape) != (config["vocab_size"], config["emb_dim"]):
        raise UserError(f"{flag} {weights_path}: embedding of shape {list(state['embedder.weight'].shape)} does "
                        f"not match its config.json")
    model.set_state_dict(state)


def load_student(directory, flag="--model_dir"):
    """A saved student directory (best/ of small.py or bert_distill.py) as (model, config, analyzer, vocab)."""
    config = saved_student_config(directory, flag)
    vocab_file = os.path.join(directory, "vocab.txt")
    if not os.path.isfile(vocab_file):
        raise UserError(f"{flag} {directory}: missing vocab.txt (not a student directory)")
    vocab = data.StudentVocab(data.load_vocab_file(vocab_file, flag), config["use_pieces"])
    model = BiLSTM(**{k: config[k] for k in MODEL_KEYS})
    load_student_weights(model, {k: config[k] for k in MODEL_KEYS}, directory, flag)
    model.eval()
    analyzer = data.make_analyzer(config["language"], vocab_file if config["use_pieces"] else None, flag)
    return model, config, analyzer, vocab


def make_optimizer(args, model, loader):
    """The student optimizer, and its LR schedule (None for a constant rate)."""
    schedule = None
    if args.lr_schedule == "linear":
        schedule = paddle.optimizer.lr.PolynomialDecay(args.lr, decay_steps=total_steps(args, loader), end_lr=0.0)
    lr = schedule or args.lr
    clip = nn.ClipGradByNorm(5.0)
    if args.optimizer == "adadelta":
        optimizer = paddle.optimizer.Adadelta(learning_rate=lr, rho=args.rho, epsilon=1e-6,
                                              parameters=model.parameters(), grad_clip=clip)
    else:
        optimizer = paddle.optimizer.Adam(learning_rate=lr, parameters=model.parameters(), grad_clip=clip)
    return optimizer, schedule


def split_batch(batch, is_pair):
    """Student inputs of a collated batch, and the remaining fields."""
    n = 4 if is_pair else 2
    return batch[:n], batch[n:]


@paddle.no_grad()
def predict_logits(model, loader, is_pair):
    """Logits and labels over a loader, in the loader's order."""
    model.eval()
    logits, labels = [], []
    for batch in loader:
        inputs, (label,) = split_batch(batch, is_pair)
        logits.append(model(*inputs).numpy())
        labels.append(label.numpy())
    return np.concatenate(logits), np.concatenate(labels)


def student_setup(args, task, teacher_dir=None):
    """Data, vocabulary, dev loader, model and optimizer: everything both student scripts start from."""
    set_seed(args.seed)
    set_device(args.device)
    train, dev = data.load_examples(args, task)
    analyzer, vocab = data.build_student_side(args, task, train, teacher_dir)
    model, config = build_student(args, task, vocab, teacher_dir)
    dev_records = [data.student_record([analyzer.sentence(t) for t in ex.texts], vocab, args.max_seq_length, ex.label)
                   for ex in dev]
    dev_loader = data.make_loader(dev_records, data.record_lengths(dev_records, task.is_pair),
                                  data.student_batchify(task.is_pair, vocab.pad_id), args.batch_size, shuffle=False)

    def evaluate(model):
        return classification_metrics(*predict_logits(model, dev_loader, task.is_pair), task)

    def save(model, directory):
        paddle.save(model.state_dict(), os.path.join(directory, "model.pdparams"))
        write_json(os.path.join(directory, "config.json"), {
            **config, "task_name": args.task_name, "language": task.language, "use_pieces": vocab.use_pieces,
            "max_seq_length": args.max_seq_length, "labels": list(task.labels)})
        vocab.save(os.path.join(directory, "vocab.txt"))

    return train, analyzer, vocab, model, evaluate, save


def main(argv=None):
    args = parse_args("small", argv)
    task = data.TASKS[args.task_name]
    train, analyzer, vocab, model, evaluate, save = student_setup(args, task)
    records = [data.student_record([analyzer.sentence(t) for t in ex.texts], vocab, args.max_seq_length, ex.label)
               for ex in train]
    loader = data.make_loader(records, data.record_lengths(records, task.is_pair),
                              data.student_batchify(task.is_pair, vocab.pad_id), args.batch_size, True, args.seed)

    def loss_fn(model, batch):
        inputs, (labels,) = split_batch(batch, task.is_pair)
        return F.cross_entropy(model(*inputs), labels)

    prepare_output_dir(args.output_dir)
    optimizer, lr_scheduler = make_optimizer(args, model, loader)
    return fit(args, model, optimizer, loader, loss_fn, evaluate, save, task, lr_scheduler)


if __name__ == "__main__":
    run_main(main)
