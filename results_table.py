"""Print the results of runs side by side, read from their results.json files, as a Markdown table.

    python results_table.py runs/teacher-sst-2 runs/small-sst-2 runs/distill-sst-2
    python results_table.py runs/*          # every run directory under runs/
    python results_table.py runs/* --readme README.md   # also rewrite the README's results table
"""
import argparse
import json
import os
import re
import sys


ROWS = (("teacher", "Teacher (BERT)"), ("small", "Bi-LSTM baseline"), ("distill", "Distilled Bi-LSTM"))
COLUMNS = ("sst-2", "qqp", "chnsenticorp")


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


BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def replace_block(path, text):
    """Put text between the BEGIN and END markers of the file at path."""
    with open(path, encoding="utf-8") as f:
        content = f.read()
    if BEGIN not in content or END not in content:
        sys.exit(f"error: --readme {path}: no {BEGIN} ... {END} block to replace")
    content = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: f"{BEGIN}\n{text}\n{END}", content,
                     flags=re.S)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(content)
    os.replace(path + ".tmp", path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", help="Output directories of teacher.py, small.py, bert_distill.py.")
    parser.add_argument("--readme", help=f"Also write the table between {BEGIN} and {END} in this file.")
    args = parser.parse_args(argv)
    found = [os.path.join(d, "results.json") for d in args.run_dirs if os.path.isfile(os.path.join(d, "results.json"))]
    if not found:
        sys.exit("error: no results.json in " + ", ".join(args.run_dirs))
    text = table([json.load(open(path, encoding="utf-8")) for path in found])
    print(text)
    if args.readme:
        replace_block(args.readme, text)


if __name__ == "__main__":
    main()
