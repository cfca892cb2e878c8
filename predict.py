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
import io
import itertools
import json
import os
import sys

from args import parse_args
from exported import ExportedModel
from utils import UserError, run_main

CHUNK_BATCHES = 50  # lines are read, sorted by length and labelled this many batches at a time


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
    model = ExportedModel(args.model_dir, args.runtime, args.int8, args.threads, label_file=args.label_file)
    is_pair = model.config["is_pair"]
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
                prediction = model.prediction(probs[number])
                if args.json:
                    print(json.dumps({"line": number, **prediction}, ensure_ascii=False))
                else:
                    print("\t".join([prediction["label"]] + [f"{p:.4f}" for p in probs[number]]))
            sys.stdout.flush()
    if malformed:
        print(f"{malformed} malformed line(s) in {source} were not labelled", file=sys.stderr)
    return 1 if malformed else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
