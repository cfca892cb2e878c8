"""The models: the Bi-LSTM student (its config, building, saving, loading; its initial embeddings are made by
embeddings.py), the fine-tuned teacher (loading, checks of its length and vocabulary), and a masked language model's
replacement candidates for L2A.
Running them (batched logits, export, runtimes) is in runtimes.py."""
import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.static import InputSpec
from paddlenlp.transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

import data
from files import read_json, write_json
from utils import UserError

logger = logging.getLogger("distill")

EMBEDDING_INIT_STD = 0.1
STUDENT_INPUTS = ("ids", "lengths", "ids2", "lengths2")  # the BiLSTM's forward arguments, also record fields
TEACHER_INPUTS = data.TEACHER_INPUT_FIELDS
EXPORT_CONFIG = "export_config.json"  # written by export_model.py beside the static model


# ---------------------------------------------------------------------------------------------------------------
# The student


@dataclass(frozen=True)
class StudentConfig:
    """Everything that defines a trained student; saved as its config.json."""
    vocab_size: int
    emb_dim: int
    hidden_size: int
    num_labels: int
    dropout_prob: float
    activation: str  # "tanh" or "relu"
    is_pair: bool  # siamese encoder over two sentences
    padding_idx: int
    pooling: str  # "last": the final states (the paper's); "max": the max over time of the outputs
    task_name: str
    language: str
    use_pieces: bool  # WordPiece ids (else one id per word)
    max_seq_length: int
    labels: tuple

    @classmethod
    def from_dict(cls, values):
        values = {"pooling": "last", **values}  # students saved before --pooling existed
        values["labels"] = tuple(values["labels"])
        return cls(**{field.name: values[field.name] for field in dataclasses.fields(cls)})

    def to_dict(self):
        return {**dataclasses.asdict(self), "labels": list(self.labels)}

    @property
    def input_names(self):
        return STUDENT_INPUTS[:4 if self.is_pair else 2]


class BiLSTM(nn.Layer):
    """Embedding -> Bi-LSTM (final forward and backward states, or the max over time of its outputs)
    -> [siamese features] -> hidden layer -> logits."""

    def __init__(self, config, embedding_weights=None):
        super().__init__()
        self.config = config
        # Paddle's default (Xavier) gives a large vocabulary vectors of norm ~0.1 that Adadelta barely moves;
        # N(0, 0.1) per value, as for words missing from pretrained vectors below, trains from the first epoch.
        self.embedder = nn.Embedding(config.vocab_size, config.emb_dim, padding_idx=config.padding_idx,
                                     weight_attr=paddle.ParamAttr(
                                         initializer=nn.initializer.Normal(std=EMBEDDING_INIT_STD)))
        if embedding_weights is not None:
            self.embedder.weight.set_value(embedding_weights.astype("float32"))
        # nn.LSTM ignores its own dropout with one layer, so dropout acts on embeddings and features instead.
        self.dropout = nn.Dropout(config.dropout_prob)
        self.lstm = nn.LSTM(config.emb_dim, config.hidden_size, direction="bidirect")
        features = config.hidden_size * 2 * (4 if config.is_pair else 1)
        self.fc = nn.Linear(features, config.hidden_size)
        self.activation = {"tanh": paddle.tanh, "relu": F.relu}[config.activation]
        self.output_layer = nn.Linear(config.hidden_size, config.num_labels)

    def encode(self, ids, lengths):
        embedded = self.dropout(self.embedder(ids))
        outputs, (last_hidden, _) = self.lstm(embedded, sequence_length=lengths)
        if self.config.pooling == "last":
            return paddle.concat([last_hidden[-2], last_hidden[-1]], axis=-1)  # forward, backward
        # The mask as arange < length rather than F.sequence_mask, which paddle2onnx cannot convert.
        steps = paddle.arange(paddle.shape(ids)[1], dtype=lengths.dtype)
        real = (steps.unsqueeze(0) < lengths.unsqueeze(-1)).astype(outputs.dtype).unsqueeze(-1)
        masked = outputs + (real - 1) * 1e4  # padded steps never win
        if not self.training:  # the same values; exported, one ReduceMax instead of nine operators around an ArgMax
            return masked.max(axis=1)
        # Gathered at the arg-max: paddle.max's backward is ~50x slower on CPU (Paddle 3.3, [256, 20, 600]).
        return paddle.take_along_axis(masked, masked.argmax(axis=1, keepdim=True), axis=1).squeeze(1)

    def forward(self, ids, lengths, ids2=None, lengths2=None):
        features = self.encode(ids, lengths)
        if self.config.is_pair:
            other = self.encode(ids2, lengths2)
            features = paddle.concat([features, other, features * other, paddle.abs(features - other)], axis=-1)
        hidden = self.activation(self.fc(self.dropout(features)))
        return self.output_layer(self.dropout(hidden))


def student_inputs(batch):
    """The student's inputs among a collated batch's fields."""
    return {name: batch[name] for name in STUDENT_INPUTS if name in batch}


def load_weights(path, flag, load=None):
    """The tensors of a weights file a flag names (itself or in its directory), read by load (default paddle.load),
    refused in one line naming the flag and file when they cannot be read: a truncated copy, another kind of file.
    """
    try:
        return (load or paddle.load)(path)
    except Exception as error:  # Paddle and safetensors fail on a damaged file with many exception types
        reason = (str(error).strip().splitlines() or [""])[0]
        raise UserError(f"{flag} {path}: cannot be read as model weights ({type(error).__name__}: {reason}); the "
                        "file is damaged or truncated") from None


def save_student(model, vocab, directory):
    """A student directory: model.pdparams, config.json (its StudentConfig) and vocab.txt."""
    paddle.save(model.state_dict(), os.path.join(directory, "model.pdparams"))
    write_json(os.path.join(directory, "config.json"), model.config.to_dict())
    vocab.save(os.path.join(directory, "vocab.txt"))


def saved_student_config(directory, flag):
    """The StudentConfig of a student directory written by small.py or bert_distill.py, once its files are found."""
    for name in ("config.json", "model.pdparams"):
        if not os.path.isfile(os.path.join(directory, name)):
            raise UserError(f"{flag} {directory}: missing {name} (not a student directory)")
    needed = [spec.name for spec in dataclasses.fields(StudentConfig) if spec.name != "pooling"]  # see from_dict
    return StudentConfig.from_dict(read_json(os.path.join(directory, "config.json"), needed))


def load_student_weights(model, directory, flag="--init_from_ckpt", vocab=None):
    """Load a student directory's weights after checking that its config and vocabulary size match the model's, and
    with vocab (this run's StudentVocab) that its vocab.txt holds the same tokens in the same order: an embedding
    row belongs to a token, not to a position."""
    saved, config = saved_student_config(directory, flag), model.config
    weights_path = os.path.join(directory, "model.pdparams")
    if saved.vocab_size != config.vocab_size:
        raise UserError(f"{flag} {directory}: checkpoint vocabulary has {saved.vocab_size} entries, "
                        f"this run's has {config.vocab_size} (use the same --vocab_path)")
    if vocab is not None:
        vocab_file = os.path.join(directory, "vocab.txt")
        if not os.path.isfile(vocab_file):
            raise UserError(f"{flag} {directory}: missing vocab.txt (not a student directory)")
        tokens = data.load_vocab_file(vocab_file, flag).idx_to_token
        differing = next((i for i in range(len(vocab)) if tokens.get(i) != vocab.vocab.idx_to_token.get(i)), None)
        if differing is not None:
            raise UserError(f"{flag} {directory}: its vocab.txt is not this run's vocabulary (same size, other tokens: "
                            f"id {differing} is {tokens.get(differing)!r} there, "
                            f"{vocab.vocab.idx_to_token.get(differing)!r} here); use the same --vocab_path")
    architecture = ("emb_dim", "hidden_size", "num_labels", "activation", "is_pair", "padding_idx", "pooling")
    differing = {k: (getattr(saved, k), getattr(config, k)) for k in architecture
                 if getattr(saved, k) != getattr(config, k)}
    if differing:
        raise UserError(f"{flag} {directory}: model settings differ: {differing}")
    state = load_weights(weights_path, flag)
    if "embedder.weight" not in state:
        raise UserError(f"{flag} {weights_path}: not the weights of a student (no embedder.weight)")
    if tuple(state["embedder.weight"].shape) != (config.vocab_size, config.emb_dim):
        raise UserError(f"{flag} {weights_path}: embedding of shape {list(state['embedder.weight'].shape)} does "
                        f"not match its config.json")
    model.set_state_dict(state)


@dataclass
class SavedStudent:
    model: BiLSTM
    vocab: data.StudentVocab
    analyzer: data.Analyzer

    @property
    def config(self):
        return self.model.config

    def records(self, examples):
        """Student records of examples (their texts, and labels when they have them)."""
        return data.student_records(examples, self.analyzer, self.vocab, self.config.max_seq_length)


def load_student(directory, flag="--model_dir"):
    """A saved student directory (best/ of small.py or bert_distill.py), in eval mode."""
    config = saved_student_config(directory, flag)
    vocab_file = os.path.join(directory, "vocab.txt")
    if not os.path.isfile(vocab_file):
        raise UserError(f"{flag} {directory}: missing vocab.txt (not a student directory)")
    vocab = data.StudentVocab(data.load_vocab_file(vocab_file, flag), config.use_pieces)
    if len(vocab) != config.vocab_size:
        raise UserError(f"{flag} {directory}: vocab.txt has {len(vocab)} entries but the model was trained with "
                        f"{config.vocab_size} (a vocabulary that does not belong to these weights)")
    model = BiLSTM(config)
    load_student_weights(model, directory, flag)
    model.eval()
    analyzer = data.make_analyzer(config.language, vocab_file if config.use_pieces else None, flag)
    return SavedStudent(model, vocab, analyzer)


def student_input_spec(config):
    return [InputSpec([None, None] if name.startswith("ids") else [None], "int64", name)
            for name in config.input_names]


# ---------------------------------------------------------------------------------------------------------------
# The teacher

TORCH_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
TASK_FILE = "task.json"  # written beside a fine-tuned teacher: its task, labels and max_seq_length


def teacher_task(teacher_dir):
    """What a teacher directory records of its fine-tuning (empty for teachers not written by teacher.py)."""
    path = os.path.join(teacher_dir, TASK_FILE)
    return read_json(path) if os.path.isfile(path) else {}


# Families whose position ids start after the padding id (RoBERTa's layout): pad_token_id + 1 of their
# max_position_embeddings never hold text, e.g. 514 positions with pad id 1 take 512 tokens.
PADDING_OFFSET_FAMILIES = ("roberta", "xlm-roberta", "mpnet")


def teacher_config(teacher_dir):
    """The config.json of a teacher directory as a dict (empty when there is none)."""
    path = os.path.join(teacher_dir, "config.json")
    return read_json(path) if os.path.isfile(path) else {}


def check_teacher_length(config, max_seq_length, source):
    """Refuse a --max_seq_length longer than the teacher's position embeddings take (an embedding lookup out of
    range fails on the first long input, mid-run). config: the teacher's config as a dict (config.json);
    source: the flag and directory the teacher comes from, for the message."""
    positions = config.get("max_position_embeddings")
    if positions is None:
        return
    limit = positions
    if config.get("model_type") in PADDING_OFFSET_FAMILIES:
        limit -= config.get("pad_token_id", 1) + 1
    if max_seq_length > limit:
        raise UserError(f"--max_seq_length {max_seq_length}: the teacher of {source} takes at most {limit} tokens "
                        f"(its {config.get('model_type', 'model')} config has max_position_embeddings {positions})")


def check_teacher_vocabulary(config, tokenizer, source):
    """Refuse a tokenizer that makes ids beyond the teacher's word embeddings (they would be read out of range).
    config: the teacher's config as a dict; source: the flag and directory, for the message."""
    rows = config.get("vocab_size")
    if rows is not None and len(tokenizer) > rows:
        raise UserError(f"{source}: its tokenizer has {len(tokenizer)} tokens but the model's word embeddings have "
                        f"{rows} rows (a vocabulary that does not belong to these weights)")


def checked_teacher_tokenizer(name_or_dir, config, max_seq_length, flag):
    """The teacher's tokenizer, once --max_seq_length fits the teacher's position embeddings and the tokenizer its
    word embeddings. config: the teacher's config as a dict; flag: the flag naming name_or_dir, for the messages."""
    source = f"{flag} {name_or_dir}"
    check_teacher_length(config, max_seq_length, source)
    tokenizer = data.load_tokenizer(name_or_dir, flag)
    check_teacher_vocabulary(config, tokenizer, source)
    return tokenizer


CONFIG_FILES = ("config.json", "model_config.json")
TOKENIZER_FILES = ("vocab.txt", "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "added_tokens.json")  # besides SentencePiece models, *.model


def teacher_files(teacher_dir, flag="--teacher_dir"):
    """The files of a local model directory that make the model what it is: its weights (teacher_weights_path), its
    config and its tokenizer's files (a SentencePiece model included). Their contents decide its outputs and what
    ids its inputs become, so a resume and the teacher-logits cache check all of them (checkpoint.input_hashes,
    teacher_sha256)."""
    names = sorted(name for name in os.listdir(teacher_dir)
                   if (name in CONFIG_FILES + TOKENIZER_FILES or name.endswith(".model"))
                   and os.path.isfile(os.path.join(teacher_dir, name)))
    return [teacher_weights_path(teacher_dir, flag)] + [os.path.join(teacher_dir, name) for name in names]


def teacher_sha256(file_hashes):
    """One sha256 of a model from those of its files (teacher_files' names -> sha256): the teacher's identity."""
    return hashlib.sha256(json.dumps(file_hashes, sort_keys=True).encode()).hexdigest()


def teacher_weights_path(teacher_dir, flag="--teacher_dir"):
    """The weights file of a local teacher directory, or a UserError naming what is missing."""
    for name in ("model_state.pdparams",) + TORCH_WEIGHTS:
        path = os.path.join(teacher_dir, name)
        if os.path.isfile(path):
            return path
    raise UserError(f"{flag} {teacher_dir}: no model_state.pdparams or HuggingFace weights (not a teacher "
                    f"directory written by teacher.py)")


def load_teacher(name_or_dir, num_labels=None, flag="--model_name_or_path", dropout_prob=None, fine_tune=False):
    """Any PaddleNLP sequence classifier (BERT, ERNIE, RoBERTa, MPNet, ...; AutoModelForSequenceClassification)
    from a PaddleNLP name or a local directory (Paddle weights, or HuggingFace weights converted where PaddleNLP
    can); with dropout_prob, its hidden and attention dropout set to it. fine_tune: to be fine-tuned on num_labels
    labels, so a classifier head of another size (a checkpoint fine-tuned on other labels) starts anew (PaddleNLP
    logs it); otherwise such a head is refused."""
    kwargs = _pretrained_kwargs(name_or_dir, flag)
    if num_labels is not None:
        kwargs["num_classes"] = num_labels
    if fine_tune:
        kwargs["ignore_mismatched_sizes"] = True
    if dropout_prob is not None:
        kwargs.update(hidden_dropout_prob=dropout_prob, attention_probs_dropout_prob=dropout_prob)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(name_or_dir, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, AttributeError) as error:
        raise UserError(f"{flag} {name_or_dir}: could not load a sequence classifier ({type(error).__name__}: "
                        f"{error})") from None
    model.config.use_cache = False  # HuggingFace configs may enable it; we want logits only
    return model


def _pretrained_kwargs(name_or_dir, flag):
    """from_pretrained's keyword arguments for a hub name, or for a local directory once it is seen to hold weights
    (Paddle's, or HuggingFace's to convert) and a config."""
    if os.path.isdir(name_or_dir):
        files = set(os.listdir(name_or_dir))
        if "model_state.pdparams" not in files and not files & set(TORCH_WEIGHTS):
            raise UserError(f"{flag} {name_or_dir}: no model weights (model_state.pdparams, "
                            f"model.safetensors or pytorch_model.bin)")
        if "config.json" not in files and "model_config.json" not in files:
            raise UserError(f"{flag} {name_or_dir}: no config.json")
        return {"convert_from_torch": bool(files & set(TORCH_WEIGHTS))}
    if os.path.sep in name_or_dir or name_or_dir.startswith("."):
        raise UserError(f"{flag} {name_or_dir}: no such directory")
    return {}


def load_masked_lm(name_or_dir, flag="--mlm"):
    """Any PaddleNLP masked language model (AutoModelForMaskedLM) by name or local directory, in eval mode."""
    kwargs = _pretrained_kwargs(name_or_dir, flag)
    try:
        model = AutoModelForMaskedLM.from_pretrained(name_or_dir, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, AttributeError) as error:
        raise UserError(f"{flag} {name_or_dir}: could not load a masked language model ({type(error).__name__}: "
                        f"{error})") from None
    model.eval()
    return model


def masked_lm_candidates(model, tokenizer, joiner, k, max_length=128):
    """candidates_of for augment.l2a_masked_lm_copies: for each query (words, positions), the text with those words
    masked (the tokenizer's mask token, words joined by joiner) run through the masked LM, and at each mask its k
    most likely whole words of the vocabulary (no special tokens or ## continuations; SentencePiece's leading ▁
    dropped) with their log-probabilities; None for a mask cut off by max_length."""
    special = set(tokenizer.all_special_tokens)
    vocabulary = [(token, i) for token, i in tokenizer.get_vocab().items()
                  if token not in special and not token.startswith("##") and token.lstrip("▁")]
    candidate_ids = paddle.to_tensor([i for _, i in vocabulary])
    candidate_words = [token.lstrip("▁") for token, _ in vocabulary]
    k = min(k, len(candidate_words))
    batch_size = max(1, int(2e7 // (max_length * len(tokenizer))))  # keeps the logits of a batch near 80 MB

    @paddle.no_grad()
    def candidates_of(queries):
        options = []
        for start in range(0, len(queries), batch_size):
            chunk = queries[start:start + batch_size]
            texts = [joiner.join(tokenizer.mask_token if i in positions else word for i, word in enumerate(words))
                     for words, positions in chunk]
            input_ids = tokenizer(texts, max_length=max_length, truncation=True, padding=True)["input_ids"]
            input_ids = np.asarray(input_ids, dtype="int64")
            logits = model(input_ids=paddle.to_tensor(input_ids))
            logits = logits[0] if isinstance(logits, (tuple, list)) else logits
            for row, (_, positions) in enumerate(chunk):
                masks = np.flatnonzero(input_ids[row] == tokenizer.mask_token_id)
                if not len(masks):  # every mask cut off
                    options.append([None] * len(positions))
                    continue
                scores = F.log_softmax(paddle.gather(logits[row], paddle.to_tensor(masks), axis=0), axis=-1)
                top_scores, top = (t.numpy() for t in paddle.topk(paddle.gather(scores, candidate_ids, axis=1), k))
                options.append([([candidate_words[i] for i in top[n]], top_scores[n]) if n < len(masks) else None
                                for n in range(len(positions))])
        return options

    return candidates_of


def teacher_inputs(batch):
    """The teacher's inputs among a collated batch's fields."""
    return {name: batch[name] for name in TEACHER_INPUTS if name in batch}
