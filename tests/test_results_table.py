"""results_table.py builds the README's table from results.json files."""
import glob
import os
import shlex

from conftest import ROOT, fails_cleanly

import results_table
from args import parse_args
from files import write_json


def run_dir(tmp_path, name, script, task, metrics, minutes, flags=()):
    directory = tmp_path / name
    directory.mkdir()
    required = {"small": [], "distill": ["--teacher_dir", "/models/teacher"],
                "teacher": ["--model_name_or_path", "/models/bert"]}[script]
    args = parse_args(script, ["--task_name", task, "--output_dir", str(directory), *required, *flags])
    write_json(str(directory / "results.json"), {"script": script, "task": task, "metrics": metrics, "metric": "acc",
                                                 "train_seconds": minutes * 60, "best_step": 30, "steps": 40,
                                                 "flags": vars(args)})
    return str(directory)


def test_table_and_readme_block(tmp_path, capsys):
    dirs = [run_dir(tmp_path, "a", "small", "sst-2", {"acc": 0.84063}, 16),
            run_dir(tmp_path, "b", "distill", "qqp", {"acc": 0.8, "f1": 0.75}, 90),
            str(tmp_path / "not-a-run")]
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:begin -->\nold\n<!-- results:end -->\nend\n", encoding="utf-8")
    results_table.main(dirs + ["--readme", str(readme)])
    lines = readme.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "intro" and lines[-1] == "end" and "old" not in lines
    assert lines[2] == "| task | training data | teacher | teacher dev | Bi-LSTM baseline dev | distilled Bi-LSTM dev |"
    assert "| sst-2 | all | - | - | 0.8406 (16 min) | - |" in lines
    assert "| qqp | all | /models/teacher | - | - | 0.8000 / 0.7500 (90 min) |" in lines
    assert capsys.readouterr().out.strip() == "\n".join(lines[2:-2])


def two_teachers_and_their_students(tmp_path):
    """({name: run dir} of an MPNet and a MiniLM teacher on SST-2 8k, [a distilled run from each])."""
    teachers = {name: run_dir(tmp_path, f"teacher-{name}", "teacher", "sst-2", {"acc": acc}, 60,
                              ["--model_name_or_path", f"/models/{name}", "--max_train_samples", "8000"])
                for name, acc in (("mpnet", 0.92), ("minilm", 0.84))}
    runs = [run_dir(tmp_path, f"distill-{name}", "distill", "sst-2", {"acc": acc}, 30,
                    ["--teacher_dir", os.path.join(teachers[name], "best"), "--max_train_samples", "8000"])
            for name, acc in (("mpnet", 0.89), ("minilm", 0.81))]
    return teachers, runs


def test_runs_with_different_teachers_or_data_never_share_a_row(tmp_path, capsys):
    teachers, runs = two_teachers_and_their_students(tmp_path)
    runs += [run_dir(tmp_path, "small-8k", "small", "sst-2", {"acc": 0.80}, 5, ["--max_train_samples", "8000"]),
             run_dir(tmp_path, "small-all", "small", "sst-2", {"acc": 0.86}, 9),
             run_dir(tmp_path, "distill-pool", "distill", "sst-2", {"acc": 0.87}, 12,
                     ["--teacher_dir", os.path.join(teachers["mpnet"], "best"), "--max_train_samples", "8000",
                      "--unlabeled_file", "/data/pool.txt"])]
    results_table.main(list(teachers.values()) + runs)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| sst-2")]
    assert rows == ["| sst-2 | all | - | - | 0.8600 (9 min) | - |",
                    "| sst-2 | first 8,000 | minilm | 0.8400 (60 min) | 0.8000 (5 min) | 0.8100 (30 min) |",
                    "| sst-2 | first 8,000 | mpnet | 0.9200 (60 min) | 0.8000 (5 min) | 0.8900 (30 min) |",
                    # unlabelled text makes its own row, beside the teacher and baseline of its labelled data
                    "| sst-2 | first 8,000 + unlabelled pool.txt | mpnet | 0.9200 (60 min) | 0.8000 (5 min) | "
                    "0.8700 (12 min) |"]


def test_the_teacher_beside_a_student_is_the_one_it_learned_from(tmp_path, capsys):
    teachers, runs = two_teachers_and_their_students(tmp_path)
    # a better teacher of the same model and data, with no student of its own yet
    runs.append(run_dir(tmp_path, "teacher-mpnet-3ep", "teacher", "sst-2", {"acc": 0.95}, 180,
                        ["--model_name_or_path", "/models/mpnet", "--max_train_samples", "8000"]))
    results_table.main(list(teachers.values()) + runs)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| sst-2")]
    assert "| sst-2 | first 8,000 | mpnet | 0.9200 (60 min) | - | 0.8900 (30 min) |" in rows


def test_a_cut_training_file_is_not_the_whole_task(tmp_path, capsys):
    full = run_dir(tmp_path, "small-all", "small", "sst-2", {"acc": 0.86}, 9, ["--train_file", "/d/SST-2/train.tsv"])
    cut = run_dir(tmp_path, "small-1k", "small", "sst-2", {"acc": 0.70}, 2, ["--train_file", "/runs/sst-2-1k.tsv"])
    results_table.main([full, cut])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| sst-2")]
    assert rows == ["| sst-2 | all | - | - | 0.8600 (9 min) | - |",
                    "| sst-2 | all of sst-2-1k.tsv | - | - | 0.7000 (2 min) | - |"]


def test_summary_a_row_per_task_from_its_best_distilled_student(tmp_path):
    teachers, runs = two_teachers_and_their_students(tmp_path)
    runs += [run_dir(tmp_path, "small-8k", "small", "sst-2", {"acc": 0.8}, 5, ["--max_train_samples", "8000"]),
             run_dir(tmp_path, "small-all", "small", "sst-2", {"acc": 0.91}, 9),  # no student: no summary row
             run_dir(tmp_path, "distill-qqp", "distill", "qqp", {"acc": 0.8, "f1": 0.75}, 90)]
    readme = tmp_path / "README.md"
    readme.write_text("<!-- summary:begin -->\n<!-- summary:end -->\n", encoding="utf-8")
    results_table.main([*teachers.values(), *runs, "--summary", "--readme", str(readme)])
    assert readme.read_text(encoding="utf-8").splitlines()[1:-1] == [
        "| task | training data | teacher | teacher dev | Bi-LSTM baseline dev | distilled Bi-LSTM dev | "
        "distilled - baseline | details |", "|---|---|---|---|---|---|---:|---|",
        "| sst-2 | first 8,000 | mpnet | 0.9200 | 0.8000 | 0.8900 | +9.0 | [sst-2 runs](results/README.md#sst-2) |",
        "| qqp | all | /models/teacher | - | - | 0.8000 / 0.7500 | - | [qqp runs](results/README.md#qqp) |"]


def test_each_run_is_listed_with_the_command_that_reproduces_it(tmp_path, capsys):
    run = run_dir(tmp_path, "distilled", "distill", "qqp", {"acc": 0.8, "f1": 0.75}, 30,
                  ["--optimizer", "adadelta", "--n_iter", "3", "--whole_word_mask", "--seed", "7"])
    results_table.main([run, "--alias", "M=/models"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("- qqp Distilled Bi-LSTM: acc 0.8000, f1 0.7500 at step 30 of 40, seed 7, n_iter 3, "
                           "30 min of training: `python bert_distill.py ")
    words = shlex.split(line[line.index("`") + 1:-1])
    # required flags, then the changed ones; the QQP defaults (batch 256) and lr 1.0 for adadelta are not repeated
    assert words == ["python", "bert_distill.py", "--task_name", "qqp", "--teacher_dir", "$M/teacher",
                     "--output_dir", run, "--n_iter", "3", "--optimizer", "adadelta", "--seed", "7", "--whole_word_mask"]
    assert parse_args("distill", words[2:]).n_iter == 3


def test_a_figure_that_rounds_to_zero_is_listed_without_a_sign(tmp_path, capsys):
    run = run_dir(tmp_path, "redrawn", "distill", "sst-2", {"acc": 0.8, "generator_log_ratio": -2.6e-08}, 30)
    results_table.main([run])
    assert "acc 0.8000, generator_log_ratio 0.0000 at step 30" in capsys.readouterr().out


def test_baseline_flags_carry_no_distillation_defaults():
    assert not hasattr(parse_args("small", ["--task_name", "qqp", "--output_dir", "x"]), "n_iter")


def test_readme_without_markers_is_refused(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n", encoding="utf-8")
    fails_cleanly(capsys, results_table.main, [run_dir(tmp_path, "a", "small", "sst-2", {"acc": 0.5}, 1),
                                               "--readme", str(readme)], "--readme", "no <!-- results:begin -->")
    assert readme.read_text(encoding="utf-8") == "no markers\n"


def test_block_names_which_table_of_the_file_is_written(tmp_path, capsys):
    run = run_dir(tmp_path, "a", "small", "sst-2", {"acc": 0.5}, 1)
    readme = tmp_path / "README.md"
    original = "<!-- seeds:begin -->\nfirst\n<!-- seeds:end -->\n<!-- sst-2-seeds:begin -->\nsecond\n" \
               "<!-- sst-2-seeds:end -->\n"
    readme.write_text(original, encoding="utf-8")
    results_table.main([run, "--over_seeds", "--readme", str(readme), "--block", "sst-2-seeds"])
    first, second = readme.read_text(encoding="utf-8").split("<!-- sst-2-seeds:begin -->")
    assert first == "<!-- seeds:begin -->\nfirst\n<!-- seeds:end -->\n"  # the other table is left as it was
    assert "| 0.5000 | 0.5000 (seed 42) |" in second and "second" not in second
    for argv, expected in (([run, "--block", "sst-2-seeds"], ("--block", "give --readme too")),
                           ([run, "--readme", str(readme), "--block", "a b"], ("--block", "letters, digits")),
                           ([run, "--readme", str(readme), "--block", "missing"], ("--readme", "no <!-- missing:"))):
        fails_cleanly(capsys, results_table.main, argv, *expected)
    assert readme.read_text(encoding="utf-8").count("0.5000 (seed 42)") == 1


def test_over_seeds_a_row_per_recipe_with_mean_and_spread(tmp_path, capsys):
    cut = ["--train_file", "/runs/sst-2-1k.tsv"]
    teacher = run_dir(tmp_path, "teacher", "teacher", "sst-2", {"acc": 0.90}, 6,
                      cut + ["--model_name_or_path", "/models/mpnet"])
    student = cut + ["--teacher_dir", os.path.join(teacher, "best"), "--max_seq_length", "64"]
    recipes = {"rules": [], "l2a": ["--augment", "l2a"], "mlm": ["--augment", "l2a", "--mlm", "/models/bert-mlm/"],
               "sel": ["--augment", "l2a", "--selector", "reinforce"],
               "pool": ["--augment", "l2a", "--selector", "reinforce", "--unlabeled_file", "/runs/pool.txt",
                        "--max_epoch", "3"]}
    runs = [run_dir(tmp_path, f"{name}-s{seed}", "distill", "sst-2", {"acc": acc + seed / 100}, 10 * seed,
                    student + flags + ["--seed", str(seed)])
            for (name, flags), acc in zip(recipes.items(), (0.80, 0.81, 0.815, 0.82, 0.86)) for seed in (3, 1, 2)]
    # the same dev file read from two folders is one setting; a dev file of another name is another
    runs += [run_dir(tmp_path, f"small-s{seed}", "small", "sst-2", {"acc": acc}, 1,
                     cut + ["--seed", str(seed), "--dev_file", f"{folder}/SST-2/dev.tsv"])
             for seed, acc, folder in ((1, 0.74, "../data"), (2, 0.76, "/work/data"))]
    runs.append(run_dir(tmp_path, "small-cut-dev-s1", "small", "sst-2", {"acc": 0.70}, 1,
                        cut + ["--seed", "1", "--dev_file", "../data/SST-2/dev-400.tsv"]))
    # another setting of a recipe's flag makes another row, however it is spelled (the shared --max_seq_length isn't)
    runs.append(run_dir(tmp_path, "sel-rf-s1", "distill", "sst-2", {"acc": 0.85}, 10,
                        student + recipes["sel"] + ["--reward_fraction=0.30", "--seed", "1"]))
    readme = tmp_path / "README.md"
    readme.write_text("<!-- seeds:begin -->\n<!-- seeds:end -->\n", encoding="utf-8")
    results_table.main([*runs, teacher, "--over_seeds", "--readme", str(readme)])
    rows = [line for line in readme.read_text(encoding="utf-8").splitlines() if line.startswith("| sst-2")]
    data = "| sst-2 | all of sst-2-1k.tsv | mpnet |"
    assert rows == [
        f"{data} Teacher | 0.9000 | 0.9000 (seed 42) | 6 min |",
        "| sst-2 | all of sst-2-1k.tsv | - | Bi-LSTM baseline (--dev_file dev-400.tsv) | 0.7000 | 0.7000 (seed 1) | "
        "1 min |",
        "| sst-2 | all of sst-2-1k.tsv | - | Bi-LSTM baseline (--dev_file dev.tsv) | 0.7500 ± 0.0141 | 0.7400 (seed 1), "
        "0.7600 (seed 2) | 1 min |",
        f"{data} distilled, rule-based augmentation | 0.8200 ± 0.0100 | 0.8100 (seed 1), 0.8200 (seed 2), "
        "0.8300 (seed 3) | 20 min |",
        f"{data} distilled, L2A generator (teacher embedding neighbours) | 0.8300 ± 0.0100 | 0.8200 (seed 1), "
        "0.8300 (seed 2), 0.8400 (seed 3) | 20 min |",
        f"{data} distilled, L2A generator (masked LM bert-mlm) | 0.8350 ± 0.0100 | 0.8250 (seed 1), 0.8350 (seed 2), "
        "0.8450 (seed 3) | 20 min |",
        f"{data} distilled, L2A generator (teacher embedding neighbours) + selector | 0.8400 ± 0.0100 | "
        "0.8300 (seed 1), 0.8400 (seed 2), 0.8500 (seed 3) | 20 min |",
        f"{data} distilled, L2A generator (teacher embedding neighbours) + selector (--reward_fraction 0.3) | "
        "0.8500 | 0.8500 (seed 1) | 10 min |",
        f"{data} distilled, L2A generator (teacher embedding neighbours) + selector + unlabelled pool.txt "
        "(--max_epoch 3) | 0.8800 ± 0.0100 | 0.8700 (seed 1), 0.8800 (seed 2), 0.8900 (seed 3) | 20 min |"]


def test_the_tables_regenerate_from_the_committed_results():
    """The tables of results/README.md and the README's summary are what results_table.py makes of results/ alone
    (the run lines under the first two name machine paths through --alias, so only the table rows are compared)."""
    full_sst2 = ["results/teacher-sst-2-mpnet", "results/small-sst-2-mpnet", "results/distill-sst-2-mpnet",
                 "results/distill-sst-2-mpnet-reviews", "results/seeds/*"]
    for path, block, patterns, extra in (
            ("results/README.md", "results", ["results/*"], []),
            ("results/README.md", "seeds", ["results/scarce/*"], ["--over_seeds"]),
            ("results/README.md", "sst-2-seeds", full_sst2, ["--over_seeds"]),
            ("README.md", "summary", ["results/*"], ["--summary"])):
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            written = f.read().split(f"<!-- {block}:begin -->")[1].split(f"<!-- {block}:end -->")[0]
        runs = sorted(run for pattern in patterns for run in glob.glob(os.path.join(ROOT, pattern)))
        made = [line for line in results_table.main(runs + extra).splitlines() if line.startswith("|")]
        assert made and made == [line for line in written.splitlines() if line.startswith("|")], (path, block)


# Texts in the tasks' unlabelled test.tsv: a model's blind predictions have one line for each.
TEST_TEXTS = {"sst-2": 1821, "chnsenticorp": 1200}
# Summary rows whose runs' directories were lost with a machine, so their models cannot predict: they are to be
# rerun (recipes/chnsenticorp_e5.sh). The test fails once such a row has its predictions, so the list only shrinks.
AWAITING_RERUN = set()


def test_every_summary_model_has_its_blind_test_predictions():
    """For the teacher, baseline and distilled student of each SST-2 and ChnSentiCorp summary row:
    results/<run>/test_predictions.tsv (recipes/test_predictions.sh), a label and the probability of each label for
    every test text."""
    root = os.path.join(ROOT, "results")
    results = [results_table.read_results(os.path.join(root, name, "results.json")) for name in os.listdir(root)
               if os.path.isfile(os.path.join(root, name, "results.json"))]
    rows = results_table.summary_rows(results)
    assert set(TEST_TEXTS) <= set(rows)
    for task, lines_expected in TEST_TEXTS.items():
        runs = rows[task][2]
        paths = [os.path.join(root, os.path.basename(os.path.normpath(run["flags"]["output_dir"])),
                 "test_predictions.tsv") for run in runs.values()]
        if task in AWAITING_RERUN:
            assert not any(os.path.isfile(path) for path in paths), f"{task} has predictions: drop it from the list"
            continue
        assert len(paths) == 3
        for path in paths:
            check_test_predictions(path, lines_expected)


def test_every_recorded_run_s_test_predictions_are_whole():
    """Any results/.../<run>/test_predictions.tsv (the data-scarce runs' in results/scarce too) has a line for each
    test text of its run's task."""
    root = os.path.join(ROOT, "results")
    paths = glob.glob(os.path.join(root, "**", "test_predictions.tsv"), recursive=True)
    assert any(os.sep + "scarce" + os.sep in path for path in paths)
    for path in paths:
        task = results_table.read_results(os.path.join(os.path.dirname(path), "results.json"))["task"]
        check_test_predictions(path, TEST_TEXTS[task])


def check_test_predictions(path, lines_expected):
    """One line per test text: a label and the probability of each label, the label a likeliest one."""
    lines = open(path, encoding="utf-8").read().splitlines()
    assert len(lines) == lines_expected, path
    for line in lines:
        label, *probabilities = line.split("\t")
        assert label in ("0", "1") and len(probabilities) == 2, (path, line)
        assert abs(sum(map(float, probabilities)) - 1) < 2e-4
        assert float(probabilities[int(label)]) == max(map(float, probabilities)), (path, line)  # ties print 0.5000
