"""From checkpoint to service: export a trained student (or a teacher), label text with predict.py, plot curves."""
import os
import subprocess

import numpy as np
import pytest
from conftest import ROOT, data_flags, fails_cleanly
from script_output import dev_lines, run_predict, softmax

import data
import export_model
import model
import plot_curves
import predict
import runtimes
import teacher
from files import read_json


@pytest.mark.parametrize("runtime", ["onnxruntime", "paddle"])
@pytest.mark.parametrize("task", ["sst-2", "qqp", "chnsenticorp"])
def test_predict_reproduces_the_training_evaluation(students, task_files, tmp_path, capsys, task, runtime):
    run_dir, export_dir = students[task]
    config = read_json(os.path.join(export_dir, model.EXPORT_CONFIG))
    assert config["kind"] == "student" and config["task_name"] == task and config["is_pair"] == (task == "qqp")
    assert config["use_pieces"] == (task != "chnsenticorp") and config["labels"] == ["0", "1"]
    assert {"vocab.txt", "model.pdiparams", "model.onnx", model.EXPORT_CONFIG} <= set(os.listdir(export_dir))
    assert not os.path.exists(export_dir + ".tmp")
    assert predict.ExportedModel(export_dir).runtime == "onnxruntime"  # the default for students

    lines, labels = dev_lines(task, task_files[task][1])
    (tmp_path / "dev.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, records, _ = run_predict(capsys, ["--model_dir", export_dir, "--input_file", str(tmp_path / "dev.txt"),
                                            "--json", "--batch_size", "7", "--runtime", runtime])
    assert code == 0 and [r["line"] for r in records] == list(range(1, len(lines) + 1))
    probs = np.array([[r["probs"][label] for label in config["labels"]] for r in records])
    predicted = np.array([int(r["label"]) for r in records])
    results = read_json(os.path.join(run_dir, "results.json"))
    assert (predicted == labels).mean() == pytest.approx(results["metrics"]["acc"], abs=1e-9)

    # The same examples through the dygraph student, in the order of the dev file.
    student = model.load_student(os.path.join(run_dir, "best"))
    records = student.records([data.Example(tuple(line.split("\t")), 0) for line in lines])
    logits = runtimes.student_logits(student.model, records, 1)
    np.testing.assert_allclose(probs, softmax(logits.astype("float64")), atol=1e-5)


@pytest.mark.parametrize("task", ["sst-2", "qqp"])
def test_the_int8_student_stays_close_to_the_fp32_one(students, task_files, tmp_path, capsys, task):
    run_dir, export_dir = students[task]
    lines, _ = dev_lines(task, task_files[task][1])
    (tmp_path / "dev.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    argv = ["--model_dir", export_dir, "--input_file", str(tmp_path / "dev.txt"), "--json"]
    fp32, int8 = (np.array([r["probs"]["1"] for r in run_predict(capsys, argv + extra)[1]]) for extra in ([], ["--int8"]))
    assert os.path.getsize(os.path.join(export_dir, "model.int8.onnx")) < os.path.getsize(
        os.path.join(export_dir, "model.onnx")) / 2
    assert 0 < np.abs(int8 - fp32).max() < 0.05, np.abs(int8 - fp32).max()  # quantised, and still the same model


@pytest.mark.parametrize("runtime", ["onnxruntime", "paddle"])
def test_teacher_export_labels_pairs_like_the_dygraph_teacher(teacher_export, tiny_bert, task_files, tmp_path,
                                                              capsys, runtime):
    assert predict.ExportedModel(teacher_export).runtime == "onnxruntime"  # the default, as for students
    lines, _ = dev_lines("qqp", task_files["qqp"][1])
    lines = lines[:20] + ["how do i learn python ? " * 20 + "\tshort"]  # cut to 24 pieces
    (tmp_path / "pairs.txt").write_text("\n".join(lines), encoding="utf-8")  # no final newline
    code, records, _ = run_predict(capsys, ["--model_dir", teacher_export, "--input_file",
                                            str(tmp_path / "pairs.txt"), "--json", "--runtime", runtime])
    assert code == 0 and len(records) == len(lines)
    bert = model.load_teacher(tiny_bert)
    tokenizer = data.load_tokenizer(tiny_bert, "dir")
    encoder = data.TeacherEncoder(tokenizer, 24, "en")
    encoded = [encoder.texts(line.split("\t")) for line in lines]
    assert len(encoded[-1]["input_ids"]) == 24
    expected = softmax(runtimes.teacher_logits(bert, encoded, 8, tokenizer.pad_token_id).astype("float64"))
    np.testing.assert_allclose([[r["probs"]["0"], r["probs"]["1"]] for r in records], expected, atol=1e-4)


@pytest.mark.parametrize("task", ["sst-2", "chnsenticorp"])
def test_predict_survives_awkward_text(students, capsys, monkeypatch, task):
    awkward = ["a great film", "", "   ", "good " * 1000, "ok 😀 très bien 好极了 ✓ ٱلسَّلَامُ Ω\x07 \u200b\ufeff",
               "很好" * 2500, "x" * 5000]
    stdin = ("\r\n".join(awkward) + "\n").encode() + b"caf\xe9 \xff\xfe broken utf-8\n"
    code, lines, err = run_predict(capsys, ["--model_dir", students[task][1]], stdin, monkeypatch)
    assert code == 0 and not err
    assert len(lines) == len(awkward) + 1
    for line in lines:
        label, *probs = line.split("\t")
        assert label in ("0", "1") and len(probs) == 2 and sum(map(float, probs)) == pytest.approx(1, abs=2e-4)


def test_malformed_pair_lines_are_reported_and_the_rest_labelled(students, capsys, monkeypatch):
    text = "how do i learn python ?\twhat is python ?\nno tab at all\na\tb\tc\n\nwhat is math ?\thow is math ?\n"
    code, lines, err = run_predict(capsys, ["--model_dir", students["qqp"][1]], text.encode(), monkeypatch)
    assert code == 1
    assert lines[1] == lines[2] == lines[3] == "" and len(lines) == 5
    assert lines[0].split("\t")[0] in ("0", "1") and lines[4].split("\t")[0] in ("0", "1")
    assert err[0].startswith("<stdin>:2: expected two texts") and err[1].startswith("<stdin>:3:")
    assert err[2].startswith("<stdin>:4:") and "3 malformed" in err[-1]
    code, records, _ = run_predict(capsys, ["--model_dir", students["qqp"][1], "--json"], text.encode(), monkeypatch)
    assert code == 1 and [r["line"] for r in records] == [1, 2, 3, 4, 5]
    assert "error" in records[1] and "label" in records[4]


def test_bad_export_and_predict_input(students, tiny_bert, tmp_path, capsys):
    out = str(tmp_path / "out")
    fails_cleanly(capsys, export_model.main, ["--student_dir", str(tmp_path / "nope"), "--output_dir", out],
                  "--student_dir", "no such directory")
    fails_cleanly(capsys, export_model.main, ["--student_dir", tiny_bert, "--output_dir", out],
                  "--student_dir", "not a student directory")
    fails_cleanly(capsys, export_model.main, ["--teacher_dir", tiny_bert, "--output_dir", out], "--task_name")
    fails_cleanly(capsys, export_model.main, ["--student_dir", os.path.join(students["sst-2"][0], "best"),
                                              "--output_dir", students["sst-2"][0]], "--output_dir", "not an earlier")
    assert not os.path.exists(out) and not os.path.exists(out + ".tmp")
    fails_cleanly(capsys, predict.main, ["--model_dir", tiny_bert], "--model_dir", "export_config.json")
    fails_cleanly(capsys, predict.main, ["--model_dir", students["sst-2"][1], "--input_file", out], "--input_file")


def test_the_test_predictions_recipe_labels_every_text_in_order(students, task_files, tmp_path):
    """recipes/test_predictions.sh on a test.tsv made of the dev texts: one line per text, in file order, whose labels
    score the run's recorded dev accuracy; OUT chooses the folder, and a missing one fails before anything runs."""
    run_dir = students["sst-2"][0]
    lines, labels = dev_lines("sst-2", task_files["sst-2"][1])
    (tmp_path / "test.tsv").write_text("sentence\n" + "\n".join(lines) + "\n", encoding="utf-8")
    recipe = os.path.join(ROOT, "recipes", "test_predictions.sh")
    env = dict(os.environ, TEST=str(tmp_path / "test.tsv"), OUT=str(tmp_path / "out"))

    done = subprocess.run(["bash", recipe, run_dir], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "OUT" in done.stderr and not (tmp_path / "out").exists()
    (tmp_path / "out").mkdir()
    done = subprocess.run(["bash", recipe, run_dir], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    written = (tmp_path / "out" / os.path.basename(run_dir) / "test_predictions.tsv").read_text().splitlines()
    assert len(written) == len(lines)
    predicted = np.array([int(line.split("\t")[0]) for line in written])
    results = read_json(os.path.join(run_dir, "results.json"))
    assert (predicted == labels).mean() == pytest.approx(results["metrics"]["acc"], abs=1e-9)


def test_plot_curves_writes_a_png(students, tmp_path, capsys):
    runs = [students["sst-2"][0], students["chnsenticorp"][0]]
    output = str(tmp_path / "curves.png")
    plot_curves.main(runs + ["--output", output])
    with open(output, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(output) > 10000
    assert plot_curves.run_label(runs[0]).startswith("small (")
    steps, values = plot_curves.read_curve(runs[0], "acc")
    assert steps == [5, 10, 15, 20] and len(values) == 4
    fails_cleanly(capsys, plot_curves.main, [str(tmp_path), "--output", output], str(tmp_path), "eval_log.jsonl")


def test_teacher_export_takes_task_and_length_from_teacher_py(task_files, tiny_bert, tmp_path):
    teacher.main(data_flags(task_files, "chnsenticorp") + ["--model_name_or_path", tiny_bert, "--max_steps", "1",
                                                           "--max_seq_length", "40", "--device", "cpu",
                                                           "--output_dir", str(tmp_path / "teacher")])
    config = export_model.main(["--teacher_dir", str(tmp_path / "teacher" / "best"),
                                "--output_dir", str(tmp_path / "exported")])
    assert (config["task_name"], config["max_seq_length"], config["language"]) == ("chnsenticorp", 40, "zh")
