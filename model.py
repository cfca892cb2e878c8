"""The models and their runtimes: the Bi-LSTM student (its config, building, saving, loading, embedding init), the
fine-tuned teacher (loading, dygraph logits), static export of both, and the paddle.inference predictor that
labels transfer sets and serves predict.py. Training code lives elsewhere; serving imports only this, data and utils.
"""
import dataclasses
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.static import InputSpec
from paddlenlp.transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification
from tqdm import tqdm

import data
from utils import CPU_CORES, WORLD, UserError, gather_shards, read_json, use_all_cores, write_json

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


def embedding_matrix(choice, vocab, seed, emb_dim=None, teacher_dir=None):
    """Initial embedding weights for --embedding `choice`, or None for random init: 'random'; 'auto' (the default:
    the word-piece embeddings of the model whose vocab.txt the student uses, when its weights lie beside it and
    --emb_dim does not ask for another size, else random); 'teacher'; a BERT directory; a word2vec/GloVe text
    file; or a paddlenlp TokenEmbedding name."""
    if choice == "auto":
        weights = _vocabulary_model_embeddings(vocab)
        if weights is None or emb_dim not in (None, weights.shape[1]):
            logger.info("embedding: random N(0, %g)", EMBEDDING_INIT_STD)
            return None
        logger.info("embedding: the word-piece embeddings of %s", vocab.model_dir)
        return weights
    if choice == "random":
        return None
    if choice == "teacher":
        if not teacher_dir:
            raise UserError("--embedding teacher needs a teacher (--teacher_dir)")
        choice = teacher_dir
    if os.path.isdir(choice):
        if not vocab.use_pieces:
            raise UserError(f"--embedding {choice}: BERT embeddings need --tokenization wordpiece (its vocabulary)")
        weights = word_piece_embeddings(choice)
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
    rng = np.random.default_rng(seed)
    weights = rng.normal(0, EMBEDDING_INIT_STD, (len(vocab), dim)).astype("float32")
    found = 0
    for token, index in vocab.vocab.token_to_idx.items():
        vector = vectors.get(token)
        if vector is not None:
            weights[index] = vector
            found += 1
    weights[vocab.pad_id] = 0
    logger.info("embedding: %d/%d vocabulary entries found in %s", found, len(vocab), choice)
    return weights


def _vocabulary_model_embeddings(vocab):
    """The word-piece embeddings of the model directory the student's vocabulary comes from, when that directory
    holds weights with one row per vocabulary entry; else None."""
    if not vocab.use_pieces or vocab.model_dir is None:
        return None
    if not any(os.path.isfile(os.path.join(vocab.model_dir, name)) for name in ("model_state.pdparams",
                                                                                  "model.safetensors")):
        return None
    weights = word_piece_embeddings(vocab.model_dir)
    return weights if weights.shape[0] == len(vocab) else None


def word_piece_embeddings(model_dir, flag="--embedding"):
    """The word-piece embedding matrix of a model directory (any family with word_embeddings), from Paddle or
    safetensors weights."""
    paddle_weights = os.path.join(model_dir, "model_state.pdparams")
    torch_weights = os.path.join(model_dir, "model.safetensors")
    if os.path.isfile(paddle_weights):
        state = paddle.load(paddle_weights)
    elif os.path.isfile(torch_weights):
        from safetensors.numpy import load_file

        state = load_file(torch_weights)
    else:
        raise UserError(f"{flag} {model_dir}: no model_state.pdparams or model.safetensors")
    key = next((k for k in state if k.endswith("word_embeddings.weight")), None)
    if key is None:
        raise UserError(f"{flag} {model_dir}: its weights have no word_embeddings")
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
    return StudentConfig.from_dict(read_json(os.path.join(directory, "config.json")))


def load_student_weights(model, directory, flag="--init_from_ckpt"):
    """Load a student directory's weights after checking that its config (and vocabulary size) match the model's."""
    saved, config = saved_student_config(directory, flag), model.config
    weights_path = os.path.join(directory, "model.pdparams")
    if saved.vocab_size != config.vocab_size:
        raise UserError(f"{flag} {directory}: checkpoint vocabulary has {saved.vocab_size} entries, "
                        f"this run's has {config.vocab_size} (use the same --vocab_path)")
    architecture = ("emb_dim", "hidden_size", "num_labels", "activation", "is_pair", "padding_idx", "pooling")
    differing = {k: (getattr(saved, k), getattr(config, k)) for k in architecture
                 if getattr(saved, k) != getattr(config, k)}
    if differing:
        raise UserError(f"{flag} {directory}: model settings differ: {differing}")
    state = paddle.load(weights_path)
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
        return [data.student_record(self.analyzer.sentences(ex.texts), self.vocab, self.config.max_seq_length,
                                    ex.label) for ex in examples]


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


def teacher_weights_path(teacher_dir, flag="--teacher_dir"):
    """The weights file of a local teacher directory, or a UserError naming what is missing."""
    for name in ("model_state.pdparams",) + TORCH_WEIGHTS:
        path = os.path.join(teacher_dir, name)
        if os.path.isfile(path):
            return path
    raise UserError(f"{flag} {teacher_dir}: no model_state.pdparams or HuggingFace weights (not a teacher "
                    f"directory written by teacher.py)")


def load_teacher(name_or_dir, num_labels=None, flag="--model_name_or_path", dropout_prob=None):
    """Any PaddleNLP sequence classifier (BERT, ERNIE, RoBERTa, MPNet, ...; AutoModelForSequenceClassification)
    from a PaddleNLP name or a local directory (Paddle weights, or HuggingFace weights converted where PaddleNLP
    can); with dropout_prob, its hidden and attention dropout set to it."""
    kwargs = _pretrained_kwargs(name_or_dir, flag)
    if num_labels is not None:
        kwargs["num_classes"] = num_labels
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
    """candidates_of for data.l2a_masked_lm_copies: for each query (words, positions), the text with those words
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


# ---------------------------------------------------------------------------------------------------------------
# Running either model: dygraph, static export, paddle.inference


def batched_logits(run, records, batch_size, collate, progress=None, sharded=False):
    """run(collated batch of numpy arrays) -> logits, over records batched by length (no padding to the longest
    record), returned in the records' order; with a progress bar titled `progress` if given. sharded: the batches
    are shared out among the run's processes (batch i to rank i % size) and their logits gathered on every rank;
    each batch is the one a single process forms, so the logits are those a single process computes."""
    batches = list(data.BucketBatchSampler([data.record_length(r) for r in records], batch_size, shuffle=False))
    mine = batches[WORLD.rank::WORLD.size] if sharded else batches
    parts = []
    with tqdm(total=sum(map(len, mine)), desc=progress, unit="example", mininterval=1.0,
              disable=progress is None or not WORLD.is_main) as bar:
        for indices in mine:
            parts.append(run(collate([records[i] for i in indices])).astype("float32", copy=False))
            bar.update(len(indices))
    if sharded:
        parts = gather_shards(parts, len(batches))
    logits = np.zeros((len(records), parts[0].shape[-1] if parts else 0), dtype="float32")
    for indices, part in zip(batches, parts):
        logits[indices] = part
    return logits


def dygraph_runner(model, input_names):
    """run(batch) -> logits of the dygraph model in eval mode, fed the batch's fields named input_names."""
    model.eval()

    @paddle.no_grad()
    def run(batch):
        return model(**{name: paddle.to_tensor(batch[name]) for name in input_names if name in batch}).numpy()

    return run


def student_logits(model, records, batch_size):
    """Logits of a dygraph student over student records, batched by length, in the records' order."""
    collate = data.student_collate(model.config.padding_idx)
    return batched_logits(dygraph_runner(model, STUDENT_INPUTS), records, batch_size, collate)


def teacher_logits(model, records, batch_size, pad_id, progress=None, sharded=False):
    """Logits of a dygraph teacher over teacher records, batched by length, in the records' order (sharded: see
    batched_logits)."""
    return batched_logits(dygraph_runner(model, TEACHER_INPUTS), records, batch_size, data.teacher_collate(pad_id),
                          progress, sharded)


def export_static(model, input_spec, directory):
    """Save the eval-mode model as a static graph in `directory`; returns the path prefix of its files."""
    model.eval()
    prefix = os.path.join(directory, "model")
    # jit.save converts a copy of forward with to_static, so `model` itself stays a plain dygraph model.
    paddle.jit.save(model, prefix, input_spec=input_spec)
    return prefix


def teacher_input_spec(input_names):
    return [InputSpec([None, None], "int64", name) for name in input_names]


# oneDNN caches primitives per input shape; batches come sorted by length, so each shape is used in one run of
# batches and a small cache suffices while memory stays bounded.
ONEDNN_CACHE = 8


def static_program(model_prefix):
    """The program file of a static export: <prefix>.json (Paddle 3, PIR) or <prefix>.pdmodel (Paddle 2)."""
    program = next((model_prefix + ext for ext in (".json", ".pdmodel") if os.path.exists(model_prefix + ext)), None)
    if program is None:
        raise UserError(f"{model_prefix}.json: missing (nor is there a {os.path.basename(model_prefix)}.pdmodel); "
                        "export the model again")
    return program


def make_predictor(model_prefix, onednn=True, threads=None, onednn_cache=ONEDNN_CACHE):
    """A paddle.inference predictor for an exported model: fp16 on GPU, else on `threads` CPU threads (default: all
    cores), with oneDNN or without (Paddle 3 turns oneDNN on by itself unless told not to); oneDNN keeps the
    primitives of `onednn_cache` input shapes (0: of every shape)."""
    program = static_program(model_prefix)
    config = paddle.inference.Config(program, model_prefix + ".pdiparams")
    config.switch_ir_optim(True)
    config.disable_glog_info()
    device = paddle.get_device()
    if device.startswith("gpu") and paddle.device.is_compiled_with_cuda():
        config.enable_use_gpu(256, int(device.partition(":")[2] or 0), paddle.inference.PrecisionType.Half)
    else:
        config.set_cpu_math_library_num_threads(threads or CPU_CORES)
        if onednn:
            config.enable_mkldnn()
            if onednn_cache:
                config.set_mkldnn_cache_capacity(onednn_cache)
        else:
            config.disable_mkldnn()
    try:
        return paddle.inference.create_predictor(config)
    except (ValueError, RuntimeError, OSError) as error:  # Paddle's errors for a damaged program or weights file
        reason = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise UserError(f"{program} with {model_prefix}.pdiparams: Paddle cannot load them ({reason.strip()}); "
                        "export the model again") from None


def verified_predictor(model, model_prefix, sample):
    """(run, onednn): a runner of the exported model whose logits on `sample` (a collated batch, padded) match the
    dygraph model's, with oneDNN when it agrees and without it otherwise; None when neither agrees. On Paddle 3.3.1
    oneDNN gives wrong logits for MPNet (up to 2.4 apart, at batch 1 too), so no predictor is trusted unchecked."""
    expected = dygraph_runner(model, list(sample))(sample)
    on_gpu = paddle.get_device().startswith("gpu")
    tolerance = 5e-2 if on_gpu else 1e-3  # fp16 on GPU
    for onednn in (False,) if on_gpu else (True, False):
        run = predictor_runner(make_predictor(model_prefix, onednn))
        difference = float(np.abs(run(sample) - expected).max())
        if difference <= tolerance:
            return run, onednn
        logger.warning("paddle.inference%s differs from the dygraph model by up to %.3g on a check batch; not used",
                       " with oneDNN" if onednn else "", difference)
    return None


def predictor_runner(predictor):
    """run(batch) -> the predictor's first output, feeding each of its inputs the batch's field of that name."""
    inputs = {name: predictor.get_input_handle(name) for name in predictor.get_input_names()}
    output = predictor.get_output_handle(predictor.get_output_names()[0])

    def run(batch):
        for name, handle in inputs.items():
            handle.reshape(batch[name].shape)
            handle.copy_from_cpu(batch[name])
        predictor.run()
        return output.copy_to_cpu().astype("float32")

    return run


CHECK_BATCH = 16  # records in the padded batch a predictor is checked on before it labels


def label_with_teacher(model, records, batch_size, pad_id, backend="auto"):
    """Teacher logits for teacher records in their order, with the chosen backend (see --teacher_backend): the
    static export run by ONNX Runtime or paddle.inference once its logits on the first records match the dygraph
    model's; the dygraph model when no runtime can be built or none agrees. A run of several processes shares the
    batches out among them (every rank gets all the logits)."""
    collate = data.teacher_collate(pad_id)
    if backend != "dygraph" and records:
        try:
            with tempfile.TemporaryDirectory() as directory:
                run = _checked_teacher_runner(model, collate(records[:CHECK_BATCH]), list(records[0]), backend,
                                              directory)
                if run is not None:
                    return batched_logits(run, records, batch_size, collate, "teacher labelling", sharded=True)
        finally:
            use_all_cores()  # the predictors changed the math library's threads
    return teacher_logits(model, records, batch_size, pad_id, "teacher labelling", sharded=True)


def _checked_teacher_runner(model, sample, input_names, backend, directory):
    """run(batch) of the teacher exported to `directory`, on ONNX Runtime (backend onnxruntime, or auto where it is
    installed; several times paddle.inference's speed for MPNet, which cannot use oneDNN) or else paddle.inference,
    whichever first matches the dygraph model on the collated sample; None, after a warning, when none does."""
    try:
        prefix = export_static(model, teacher_input_spec(input_names), directory)
    except Exception as error:  # any export failure: the dygraph model still works
        logger.warning("the teacher does not export (%s: %s); labelling with the dygraph model",
                       type(error).__name__, error)
        return None
    if backend == "onnxruntime" or backend == "auto" and onnx_available():
        try:
            run = verified_onnx_runner(model, export_onnx(prefix, os.path.join(directory, "model.onnx")), [sample],
                                       CPU_CORES)
        except Exception as error:  # a family paddle2onnx cannot convert
            logger.warning("no ONNX Runtime teacher (%s: %s); trying paddle.inference", type(error).__name__, error)
        else:
            if run is not None:
                return run
    try:
        verified = verified_predictor(model, prefix, sample)
    except Exception as error:  # any predictor failure: the dygraph model still works
        logger.warning("paddle.inference unavailable (%s: %s); labelling with the dygraph model",
                       type(error).__name__, error)
        return None
    if verified is None:
        logger.warning("paddle.inference disagrees with the dygraph model; labelling with the dygraph model")
        return None
    return verified[0]


# ---------------------------------------------------------------------------------------------------------------
# ONNX Runtime, the student's fastest runtime on CPU

ONNX_OPSET = 13
ONNX_TOLERANCE = 1e-4  # largest logit difference from the dygraph student an ONNX export may show
# paddle2onnx aborts its whole process on an operator it cannot convert, so it runs in a child process.
_PADDLE2ONNX = ("import sys, paddle2onnx\n"
                "paddle2onnx.export(sys.argv[1], sys.argv[2], save_file=sys.argv[3], opset_version=int(sys.argv[4]),"
                " optimize_tool='None')")


def onnx_available():
    """Whether this environment can write and run ONNX students (paddle2onnx, onnx and onnxruntime import)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import paddle2onnx  # noqa: F401
    except ImportError:
        return False
    return True


def export_onnx(model_prefix, path):
    """Convert a static student export (export_static) to an ONNX model at path, with each LSTM fed the lengths of
    the sentences it reads and constants folded (paddle2onnx writes the weights as Constant nodes and assembles the
    LSTM's weights from slices: folded, they become initializers, which int8 quantisation needs)."""
    import onnx
    import onnxruntime

    program = static_program(model_prefix)
    converted_path = path + ".converted"
    try:
        result = subprocess.run([sys.executable, "-c", _PADDLE2ONNX, program, model_prefix + ".pdiparams",
                                 converted_path, str(ONNX_OPSET)], capture_output=True, text=True)
        if result.returncode != 0 or not os.path.isfile(converted_path):
            errors = [line for line in result.stderr.splitlines() if "ERROR" in line or "Error" in line]
            raise UserError(f"paddle2onnx could not convert {program}: "
                            f"{(errors or ['exit code %d' % result.returncode])[0]}")
        converted = onnx.load(converted_path)
        _feed_lstm_lengths(converted.graph)
        onnx.checker.check_model(converted)
        onnx.save(converted, converted_path)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC  # portable ops only
        options.optimized_model_filepath = path
        options.log_severity_level = 3
        onnxruntime.InferenceSession(converted_path, options, providers=["CPUExecutionProvider"])
    finally:
        if os.path.exists(converted_path):
            os.remove(converted_path)
    return path


def _feed_lstm_lengths(graph):
    """paddle2onnx leaves the `sequence_lens` input of its LSTMs empty, so in a padded batch an LSTM runs over the
    padding of every shorter sentence (its backward direction even starts there): predictions flip. Feed each
    LSTM the lengths of the sentences it reads (the `lengths` input beside its `ids`), as int32."""
    from onnx import TensorProto, helper

    producers = {output: node for node in graph.node for output in node.output}
    graph_inputs = {value.name for value in graph.input}

    def graph_inputs_under(name):
        found, seen, stack = set(), set(), [name]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            if current in graph_inputs:
                found.add(current)
            elif current in producers:
                stack.extend(i for i in producers[current].input if i)
        return found

    nodes = []
    for node in graph.node:
        if node.op_type == "LSTM":
            ids = sorted(name for name in graph_inputs_under(node.input[0]) if name in ("ids", "ids2"))
            if len(ids) != 1:
                raise UserError(f"ONNX export: cannot tell which sentence LSTM {node.name} reads ({ids})")
            lengths = "lengths" + ids[0][len("ids"):]
            nodes.append(helper.make_node("Cast", [lengths], [f"{node.name}.sequence_lens"], to=TensorProto.INT32))
            inputs = list(node.input) + [""] * (5 - len(node.input))
            inputs[4] = f"{node.name}.sequence_lens"
            del node.input[:]
            node.input.extend(inputs)
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


def quantize_onnx(path, int8_path):
    """Dynamic int8 quantisation of an ONNX model (weights int8, activations quantised per batch at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(path, int8_path, weight_type=QuantType.QInt8)
    return int8_path


def onnx_runner(path, threads=1):
    """run(batch) -> logits of an ONNX model under ONNX Runtime on `threads` intra-op threads, fed the batch's
    fields named as the model's inputs."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for a damaged or foreign file
        raise UserError(f"{path}: ONNX Runtime cannot load it ({str(error).splitlines()[0]}); export the model "
                        "again") from None
    names = [value.name for value in session.get_inputs()]

    def run(batch):
        return session.run(None, {name: batch[name] for name in names})[0].astype("float32")

    return run


def verified_onnx_runner(model, path, samples, threads=1):
    """onnx_runner(path) once its logits match the dygraph model's on each collated batch of samples, else None
    (after a warning naming the difference)."""
    run = onnx_runner(path, threads)
    for sample in samples:
        expected = dygraph_runner(model, list(sample))(sample)
        difference = float(np.abs(run(sample) - expected).max())
        if difference > ONNX_TOLERANCE:
            logger.warning("the ONNX model differs from the dygraph model by up to %.3g on a batch of %d", difference,
                           len(expected))
            return None
    return run
