"""Print the results of runs side by side, read from their results.json files, as a Markdown table, and under it
each run's figures and the command that produced it (its script and the flags that differ from the defaults).

    python results_table.py runs/teacher-sst-2 runs/small-sst-2 runs/distill-sst-2
    python results_table.py runs/*          # every run directory under runs/
    python results_table.py runs/* --readme results/README.md   # also rewrite the file's results block
    python results_table.py runs/*-1k-* --over_seeds --readme results/README.md   # a row per recipe, mean over seeds
    python results_table.py runs/* --summary --readme README.md   # a row per task: its best distilled student
    python results_table.py runs/*-s? --over_seeds --readme results/README.md --block sst-2-seeds   # another block
"""
import os
import re
import shlex
import statistics

from args import FLAGS_THAT_SHAPE_NOTHING, parse_args
from files import atomic_write, read_json, read_text
from tasks import TASKS
from utils import UserError, run_main

SCRIPT_NAMES = {"teacher": "Teacher", "small": "Bi-LSTM baseline", "distill": "Distilled Bi-LSTM"}
SCRIPT_FILES = {"teacher": "teacher.py", "small": "small.py", "distill": "bert_distill.py"}
# Where the summary's rows link to: the file holding the full table, with a section per task (## SST-2 -> #sst-2).
DETAILS = "results/README.md"
# Besides the task (--task_name, or --dataset_dir for a folder of the user's own data: task_flag).
REQUIRED_FLAGS = {"teacher": ("model_name_or_path", "output_dir"), "small": ("output_dir",),
                  "distill": ("teacher_dir", "output_dir")}
# What every results.json of a training script holds (training.write_results), and what the tables read of it.
RESULT_FIELDS = ("task", "script", "metric", "metrics", "best_step", "steps", "train_seconds", "flags")


# Flags that change neither what a run learns nor how it is scored, and those the seeds table names elsewhere.
NOT_SETTINGS = FLAGS_THAT_SHAPE_NOTHING | {"seed", "task_name", "dataset_dir", "train_file", "max_train_samples",
                                          "teacher_dir", "model_name_or_path", "augment", "mlm", "selector",
                                          "unlabeled_file", "generator", "source_file"}


def task_rank(task):
    return list(TASKS).index(task) if task in TASKS else len(TASKS)


def cell(results):
    if results is None:
        return "-"
    metrics = results["metrics"]
    second = "f1" if "f1" in metrics else "macro_f1" if results["metric"] == "macro_f1" else None
    text = f"{metrics['acc']:.4f}" + (f" / {metrics[second]:.4f}" if second else "")
    return f"{text} ({results['train_seconds'] / 60:.0f} min)"


def labelled_data(results):
    """The labelled training data of a run: "all", "first 8,000", or, for a training file other than the task's
    own train.tsv (a cut of it, say), "all of sst-2-1k.tsv": its runs are not the task's."""
    flags = results["flags"]
    limit = flags.get("max_train_samples")
    source = os.path.basename(flags["train_file"]) if flags.get("train_file") and \
        os.path.basename(flags["train_file"]) != "train.tsv" else None
    return (f"first {limit:,}" if limit else "all") + (f" of {source}" if source else "")


def protocol(results):
    """(task, training data) of a run: what makes runs comparable. Unlabelled text a distillation added makes its
    own row ("first 8,000 + unlabelled pool.txt"), beside the teacher and baseline of its labelled data."""
    unlabeled = results["flags"].get("unlabeled_file")
    return results["task"], labelled_data(results) + (f" + unlabelled {os.path.basename(unlabeled)}"
                                                      if unlabeled else "")


def teacher_name(results, teacher_runs):
    """The teacher of a teacher or distillation run: the model it was fine-tuned from (found through the teacher
    run whose output directory holds --teacher_dir, when that run is listed too), else its directory."""
    flags = results["flags"]
    if results["script"] == "teacher":
        path = os.path.normpath(flags["model_name_or_path"])
        name = os.path.basename(path)  # a model packaged for pip sits in <package>/model
        return os.path.basename(os.path.dirname(path)) if name == "model" else name
    if results["script"] == "distill":
        source = teacher_run(results, teacher_runs)
        return teacher_name(source, {}) if source else flags["teacher_dir"]
    return None


def teacher_run(results, teacher_runs):
    """The teacher run (of teacher_runs: output directory -> results) whose best/ a distillation learned from, or None
    when it is not listed."""
    return teacher_runs.get(os.path.dirname(os.path.normpath(results["flags"]["teacher_dir"])))


def score(results):
    return results["metrics"][results["metric"]]


def groups(results):
    """(task, training data, teacher) -> {script: results}, in table order; a baseline joins every teacher of its
    task and training data (it has none), so runs with different teachers or data never share a row. Of several
    runs of a kind, the best by its dev metric fills the cell (all are listed under the table), except that the
    teacher beside a student is the one it learned from, where that run is listed."""
    teacher_runs = {os.path.normpath(r["flags"]["output_dir"]): r for r in results if r["script"] == "teacher"}
    rows, baselines, labelled_of = {}, {}, {}  # labelled_of: row -> its labelled data, without unlabelled text
    for r in results:
        if r["script"] == "small":
            cells, key = baselines, protocol(r)
        else:
            row = (*protocol(r), teacher_name(r, teacher_runs))
            cells, key = rows.setdefault(row, {}), r["script"]
            labelled_of[row] = labelled_data(r)
        if key not in cells or score(r) > score(cells[key]):
            cells[key] = r
    for key in baselines:
        if not any(row[:2] == key for row in rows):
            rows[(*key, None)] = {}
    for (task, data, teacher), runs in rows.items():
        labelled = labelled_of.get((task, data, teacher), data)
        if (task, labelled) in baselines:
            runs["small"] = baselines[task, labelled]
        if "teacher" not in runs and "teacher" in rows.get((task, labelled, teacher), {}):
            runs["teacher"] = rows[task, labelled, teacher]["teacher"]
        if "distill" in runs:
            runs["teacher"] = teacher_run(runs["distill"], teacher_runs) or runs.get("teacher")
    order = lambda key: (task_rank(key[0]), key[1], key[2] or "")
    return {key: rows[key] for key in sorted(rows, key=order)}


def table(results):
    """Markdown table: a row per task, training data and teacher; the teacher, baseline and distilled student side
    by side (dev accuracy; QQP: accuracy / F1; a --dataset_dir task: accuracy / macro-F1; and training time)."""
    lines = ["| task | training data | teacher | teacher dev | Bi-LSTM baseline dev | distilled Bi-LSTM dev |",
             "|---|---|---|---|---|---|"]
    for (task, data, teacher), runs in groups(results).items():
        lines.append(f"| {task} | {data} | {teacher or '-'} | {cell(runs.get('teacher'))} | "
                     f"{cell(runs.get('small'))} | {cell(runs.get('distill'))} |")
    return "\n".join(lines)


def summary_rows(results):
    """task -> (training data, teacher, {script: results}): the row of table() whose distilled student scores best."""
    best = {}
    for (task, data, teacher), runs in groups(results).items():
        if "distill" in runs and (task not in best or score(runs["distill"]) > score(best[task][2]["distill"])):
            best[task] = (data, teacher, runs)
    return best


def summary(results):
    """Markdown table: a row per task, the row of table() (training data and teacher) whose distilled student scores
    best, without training times: the teacher, baseline and distilled dev figures, the student's gain over the
    baseline in points of the dev metric, and a link to the task's section of DETAILS."""
    lines = ["| task | training data | teacher | teacher dev | Bi-LSTM baseline dev | distilled Bi-LSTM dev | "
             "distilled - baseline | details |", "|---|---|---|---|---|---|---:|---|"]
    figure = lambda run: cell(run).split(" (")[0]  # the dev figures without the training time
    for task, (data, teacher, runs) in summary_rows(results).items():
        gain = f"{100 * (score(runs['distill']) - score(runs['small'])):+.1f}" if "small" in runs else "-"
        lines.append(f"| {task} | {data} | {teacher} | {figure(runs.get('teacher'))} | {figure(runs.get('small'))} | "
                     f"{figure(runs['distill'])} | {gain} | [{task} runs]({DETAILS}#{task}) |")
    return "\n".join(lines)


def recipe(results):
    """What a run did, apart from its seed: how a distillation built and used its transfer set."""
    flags = results["flags"]
    if results["script"] != "distill":
        return SCRIPT_NAMES[results["script"]]
    words = f"masked LM {os.path.basename(os.path.normpath(flags['mlm']))}" if flags.get("mlm") else \
        "teacher embedding neighbours"
    learned = "learned, " if flags.get("generator") == "learned" else ""
    augment = "no augmentation" if flags.get("n_iter") == 0 else \
        f"L2A generator ({learned}{words})" if flags.get("augment") == "l2a" else "rule-based augmentation"
    parts = [f"distilled, {augment}"]
    if flags.get("selector") == "reinforce":
        parts.append("selector")
    if flags.get("source_file"):
        parts.append(f"source text {os.path.basename(flags['source_file'])}")
    if flags.get("unlabeled_file"):
        parts.append(f"unlabelled {os.path.basename(flags['unlabeled_file'])}")
    return " + ".join(parts)


def recipe_order(results):
    flags = results["flags"]
    return (list(SCRIPT_NAMES).index(results["script"]), bool(flags.get("unlabeled_file")),
            flags.get("augment") == "l2a", flags.get("selector") == "reinforce", flags.get("generator") == "learned",
            bool(flags.get("source_file")), bool(flags.get("mlm")))


def seeds_table(results):
    """Markdown table: a row per task, labelled data, teacher, recipe and settings, with the dev metric's mean and
    sample standard deviation over the runs' seeds, each seed's figure, and the mean training time. A row's settings
    that not every run of its script shares (--max_epoch 3, say) follow its recipe in brackets."""
    teacher_runs = {os.path.normpath(r["flags"]["output_dir"]): r for r in results if r["script"] == "teacher"}
    with_settings = [(r, settings(r)) for r in results]
    shared = {script: set.intersection(*(set(own) for r, own in with_settings if r["script"] == script))
              for script in {r["script"] for r in results}}
    rows = {}
    order = lambda pair: (task_rank(pair[0]["task"]), labelled_data(pair[0]), recipe_order(pair[0]),
                          [f"{name}={value}" for name, value in pair[1]])
    for r, own in sorted(with_settings, key=order):
        key = (r["task"], labelled_data(r), teacher_name(r, teacher_runs) or "-", recipe(r), own)
        rows.setdefault(key, []).append(r)
    lines = ["| task | labelled data | teacher | run | dev (mean ± sd) | each seed | training |",
             "|---|---|---|---|---|---|---|"]
    for (task, data, teacher, what, own), runs in rows.items():
        differing = [setting for setting in own if setting not in shared[runs[0]["script"]]]
        if differing:  # what sets this row apart from the other runs of its script
            what += " (" + ", ".join(f"--{name}" if value is True else f"--{name} {value}"
                                     for name, value in differing) + ")"
        runs.sort(key=lambda r: r["flags"]["seed"])
        scores = [score(r) for r in runs]
        spread = f" ± {statistics.stdev(scores):.4f}" if len(scores) > 1 else ""
        each = ", ".join(f"{score(r):.4f} (seed {r['flags']['seed']})" for r in runs)
        minutes = statistics.mean(r["train_seconds"] for r in runs) / 60
        lines.append(f"| {task} | {data} | {teacher} | {what} | {statistics.mean(scores):.4f}{spread} | {each} | "
                     f"{minutes:.0f} min |")
    return "\n".join(lines)


def given_flags(results):
    """The flags a run's command line needs: its script's required flags, then every flag that differs from its
    default."""
    script, flags = results["script"], results["flags"]
    required = required_flags(script, flags)
    defaults = vars(parse_args(script, [f"--{name}={flags[name]}" for name in required]))
    return [*required, *(name for name in sorted(flags) if name in defaults and name != "script"
                         and name not in required and flags[name] != defaults[name])]


def required_flags(script, flags):
    """The flags every command of the script names: the task's flag (--task_name, or --dataset_dir for a folder of
    one's own data) and REQUIRED_FLAGS."""
    return ("dataset_dir" if flags.get("dataset_dir") else "task_name", *REQUIRED_FLAGS[script])


def settings(results):
    """(flag, value) of every flag a run changed that shapes what it learns or how it is scored, beyond what the
    seeds table names in its other columns and in recipe(): runs with different settings never share a row. A file
    is named by its name alone, as labelled_data() names the training file: the same data under two folders
    (../data and /work/data on two machines) is one setting."""
    shown = lambda value: os.path.basename(os.path.normpath(value)) if isinstance(value, str) else value
    return tuple((name, shown(results["flags"][name])) for name in given_flags(results) if name not in NOT_SETTINGS)


def command(results, aliases=()):
    """The command line of a run: its script, its required flags and every flag that differs from its default;
    each (name, path) alias writes $name for path."""
    words = ["python", SCRIPT_FILES[results["script"]]]
    for name in given_flags(results):
        value = results["flags"][name]
        words += [f"--{name}"] if value is True else [f"--{name}", str(value)]
    text = shlex.join(words)
    for name, path in aliases:
        text = text.replace(path, f"${name}")
    return text


def run_line(results, aliases=()):
    """One line on a run: its figures, seed, n_iter, training time and command."""
    flags = results["flags"]
    # rounded before adding 0.0, so that a figure of -0.00000003 reads 0.0000, not -0.0000
    metrics = ", ".join(f"{name} {round(value, 4) + 0.0:.4f}" for name, value in results["metrics"].items())
    n_iter = f", n_iter {flags['n_iter']}" if results["script"] == "distill" else ""
    return (f"- {results['task']} {SCRIPT_NAMES[results['script']]}: {metrics} at step {results['best_step']} "
            f"of {results['steps']}, seed {flags['seed']}{n_iter}, {results['train_seconds'] / 60:.0f} min of "
            f"training: `{command(results, aliases)}`")


def read_results(path):
    """The results.json of a training run, refused in one line naming it when it lacks what the tables read."""
    results = read_json(path, RESULT_FIELDS)
    script, flags, metrics = results["script"], results["flags"], results["metrics"]
    if script not in SCRIPT_NAMES:
        raise UserError(f"{path}: script {script!r} is not one of {', '.join(SCRIPT_NAMES)}")
    required = required_flags(script, flags) if isinstance(flags, dict) else ()
    if not isinstance(flags, dict) or any(name not in flags for name in required + ("seed",)):
        raise UserError(f"{path}: flags must hold the run's flags, {', '.join(required)} and seed among them")
    if not isinstance(metrics, dict) or not isinstance(metrics.get(results["metric"]), (int, float)):
        raise UserError(f"{path}: metrics must hold the run's metric {results['metric']!r}")
    return results


def block_bounds(path, content, block):
    """(start, end) of what lies between the <!-- block:begin --> and <!-- block:end --> markers of a file's
    content, refused unless each marker is there once, the begin marker first."""
    begin, end = f"<!-- {block}:begin -->", f"<!-- {block}:end -->"
    if begin not in content or end not in content:
        raise UserError(f"--readme {path}: no {begin} ... {end} block to replace")
    if content.count(begin) != 1 or content.count(end) != 1:
        raise UserError(f"--readme {path}: {content.count(begin)} {begin} and {content.count(end)} {end} markers; "
                        "expected one block to replace")
    start, stop = content.index(begin) + len(begin), content.index(end)
    if stop < start:
        raise UserError(f"--readme {path}: its {end} marker comes before {begin}")
    return start, stop


def replace_block(path, text, block):
    """Put text between the <!-- block:begin --> and <!-- block:end --> markers of the file at path."""
    content = read_text(path, "--readme")
    start, stop = block_bounds(path, content, block)
    content = f"{content[:start]}\n{text}\n{content[stop:]}"
    atomic_write(path, lambda f: f.write(content))


def main(argv=None):
    args = parse_args("results_table", argv, __doc__)
    aliases = [alias.split("=", 1) for alias in args.alias or []]
    if not all(len(alias) == 2 and alias[0] and alias[1] for alias in aliases):
        raise UserError("--alias takes NAME=PATH")
    if args.block is not None and not args.readme:
        raise UserError("--block: names a block of the --readme file; give --readme too")
    if args.block is not None and not re.fullmatch(r"[\w-]+", args.block):
        raise UserError(f"--block {args.block!r}: letters, digits, - and _ only (it goes into <!-- NAME:begin -->)")
    block = args.block or ("summary" if args.summary else "seeds" if args.over_seeds else "results")
    if args.readme:  # refused before anything is printed
        block_bounds(args.readme, read_text(args.readme, "--readme"), block)
    found = [os.path.join(d, "results.json") for d in args.run_dirs if os.path.isfile(os.path.join(d, "results.json"))]
    if not found:
        raise UserError("run_dirs: no results.json in " + ", ".join(args.run_dirs))
    script_order = list(SCRIPT_NAMES)
    results = sorted((read_results(path) for path in found), key=lambda r: (
        task_rank(r["task"]), protocol(r)[1], script_order.index(r["script"])))
    if args.summary:
        text = summary(results)
    else:
        text = (seeds_table(results) if args.over_seeds else table(results)) + "\n\n" + \
            "\n".join(run_line(r, aliases) for r in results)
    print(text)
    if args.readme:
        replace_block(args.readme, text, block)
    return text


if __name__ == "__main__":
    run_main(main)
