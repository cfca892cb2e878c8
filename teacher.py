"""Fine-tune the BERT teacher on a task; the best dev checkpoint becomes <output_dir>/best for bert_distill.py.

    python teacher.py --task_name sst-2 --model_name_or_path bert-base-uncased --output_dir teachers/sst-2
    # offline, from a local HuggingFace directory (converted on the fly, no torch needed):
    python teacher.py --task_name sst-2 --model_name_or_path /path/to/all-MiniLM-L6-v2 \
        --train_file ../shared/data/SST-2/train.tsv --dev_file ../shared/data/SST-2/dev.tsv \
        --max_seq_length 64 --max_epoch 1 --output_dir teachers/sst-2
"""
import logging
import os
import tempfile

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle.static import InputSpec
from paddlenlp.data import Pad, Stack, Tuple
from paddlenlp.transformers import BertForSequenceClassification, LinearDecayWithWarmup
from tqdm import tqdm

import data
from args import parse_args
from utils import CPU_CORES, UserError, classification_metrics, fit, prepare_output_dir, read_json, run_main, \
    set_device, set_seed, total_steps, write_json

TORCH_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
TASK_FILE = "task.json"  # written beside a fine-tuned teacher: its task, labels and max_seq_length


def teacher_task(teacher_dir):
    """What a teacher directory records of its fine-tuning (empty for teachers not written by this script)."""
    path = os.path.join(teacher_dir, TASK_FILE)
    return read_json(path) if os.path.isfile(path) else {}


def teacher_weights_path(teacher_dir):
    """The weights of a teacher written by this script, or an error naming --teacher_dir."""
    path = os.path.join(teacher_dir, "model_state.pdparams")
    if not os.path.isfile(path):
        raise UserError(f"--teacher_dir {teacher_dir}: no model_state.pdparams (train one with teacher.py)")
    return path


logger = logging.getLogger("distill")


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


def teacher_batchify(pad_id, with_labels=False):
    """Collate (input_ids, token_type_ids[, label]) records: padded ids and segments[, stacked labels]."""
    fields = [Pad(axis=0, pad_val=pad_id, dtype="int64"), Pad(axis=0, pad_val=0, dtype="int64")]
    return Tuple(*fields, *([Stack(dtype="int64")] if with_labels else []))


def batched_logits(run, encoded, batch_size, pad_id, progress=None):
    """run(input_ids, token_type_ids) -> logits, over (input_ids, token_type_ids) pairs batched by length
    (no padding to max length), returned in the input order; with a progress bar titled `progress` if given."""
    order = np.argsort([len(ids) for ids, _ in encoded], kind="stable")
    batchify = teacher_batchify(pad_id)
    parts = []
    with tqdm(total=len(order), desc=progress, unit="example", mininterval=1.0, disable=progress is None) as bar:
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            parts.append(run(*batchify([encoded[i] for i in batch])))
            bar.update(len(batch))
    if not parts:
        return np.zeros((0, 0), dtype="float32")
    sorted_logits = np.concatenate(parts)
    logits = np.empty_like(sorted_logits)
    logits[order] = sorted_logits
    return logits


@paddle.no_grad()
def teacher_logits(model, encoded, batch_size, pad_id, progress=None):
    """Logits of the dygraph model, batched by length, in the input order."""
    model.eval()
    return batched_logits(lambda ids, segments: model(paddle.to_tensor(ids),
                                                      token_type_ids=paddle.to_tensor(segments)).numpy(),
                          encoded, batch_size, pad_id, progress)


def export_static(model, directory):
    """Save the eval-mode model as a static graph in `directory`; returns the path prefix of its files."""
    model.eval()
    prefix = os.path.join(directory, "model")
    # jit.save converts a copy of forward with to_static, so `model` itself stays a plain dygraph model.
    paddle.jit.save(model, prefix, input_spec=[InputSpec([None, None], "int64", "input_ids"),
                                               InputSpec([None, None], "int64", "token_type_ids")])
    return prefix


def make_predictor(model_prefix, onednn=True):
    """A paddle.inference predictor for an exported model: fp16 on GPU, else all CPU cores (with oneDNN)."""
    # Paddle 3 (PIR) saves <prefix>.json, Paddle 2 <prefix>.pdmodel.
    program = next(model_prefix + ext for ext in (".json", ".pdmodel") if os.path.exists(model_prefix + ext))
    config = paddle.inference.Config(program, model_prefix + ".pdiparams")
    config.switch_ir_optim(True)
    config.disable_glog_info()
    device = paddle.get_device()
    if device.startswith("gpu") and paddle.device.is_compiled_with_cuda():
        config.enable_use_gpu(256, int(device.partition(":")[2] or 0), paddle.inference.PrecisionType.Half)
    else:
        config.set_cpu_math_library_num_threads(CPU_CORES)
        if onednn:
            config.enable_mkldnn()
            # oneDNN caches primitives per input shape; batches come sorted by length, so each shape is
            # used in one run of batches and a small cache suffices while memory stays bounded.
            config.set_mkldnn_cache_capacity(8)
    return paddle.inference.create_predictor(config)


def predictor_runner(predictor, input_names=None):
    """run(*arrays) -> the predictor's first output, feeding the arrays to its inputs (all, or those named) in order."""
    inputs = [predictor.get_input_handle(name) for name in input_names or predictor.get_input_names()]
    output = predictor.get_output_handle(predictor.get_output_names()[0])

    def run(*arrays):
        for handle, array in zip(inputs, arrays):
            handle.reshape(array.shape)
            handle.copy_from_cpu(array)
        predictor.run()
        return output.copy_to_cpu().astype("float32")

    return run


def predictor_logits(predictor, encoded, batch_size, pad_id, progress=None):
    """Logits of a paddle.inference predictor, batched by length, in the input order."""
    return batched_logits(predictor_runner(predictor), encoded, batch_size, pad_id, progress)


def label_with_teacher(model, encoded, batch_size, pad_id, backend="inference"):
    """Teacher logits for (input_ids, token_type_ids) pairs in the input order, with the chosen backend
    (see --teacher_backend); falls back to the dygraph model when no inference predictor can be built."""
    if backend != "dygraph":
        with tempfile.TemporaryDirectory() as directory:
            try:
                predictor = make_predictor(export_static(model, directory))
            except Exception as error:  # any export or predictor failure: the dygraph model still works
                logger.warning("teacher backend %s unavailable (%s: %s); labelling with the dygraph model",
                               backend, type(error).__name__, error)
            else:
                return predictor_logits(predictor, encoded, batch_size, pad_id, "teacher labelling")
    return teacher_logits(model, encoded, batch_size, pad_id, "teacher labelling")


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
    loader = data.make_loader(train_records, [len(r[0]) for r in train_records],
                              teacher_batchify(tokenizer.pad_token_id, with_labels=True), args.batch_size, True,
                              args.seed)
    lr_scheduler = LinearDecayWithWarmup(args.lr, total_steps(args, loader), args.warmup_proportion)
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
        write_json(os.path.join(directory, TASK_FILE), {"task_name": args.task_name, "labels": list(task.labels),
                                                        "max_seq_length": args.max_seq_length})

    prepare_output_dir(args.output_dir)
    return fit(args, model, optimizer, loader, loss_fn, evaluate, save, task, lr_scheduler)


if __name__ == "__main__":
    run_main(main)
