"""Task data: validated loading, word analysis shared by teacher and student, vocabularies, the teacher's encoding,
records and their collation by field name, and length-bucketed batching."""
import collections
import logging
import os
from dataclasses import dataclass, replace

import jieba
import numpy as np
import paddle
from paddlenlp.data import Pad, Stack, Vocab
from paddlenlp.datasets import MapDataset, load_dataset

import basic_words
from files import read_text
from tasks import TASKS, custom_task
from utils import WORLD, UserError

jieba.setLogLevel(logging.WARNING)
logger = logging.getLogger("distill")


PAD, UNK, MASK = "[PAD]", "[UNK]", "[MASK]"
NO_LABEL = -1  # the label of an example without a trustworthy one (augmented, or unlabelled): no CE


@dataclass
class Example:
    texts: tuple  # one or two strings
    label: int


def load_task(task_name=None, dataset_dir=None, language=None):
    """The task of --task_name (the table's), or of the folder --dataset_dir (task_from_dir)."""
    return TASKS[task_name] if task_name else task_from_dir(dataset_dir, language)


def task_from_dir(directory, language=None):
    """The Task of a folder in PaddleNLP's text-classification layout: label.txt (one label name per line),
    train.txt and dev.txt (text<TAB>label, or text_a<TAB>text_b<TAB>label for a pair task, no header), optional
    test.txt in the same layout. Single or pair from train.txt's first line; the language given, or detected from
    the training texts and logged. Everything is validated before it is returned (check_tsv)."""
    flag = "--dataset_dir"
    if not os.path.isdir(directory):
        raise UserError(f"{flag} {directory}: no such directory")
    labels = read_labels(os.path.join(directory, "label.txt"), flag)
    files = {split: os.path.join(directory, f"{split}.txt") for split in ("train", "dev", "test")}
    for split in ("train", "dev"):
        if not os.path.isfile(files[split]):
            raise UserError(f"{flag} {directory}: no {split}.txt (a folder holds label.txt, train.txt, dev.txt and "
                            "optionally test.txt)")
    if not os.path.isfile(files["test"]):
        del files["test"]
    first_line = read_text(files["train"], flag).split("\n", 1)[0]
    n_fields = len(first_line.strip().split("\t"))
    if n_fields not in (2, 3):
        raise UserError(f"{flag} {files['train']}:1: expected text<TAB>label or text_a<TAB>text_b<TAB>label, found "
                        f"{n_fields} tab-separated field(s)")
    name = os.path.basename(os.path.normpath(os.path.abspath(directory)))
    task = custom_task(name, language or "en", labels, n_fields == 3, files)
    rows = {split: check_tsv(path, flag, task, split) for split, path in files.items()}
    if language is None:
        texts = [text for row in rows["train"] for text in (row[i] for i in task.layout("train")[1])]
        language, share = detect_language(texts)
        logger.info("%s %s: language %s detected (%.0f%% of the letters of train.txt are CJK); --language sets it",
                    flag, directory, language, 100 * share)
        task = replace(task, language=language)
    seen = {row[task.layout("train")[2]] for row in rows["train"]}
    unseen_labels = [label for label in labels if label not in seen]
    if unseen_labels:
        logger.warning("%s %s: no training example has the label(s) %s", flag, directory, unseen_labels)
    return task


def read_labels(path, flag):
    """The label names of a label.txt, one per line, in order; refused, naming file and line, with a blank line, a
    TAB inside a name, a name given twice, or fewer than two names."""
    lines = read_text(path, flag).split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline ending the last line
    first_line = {}
    for number, line in enumerate(lines, start=1):
        label = line.strip()
        if not label or "\t" in label:
            raise UserError(f"{flag} {path}:{number}: expected one label name, found {line!r}")
        if label in first_line:
            raise UserError(f"{flag} {path}:{number}: label {label!r} repeats line {first_line[label]}")
        first_line[label] = number
    if len(first_line) < 2:
        raise UserError(f"{flag} {path}: expected at least two labels, one per line, found {len(first_line)}")
    return tuple(first_line)


CJK = ("\u4e00", "\u9fff")  # CJK Unified Ideographs


def detect_language(texts):
    """("zh" or "en", the share of CJK ideographs among the letters of texts): zh from a share of 30% up."""
    letters = cjk = 0
    for text in texts:
        for character in text:
            if character.isalpha():
                letters += 1
                cjk += CJK[0] <= character <= CJK[1]
    share = cjk / max(letters, 1)
    return ("zh" if share >= 0.3 else "en"), share


def load_examples(task, train_file=None, dev_file=None, max_train_samples=None, max_dev_samples=None):
    """Train and dev examples of the task, from local files when given (or the task's folder), else through
    PaddleNLP's download."""
    if bool(train_file) != bool(dev_file):
        raise UserError("give both --train_file and --dev_file, or neither (to download the dataset)")
    if train_file or task.files:
        flags = ("--train_file", "--dev_file") if train_file else ("--dataset_dir",) * 2
        paths = (train_file, dev_file) if train_file else (task.files["train"], task.files["dev"])
        return [read_split(task, split, path, flag, limit)
                for split, path, flag, limit in zip(("train", "dev"), paths, flags,
                                                    (max_train_samples, max_dev_samples))]
    try:
        splits = load_dataset(*task.dataset, splits=("train", "dev"), lazy=False)
    except Exception as error:  # any network or hub failure
        raise UserError(f"could not download {'/'.join(task.dataset)} ({type(error).__name__}); "
                        "pass local copies with --train_file and --dev_file") from None
    *text_fields, label_field = task.download_fields
    return [[Example(tuple(row[f] for f in text_fields), int(row[label_field])) for row in split][:limit]
            for split, limit in zip(splits, (max_train_samples, max_dev_samples))]


def read_split(task, split, path, flag, limit=None):
    """Examples of one split from a local file in the task's layout (for the built-in tasks, that of PaddleNLP's
    reader), validated first (check_tsv); the label is its index in task.labels."""
    _, text_indices, label_index = task.layout(split)
    return [Example(tuple(fields[i] for i in text_indices), task.labels.index(fields[label_index]))
            for fields in check_tsv(path, flag, task, split)][:limit]


def read_unlabeled(task, path, limit=None, flag="--unlabeled_file", label_ignored=False):
    """Examples without labels (label NO_LABEL) from a UTF-8 file of one example per line, no header (a pair's two
    texts separated by a TAB); blank lines are skipped. A line with another number of texts fails, naming file and
    line (a labelled TSV given here is refused, not read with its labels as text), unless label_ignored: then a
    last field more on a line, a label, is left out."""
    examples = []
    for number, line in enumerate(read_text(path, flag).split("\n"), start=1):
        if not line.strip():
            continue
        texts = tuple(line.strip().split("\t"))
        if label_ignored and len(texts) == len(task.text_columns) + 1:
            texts = texts[:-1]
        if len(texts) != len(task.text_columns):
            expected = "two texts separated by one TAB" if task.is_pair else "one text and no TAB"
            expected += ", then maybe a label" if label_ignored else " (no label)"
            raise UserError(f"{flag} {path}:{number}: expected {expected}, found {len(texts)} tab-separated fields")
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


def check_tsv(path, flag, task, split):
    """The fields of each example line of a local file of the task's split, once every line is one that PaddleNLP's
    reader would read as it is meant (for a custom task: its own layout); anything else fails with file and line.
    Lines are split where the reader splits them (\\n, \\r\\n and \\r; not at the other characters str.splitlines breaks
    at), and stripped; with task.header line 1 is the header the reader skips."""
    n_fields, _, label_index = task.layout(split)
    lines = read_text(path, flag).split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline ending the last line
    first = 2 if task.header else 1
    if len(lines) < first:
        raise UserError(f"{flag} {path}: expected " + ("a header line and " if task.header else "") +
                        "at least one example")
    rows = []
    for number, line in enumerate(lines, start=1):
        fields = line.strip().split("\t")
        is_example = len(fields) == n_fields and fields[label_index] in task.labels
        if number < first:
            if is_example:
                raise UserError(f"{flag} {path}:1: is an example, but line 1 is the header, which the reader "
                                "skips; add a header line")
            continue
        if len(fields) != n_fields:
            raise UserError(f"{flag} {path}:{number}: expected {n_fields} tab-separated fields, found {len(fields)}")
        if not is_example:
            raise UserError(f"{flag} {path}:{number}: label {fields[label_index]!r} is not one of "
                            f"{_shown(task.labels)}")
        rows.append(fields)
    return rows


def _shown(labels, most=20):
    return str(list(labels)) if len(labels) <= most else f"the {len(labels)} labels of label.txt"


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
        if text.isascii():
            return basic_words.ascii_basic_words(self.basic_tokenizer, text)
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
    """The Vocab of a vocabulary file, one token per line, a token's id its line number (from 0), once it holds the
    special tokens and no token twice (a repeated token keeps its last id: the ids would then run past the
    vocabulary's size)."""
    lines = read_text(path, flag).split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline ending the last line
    first_line = {}
    for number, token in enumerate(lines, start=1):
        if token in first_line:
            raise UserError(f"{flag} {path}:{number}: token {token!r} repeats line {first_line[token]}; a vocabulary "
                            "holds each token once")
        first_line[token] = number
    tokens = set(first_line)
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


def student_records(examples, analyzer, student_vocab, max_seq_length):
    """The student record of each Example: its texts analysed, its label."""
    return [student_record(analyzer.sentences(ex.texts), student_vocab, max_seq_length, ex.label) for ex in examples]


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


def sentence_text(sentence, language):
    """Readable text of an analysed sentence: pieces joined back into words."""
    pieces = [p for _, ps in sentence for p in ps]
    text = " ".join(pieces).replace(" ##", "")
    return text.replace(" ", "") if language == "zh" else text
