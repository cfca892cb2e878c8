"""Label text with a model written by export_model.py through ONNX Runtime (the fastest runtime on CPU for the
student and, at batch 1, for the teachers measured): a student on one thread, a teacher on every core; with
--runtime paddle (or an export without an ONNX model) through paddle.inference on every core.

    python predict.py --model_dir exported/distill-sst-2 --input_file sentences.txt
    python predict.py --model_dir exported/distill-sst-2 --int8 --input_file sentences.txt  # export with --int8
    printf 'a great film\\nnot good at all\\n' | python predict.py --model_dir exported/distill-sst-2 --json
    # pair tasks (qqp): the two questions of a line separated by a TAB
    printf 'how do i learn python?\\twhat is the best way to learn python?\\n' | \\
        python predict.py --model_dir exported/distill-qqp

One output line per input line, in the input order: the label, then the probability of each label, tab-separated;
with --json a JSON object per line: {"line": n, "label": ..., "probs": {label: probability}}. Empty lines,
over-long lines (cut to max_seq_length tokens), unknown characters and invalid UTF-8 are labelled like any other
text. A malformed line (on a pair task, a line without exactly one TAB) is reported on standard error with its line
number and gets an empty output line (--json: {"line": n, "error": ...}); all other lines are still labelled, and
the exit code is then 1 (0 when every line was labelled, 2 for bad flags or a bad model directory).
"""
import importlib.util
import io
import itertools
import json
import os
import sys

import numpy as np

import data
import model as models
import runtimes
from args import parse_args
from files import file_sha256, read_json
from utils import CPU_CORES, UserError, run_main, softmax

# What predict.py reads from export_config.json (a student's also has use_pieces).
EXPORT_FIELDS = ("kind", "model", "labels", "is_pair", "language", "max_seq_length", "pad_id")
CHUNK_BATCHES = 50  # lines are read, sorted by length and labelled this many batches at a time


class ExportedModel:
    """An export_model.py directory: turns lists of texts into class probabilities."""

    def __init__(self, directory, runtime="auto", int8=False, threads=None):
        config_path = os.path.join(directory, models.EXPORT_CONFIG)
        if not os.path.isfile(config_path):
            raise UserError(f"--model_dir {directory}: no {models.EXPORT_CONFIG} (write the directory with "
                            f"export_model.py)")
        self.config = config = read_json(config_path, EXPORT_FIELDS)
        if config["kind"] not in ("student", "teacher") or config["kind"] == "student" and "use_pieces" not in config:
            raise UserError(f"{config_path}: not an export_config.json of export_model.py (kind {config['kind']!r})")
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
        if self.runtime == "onnxruntime":
            # One thread for a student, whose batch-1 work is too small to share out; a teacher's is not.
            self._run = runtimes.onnx_runner(os.path.join(directory, config["onnx_int8" if int8 else "onnx"]),
                                           threads or (1 if config["kind"] == "student" else CPU_CORES))
        else:
            self._run = runtimes.predictor_runner(runtimes.make_predictor(prefix, config.get("onednn", True), threads))

    def probabilities(self, examples, batch_size):
        """Class probabilities of examples (tuples of one or two texts), batched by length, in the input order."""
        records = [self._encode(texts) for texts in examples]
        if not records:
            return np.zeros((0, len(self.config["labels"])))
        return softmax(runtimes.batched_logits(self._run, records, batch_size, self._collate))


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


def parse_line(line, is_pair):
    """The texts of one input line, or an error message."""
    texts = tuple(line.rstrip("\r\n").split("\t")) if is_pair else (line.rstrip("\r\n"),)
    if is_pair and len(texts) != 2:
        return None, f"expected two texts separated by one TAB, found {len(texts) - 1} TABs"
    return texts, None


def _lines(stream, source):
    try:
        yield from stream
    except OSError as error:
        raise UserError(f"{source}: cannot be read ({error.strerror})") from None


def main(argv=None):
    args = parse_args("predict", argv, __doc__)
    if args.input_file and not os.path.isfile(args.input_file):
        raise UserError(f"--input_file {args.input_file}: no such file")
    model = ExportedModel(args.model_dir, args.runtime, args.int8, args.threads)
    labels, is_pair = model.config["labels"], model.config["is_pair"]
    if args.label_file and list(data.read_labels(args.label_file, "--label_file")) != labels:
        raise UserError(f"--label_file {args.label_file}: the model's labels are {labels}, in this order; the file "
                        "lists others or another order (retrain on the folder's current label.txt)")
    source = args.input_file or "<stdin>"
    # A line ends at "\n" only: "\r", "\x0b", "\x85", "\u2028" and the like are text, so there is one output line
    # per input line whatever bytes the lines hold.
    stream = io.TextIOWrapper(open(args.input_file, "rb") if args.input_file else sys.stdin.buffer,
                              encoding="utf-8", errors="replace", newline="\n")
    malformed = 0
    with stream:
        numbered = enumerate(_lines(stream, source), start=1)
        while chunk := list(itertools.islice(numbered, args.batch_size * CHUNK_BATCHES)):
            parsed = [(number, *parse_line(line, is_pair)) for number, line in chunk]
            good = [(number, texts) for number, texts, error in parsed if error is None]
            probs = dict(zip((number for number, _ in good),
                             model.probabilities([texts for _, texts in good], args.batch_size)))
            for number, _, error in parsed:
                if error is not None:
                    malformed += 1
                    print(f"{source}:{number}: {error}", file=sys.stderr)
                    print(json.dumps({"line": number, "error": error}) if args.json else "")
                    continue
                label = labels[int(probs[number].argmax())]
                if args.json:
                    print(json.dumps({"line": number, "label": label,
                                      "probs": dict(zip(labels, probs[number].tolist()))}, ensure_ascii=False))
                else:
                    print("\t".join([label] + [f"{p:.4f}" for p in probs[number]]))
            sys.stdout.flush()
    if malformed:
        print(f"{malformed} malformed line(s) in {source} were not labelled", file=sys.stderr)
    return 1 if malformed else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
