"""Distil a fine-tuned teacher into the Bi-LSTM student over an augmented transfer set.

    python bert_distill.py --task_name sst-2 --teacher_dir teachers/sst-2/best \
        --train_file ../shared/data/SST-2/train.tsv --dev_file ../shared/data/SST-2/dev.tsv \
        --output_dir distilled_models/sst-2

The teacher labels the transfer set once; its logits are cached under --cache_dir, per teacher (its weights, config
and tokenizer files) and per exact teacher input, so later epochs, reruns and other runs never ask the teacher twice
about one input.
"""
import logging
import os

import augment
import checkpoint
import data
import distillation
import embeddings
import generator as generators
import model as models
import runtimes
import selector
import training
from args import AugmentConfig, GeneratorConfig, SelectorConfig, config_of, parse_args
from utils import WORLD, UserError, check_writable_dir, prepare_output_dir, random_state_kept, run_main

logger = logging.getLogger("distill")


def main(argv=None):
    args = parse_args("distill", argv, __doc__)
    task = data.load_task(args.task_name, args.dataset_dir, args.language)
    # Everything the run reads or writes is checked before any work.
    runtimes.check_labelling_precision(args.teacher_precision, args.teacher_backend)
    run = checkpoint.RunConfig.from_args(args, task)
    checkpoint.check_output_dir(run)
    check_writable_dir(args.cache_dir, "--cache_dir")
    if os.path.realpath(args.cache_dir) == os.path.realpath(args.output_dir):
        # The run holds its directory's lock, which the cache's own lock would then wait for forever; and the cache,
        # shared by runs, would be mixed into this run's output.
        raise UserError(f"--cache_dir {args.cache_dir}: is the --output_dir; give the cache a directory of its own")
    tokenizer = distillation.checked_teacher(args.teacher_dir, task, args.max_seq_length)
    if args.selector == "reinforce" and WORLD.size > 1:
        raise UserError("--selector reinforce: runs in one process (its rewards are one student's updates)")

    # Data, vocabulary and student; with the selector, labelled examples held out for its rewards.
    pools = {name: data.read_unlabeled(task, path, limit, flag, label_ignored=name == "source")
             for name, flag, path, limit in (("source", "--source_file", args.source_file, args.max_source_samples),
                                             ("unlabeled", "--unlabeled_file", args.unlabeled_file,
                                              args.max_unlabeled_samples)) if path}
    setup = training.student_setup(args, task, args.teacher_dir, pools)
    for name, examples in pools.items():
        logger.info("--%s_file: %d examples (%d left out: the text of a training example or of an earlier line)",
                    name, len(setup.pools[name]), len(examples) - len(setup.pools[name]))
    reward_fraction = args.reward_fraction if args.selector == "reinforce" else 0
    train, reward = distillation.reward_split(setup.train, reward_fraction, args.seed)
    originals = distillation.Originals(train, setup.pools.get("source", []), setup.pools.get("unlabeled", []))
    examples = originals.examples

    # The transfer set, and the teacher's logits of each of its examples (from the cache where they are there). L2A's
    # learned generator draws each epoch's copies anew, the teacher labelling the new ones.
    generator = learned_generator(args, setup, examples, tokenizer)
    encoder = data.TeacherEncoder(tokenizer, args.max_seq_length, task.language)

    def epoch_data(epoch):
        """(transfer set, logits, loader) of an epoch (the same every epoch without a learned
        generator)."""
        transfer = transfer_set(args, task, setup, originals, tokenizer, generator.draws(epoch) if generator else None)
        # Original examples (the first ones) are encoded from their texts, augmented copies from their words.
        teacher_records = [encoder.texts(examples[example.source].texts) if i < len(examples) else
                           encoder.sentences(example.sentences) for i, example in enumerate(transfer)]
        logits = distillation.cached_teacher_logits(
            args.teacher_dir, models.teacher_sha256(run.inputs["teacher_dir"]), teacher_records,
            tokenizer.pad_token_id, len(task.labels), args.cache_dir, args.teacher_batch_size, args.teacher_backend,
            args.teacher_precision)
        records = [{**data.student_record(example.sentences, setup.vocab, args.max_seq_length, example.label),
                    "logits": logits[i]} for i, example in enumerate(transfer)]
        distillation.log_examples(transfer, teacher_records, records, logits, tokenizer, setup.vocab)
        if generator:  # the selector finds each copy's trace by its index
            generator.traces = [example.trace for example in transfer]
            records = [{**record, "index": i} for i, record in enumerate(records)]
        if args.selector == "reinforce":  # it counts what it keeps of each origin
            records = [{**record, "origin": distillation.ORIGINS.index(originals.origin(i, example))}
                       for i, (record, example) in enumerate(zip(records, transfer))]
        return transfer, logits, data.make_loader(records, data.student_collate(setup.vocab.pad_id), args.batch_size,
                                                  shuffle=True, seed=args.seed)

    transfer, logits, loader = epoch_data(0)
    loaders = {0: loader}

    def loader_of_epoch(epoch):
        if epoch not in loaders:
            loaders.clear()  # one epoch's set in memory at a time
            with random_state_kept():  # training's draws the same whether the teacher is loaded or not
                loaders[epoch] = epoch_data(epoch)[2]
        return loaders[epoch]

    # Train the student against the teacher's logits.
    candidates = {originals.origin(i, example) for i, example in enumerate(transfer) if example.label == data.NO_LABEL}
    loss_fn, evaluate, chooser = objective(args, setup, reward, generator,
                                           [origin for origin in distillation.ORIGINS if origin in candidates])
    prepare_output_dir(args.output_dir)
    if args.save_transfer_set and WORLD.is_main:
        distillation.write_transfer_set(os.path.join(args.output_dir, "transfer_set.tsv"), transfer, logits, task)
    optimizer, lr_scheduler = training.make_optimizer(setup.model, args.optimizer, args.lr, args.lr_schedule,
                                                      run.total_steps(len(loader)), args.rho)
    results = training.fit(run, setup.model, optimizer, loader, loss_fn, evaluate, setup.save, lr_scheduler, chooser,
                           loader_of_epoch if generator else None)
    if chooser is not None:
        chooser.save(os.path.join(args.output_dir, "selector_policy.pdparams"))
    if generator is not None:
        generator.save(os.path.join(args.output_dir, "generator.pdparams"))
    return training.scored_on_test(run, results, task, setup.evaluate_saved)


def learned_generator(args, setup, examples, tokenizer):
    """With --generator learned: L2A's learned generator, over the replacement words of P_s (the nearest words in
    the teacher's word-piece embeddings); else None."""
    if args.generator != "learned":
        return None
    replacements = augment.embedding_neighbours(augment.analysed(examples, setup.analyzer), tokenizer,
                                                embeddings.word_piece_embeddings(args.teacher_dir, "--teacher_dir"))
    return generators.LearnedGenerator(replacements, config_of(GeneratorConfig, args),
                                       config_of(AugmentConfig, args, use_pieces=setup.vocab.use_pieces))


def transfer_set(args, task, setup, originals, tokenizer, learned=None):
    """The originals (distillation.Originals) followed by the augmented copies of the training examples and the
    source text (and of the unlabelled text with --augment_unlabeled), drawn by the paper's rules or L2A's generator
    (learned: augment.LearnedDraws, the learned generator's of an epoch)."""
    examples = originals.examples
    augmented = len(examples) if args.augment_unlabeled else len(originals.train) + len(originals.source)
    config = config_of(AugmentConfig, args, use_pieces=setup.vocab.use_pieces)
    tags = augment.pos_tags(examples, setup.analyzer, task.language, args.pos_model, args.cache_dir) \
        if args.augment == "rules" and args.p_pos > 0 and args.n_iter > 0 else None

    def embedding_neighbours(sentences):
        logger.info("--augment l2a: replacement words from the nearest words in the teacher's word-piece embeddings")
        return augment.embedding_neighbours(sentences, tokenizer,
                                            embeddings.word_piece_embeddings(args.teacher_dir, "--teacher_dir"))

    masked_lm_candidates = None
    if args.augment == "l2a" and args.mlm:
        logger.info("--augment l2a: replacement words from the masked language model %s", args.mlm)
        masked_lm_candidates = models.masked_lm_candidates(
            models.load_masked_lm(args.mlm), data.load_tokenizer(args.mlm, "--mlm"),
            "" if task.language == "zh" else " ", augment.REPLACEMENT_CANDIDATES, args.max_seq_length)
    transfer = augment.build_transfer_set(examples, setup.analyzer, config, tags, args.seed, args.num_workers,
                                          embedding_neighbours, masked_lm_candidates,
                                          augmented=augmented, learned=learned)
    logger.info("transfer set: %d examples (%d labelled, %d of the source domain, %d unlabelled, %d augmented)",
                len(transfer), len(originals.train), len(originals.source), len(originals.unlabeled),
                len(transfer) - len(examples))
    return transfer


def objective(args, setup, reward, generator, origins):
    """(loss_fn, evaluate, selector) of the run: the distillation loss on every example, or, with --selector
    reinforce, on those its policy keeps (and its keep rate and reward in each evaluation, and the keep rate of each
    of the origins (distillation.ORIGINS) it decides on when there are several; the learned generator, if any,
    learns from its decisions); selector None without."""
    def soft_loss(student_logits, teacher_logits, labels):
        return distillation.distill_loss(student_logits, teacher_logits, labels, args.alpha, args.loss,
                                         args.temperature)

    if args.selector != "reinforce":
        def loss_fn(model, batch):
            return soft_loss(model(**models.student_inputs(batch)), batch["logits"], batch["label"])
        return loss_fn, setup.evaluate, None
    chooser = selector.ReinforcedSelector(
        config_of(SelectorConfig, args), args.seed, setup.records(reward), [ex.label for ex in reward],
        args.batch_size, soft_loss, generator, origins)

    def evaluate(model):  # the keep rate and mean reward since the last evaluation go in eval_log.jsonl too
        return {**setup.evaluate(model), **chooser.report()}
    return chooser.loss, evaluate, chooser


if __name__ == "__main__":
    run_main(main)
