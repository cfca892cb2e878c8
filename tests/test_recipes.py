"""Every command the recipes and the documentation give names only flags its script has: a misspelt flag in a
recipe would otherwise stop a protocol hours in, after the runs before it."""
import glob
import os
import re

import pytest
from conftest import ROOT

from args import build_parser

# script file -> the name it parses its flags under (parse_args("distill", ...) in bert_distill.py)
SCRIPT_NAMES = {os.path.basename(path): match.group(1) for path in glob.glob(os.path.join(ROOT, "*.py"))
                for match in [re.search(r'parse_args\("(\w+)"', open(path, encoding="utf-8").read())] if match}
DOCUMENTS = sorted(glob.glob(os.path.join(ROOT, "recipes", "*.sh")) + glob.glob(os.path.join(ROOT, "*.md"))
                   + glob.glob(os.path.join(ROOT, "docs", "*.md")) + glob.glob(os.path.join(ROOT, "results", "*.md")))


def commands(text):
    """(script file, the text of its command line) for each `python <script>.py ...` in a shell script or Markdown,
    continuation lines joined and the shell variables that hold flags (Q="--task_name qqp ...") written out."""
    text = text.replace("\\\n", " ")
    variables = dict(re.findall(r'^\s*(\w+)="([^"$]*(?:\$\w+[^"$]*)*)"\s*$', text, re.M))
    for _ in range(3):  # variables made of variables
        text = re.sub(r"\$(\w+)\b", lambda m: variables.get(m.group(1), m.group(0)), text)
    return [(script, line) for line in text.splitlines() for script, line in
            re.findall(r"python (\w+\.py)([^`|;&>#]*)", line)]


def test_the_commands_are_found():
    script = """Q="--task_name qqp --max_seq_length 64"
T="$Q --teacher_dir $RUNS/t"
python teacher.py $Q --lr 5e-5 \\
    --output_dir $RUNS/t  # a comment --not_a_flag
python -c 'print(1)'
See `python small.py --max_epoch 3` and `python bert_distill.py $T --n_iter 4`.
"""
    assert [(name, line.split()) for name, line in commands(script)] == [
        ("teacher.py", "--task_name qqp --max_seq_length 64 --lr 5e-5 --output_dir $RUNS/t".split()),
        ("small.py", ["--max_epoch", "3"]),
        ("bert_distill.py", "--task_name qqp --max_seq_length 64 --teacher_dir $RUNS/t --n_iter 4".split())]
    assert all(commands(open(path, encoding="utf-8").read()) for path in DOCUMENTS
               if path.endswith(".sh") and "thucnews_titles" not in path)


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: os.path.relpath(path, ROOT))
def test_every_flag_a_command_names_is_one_its_script_has(path):
    for script, line in commands(open(path, encoding="utf-8").read()):
        if script not in SCRIPT_NAMES:
            continue  # a helper with flags of its own (recipes/thucnews_titles.py)
        known = build_parser(SCRIPT_NAMES[script])._option_string_actions
        for flag in re.findall(r"(?<![\w-])--\w+", line):
            assert flag in known, f"{os.path.relpath(path, ROOT)}: python {script} has no {flag}:{line}"
