"""Serving the student fast on any CPU (issue 27): narrower embeddings by PCA of the teacher's, static int8 exports
calibrated on training text and predict.py on both, the serving benchmark on a task of the user's own folder, and the
fast path of English text's analysis."""
import json
import os

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from conftest import FAST, STUDENT_FAST, data_flags, fails_cleanly

import basic_words
import benchmark
import bert_distill
import data
import embeddings
import export_model
import model
import runtimes
import small
import teacher
from benchmarks import serving
from files import read_json
from tasks import TASKS
from utils import UserError
from script_output import dev_lines, profile_tables, run_predict, softmax, table
from tiny_folders import write_dataset_dir


def test_the_pca_projection_keeps_the_most_variance():
    rng = np.random.default_rng(0)
    # 200 rows in 16 dimensions, most of their variance in 3 directions, off-centre
    weights = rng.normal(size=(200, 3)) @ rng.normal(size=(3, 16)) * 5 + rng.normal(size=(200, 16)) * 0.1 + 7
    projected, kept = embeddings.pca_projection(weights, 4)
    assert projected.shape == (200, 4) and projected.dtype == np.float32
    centred = weights - weights.mean(axis=0)
    _, values, components = np.linalg.svd(centred, full_matrices=False)
    reference = centred @ components[:4].T
    np.testing.assert_allclose(np.abs(projected), np.abs(reference), rtol=1e-4, atol=1e-4)  # up to each sign
    assert kept == pytest.approx((values[:4] ** 2).sum() / (values ** 2).sum()) and kept > 0.99
    np.testing.assert_array_equal(projected, embeddings.pca_projection(weights[:, :], 4)[0])  # deterministic
    # reconstructed from 4 dimensions, the rows are nearer their originals than through any random 4 dimensions
    basis = np.linalg.lstsq(projected, centred, rcond=None)[0]
    error = np.linalg.norm(centred - projected @ basis)
    for seed in range(5):
        random_basis = np.linalg.qr(np.random.default_rng(seed).normal(size=(16, 4)))[0]
        assert error < np.linalg.norm(centred - centred @ random_basis @ random_basis.T)


def test_emb_dim_above_the_teachers_width_is_refused(tiny_bert):
    _, vocab = data.build_student_side(TASKS["sst-2"], [], "wordpiece", teacher_dir=tiny_bert)
    weights = embeddings.embedding_matrix("teacher", vocab, 0, 16, tiny_bert)
    expected, _ = embeddings.pca_projection(embeddings.word_piece_embeddings(tiny_bert), 16)
    np.testing.assert_array_equal(weights, expected)
    assert embeddings.embedding_matrix("teacher", vocab, 0, 64, tiny_bert).shape[1] == 64  # the teacher's own width
    with pytest.raises(UserError, match="--emb_dim 65: wider than the 64-d"):
        embeddings.embedding_matrix("teacher", vocab, 0, 65, tiny_bert)


@pytest.fixture(scope="module")
def pca_student(task_files, tiny_bert, tmp_path_factory):
    """(run directory, export directory, calibration file): a student distilled with the tiny teacher's embeddings
    projected to 16 dimensions, exported with static int8 calibrated on the training sentences."""
    base = tmp_path_factory.mktemp("pca-student")
    bert_distill.main(data_flags(task_files, "sst-2") + FAST + [
        "--hidden_size", "32", "--embedding", "teacher", "--emb_dim", "16", "--teacher_dir", tiny_bert,
        "--n_iter", "0", "--teacher_backend", "dygraph", "--max_steps", "3", "--lr", "0.01",
        "--cache_dir", str(base / "cache"), "--output_dir", str(base / "run")])
    calibration = base / "train.txt"
    train = data.read_split(TASKS["sst-2"], "train", task_files["sst-2"][0], "train")
    calibration.write_text("".join(example.texts[0] + "\n" for example in train), encoding="utf-8")
    export_model.main(["--student_dir", str(base / "run" / "best"), "--output_dir", str(base / "export"),
                       "--int8", "static", "--calibration_file", str(calibration)])
    return str(base / "run"), str(base / "export"), str(calibration)


def test_a_pca_student_saves_loads_and_exports(pca_student, task_files, tmp_path, capsys):
    run_dir, export_dir, _ = pca_student
    student = model.load_student(os.path.join(run_dir, "best"))
    assert student.config.emb_dim == 16 and tuple(student.model.embedder.weight.shape) == (student.config.vocab_size,
                                                                                           16)
    config = read_json(os.path.join(export_dir, model.EXPORT_CONFIG))
    assert config["int8"] == "static" and config["onnx_int8"] == "model.int8.onnx"
    nodes = onnx.load(os.path.join(export_dir, "model.onnx")).graph.node
    lstm, = [node for node in nodes if node.op_type == "LSTM"]
    assert len(lstm.input) == 5 and lstm.input[4]  # lengths fed; no initial states (zeros by default)
    assert "ReduceMax" in {node.op_type for node in nodes} and "ArgMax" not in {node.op_type for node in nodes}
    lines, _ = dev_lines("sst-2", task_files["sst-2"][1])
    (tmp_path / "dev.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    argv = ["--model_dir", export_dir, "--input_file", str(tmp_path / "dev.txt"), "--json"]
    code, fp32, _ = run_predict(capsys, argv)
    assert code == 0
    records = student.records([data.Example((line,), 0) for line in lines])
    expected = softmax(runtimes.student_logits(student.model, records, 1).astype("float64"))
    np.testing.assert_allclose([[r["probs"][label] for label in ("0", "1")] for r in fp32], expected, atol=1e-5)
    code, int8, _ = run_predict(capsys, argv + ["--int8"])
    assert code == 0 and len(int8) == len(lines)
    difference = np.abs(np.array([r["probs"]["1"] for r in int8]) - expected[:, 1]).max()
    assert 0 < difference < 0.05, difference  # quantised, and still the same model
    assert os.path.getsize(os.path.join(export_dir, "model.int8.onnx")) < os.path.getsize(
        os.path.join(export_dir, "model.onnx")) / 2


def test_static_int8_needs_its_calibration_text(pca_student, tmp_path, capsys):
    run_dir, _, calibration = pca_student
    best, out = os.path.join(run_dir, "best"), str(tmp_path / "out")
    fails_cleanly(capsys, export_model.main, ["--student_dir", best, "--output_dir", out, "--int8", "static"],
                  "--int8 static: needs --calibration_file")
    fails_cleanly(capsys, export_model.main, ["--student_dir", best, "--output_dir", out, "--int8",
                                              "--calibration_file", calibration],
                  "--calibration_file: does nothing without --int8 static")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("a good film\nnot\ttwo texts\n", encoding="utf-8")
    fails_cleanly(capsys, export_model.main, ["--student_dir", best, "--output_dir", out, "--int8", "static",
                                              "--calibration_file", str(pairs)],
                  f"--calibration_file {pairs}:2: expected one text and no TAB")
    assert not os.path.exists(out)


@pytest.fixture(scope="module")
def chinese_folder(tiny_bert, tmp_path_factory):
    """(folder, teacher, student): a tiny Chinese task of three labels in a --dataset_dir folder, the tiny BERT
    fine-tuned on it for one step, and a Bi-LSTM baseline of jieba words trained on it."""
    base = tmp_path_factory.mktemp("chinese-folder")
    folder = write_dataset_dir(str(base / "data"), "zh")
    teacher.main(["--dataset_dir", folder, "--model_name_or_path", tiny_bert, "--max_steps", "1", "--lr", "1e-3",
                  "--device", "cpu", "--output_dir", str(base / "teacher")])
    small.main(["--dataset_dir", folder] + STUDENT_FAST + ["--output_dir", str(base / "small")])
    return folder, str(base / "teacher" / "best"), str(base / "small")


def test_the_benchmark_measures_a_folder_task_with_its_own_models(chinese_folder, tiny_bert, capsys):
    folder, teacher_dir, student_run = chinese_folder
    benchmark.main(["--dataset_dir", folder, "--teacher_dir", teacher_dir, "--student_dir",
                    os.path.join(student_run, "best"), "--reference_config", os.path.join(tiny_bert, "config.json"),
                    "--num_sentences", "60", "--latency_sentences", "3", "--sections", "size", "latency", "profile"])
    output = capsys.readouterr().out
    assert f"### latency: data examples of {os.path.join(folder, 'dev.txt')}" in output
    assert "(data, 3 classes)" in output  # the size section's title: the folder's name and label count
    rows = table(output, "latency")
    student = f"Bi-LSTM student, hidden 32, emb 32 ({os.path.join(student_run, 'best')})"
    assert {row[0] for row in rows} >= {student, "teacher: 2-layer Bert, hidden 64"}
    dygraph = next(row for row in rows if row[:3] == [student, serving.DYGRAPH, "1"])
    # the student's accuracy on all 60 dev examples, as small.py measured it when training
    assert float(dygraph[5]) == pytest.approx(read_json(os.path.join(student_run, "results.json"))["metrics"]["acc"],
                                              abs=1e-4)
    rows = [row for row in table(output, "latency") if row[0] == student]
    assert {serving.ONNXRUNTIME_STATIC} <= {row[1] for row in rows}  # calibrated on the folder's train.txt
    assert [title for title in profile_tables(output)] == [f"{student}, {runtime}"
                                                           for runtime in serving.PREDICT_RUNTIMES]


def test_the_benchmark_refuses_a_folder_where_a_section_measures_sst2(chinese_folder, capsys):
    folder, teacher_dir, _ = chinese_folder
    fails_cleanly(capsys, benchmark.main, ["--dataset_dir", folder, "--teacher_dir", teacher_dir, "--sections",
                                           "latency", "labelling"],
                  "--dataset_dir: the sections labelling measure SST-2 sentences (--data_file)")
    fails_cleanly(capsys, benchmark.main, ["--dataset_dir", folder, "--teacher_dir", teacher_dir, "--sections", "size",
                                           "--calibration_file", folder],
                  "--calibration_file: does nothing without --sections latency or profile")


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.characters(max_codepoint=127), max_size=40), lower=st.booleans())
def test_ascii_text_is_split_into_the_words_berts_basic_tokenizer_gives(text, lower):
    from paddlenlp.transformers.bert.tokenizer import BasicTokenizer

    for tokenizer in (BasicTokenizer(do_lower_case=lower), BasicTokenizer(do_lower_case=lower,
                                                                          never_split=["[MASK]", "Don't"])):
        for probe in (text, f"{text} [MASK] Don't {text}"):
            assert basic_words.ascii_basic_words(tokenizer, probe) == tokenizer.tokenize(probe)


def test_the_reference_bert_reads_a_teacher_with_a_larger_vocabulary(chinese_folder, tiny_bert, tmp_path, capsys):
    # The reference BERT runs on the teacher's ids: with a smaller vocabulary (bert-base's 30,522 against
    # multilingual-e5's 250,002) its embedding lookup would fail on the teacher's larger ids.
    folder, teacher_dir, _ = chinese_folder
    reference = read_json(os.path.join(tiny_bert, "config.json"))
    reference["vocab_size"] = 8  # fewer ids than the tiny teacher's tokenizer makes
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(reference), encoding="utf-8")
    benchmark.main(["--dataset_dir", folder, "--teacher_dir", teacher_dir, "--reference_config", str(path),
                    "--student_hidden", "8", "--num_sentences", "20", "--latency_sentences", "2",
                    "--sections", "latency"])
    names = {row[0] for row in table(capsys.readouterr().out, "latency")}
    assert any(name.startswith("reference:") and "the teacher's vocabulary" in name for name in names), names
