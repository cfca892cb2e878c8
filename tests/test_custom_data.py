"""Your own data (--dataset_dir: a folder in PaddleNLP's text-classification layout with label.txt): every stage on
tiny multi-class tasks in English, Chinese and the pair layout, with tiny teachers of two families; label names
through to predict.py; the folder validated like the built-in tasks' files."""
import json
import os

import pytest
from conftest import FAST, STUDENT_FAST, fails_cleanly

import bert_distill
import data
import export_model
import model
import predict
import small
import teacher
import tiny_models
from files import read_json
from tiny_folders import KINDS, write_dataset_dir

@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    return {kind: write_dataset_dir(str(tmp_path_factory.mktemp(f"data-{kind}")), kind) for kind in KINDS}


# Each kind with a teacher family: two families in all, one of them reading Chinese through SentencePiece.
FAMILY = {"en": "bert", "zh": "bert-sentencepiece", "pair": "mpnet"}


@pytest.fixture(scope="module")
def pipelines(datasets, tmp_path_factory):
    """kind -> (run directory, {stage: results}): teacher, baseline and distilled student on each folder."""
    out = {}
    for kind, directory in datasets.items():
        base = tmp_path_factory.mktemp(f"runs-{kind}")
        teacher_model = tiny_models.write_tiny_teacher(str(base / "pretrained"), FAMILY[kind])
        flags = ["--dataset_dir", directory] + FAST
        results = {"teacher": teacher.main(flags + ["--model_name_or_path", teacher_model, "--lr", "1e-3",
                                                    "--max_epoch", "3", "--output_dir", str(base / "teacher")])}
        best = str(base / "teacher" / "best")
        student = STUDENT_FAST + ["--max_epoch", "6", "--lr", "0.01"] + \
            (["--vocab_path", os.path.join(best, "vocab.txt")] if kind != "zh" else [])
        results["small"] = small.main(["--dataset_dir", directory] + student + ["--output_dir", str(base / "small")])
        results["distill"] = bert_distill.main(
            ["--dataset_dir", directory] + student + ["--teacher_dir", best, "--n_iter", "1", "--num_workers", "1",
                                                     "--cache_dir", str(base / "cache"),
                                                     "--output_dir", str(base / "distill")])
        out[kind] = (base, results)
    return out


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_stage_trains_with_the_folder_s_labels(datasets, pipelines, kind):
    base, results = pipelines[kind]
    labels = KINDS[kind][1]
    for stage in ("teacher", "small", "distill"):
        on_disk = read_json(str(base / stage / "results.json"))
        assert on_disk["metric"] == "macro_f1" and on_disk["task"] == os.path.basename(datasets[kind])
        assert set(on_disk["metrics"]) == {"acc", "macro_f1"}
        assert set(on_disk["test_metrics"]) == {"acc", "macro_f1"}  # test.txt, scored with the best model
        assert on_disk["metrics"]["macro_f1"] == max(
            json.loads(line)["macro_f1"] for line in open(base / stage / "eval_log.jsonl"))
    assert read_json(str(base / "teacher" / "best" / model.TASK_FILE))["labels"] == labels
    assert model.load_teacher(str(base / "teacher" / "best")).config.num_labels == len(labels)
    student = model.load_student(str(base / "distill" / "best"))
    assert list(student.config.labels) == labels and student.config.is_pair == (kind == "pair")
    assert student.config.language == ("zh" if kind == "zh" else "en")  # detected: no --language given
    # The baseline learns the label words (chance: 1/5 of the topics, 1/3 of the Chinese or pair labels).
    if kind != "pair":
        assert results["small"]["metrics"]["acc"] > 0.7


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_test_metrics_are_the_saved_best_model_s(datasets, pipelines, kind):
    base, results = pipelines[kind]
    saved = model.load_student(str(base / "small" / "best"))
    task = data.load_task(dataset_dir=datasets[kind])
    test = data.read_split(task, "test", os.path.join(datasets[kind], "test.txt"), "test")
    from runtimes import student_logits
    from utils import classification_metrics
    metrics = classification_metrics(student_logits(saved.model, saved.records(test), 8), [e.label for e in test],
                                      task)
    assert metrics == pytest.approx(results["small"]["test_metrics"])


@pytest.mark.parametrize("kind", ["en", "pair"])
def test_export_and_predict_give_label_names(datasets, pipelines, tmp_path, capsys, kind):
    base, _ = pipelines[kind]
    out = str(tmp_path / "exported")
    export_model.main(["--student_dir", str(base / "distill" / "best"), "--output_dir", out])
    lines = [line.rsplit("\t", 1)[0] for line in open(os.path.join(datasets[kind], "dev.txt"), encoding="utf-8")]
    (tmp_path / "in.txt").write_text("\n".join(lines[:20]) + "\n", encoding="utf-8")
    capsys.readouterr()
    label_file = os.path.join(datasets[kind], "label.txt")
    assert predict.main(["--model_dir", out, "--input_file", str(tmp_path / "in.txt"), "--json",
                         "--label_file", label_file]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(answers) == 20 and all(answer["label"] in KINDS[kind][1] for answer in answers)
    assert all(list(answer["probs"]) == KINDS[kind][1] for answer in answers)
    # A label.txt reordered since training: the model's outputs would be read as other labels
    reordered = tmp_path / "label.txt"
    reordered.write_text("\n".join(reversed(KINDS[kind][1])) + "\n", encoding="utf-8")
    fails_cleanly(capsys, predict.main, ["--model_dir", out, "--input_file", str(tmp_path / "in.txt"),
                                         "--label_file", str(reordered)], f"--label_file {reordered}", "order")


def test_the_teacher_exports_with_its_recorded_task(pipelines, datasets, tmp_path, capsys):
    base, _ = pipelines["zh"]
    out = str(tmp_path / "teacher-export")
    config = export_model.main(["--teacher_dir", str(base / "teacher" / "best"), "--output_dir", out])
    assert config["labels"] == KINDS["zh"][1] and config["language"] == "zh" and not config["is_pair"]
    (tmp_path / "in.txt").write_text("这个酒店很好\n房间糟糕\n", encoding="utf-8")
    capsys.readouterr()
    assert predict.main(["--model_dir", out, "--input_file", str(tmp_path / "in.txt")]) == 0
    assert [line.split("\t")[0] in KINDS["zh"][1] for line in capsys.readouterr().out.splitlines()] == [True, True]


def test_distilling_from_a_teacher_trained_on_another_label_order_is_refused(pipelines, datasets, tmp_path, capsys):
    base, _ = pipelines["en"]
    moved = str(tmp_path / os.path.basename(datasets["en"]))  # the same folder name, its label.txt reordered
    write_dataset_dir(moved, "en")
    labels = KINDS["en"][1]
    with open(os.path.join(moved, "label.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(labels[1:] + labels[:1]) + "\n")
    fails_cleanly(capsys, bert_distill.main, ["--dataset_dir", moved, "--teacher_dir", str(base / "teacher" / "best"),
                                              "--output_dir", str(tmp_path / "out"), "--cache_dir",
                                              str(tmp_path / "cache")], "fine-tuned with the labels", "order")


def test_the_language_flag_overrides_detection(datasets, caplog):
    import logging
    with caplog.at_level(logging.INFO, logger="distill"):
        assert data.load_task(dataset_dir=datasets["zh"]).language == "zh"
    assert "language zh detected" in caplog.text
    assert data.load_task(dataset_dir=datasets["zh"], language="en").language == "en"
    assert data.load_task(dataset_dir=datasets["en"]).language == "en"


def write_folder(directory, labels="a\nb\n", train="good\ta\nbad\tb\n", dev="fine\ta\n", test=None):
    os.makedirs(directory, exist_ok=True)
    for name, text in (("label.txt", labels), ("train.txt", train), ("dev.txt", dev), ("test.txt", test)):
        if text is not None:
            with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
                f.write(text)
    return str(directory)


@pytest.mark.parametrize("files, expected", [
    ({"train": "good\ta\nbad\tc\n"}, "train.txt:2: label 'c' is not one of ['a', 'b']"),
    ({"dev": "fine\ta\nno label here\n"}, "dev.txt:2: expected 2 tab-separated fields, found 1"),
    ({"train": "good\tbad\ta\nok\tb\n"}, "train.txt:2: expected 3 tab-separated fields, found 2"),
    ({"labels": "a\nb\na\n"}, "label.txt:3: label 'a' repeats line 1"),
    ({"labels": "a\n\nb\n"}, "label.txt:2: expected one label name"),
    ({"labels": "a\n"}, "label.txt: expected at least two labels"),
    ({"dev": ""}, "dev.txt: expected at least one example"),
    ({"test": "fine\tz\n"}, "test.txt:1: label 'z' is not one of"),
    ({"train": "just text\n"}, "train.txt:1: expected text<TAB>label"),
])
def test_a_bad_folder_is_refused_naming_file_and_line(tmp_path, capsys, files, expected):
    folder = write_folder(tmp_path / "data", **files)
    fails_cleanly(capsys, small.main, ["--dataset_dir", folder, "--output_dir", str(tmp_path / "out")], expected)


def test_flags_that_do_not_go_with_a_folder_are_refused(tmp_path, capsys):
    folder = write_folder(tmp_path / "data")
    out = ["--output_dir", str(tmp_path / "out")]
    fails_cleanly(capsys, small.main, ["--dataset_dir", folder, "--train_file", "x.tsv"] + out, "--train_file",
                  "not with --dataset_dir")
    fails_cleanly(capsys, small.main, ["--task_name", "sst-2", "--dataset_dir", folder] + out, "--dataset_dir")
    fails_cleanly(capsys, small.main, ["--dataset_dir", str(tmp_path / "missing")] + out, "no such directory")
    os.remove(os.path.join(folder, "dev.txt"))
    fails_cleanly(capsys, small.main, ["--dataset_dir", folder] + out, "no dev.txt")


def test_the_results_table_lists_folder_runs_with_commands_that_rerun_them(pipelines, datasets, capsys):
    import shlex

    import results_table
    from args import parse_args
    base, results = pipelines["pair"]
    text = results_table.main([str(base / stage) for stage in ("teacher", "small", "distill")])
    row = next(line for line in text.splitlines() if line.startswith(f"| {os.path.basename(datasets['pair'])} |"))
    assert f"{results['distill']['metrics']['acc']:.4f} / {results['distill']['metrics']['macro_f1']:.4f}" in row
    commands = [line.split("`")[1] for line in text.splitlines() if line.startswith("- ")]
    assert len(commands) == 3
    for command in commands:
        words = shlex.split(command)
        script = {"teacher.py": "teacher", "small.py": "small", "bert_distill.py": "distill"}[words[1]]
        recorded = results[script]["flags"]
        assert words[2:4] == ["--dataset_dir", datasets["pair"]]
        parsed = vars(parse_args(script, words[2:]))
        assert {k: v for k, v in parsed.items() if k != "script"} == \
            {k: v for k, v in recorded.items() if k not in ("script", "world_size")}


def test_a_folder_s_teacher_takes_the_teacher_defaults(datasets):
    # Fine-tuning a teacher has one recipe whatever the task: a folder's run must not fall back to the students'.
    from args import TEACHER_DEFAULTS, parse_args
    common = ["--model_name_or_path", "some-model", "--output_dir", "out"]
    folder = vars(parse_args("teacher", ["--dataset_dir", datasets["en"]] + common))
    built_in = vars(parse_args("teacher", ["--task_name", "sst-2"] + common))
    assert {name: folder[name] for name in TEACHER_DEFAULTS} == TEACHER_DEFAULTS
    assert {name: built_in[name] for name in TEACHER_DEFAULTS} == TEACHER_DEFAULTS
