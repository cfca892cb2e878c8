"""Distil a fine-tuned teacher into the Bi-LSTM student over an augmented transfer set.

    python bert_distill.py --task_name sst-2 --teacher_dir teachers/sst-2/best \
        --train_file ../shared/data/SST-2/train.tsv --dev_file ../shared/data/SST-2/dev.tsv \
        --output_dir distilled_models/sst-2

The teacher labels the transfer set once; its logits are cached under --cache_dir, per teacher (its weights) and
per exact teacher input, so later epochs, reruns and other runs never ask the teacher twice about one input.
"""
import hashlib
import logging
import os
import random

import numpy as np

from tasks import TASKS
import data
import model as models
import selector
import training
from args import parse_args
from utils import WORLD, UserError, atomic_write, check_writable_dir, prepare_output_dir, read_cache, \
    run_main, write_cache

logger = logging.getLogger("distill")


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


def cached_teacher_logits(teacher_dir, weights_sha256, records, pad_id, num_labels, cache_dir, batch_size, backend):
    """Teacher logits (float32, one row per teacher record of the transfer set, one column per label). The cache
    holds one table per teacher (named by weights_sha256, the hash of its weights the run already took for its
    inputs) of every record it labelled, keyed by the record's bytes: only records it has not seen yet go to the
    teacher (another seed or n_iter reuses the rest), and the table is rewritten with them added."""
    path = os.path.join(cache_dir, f"logits-{weights_sha256[:20]}.npy")
    problem = lambda table: logits_problem(table, num_labels)  # noqa: E731
    table = read_cache(path, _read_npy, problem)
    table = np.zeros(0, [("key", LOGITS_KEY), ("logits", np.float32, (num_labels,))]) if table is None else table
    stored = table["key"].tobytes()
    width = LOGITS_KEY.itemsize
    row_of = {stored[row * width:(row + 1) * width]: row for row in range(len(table))}
    keys = [record_key(record) for record in records]
    first = {}  # each key not in the cache -> the first record with it
    for i, key in enumerate(keys):
        if key not in row_of:
            first.setdefault(key, i)
    if not first:
        logger.info("teacher logits from cache %s", path)
    else:
        logger.info("labelling %d transfer-set examples with the teacher (%s); %d found in the cache %s", len(first),
                    backend, sum(key in row_of for key in keys), path)
        teacher = models.load_teacher(teacher_dir, flag="--teacher_dir")
        fresh = np.zeros(len(first), table.dtype)
        fresh["key"] = np.frombuffer(b"".join(first), LOGITS_KEY)
        fresh["logits"] = models.label_with_teacher(teacher, [records[i] for i in first.values()], batch_size,
                                                    pad_id, backend)
        row_of.update((key, len(table) + i) for i, key in enumerate(first))
        table = np.concatenate([table, fresh])
        write_cache(path, table, np.save, problem, f"--teacher_dir {teacher_dir}: the teacher's logits")
    return table["logits"][[row_of[key] for key in keys]]


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


def main(argv=None):
    args = parse_args("distill", argv)
    task = TASKS[args.task_name]
    run = training.RunConfig.from_args(args, task.metric)
    training.check_output_dir(run)
    check_writable_dir(args.cache_dir, "--cache_dir")
    models.teacher_weights_path(args.teacher_dir)
    trained_on = models.teacher_task(args.teacher_dir).get("task_name", args.task_name)
    if trained_on != args.task_name:
        raise UserError(f"--teacher_dir {args.teacher_dir} was fine-tuned on {trained_on}, not --task_name "
                        f"{args.task_name}")
    models.check_teacher_length(models.teacher_config(args.teacher_dir), args.max_seq_length,
                                f"--teacher_dir {args.teacher_dir}")
    tokenizer = data.load_tokenizer(args.teacher_dir, "--teacher_dir")
    models.check_teacher_vocabulary(models.teacher_config(args.teacher_dir), tokenizer,
                                    f"--teacher_dir {args.teacher_dir}")
    if args.selector == "reinforce" and WORLD.size > 1:
        raise UserError("--selector reinforce: runs in one process (its rewards are one student's updates)")
    unlabeled = data.read_unlabeled(task, args.unlabeled_file, args.max_unlabeled_samples) \
        if args.unlabeled_file else []
    setup = training.student_setup(args, task, args.teacher_dir, unlabeled)
    if unlabeled:
        logger.info("--unlabeled_file %s: %d examples (%d left out: the text of a training example or of an "
                    "earlier line)", args.unlabeled_file, len(setup.unlabeled), len(unlabeled) - len(setup.unlabeled))
    train, reward = reward_split(setup.train, args.reward_fraction if args.selector == "reinforce" else 0, args.seed)
    examples = train + setup.unlabeled  # the originals of the transfer set, labelled ones first

    config = data.AugmentConfig(
        n_iter=args.n_iter, p_mask=args.p_mask, p_pos=args.p_pos, p_ng=args.p_ng,
        ngram_range=(args.ngram_min, args.ngram_max),
        mask_pieces=setup.vocab.use_pieces and not args.whole_word_mask,
        mask_token=data.MASK if args.mask_token == "mask" else data.UNK, generator=args.augment,
        edit_alpha=args.edit_alpha, replace_temperature=args.replace_temperature)
    tags = data.pos_tags(examples, setup.analyzer, task.language, args.pos_model, args.cache_dir) \
        if args.augment == "rules" and args.p_pos > 0 and args.n_iter > 0 else None

    def embedding_neighbours(sentences):
        logger.info("--augment l2a: replacement words from the nearest words in the teacher's word-piece embeddings")
        return data.embedding_neighbours(sentences, tokenizer,
                                         models.word_piece_embeddings(args.teacher_dir, "--teacher_dir"))

    masked_lm_candidates = None
    if args.augment == "l2a" and args.mlm:
        logger.info("--augment l2a: replacement words from the masked language model %s", args.mlm)
        masked_lm_candidates = models.masked_lm_candidates(
            models.load_masked_lm(args.mlm), data.load_tokenizer(args.mlm, "--mlm"),
            "" if task.language == "zh" else " ", data.REPLACEMENT_CANDIDATES, args.max_seq_length)
    transfer = data.build_transfer_set(examples, setup.analyzer, config, tags, args.seed, args.num_workers,
                                       embedding_neighbours, masked_lm_candidates,
                                       augmented=len(examples) if args.augment_unlabeled else len(train))
    logger.info("transfer set: %d examples (%d labelled, %d unlabelled, %d augmented)", len(transfer),
                len(train), len(setup.unlabeled), len(transfer) - len(examples))

    encoder = data.TeacherEncoder(tokenizer, args.max_seq_length, task.language)
    # Original examples (the first ones) are encoded from their texts, augmented copies from their words.
    teacher_records = [encoder.texts(examples[example.source].texts) if i < len(examples) else
                       encoder.sentences(example.sentences) for i, example in enumerate(transfer)]
    logits = cached_teacher_logits(args.teacher_dir, run.inputs["teacher_dir"], teacher_records,
                                   tokenizer.pad_token_id, len(task.labels), args.cache_dir, args.teacher_batch_size,
                                   args.teacher_backend)
    records = [{**data.student_record(example.sentences, setup.vocab, args.max_seq_length, example.label),
                "logits": logits[i]} for i, example in enumerate(transfer)]
    log_examples(transfer, teacher_records, records, logits, tokenizer, setup.vocab)
    loader = data.make_loader(records, data.student_collate(setup.vocab.pad_id), args.batch_size, shuffle=True,
                              seed=args.seed)

    def soft_loss(student_logits, teacher_logits, labels):
        return training.distill_loss(student_logits, teacher_logits, labels, args.alpha, args.loss, args.temperature)

    chooser = None
    if args.selector == "reinforce":
        chooser = selector.ReinforcedSelector(
            selector.SelectorConfig(args.episode_steps, args.selector_gamma, args.selector_lr, args.seed,
                                    args.selector_reward),
            [data.student_record(setup.analyzer.sentences(ex.texts), setup.vocab, args.max_seq_length, ex.label)
             for ex in reward], [ex.label for ex in reward], args.batch_size, soft_loss)
        loss_fn = chooser.loss

        def evaluate(model):  # the keep rate and mean reward since the last evaluation go in eval_log.jsonl too
            return {**setup.evaluate(model), **chooser.report()}
    else:
        evaluate = setup.evaluate

        def loss_fn(model, batch):
            return soft_loss(model(**models.student_inputs(batch)), batch["logits"], batch["label"])

    prepare_output_dir(args.output_dir)
    if args.save_transfer_set and WORLD.is_main:
        write_transfer_set(os.path.join(args.output_dir, "transfer_set.tsv"), transfer, logits, task)
    optimizer, lr_scheduler = training.make_optimizer(setup.model, args.optimizer, args.lr, args.lr_schedule,
                                                      run.total_steps(len(loader)), args.rho)
    results = training.fit(run, setup.model, optimizer, loader, loss_fn, evaluate, setup.save, lr_scheduler, chooser)
    if chooser is not None:
        chooser.save(os.path.join(args.output_dir, "selector_policy.pdparams"))
    return results


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


if __name__ == "__main__":
    run_main(main)
