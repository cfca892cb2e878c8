"""Fine-tune the BERT teacher on a task; the best dev checkpoint becomes <output_dir>/best for bert_distill.py.

    python teacher.py --task_name sst-2 --model_name_or_path bert-base-uncased --output_dir teachers/sst-2
    # offline, from a local HuggingFace directory (converted on the fly, no torch needed):
    python teacher.py --task_name sst-2 --model_name_or_path /path/to/all-MiniLM-L6-v2 \
        --train_file ../shared/data/SST-2/train.tsv --dev_file ../shared/data/SST-2/dev.tsv \
        --max_seq_length 64 --max_epoch 1 --output_dir teachers/sst-2
"""
import os

import numpy as np
import paddle
import paddle.nn.functional as F
from paddlenlp.data import Pad, Stack, Tuple
from paddlenlp.transformers import BertForSequenceClassification, LinearDecayWithWarmup

import data
from args import parse_args
from utils import UserError, classification_metrics, fit, prepare_output_dir, run_main, set_device, set_seed

TORCH_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def load_bert(name_or_dir, num_labels=None, flag="--model_name_or_path"):
    """BertForSequenceClassification from a PaddleNLP name or a local directory (Paddle or HuggingFace weights)."""
    if os.path.isdir(name_or_dir):
        files = set(os.listdir(name_or_dir))
        if "model_state.pdparams" not in files and not files & set(TORCH_WEIGHTS):
            raise UserError(f"{flag} {name_or_dir}: no model weights (model_state.pdparams, "
                            f"model.safetensors or pytorch_model.bin)")
        if "config.json" not in files and "model_config.json" not in files:
            raise UserError(f"{flag} {name_or_dir}: no config.json")
        kwargs = {"convert_from_torch": bool(files & set(TORCH_WEIGHTS))}
    elif os.path.sep in name_or_dir or name_or_dir.startswith("."):
        raise UserError(f"{flag} {name_or_dir}: no such directory")
    else:
        kwargs = {}
    if num_labels is not None:
        kwargs["num_classes"] = num_labels
    try:
        model = BertForSequenceClassification.from_pretrained(name_or_dir, **kwargs)
    except (OSError, ValueError, RuntimeError) as error:
        raise UserError(f"{flag} {name_or_dir}: could not load a BERT model ({error})") from None
    model.config.use_cache = False  # HuggingFace configs may enable it; we want logits only
    return model


def teacher_batchify(pad_id):
    return Tuple(Pad(axis=0, pad_val=pad_id, dtype="int64"), Pad(axis=0, pad_val=0, dtype="int64"))


@paddle.no_grad()
def teacher_logits(model, encoded, batch_size, pad_id):
    """Logits for (input_ids, token_type_ids) pairs, batched by length (no padding to max length),
    returned in the input order."""
    model.eval()
    order = np.argsort([len(ids) for ids, _ in encoded], kind="stable")
    batchify = teacher_batchify(pad_id)
    parts = []
    for start in range(0, len(order), batch_size):
        ids, segments = batchify([encoded[i] for i in order[start:start + batch_size]])
        parts.append(model(paddle.to_tensor(ids), token_type_ids=paddle.to_tensor(segments)).numpy())
    logits = np.empty_like(np.concatenate(parts)) if parts else np.zeros((0, 0), dtype="float32")
    logits[order] = np.concatenate(parts) if parts else logits
    return logits


def main(argv=None):
    args = parse_args("teacher", argv)
    task = data.TASKS[args.task_name]
    set_seed(args.seed)
    set_device(args.device)
    train, dev = data.load_examples(args, task)
    model = load_bert(args.model_name_or_path, len(task.labels))
    tokenizer = data.bert_tokenizer_from(args.model_name_or_path, "--model_name_or_path")
    analyzer = data.Analyzer(task.language, tokenizer)

    def encode(examples):
        return [data.teacher_ids([analyzer.sentence(t) for t in ex.texts], tokenizer, args.max_seq_length)
                + (ex.label,) for ex in examples]

    train_records, dev_records = encode(train), encode(dev)
    batchify = Tuple(Pad(axis=0, pad_val=tokenizer.pad_token_id, dtype="int64"), Pad(axis=0, pad_val=0, dtype="int64"),
                     Stack(dtype="int64"))
    loader = data.make_loader(train_records, [len(r[0]) for r in train_records], batchify, args.batch_size, True,
                              args.seed)
    total_steps = args.max_steps or len(loader) * args.max_epoch
    lr_scheduler = LinearDecayWithWarmup(args.lr, total_steps, args.warmup_proportion)
    no_decay = [p.name for n, p in model.named_parameters() if "bias" in n or "norm" in n]
    optimizer = paddle.optimizer.AdamW(learning_rate=lr_scheduler, parameters=model.parameters(),
                                       weight_decay=args.weight_decay, apply_decay_param_fun=lambda n: n not in no_decay,
                                       grad_clip=paddle.nn.ClipGradByGlobalNorm(1.0))

    def loss_fn(model, batch):
        ids, segments, labels = batch
        return F.cross_entropy(model(ids, token_type_ids=segments), labels)

    dev_inputs = [r[:2] for r in dev_records]
    dev_labels = np.array([r[2] for r in dev_records])

    def evaluate(model):
        return classification_metrics(teacher_logits(model, dev_inputs, args.batch_size * 4,
                                                     tokenizer.pad_token_id), dev_labels, task)

    def save(model, directory):
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)

    prepare_output_dir(args.output_dir)
    return fit(args, model, optimizer, loader, loss_fn, evaluate, save, task, lr_scheduler)


if __name__ == "__main__":
    run_main(main)
