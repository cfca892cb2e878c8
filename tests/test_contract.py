"""The contract every script keeps: what a resume and the teacher-logits cache notice (a teacher is its weights,
config and tokenizer files), faults leave no litter (temporary exports removed however a run ends, and swept after a
SIGKILL; a full disk named by its path), and bad input is one line naming the file or flag, exit code 2, nothing
written."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, STUDENT_FAST, data_flags, fails_cleanly

import benchmark
import bert_distill
import convert_teacher
import distillation
import export_model
import model as models
import plot_curves
import results_table
import runtimes
import small
import teacher
import utils


def copy_teacher(tiny_bert, path):
    shutil.copytree(tiny_bert, path)
    return str(path)


def distill_flags(task_files, teacher_dir, cache, output_dir, *extra):
    """A quick bert_distill.py run: no augmented copies, the dygraph teacher, two steps."""
    return data_flags(task_files, "sst-2") + STUDENT_FAST + [
        "--teacher_dir", teacher_dir, "--n_iter", "0", "--teacher_backend", "dygraph", "--max_dev_samples", "20",
        "--max_steps", "2", "--lr_schedule", "constant", "--cache_dir", str(cache), "--output_dir", str(output_dir),
        *extra]


def edit_vocab(teacher_dir):
    """Swap two words of the teacher's vocab.txt: the same size, other ids."""
    path = os.path.join(teacher_dir, "vocab.txt")
    lines = open(path, encoding="utf-8").read().splitlines()
    a, b = lines.index("good"), lines.index("bad")
    lines[a], lines[b] = lines[b], lines[a]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def edit_config(teacher_dir):
    """The same weights computing with another activation."""
    path = os.path.join(teacher_dir, "config.json")
    config = json.load(open(path, encoding="utf-8"))
    assert config.get("hidden_act", "gelu") != "relu"
    config["hidden_act"] = "relu"
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f)


def listing(path):
    """Every file under path with its bytes, or None when path does not exist."""
    if not os.path.exists(path):
        return None
    if os.path.isfile(path):
        return open(path, "rb").read()
    return {os.path.relpath(os.path.join(root, name), path): open(os.path.join(root, name), "rb").read()
            for root, _, files in os.walk(path) for name in files}


# ---------------------------------------------------------------------------------------------------------------
# 3. What a resume and the logits cache notice


@pytest.mark.parametrize("changed, edit", [("vocab.txt", edit_vocab), ("config.json", edit_config)])
def test_a_resume_after_a_teacher_file_changed_is_refused_naming_it(capsys, task_files, tiny_bert, tmp_path, changed,
                                                                     edit):
    teacher_dir = copy_teacher(tiny_bert, tmp_path / "teacher")
    output_dir = tmp_path / "run"
    argv = distill_flags(task_files, teacher_dir, tmp_path / "cache", output_dir)  # student vocabulary: the teacher's
    bert_distill.main(argv)
    before = listing(output_dir)
    edit(teacher_dir)
    fails_cleanly(capsys, bert_distill.main, argv + ["--max_steps", "4"], f"--output_dir {output_dir}",
                  f"--teacher_dir {teacher_dir} (its {changed} changed since)")
    assert listing(output_dir) == before


def test_the_teacher_is_asked_again_once_its_config_changed(task_files, tiny_bert, tmp_path, monkeypatch):
    teacher_dir, cache = copy_teacher(tiny_bert, tmp_path / "teacher"), tmp_path / "cache"
    asked, label = [], runtimes.label_with_teacher
    monkeypatch.setattr(runtimes, "label_with_teacher",
                        lambda model, records, *args, **kwargs: asked.append(len(records)) or
                        label(model, records, *args, **kwargs))
    bert_distill.main(distill_flags(task_files, teacher_dir, cache, tmp_path / "first"))
    bert_distill.main(distill_flags(task_files, teacher_dir, cache, tmp_path / "again"))
    assert len(asked) == 1  # the unchanged teacher: from the cache
    first_table = np.load(str(cache / os.listdir(cache)[0]))
    edit_config(teacher_dir)
    bert_distill.main(distill_flags(task_files, teacher_dir, cache, tmp_path / "relu"))
    assert asked == [asked[0], asked[0]]  # asked again about every input
    tables = [np.load(str(cache / name)) for name in sorted(os.listdir(cache))]
    assert len(tables) == 2 and any(table.tobytes() == first_table.tobytes() for table in tables)  # kept apart
    by_key = [dict(zip(distillation._keys(table), table["logits"])) for table in tables]
    assert by_key[0].keys() == by_key[1].keys()
    assert not np.allclose([by_key[0][key] for key in by_key[0]], [by_key[1][key] for key in by_key[0]])


@pytest.mark.parametrize("name", ["model_state.pdparams", "config.json", "vocab.txt", "tokenizer_config.json",
                                  "special_tokens_map.json", "added_tokens.json", "sentencepiece.bpe.model"])
def test_every_file_that_makes_the_teacher_is_part_of_its_identity(tmp_path, name):
    teacher_dir = tmp_path / "teacher"
    teacher_dir.mkdir()
    for present in ("model_state.pdparams", "config.json", "vocab.txt", "tokenizer_config.json",
                    "special_tokens_map.json"):
        (teacher_dir / present).write_text(present)

    def identity():
        return models.teacher_sha256({os.path.basename(path): utils.file_sha256(path)
                                      for path in models.teacher_files(str(teacher_dir))})

    before = identity()
    (teacher_dir / "notes.md").write_text("a file that shapes nothing")
    (teacher_dir / "task.json").write_text("{}")
    assert identity() == before
    with open(teacher_dir / name, "a") as f:
        f.write(" changed")  # or added
    assert identity() != before


# ---------------------------------------------------------------------------------------------------------------
# 5. One error contract for every script


@pytest.fixture
def every_script(task_files, tiny_bert, tmp_path):
    """Each script with an --output_dir: its main and valid arguments but the --output_dir, which the test adds."""
    sst = data_flags(task_files, "sst-2")
    return {"teacher": (teacher.main, sst + ["--model_name_or_path", tiny_bert, "--device", "cpu"]),
            "small": (small.main, sst + STUDENT_FAST + ["--vocab_path", os.path.join(tiny_bert, "vocab.txt")]),
            "distill": (bert_distill.main, sst + STUDENT_FAST + ["--teacher_dir", tiny_bert, "--cache_dir",
                                                                 str(tmp_path / "cache")]),
            "export": (export_model.main, ["--teacher_dir", tiny_bert, "--task_name", "sst-2"]),
            "convert_teacher": (convert_teacher.main, ["--hf_dir", tiny_bert])}


@pytest.mark.parametrize("script", ["teacher", "small", "distill", "export", "convert_teacher"])
def test_an_empty_output_dir_names_the_flag(capsys, every_script, tmp_path, monkeypatch, script):
    main, argv = every_script[script]
    monkeypatch.chdir(tmp_path)
    fails_cleanly(capsys, main, argv + ["--output_dir", ""], "argument --output_dir: must not be empty")
    assert os.listdir(tmp_path) == []  # nothing written in the current directory


@pytest.mark.parametrize("script, flag", [("distill", "--cache_dir"), ("small", "--vocab_path"),
                                          ("small", "--train_file"), ("distill", "--teacher_dir")])
def test_an_empty_path_names_its_flag(capsys, every_script, tmp_path, script, flag):
    main, argv = every_script[script]
    fails_cleanly(capsys, main, argv + ["--output_dir", str(tmp_path / "out"), flag, ""],
                  f"argument {flag}: must not be empty")


def test_a_vocabulary_with_a_repeated_token_is_refused(capsys, every_script, tiny_bert, tmp_path):
    vocab = tmp_path / "vocab.txt"
    lines = open(os.path.join(tiny_bert, "vocab.txt"), encoding="utf-8").read().splitlines()
    vocab.write_text("\n".join(lines + ["good"]) + "\n", encoding="utf-8")
    main, argv = every_script["small"]
    fails_cleanly(capsys, main, argv + ["--vocab_path", str(vocab), "--output_dir", str(tmp_path / "out")],
                  f"--vocab_path {vocab}:{len(lines) + 1}: token 'good' repeats line {lines.index('good') + 1}")


@pytest.fixture(scope="module")
def truncated_teacher(tiny_bert, tmp_path_factory):
    """A copy of the tiny teacher whose model_state.pdparams lost its second half."""
    directory = copy_teacher(tiny_bert, tmp_path_factory.mktemp("truncated") / "teacher")
    weights = os.path.join(directory, "model_state.pdparams")
    raw = open(weights, "rb").read()
    with open(weights, "wb") as f:
        f.write(raw[:len(raw) // 2])
    return directory


# id -> (script, lambda teacher directory: flags, parts of the message)
TRUNCATED_CASES = {
    "small-vocabulary-beside-it": ("small", lambda t: ["--vocab_path", os.path.join(t, "vocab.txt"), "--emb_dim",
                                                       "64"], ["--embedding auto:", "cannot be read as model weights"]),
    "small-embedding-of-it": ("small", lambda t: ["--embedding", t, "--emb_dim", "64"],
                              ["--embedding", "model_state.pdparams: cannot be read as model weights"]),
    "distill-its-vocabulary": ("distill", lambda t: ["--teacher_dir", t, "--emb_dim", "64"],
                               ["--embedding auto:", "cannot be read as model weights"]),
    "distill-embedding-teacher": ("distill", lambda t: ["--teacher_dir", t, "--embedding", "teacher", "--emb_dim",
                                                        "64"],
                                  ["model_state.pdparams: cannot be read as model weights"]),
    "distill-l2a-neighbours": ("distill", lambda t: ["--teacher_dir", t, "--embedding", "random", "--augment", "l2a",
                                                     "--n_iter", "1"],
                               ["--teacher_dir", "model_state.pdparams: cannot be read as model weights"]),
    "distill-labelling": ("distill", lambda t: ["--teacher_dir", t, "--embedding", "random", "--n_iter", "0",
                                                "--teacher_backend", "dygraph"],
                          ["--teacher_dir", "could not load a sequence classifier"]),
    "teacher": ("teacher", lambda t: ["--model_name_or_path", t], ["--model_name_or_path", "could not load"]),
    "export": ("export", lambda t: ["--teacher_dir", t], ["--teacher_dir", "could not load"]),
}


@pytest.mark.parametrize("case", TRUNCATED_CASES.values(), ids=TRUNCATED_CASES.keys())
def test_a_truncated_teacher_is_refused_by_every_script(capsys, every_script, truncated_teacher, tmp_path, case):
    script, extra, expected = case
    main, argv = every_script[script]
    cache = tmp_path / "cache"
    fails_cleanly(capsys, main, argv + extra(truncated_teacher) + ["--cache_dir", str(cache)] * (script == "distill")
                  + ["--output_dir", str(tmp_path / "out")], *expected)
    assert not [name for name in os.listdir(cache) if name.startswith("logits")] if cache.exists() else True


def test_a_checkpoint_with_the_same_size_vocabulary_in_another_order_is_refused(capsys, task_files, tiny_bert,
                                                                                 tmp_path):
    lines = open(os.path.join(tiny_bert, "vocab.txt"), encoding="utf-8").read().splitlines()
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    a, b = sorted([lines.index("good"), lines.index("bad")])
    there = lines[a]
    lines[a], lines[b] = lines[b], lines[a]
    (second / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    flags = data_flags(task_files, "sst-2") + STUDENT_FAST + ["--max_steps", "1"]
    small.main(flags + ["--vocab_path", str(first / "vocab.txt"), "--output_dir", str(tmp_path / "run")])
    checkpoint = str(tmp_path / "run" / "best")
    fails_cleanly(capsys, small.main, flags + ["--vocab_path", str(second / "vocab.txt"), "--init_from_ckpt",
                                               checkpoint, "--output_dir", str(tmp_path / "next")],
                  f"--init_from_ckpt {checkpoint}: its vocab.txt is not this run's vocabulary",
                  f"id {a} is {there!r} there, {lines[a]!r} here")
    # the same vocabulary, by another path, is accepted
    assert small.main(flags + ["--vocab_path", str(first / "vocab.txt"), "--init_from_ckpt", checkpoint,
                               "--output_dir", str(tmp_path / "same")])["steps"] == 1


def results_run(tmp_path, name, **changes):
    """A run directory with the results.json and eval_log.jsonl of a small.py run, with changes (None: removed)."""
    directory = tmp_path / name
    directory.mkdir()
    results = {"task": "sst-2", "script": "small", "metric": "acc", "metrics": {"acc": 0.8}, "best_step": 2,
               "steps": 2, "train_seconds": 60, "flags": {"task_name": "sst-2", "output_dir": str(directory),
                                                          "seed": 42}}
    results.update(changes)
    utils.write_json(str(directory / "results.json"), {k: v for k, v in results.items() if v is not None})
    (directory / "eval_log.jsonl").write_text('{"step": 1, "acc": 0.7}\n{"step": 2, "acc": 0.8}\n')
    return str(directory)


README = "intro\n<!-- results:begin -->\nold\n<!-- results:end -->\n"


def readme_at(tmp_path, content=README):
    path = tmp_path / "README.md"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


# id -> (main, lambda tmp_path: argv, parts of the message)
REPORT_CASES = {
    "table-results-without-flags": (results_table.main, lambda t: [results_run(t, "run", flags=None)],
                                    ["results.json: missing field(s) flags"]),
    "table-results-without-script": (results_table.main, lambda t: [results_run(t, "run", script=None)],
                                     ["results.json: missing field(s) script"]),
    "table-results-of-another-script": (results_table.main, lambda t: [results_run(t, "run", script="x")],
                                        ["results.json: script 'x' is not one of"]),
    "plot-results-without-script": (plot_curves.main, lambda t: [results_run(t, "run", script=None), "--output",
                                                                 str(t / "c.png")],
                                    ["results.json: missing field(s) script"]),
    "table-readme-not-utf8": (results_table.main, lambda t: [results_run(t, "run"), "--readme",
                                                             readme_at(t, README.encode() + b"caf\xe9\n")],
                              ["--readme", "README.md: not UTF-8 text"]),
    "table-readme-missing": (results_table.main, lambda t: [results_run(t, "run"), "--readme", str(t / "nope.md")],
                             ["--readme", "nope.md: no such file"]),
    "table-readme-is-a-directory": (results_table.main, lambda t: [results_run(t, "run"), "--readme", str(t)],
                                    ["--readme", "is a directory"]),
    "table-readme-markers-reversed": (results_table.main, lambda t: [results_run(t, "run"), "--readme", readme_at(
        t, "<!-- results:end -->\nold\n<!-- results:begin -->\n")], ["--readme", "<!-- results:end --> marker comes "
                                                                     "before <!-- results:begin -->"]),
    "table-readme-two-blocks": (results_table.main, lambda t: [results_run(t, "run"), "--readme",
                                                               readme_at(t, README + README)],
                                ["--readme", "2 <!-- results:begin --> and 2 <!-- results:end --> markers"]),
    "plot-output-unsupported-extension": (plot_curves.main, lambda t: [results_run(t, "run"), "--output",
                                                                       str(t / "curves.pgn")],
                                          ["--output", "curves.pgn: unsupported extension .pgn; use one of", ".png"]),
    "plot-output-without-extension": (plot_curves.main, lambda t: [results_run(t, "run"), "--output",
                                                                   str(t / "curves")],
                                      ["--output", "curves: no extension"]),
    "plot-eval-log-not-utf8": (plot_curves.main, lambda t: [results_run(t, "run"), "--output", str(t / "c.png")],
                               ["run_dirs", "eval_log.jsonl: not UTF-8 text"]),
    "plot-eval-record-not-an-object": (plot_curves.main, lambda t: [results_run(t, "run"), "--output",
                                                                    str(t / "c.png")],
                                       ["run_dirs", "eval_log.jsonl:2: not an evaluation record with 'acc'"]),
}


@pytest.mark.parametrize("case", REPORT_CASES.values(), ids=REPORT_CASES.keys())
def test_the_report_scripts_refuse_bad_input_in_one_line(capsys, tmp_path, case, request):
    main, argv_of, expected = case
    argv = argv_of(tmp_path)
    log = tmp_path / "run" / "eval_log.jsonl"
    if request.node.callspec.id == "plot-eval-log-not-utf8":
        log.write_bytes(b'{"step": 1, "acc": 0.7}\ncaf\xe9\n')
    elif request.node.callspec.id == "plot-eval-record-not-an-object":
        log.write_text('{"step": 1, "acc": 0.7}\n[2, 0.8]\n')
    before = listing(tmp_path)
    fails_cleanly(capsys, main, argv, *expected)
    assert listing(tmp_path) == before  # nothing written: no image, the README as it was


def test_the_tables_still_fill_a_readme_block(tmp_path, capsys):
    readme = readme_at(tmp_path, "intro\n<!-- results:begin -->\nold\n<!-- results:end -->\nend\n")
    results_table.main([results_run(tmp_path, "run"), "--readme", readme])
    lines = open(readme, encoding="utf-8").read().splitlines()
    assert lines[:2] == ["intro", "<!-- results:begin -->"] and lines[-2:] == ["<!-- results:end -->", "end"]
    assert "old" not in lines and "| sst-2 | all | - | - | 0.8000 (1 min) | - |" in lines


def test_a_bad_benchmark_reference_config_is_refused_before_any_measurement(capsys, task_files, tiny_bert, tmp_path):
    config = tmp_path / "config.json"
    config.write_text("{")
    fails_cleanly(capsys, benchmark.main, ["--teacher_dir", tiny_bert, "--data_file", task_files["sst-2"][1],
                                           "--sections", "size", "--reference_config", str(config)],
                  f"--reference_config {config}: not a valid JSON file")
    fails_cleanly(capsys, benchmark.main, ["--teacher_dir", tiny_bert, "--data_file", task_files["sst-2"][1],
                                           "--sections", "size", "--reference_config", str(tmp_path / "nope.json")],
                  "--reference_config", "nope.json: no such file")


def test_demo_data_ends_as_every_script_does(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "demo_data.py"), "--output_dir",
                             str(blocker / "demo")], capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: {blocker / 'demo'}: Not a directory"
