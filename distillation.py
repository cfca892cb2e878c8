"""Distillation's parts: the teacher-logits cache (one table per teacher, keyed by each exact teacher input), the
loss against the teacher's logits, the selector's reward split, and the transfer set written out for inspection."""
import fcntl
import hashlib
import logging
import os
import random
from typing import NamedTuple

import numpy as np
import paddle.nn.functional as F

import data
import model as models
import runtimes
from files import atomic_write, read_cache, write_cache
from utils import WORLD, UserError

logger = logging.getLogger("distill")


def checked_teacher(teacher_dir, task, max_seq_length):
    """The tokenizer of a fine-tuned teacher directory, once it holds weights, was fine-tuned on the task (where it
    records it: the task's name and its labels, in order) and takes max_seq_length tokens."""
    models.teacher_weights_path(teacher_dir)
    recorded = models.teacher_task(teacher_dir)
    if recorded.get("task_name", task.name) != task.name:
        raise UserError(f"--teacher_dir {teacher_dir} was fine-tuned on {recorded['task_name']}, not on {task.name}")
    if recorded.get("labels", list(task.labels)) != list(task.labels):
        raise UserError(f"--teacher_dir {teacher_dir} was fine-tuned with the labels {recorded['labels']}, in this "
                        f"order; the task's label.txt now has {list(task.labels)}")
    return models.checked_teacher_tokenizer(teacher_dir, models.teacher_config(teacher_dir), max_seq_length,
                                            "--teacher_dir")


def logits_problem(table, num_labels):
    """What is wrong with a table of teacher logits (see cached_teacher_logits) for a task with num_labels labels,
    or None."""
    if table.dtype.names != ("key", "logits") or table.dtype["key"] != LOGITS_KEY or table.ndim != 1:
        return f"dtype {table.dtype}, shape {table.shape}: expected one row per example of a {LOGITS_KEY} key and " \
            "its logits"
    logits = table["logits"]
    if logits.dtype != np.float32 or logits.shape[1:] != (num_labels,):
        return f"logits of dtype {logits.dtype} and shape {logits.shape[1:]}, expected float32 and ({num_labels},): " \
            "one per label"
    not_finite = np.count_nonzero(~np.isfinite(logits))
    if not_finite:
        return f"{not_finite} NaN or infinite values"
    return None


LOGITS_KEY = np.dtype("V16")  # the first 16 bytes of the sha256 of a teacher record (raw bytes: "S16" drops NULs)


def record_key(record):
    return hashlib.sha256(b"|".join(name.encode() + b"=" + record[name].tobytes() for name in sorted(record))) \
        .digest()[:LOGITS_KEY.itemsize]


def logits_cache_path(cache_dir, teacher_sha256, precision):
    """The cache table of a teacher, named by its identity (models.teacher_sha256: its weights, config and tokenizer
    files, so that a teacher whose config changed, hidden_act say, is asked again), labelling at a precision (fp32
    runtimes agree to 1e-4 and share a table; bf16 logits differ, so they have their own)."""
    return os.path.join(cache_dir, f"logits-{teacher_sha256[:20]}{'' if precision == 'fp32' else '-' + precision}.npy")


def cached_teacher_logits(teacher_dir, teacher_sha256, records, pad_id, num_labels, cache_dir, batch_size, backend,
                          precision="fp32"):
    """Teacher logits (float32, one row per teacher record of the transfer set, one column per label). The cache
    holds one table per teacher and precision (logits_cache_path) of every record it labelled, keyed by the record's
    bytes: only records it has not seen yet go to the teacher (another seed or n_iter reuses the rest). New rows
    join the table every runtimes.LABEL_CHUNK records, so a run cut short keeps what it labelled; they are merged
    under a lock with the rows other runs sharing the cache added meanwhile."""
    path = logits_cache_path(cache_dir, teacher_sha256, precision)
    what = f"--teacher_dir {teacher_dir}: the teacher's logits"
    table = _read_table(path, num_labels)
    keys = [record_key(record) for record in records]
    known = set(_keys(table))
    first = {}  # each key not in the cache -> the first record with it
    for i, key in enumerate(keys):
        if key not in known:
            first.setdefault(key, i)
    if not first:
        logger.info("teacher logits from cache %s", path)
    else:
        logger.info("labelling %d transfer-set examples with the teacher (%s, %s); %d found in the cache %s",
                    len(first), backend, precision, len(keys) - sum(1 for key in keys if key in first), path)
        teacher = models.load_teacher(teacher_dir, flag="--teacher_dir")
        new_keys = list(first)

        def store(start, logits):
            nonlocal table
            table = _merged(path, table, new_keys[start:start + len(logits)], logits, num_labels, what)

        store(0, runtimes.label_with_teacher(teacher, [records[i] for i in first.values()], batch_size, pad_id,
                                             backend, precision, chunk_done=store))  # the rows not stored yet
    row_of = {key: row for row, key in enumerate(_keys(table))}
    return table["logits"][[row_of[key] for key in keys]]


def _table_dtype(num_labels):
    return np.dtype([("key", LOGITS_KEY), ("logits", np.float32, (num_labels,))])


def _keys(table):
    stored, width = table["key"].tobytes(), LOGITS_KEY.itemsize
    return [stored[row * width:(row + 1) * width] for row in range(len(table))]


def _read_table(path, num_labels):
    table = read_cache(path, _read_npy, lambda table: logits_problem(table, num_labels))
    return np.zeros(0, _table_dtype(num_labels)) if table is None else table


def _merged(path, table, new_keys, logits, num_labels, what):
    """table with the rows (new_keys, logits) it lacks added; rank 0 writes it back (whole) to path, merged under an
    exclusive lock with the rows that other runs sharing the cache wrote since this one read it. Bad logits are
    refused (UserError) and never cached."""
    fresh = np.zeros(len(new_keys), _table_dtype(num_labels))
    fresh["key"] = np.frombuffer(b"".join(new_keys), LOGITS_KEY)
    fresh["logits"] = logits
    wrong = logits_problem(fresh, num_labels)
    if wrong is not None:
        raise UserError(f"{what} are bad: {wrong}; not cached in {path}")
    if not WORLD.is_main:
        return _added(table, fresh)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    lock = os.open(directory, os.O_RDONLY)  # the cache directory itself: no lock file to leave behind
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released on close, or by the kernel when the process dies
        table = _added(_added(_read_table(path, num_labels), table), fresh)
        write_cache(path, table, np.save, lambda table: logits_problem(table, num_labels), what)
    finally:
        os.close(lock)
    return table


def _added(table, rows):
    """table followed by the rows of `rows` whose keys it lacks."""
    known = set(_keys(table))
    return np.concatenate([table, rows[[key not in known for key in _keys(rows)]]])


def _read_npy(path):
    """The array of a .npy file; no pickled objects, and anything that is not one fails (np.load would read a zip
    or a pickle too)."""
    with open(path, "rb") as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def log_examples(transfer, teacher_records, student_records, logits, tokenizer, vocab, count=3):
    """Three random transfer-set examples as each model sees them, with the teacher's logits: the cheapest check
    that augmentation and the teacher/student alignment are right."""
    for index in random.Random(0).sample(range(len(transfer)), min(count, len(transfer))):
        student_tokens = [vocab.vocab.to_tokens(student_records[index][name].tolist())
                          for name in ("ids", "ids2") if name in student_records[index]]
        logger.info("transfer example %d (from training example %d, label %d):\n  teacher sees: %s\n  student sees:"
                    " %s\n  teacher logits: %s", index, transfer[index].source, transfer[index].label,
                    " ".join(tokenizer.convert_ids_to_tokens(teacher_records[index]["input_ids"].tolist())),
                    " | ".join(" ".join(tokens) for tokens in student_tokens), np.round(logits[index], 4).tolist())


class Originals(NamedTuple):
    """The transfer set's original examples by kind, in the order they come in it: labelled training examples,
    text of a related domain (--source_file), unlabelled text (--unlabeled_file)."""
    train: list
    source: list
    unlabeled: list

    @property
    def examples(self):
        """All of them, in the transfer set's order."""
        return self.train + self.source + self.unlabeled

    def origin(self, index, example):
        """Where transfer-set example number `index` (a TransferExample) comes from: one of ORIGINS."""
        kind = "train" if example.source < len(self.train) else \
            "source" if example.source < len(self.train) + len(self.source) else "unlabeled"
        is_copy = index >= len(self.train) + len(self.source) + len(self.unlabeled)
        return kind + "_copy" if is_copy else kind


ORIGINS = ("train", "train_copy", "source", "source_copy", "unlabeled", "unlabeled_copy")


def reward_split(train, fraction, seed):
    """(training examples, reward examples): a fraction of the labelled examples, drawn from the seed, held out
    of training for the selector's rewards (the dev set stays an honest measure)."""
    if not fraction:
        return train, []
    count = max(1, round(fraction * len(train)))
    if count >= len(train):
        raise UserError(f"--reward_fraction {fraction}: leaves no training example of {len(train)}")
    held = set(np.random.default_rng((seed, 2)).choice(len(train), size=count, replace=False).tolist())
    return [ex for i, ex in enumerate(train) if i not in held], [ex for i, ex in enumerate(train) if i in held]


def write_transfer_set(path, transfer, logits, task):
    """One line per transfer-set example: its sentence(s), its label (-1 when augmented or unlabelled), the teacher's
    logits."""
    def write(f):
        columns = ["sentence1", "sentence2"] if task.is_pair else ["sentence"]
        f.write("\t".join(columns + ["label"] + [f"logit_{label}" for label in task.labels]) + "\n")
        for example, scores in zip(transfer, logits):
            texts = [data.sentence_text(s, task.language) for s in example.sentences]
            f.write("\t".join(texts + [str(example.label)] + [f"{x:.4f}" for x in scores]) + "\n")
    atomic_write(path, write)


def distill_loss(student_logits, teacher_logits, labels, alpha, loss, temperature):
    """alpha * CE(student, label) over labelled rows + (1 - alpha) * soft loss against the teacher's logits.

    Rows with label NO_LABEL (-1: augmented copies, unlabelled text) get no CE. The soft loss is MSE on logits (the
    paper), or T^2 * KL(teacher || student) on temperature-softened distributions.
    """
    if loss == "mse":
        soft = F.mse_loss(student_logits, teacher_logits)
    else:
        soft = F.kl_div(F.log_softmax(student_logits / temperature, axis=-1),
                        F.softmax(teacher_logits / temperature, axis=-1), reduction="batchmean") * temperature ** 2
    if alpha == 0:
        return soft
    labelled = labels >= 0
    if not bool(labelled.any()):
        return (1 - alpha) * soft
    hard = F.cross_entropy(student_logits[labelled], labels[labelled])
    return alpha * hard + (1 - alpha) * soft
