"""Reading what the scripts print: benchmark.py's Markdown tables, predict.py's records; and the softmax the tests
compare probabilities with."""
import io
import json
import re
import sys

import numpy as np

import data
import predict
from tasks import TASKS


def _rows(lines):
    """The cells of a Markdown table's rows, its header and rule line left out."""
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def table(output, section):
    """The rows (lists of cells) of the Markdown table printed under '### <section>:'."""
    text = output.split(f"### {section}:")[1].split("\n### ")[0]
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(lines) > 2 and set(lines[1]) <= set("|-: "), f"no table under {section}"
    return _rows(lines)


def number(cell):
    return float(re.sub(r"[,x]", "", cell))


def profile_tables(output):
    """{title: rows} of the tables the profile section printed."""
    tables = {}
    for part in output.split("### profile: ")[1:]:
        lines = [line for line in part.split("\n\n")[1].splitlines() if line.startswith("|")]
        tables[part.split(", ONNX Runtime's profiler")[0]] = _rows(lines)
    return tables


def dev_lines(task, dev_file):
    examples = data.read_split(TASKS[task], "dev", dev_file, "dev")
    return ["\t".join(ex.texts) for ex in examples], np.array([ex.label for ex in examples])


def run_predict(capsys, argv, stdin_bytes=None, monkeypatch=None):
    """predict.main's exit code, JSON records (or text lines) on stdout, and stderr lines."""
    capsys.readouterr()
    if stdin_bytes is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin_bytes)))
    code = predict.main(argv)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    return code, [json.loads(line) for line in lines] if "--json" in argv else lines, err.splitlines()


def softmax(logits, temperature=1.0):
    scaled = logits / temperature
    exp = np.exp(scaled - scaled.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)
