"""Print the results of runs side by side, read from their results.json files, as a Markdown table, and under it
each run's figures and the command that produced it (its script and the flags that differ from the defaults).

    python results_table.py runs/teacher-sst-2 runs/small-sst-2 runs/distill-sst-2
    python results_table.py runs/*          # every run directory under runs/
    python results_table.py runs/* --readme README.md   # also rewrite the README's results table
"""
import argparse
import os
import re
import shlex

from args import parse_args
from utils import UserError, atomic_write, read_json, run_main

ROWS = (("teacher", "Teacher (BERT)"), ("small", "Bi-LSTM baseline"), ("distill", "Distilled Bi-LSTM"))
COLUMNS = ("sst-2", "qqp", "chnsenticorp")
SCRIPT_FILES = {"teacher": "teacher.py", "small": "small.py", "distill": "bert_distill.py"}
REQUIRED_FLAGS = {"teacher": ("task_name", "model_name_or_path", "output_dir"), "small": ("task_name", "output_dir"),
                  "distill": ("task_name", "teacher_dir", "output_dir")}


def cell(results):
    metrics = results["metrics"]
    text = f"{metrics['acc']:.4f}" + (f" / {metrics['f1']:.4f}" if "f1" in metrics else "")
    return f"{text} ({results['train_seconds'] / 60:.0f} min)"


def table(results):
    """Markdown table: one row per script, one column per task; later runs of the same kind win."""
    by_kind = {(r["script"], r["task"]): r for r in results}
    tasks = [t for t in COLUMNS if any(task == t for _, task in by_kind)]
    lines = ["| model | " + " | ".join(f"{t} dev acc" + (" / F1" if t == "qqp" else "") for t in tasks) + " |",
             "|---" * (len(tasks) + 1) + "|"]
    for script, name in ROWS:
        lines.append(f"| {name} | " + " | ".join(cell(by_kind[script, t]) if (script, t) in by_kind else "-"
                                                 for t in tasks) + " |")
    return "\n".join(lines)


def command(results, aliases=()):
    """The command line of a run: its script, its required flags and every flag that differs from its default;
    each (name, path) alias writes $name for path."""
    script, flags = results["script"], results["flags"]
    required = REQUIRED_FLAGS[script]
    defaults = vars(parse_args(script, [f"--{name}={flags[name]}" for name in required]))
    changed = [name for name in sorted(flags) if name in defaults and name != "script" and name not in required
               and flags[name] != defaults[name]]
    words = ["python", SCRIPT_FILES[script]]
    for name in (*required, *changed):
        words += [f"--{name}"] if flags[name] is True else [f"--{name}", str(flags[name])]
    text = shlex.join(words)
    for name, path in aliases:
        text = text.replace(path, f"${name}")
    return text


def run_line(results, aliases=()):
    """One line on a run: its figures, seed, n_iter, training time and command."""
    flags = results["flags"]
    metrics = ", ".join(f"{name} {value:.4f}" for name, value in results["metrics"].items())
    n_iter = f", n_iter {flags['n_iter']}" if results["script"] == "distill" else ""
    return (f"- {results['task']} {dict(ROWS)[results['script']]}: {metrics} at step {results['best_step']} "
            f"of {results['steps']}, seed {flags['seed']}{n_iter}, {results['train_seconds'] / 60:.0f} min of "
            f"training: `{command(results, aliases)}`")


BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def replace_block(path, text):
    """Put text between the BEGIN and END markers of the file at path."""
    with open(path, encoding="utf-8") as f:
        content = f.read()
    if BEGIN not in content or END not in content:
        raise UserError(f"--readme {path}: no {BEGIN} ... {END} block to replace")
    content = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: f"{BEGIN}\n{text}\n{END}", content,
                     flags=re.S)
    atomic_write(path, lambda f: f.write(content))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", help="Output directories of teacher.py, small.py, bert_distill.py.")
    parser.add_argument("--readme", help=f"Also write the table between {BEGIN} and {END} in this file.")
    parser.add_argument("--alias", action="append", default=[], metavar="NAME=PATH",
                        help="Write $NAME for PATH in the commands (repeatable), e.g. --alias D=../shared/data.")
    args = parser.parse_args(argv)
    aliases = [alias.split("=", 1) for alias in args.alias]
    if not all(len(alias) == 2 and alias[0] and alias[1] for alias in aliases):
        raise UserError("--alias takes NAME=PATH")
    found = [os.path.join(d, "results.json") for d in args.run_dirs if os.path.isfile(os.path.join(d, "results.json"))]
    if not found:
        raise UserError("run_dirs: no results.json in " + ", ".join(args.run_dirs))
    results = [read_json(path) for path in found]
    text = table(results) + "\n\n" + "\n".join(run_line(r, aliases) for r in results)
    print(text)
    if args.readme:
        replace_block(args.readme, text)
    return text


if __name__ == "__main__":
    run_main(main)
