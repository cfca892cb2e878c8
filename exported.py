"""A model written by export_model.py, loaded to turn texts into class probabilities: on ONNX Runtime (the fastest
runtime on CPU for the student and, at batch 1, for the teachers measured; int8 when exported so) or
paddle.inference. predict.py and serve.py both serve through ExportedModel, so the two give the same probabilities
for the same texts. Imports no training code."""
import importlib.util
import os

import numpy as np

import data
import model as models
import runtimes
from files import file_sha256, read_json
from utils import CPU_CORES, UserError, softmax

# What is read from export_config.json (a student's also has use_pieces).
EXPORT_FIELDS = ("kind", "model", "labels", "is_pair", "language", "max_seq_length", "pad_id")


class ExportedModel:
    """An export_model.py directory: turns lists of texts into class probabilities. runtime: 'auto', 'onnxruntime'
    or 'paddle' (choose_runtime); threads: the runtime's CPU threads, by default 1 for a student on ONNX Runtime
    (its batch-1 work is too small to share out) and otherwise `cores` (default: every core this process may use);
    label_file: a label.txt the model's labels must equal, in order."""

    def __init__(self, directory, runtime="auto", int8=False, threads=None, cores=None, label_file=None):
        config_path = os.path.join(directory, models.EXPORT_CONFIG)
        if not os.path.isfile(config_path):
            raise UserError(f"--model_dir {directory}: no {models.EXPORT_CONFIG} (write the directory with "
                            f"export_model.py)")
        self.config = config = read_json(config_path, EXPORT_FIELDS)
        if config["kind"] not in ("student", "teacher") or config["kind"] == "student" and "use_pieces" not in config:
            raise UserError(f"{config_path}: not an export_config.json of export_model.py (kind {config['kind']!r})")
        if label_file and list(data.read_labels(label_file, "--label_file")) != config["labels"]:
            raise UserError(f"--label_file {label_file}: the model's labels are {config['labels']}, in this order; "
                            "the file lists others or another order (retrain on the folder's current label.txt)")
        prefix = os.path.join(directory, config["model"])
        if not os.path.isfile(prefix + ".pdiparams"):
            raise UserError(f"--model_dir {directory}: missing {config['model']}.pdiparams")
        if config["kind"] == "student":
            vocab_file = os.path.join(directory, "vocab.txt")
            vocab = data.StudentVocab(data.load_vocab_file(vocab_file, "--model_dir"), config["use_pieces"])
            check_vocabulary_size(len(vocab), config, directory)
            digest = file_sha256(vocab_file)
            if config.get("vocab_sha256", digest) != digest:  # exports made before the hash was recorded
                raise UserError(f"--model_dir {directory}: vocab.txt is not the vocabulary the model was exported "
                                "with (same size, other tokens)")
            analyzer = data.make_analyzer(config["language"], vocab_file if config["use_pieces"] else None,
                                          "--model_dir")
            self._encode = lambda texts: data.student_record(analyzer.sentences(texts), vocab,
                                                             config["max_seq_length"])
            self._collate = data.student_collate(config["pad_id"])
        else:
            tokenizer = data.load_tokenizer(directory, "--model_dir")
            check_vocabulary_size(len(tokenizer), config, directory)
            encoder = data.TeacherEncoder(tokenizer, config["max_seq_length"], config["language"])
            self._encode = encoder.texts
            self._collate = data.teacher_collate(config["pad_id"])
        self.runtime = choose_runtime(config, runtime, int8, directory)
        self.int8 = int8
        cores = cores or CPU_CORES
        if self.runtime == "onnxruntime":
            # One thread for a student, whose batch-1 work is too small to share out; a teacher's is not.
            self.threads = threads or (1 if config["kind"] == "student" else cores)
            self._run = runtimes.onnx_runner(os.path.join(directory, config["onnx_int8" if int8 else "onnx"]),
                                             self.threads)
        else:
            self.threads = threads or cores
            self._run = runtimes.predictor_runner(runtimes.make_predictor(prefix, config.get("onednn", True),
                                                                          self.threads))

    def probabilities(self, examples, batch_size):
        """Class probabilities of examples (tuples of one or two texts), batched by length, in the input order."""
        return probabilities_of(examples, self._encode, self._run, self._collate, batch_size,
                                len(self.config["labels"]))

    def prediction(self, probabilities):
        """{"label": the most probable label, "probs": {label: probability}} of one example's probabilities (a row
        of probabilities()): what predict.py --json prints per line and serve.py answers per text."""
        labels = self.config["labels"]
        return {"label": labels[int(probabilities.argmax())], "probs": dict(zip(labels, probabilities.tolist()))}


def probabilities_of(examples, encode, run, collate, batch_size, num_labels):
    """Class probabilities of examples (tuples of texts), each made a record by encode, batched by length (collate),
    run (run(batch) -> logits), in the input order: how predict.py and serve.py serve, and the benchmark measures
    them end to end."""
    records = [encode(texts) for texts in examples]
    if not records:
        return np.zeros((0, num_labels))
    return softmax(runtimes.batched_logits(run, records, batch_size, collate))


def choose_runtime(config, runtime, int8, directory):
    """'onnxruntime' or 'paddle' for --runtime (auto: ONNX Runtime when the export has an ONNX model and
    onnxruntime imports), refusing a choice the export or the installation cannot serve."""
    has_onnx = bool(config.get("onnx")) and importlib.util.find_spec("onnxruntime") is not None
    if int8 and runtime == "paddle":
        raise UserError("--int8: the int8 model runs on ONNX Runtime, not --runtime paddle")
    if int8 and not config.get("onnx_int8"):
        raise UserError(f"--int8: --model_dir {directory} has no int8 model (export it with export_model.py --int8)")
    if (runtime == "onnxruntime" or int8) and not has_onnx:
        raise UserError(f"--runtime onnxruntime: --model_dir {directory} has no ONNX model (models exported with "
                        "paddle2onnx installed have one) or onnxruntime does not import")
    return "onnxruntime" if runtime == "onnxruntime" or int8 or runtime == "auto" and has_onnx else "paddle"


def check_vocabulary_size(size, config, directory):
    """Refuse a vocabulary other than the one exported with the model (its ids would be read out of range, or
    mean other words)."""
    exported = config.get("vocab_size", size)  # exports made before the size was recorded
    if size != exported:
        raise UserError(f"--model_dir {directory}: its vocabulary has {size} entries but the model was exported with "
                        f"{exported}")
