"""Fine-tune the teacher, any PaddleNLP sequence classifier, on a task; the best dev checkpoint becomes
<output_dir>/best for bert_distill.py.

    python teacher.py --task_name sst-2 --model_name_or_path bert-base-uncased --output_dir teachers/sst-2
    python teacher.py --task_name chnsenticorp --model_name_or_path ernie-3.0-medium-zh --output_dir teachers/zh
    # offline, from a local HuggingFace directory (converted on the fly, no torch needed):
    python teacher.py --task_name sst-2 --model_name_or_path /path/to/all-MiniLM-L6-v2 \
        --train_file ../shared/data/SST-2/train.tsv --dev_file ../shared/data/SST-2/dev.tsv \
        --max_seq_length 64 --max_epoch 1 --output_dir teachers/sst-2
"""
import os

import paddle
import paddle.nn.functional as F
from paddlenlp.transformers import LinearDecayWithWarmup

import checkpoint
import data
import model as models
import runtimes
import training
from args import parse_args
from files import write_json
from utils import classification_metrics, prepare_output_dir, run_main, set_device, set_seed


def main(argv=None):
    args = parse_args("teacher", argv, __doc__)
    task = data.load_task(args.task_name, args.dataset_dir, args.language)
    run = checkpoint.RunConfig.from_args(args, task)
    checkpoint.check_output_dir(run)
    set_seed(args.seed)
    set_device(args.device)
    train, dev = data.load_examples(task, args.train_file, args.dev_file, args.max_train_samples,
                                    args.max_dev_samples)
    model = models.load_teacher(args.model_name_or_path, len(task.labels), dropout_prob=args.dropout_prob,
                                fine_tune=True)
    tokenizer = models.checked_teacher_tokenizer(args.model_name_or_path, model.config.to_dict(), args.max_seq_length,
                                                 "--model_name_or_path")
    encoder = data.TeacherEncoder(tokenizer, args.max_seq_length, task.language)

    def encode(examples):
        return [{**encoder.texts(ex.texts), "label": ex.label} for ex in examples]

    train_records, dev_records = encode(train), encode(dev)
    loader = data.make_loader(train_records, data.teacher_collate(tokenizer.pad_token_id), args.batch_size,
                              shuffle=True, seed=args.seed)
    lr_scheduler = LinearDecayWithWarmup(args.lr, run.total_steps(len(loader)), args.warmup_proportion)
    no_decay = [p.name for n, p in model.named_parameters() if "bias" in n or "norm" in n]
    optimizer = paddle.optimizer.AdamW(learning_rate=lr_scheduler, parameters=model.parameters(),
                                       weight_decay=args.weight_decay,
                                       apply_decay_param_fun=lambda name: name not in no_decay,
                                       grad_clip=paddle.nn.ClipGradByGlobalNorm(1.0))

    def loss_fn(model, batch):
        return F.cross_entropy(model(**models.teacher_inputs(batch)), batch["label"])

    def evaluate(model, records=dev_records):
        logits = runtimes.teacher_logits(model, records, args.batch_size * 4, tokenizer.pad_token_id)
        return classification_metrics(logits, [r["label"] for r in records], task)

    def save(model, directory):
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        write_json(os.path.join(directory, models.TASK_FILE), {**task.record(),
                                                               "max_seq_length": args.max_seq_length})

    prepare_output_dir(args.output_dir)
    results = training.fit(run, model, optimizer, loader, loss_fn, evaluate, save, lr_scheduler)
    return training.scored_on_test(run, results, task, lambda best_dir, test: evaluate(
        models.load_teacher(best_dir, flag="--output_dir"), encode(test)))


if __name__ == "__main__":
    run_main(main)
