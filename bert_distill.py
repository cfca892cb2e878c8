"""Distil a fine-tuned BERT teacher into the Bi-LSTM student over an augmented transfer set.

    python bert_distill.py --task_name sst-2 --teacher_dir teachers/sst-2/best \
        --train_file ../shared/data/SST-2/train.tsv --dev_file ../shared/data/SST-2/dev.tsv \
        --output_dir distilled_models/sst-2

The teacher labels the transfer set once; its logits are cached under --cache_dir, keyed by the teacher's
weights and the exact teacher inputs, so later epochs and reruns never run the teacher again.
"""
import hashlib
import logging
import os

import numpy as np
import paddle
import paddle.nn.functional as F

import data
from args import parse_args
from small import make_optimizer, split_batch, student_setup
from teacher import label_with_teacher, load_bert, teacher_task, teacher_weights_path
from utils import UserError, fit, prepare_output_dir, run_main

logger = logging.getLogger("distill")


def distill_loss(student_logits, teacher_logits, labels, alpha, loss, temperature):
    """alpha * CE(student, label) over labelled rows + (1 - alpha) * soft loss against the teacher's logits.

    Rows with label -1 (augmented copies) get no CE. The soft loss is MSE on logits (the paper), or
    T^2 * KL(teacher || student) on temperature-softened distributions.
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


def cached_teacher_logits(teacher_dir, encoded, args):
    """Teacher logits for the encoded transfer set, from the cache when the same teacher saw the same inputs."""
    digest = hashlib.sha256()
    with open(teacher_weights_path(teacher_dir), "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    for ids, segments in encoded:
        digest.update(ids.tobytes() + b"|" + segments.tobytes() + b";")
    path = os.path.join(args.cache_dir, f"logits-{digest.hexdigest()[:20]}.npy")
    if os.path.exists(path):
        logger.info("teacher logits from cache %s", path)
        return np.load(path)
    teacher = load_bert(teacher_dir, flag="--teacher_dir")
    tokenizer = data.bert_tokenizer_from(teacher_dir, "--teacher_dir")
    logger.info("labelling %d transfer-set examples with the teacher (%s)", len(encoded), args.teacher_backend)
    logits = label_with_teacher(teacher, encoded, args.teacher_batch_size, tokenizer.pad_token_id,
                                args.teacher_backend)
    os.makedirs(args.cache_dir, exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        np.save(f, logits)
    os.replace(path + ".tmp", path)
    return logits


def main(argv=None):
    args = parse_args("distill", argv)
    task = data.TASKS[args.task_name]
    teacher_weights_path(args.teacher_dir)
    trained_on = teacher_task(args.teacher_dir).get("task_name", args.task_name)
    if trained_on != args.task_name:
        raise UserError(f"--teacher_dir {args.teacher_dir} was fine-tuned on {trained_on}, not --task_name "
                        f"{args.task_name}")
    train, analyzer, vocab, model, evaluate, save = student_setup(args, task, args.teacher_dir)

    config = data.AugmentConfig(
        n_iter=args.n_iter, p_mask=args.p_mask, p_pos=args.p_pos, p_ng=args.p_ng,
        ngram_range=(args.ngram_min, args.ngram_max),
        mask_pieces=vocab.use_pieces and not args.whole_word_mask,
        mask_token=data.MASK if args.mask_token == "mask" else data.UNK)
    tags = data.pos_tags(train, analyzer, task.language, args.pos_model, args.cache_dir) \
        if args.p_pos > 0 and args.n_iter > 0 else None
    transfer = data.build_transfer_set(train, analyzer, config, tags, args.seed, args.num_workers)
    logger.info("transfer set: %d examples (%d original, %d augmented)", len(transfer), len(train),
                len(transfer) - len(train))

    tokenizer = analyzer.bert_tokenizer
    encoded = [data.teacher_ids(sentences, tokenizer, args.max_seq_length) for _, sentences, _ in transfer]
    logits = cached_teacher_logits(args.teacher_dir, encoded, args)

    records = [data.student_record(sentences, vocab, args.max_seq_length, label) + (logits[i],)
               for i, (_, sentences, label) in enumerate(transfer)]
    loader = data.make_loader(records, data.record_lengths(records, task.is_pair),
                              data.student_batchify(task.is_pair, vocab.pad_id, extra=("int64", "float32")),
                              args.batch_size, True, args.seed)

    def loss_fn(model, batch):
        inputs, (labels, target) = split_batch(batch, task.is_pair)
        return distill_loss(model(*inputs), target, labels, args.alpha, args.loss, args.temperature)

    prepare_output_dir(args.output_dir)
    if args.save_transfer_set:
        write_transfer_set(os.path.join(args.output_dir, "transfer_set.tsv"), transfer, logits, task)
    optimizer, lr_scheduler = make_optimizer(args, model, loader)
    return fit(args, model, optimizer, loader, loss_fn, evaluate, save, task, lr_scheduler)


def write_transfer_set(path, transfer, logits, task):
    """One line per transfer-set example: its sentence(s), its label (-1 when augmented), the teacher's logits."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        columns = ["sentence1", "sentence2"] if task.is_pair else ["sentence"]
        f.write("\t".join(columns + ["label"] + [f"logit_{l}" for l in task.labels]) + "\n")
        for (_, sentences, label), scores in zip(transfer, logits):
            texts = [data.sentence_text(s, task.language) for s in sentences]
            f.write("\t".join(texts + [str(label)] + [f"{x:.4f}" for x in scores]) + "\n")
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    run_main(main)
