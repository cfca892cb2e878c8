"""benchmark.py on the tiny BERT: the size section counts parameters right, and every section prints its table."""
import contextlib
import importlib.util
import io
import os

import pytest

import numpy as np

import benchmark
import data
import model as models
import runtimes
from args import BENCHMARK_SECTIONS
from benchmarks import profile, serving
from files import read_json, write_json
from script_output import number, profile_tables, table
from tasks import TASKS
from utils import CPU_CORES


def training_sentences(task_files, path):
    """The training sentences of the tiny SST-2 task, one per line: calibration text for static int8."""
    train = data.read_split(TASKS["sst-2"], "train", task_files["sst-2"][0], "train")
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(example.texts[0] + "\n" for example in train))
    return str(path)


@pytest.fixture(scope="module")
def output(tiny_bert, task_files, tmp_path_factory):
    """stdout of one run of every section but scaling and http (tested on their own; http in test_serve.py), with the
    tiny BERT as teacher and as reference (its config saying use_cache, as HuggingFace configs do)."""
    base = tmp_path_factory.mktemp("reference")
    reference = str(base / "config.json")
    write_json(reference, {**read_json(os.path.join(tiny_bert, "config.json")), "use_cache": True})
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        benchmark.main(["--teacher_dir", tiny_bert, "--reference_config", reference,
                        "--data_file", task_files["sst-2"][1], "--num_sentences", "12", "--latency_sentences", "3",
                        "--calibration_file", training_sentences(task_files, base / "train.txt"),
                        "--sections", *(section for section in benchmark.SECTIONS
                                        if section not in ("scaling", "http"))])
    return stdout.getvalue()


def lstm_student_parameters(vocab, emb, hidden, labels=2):
    lstm = 2 * (4 * hidden * (emb + hidden) + 2 * 4 * hidden)  # two directions, input and hidden weights and biases
    return vocab * emb + lstm + (2 * hidden * hidden + hidden) + (hidden * labels + labels)


def bert_parameters(c, labels=2):
    hidden, inner = c["hidden_size"], c["intermediate_size"]
    embeddings = (c["vocab_size"] + c["max_position_embeddings"] + c["type_vocab_size"]) * hidden + 2 * hidden
    layer = 4 * (hidden * hidden + hidden) + 2 * hidden * inner + inner + hidden + 2 * 2 * hidden
    return embeddings + c["num_hidden_layers"] * layer + (hidden * hidden + hidden) + (hidden * labels + labels)


def test_size_counts_parameters(output, tiny_bert):
    config = read_json(os.path.join(tiny_bert, "config.json"))
    vocab, hidden = config["vocab_size"], config["hidden_size"]
    rows = table(output, "size")
    assert [row[0].split(":")[0] for row in rows] == ["Bi-LSTM student"] * 2 + ["teacher", "reference"]
    counts = [(int(number(row[1])), int(number(row[4]))) for row in rows]
    for (total, without_embeddings), emb in zip(counts, (hidden, 300)):  # embeddings from the teacher, then 300-d
        assert total == lstm_student_parameters(vocab, emb, hidden=300)
        assert without_embeddings == total - vocab * emb
    for total, without_embeddings in counts[2:]:  # the reference is built from the teacher's own config
        assert total == bert_parameters(config)
        assert without_embeddings == total - vocab * hidden
    assert rows[0][3] == rows[0][5] == "1.0x"
    assert number(rows[2][3]) == pytest.approx(counts[2][0] / counts[0][0], abs=0.05)


# the teachers (the tiny BERT converts to ONNX; int8 is for students) and the students also on OpenVINO, where it is
# installed
OPENVINO = ({serving.OPENVINO} | ({serving.OPENVINO_BF16} if runtimes.cpu_has_bf16() else set())
            if importlib.util.find_spec("openvino") else set())
TEACHER_RUNTIMES = {serving.DYGRAPH, serving.PADDLE_ONEDNN_CACHE, serving.PADDLE_ONEDNN, serving.PADDLE,
                    serving.ONNXRUNTIME} | OPENVINO
STUDENT_RUNTIMES = TEACHER_RUNTIMES | {serving.ONNXRUNTIME_INT8, serving.ONNXRUNTIME_STATIC} | (
    {serving.OPENVINO_INT8} if OPENVINO else set())


def teacher_predictions(tiny_bert, task_files):
    """The tiny BERT's classes for the first 12 dev sentences, as the benchmark's teacher (two classes) gives them."""
    examples = data.read_split(TASKS["sst-2"], "dev", task_files["sst-2"][1], "dev")[:12]
    tokenizer = data.load_tokenizer(tiny_bert, "dir")
    encoder = data.TeacherEncoder(tokenizer, 64, "en")
    teacher = models.load_teacher(tiny_bert, num_labels=2)
    return runtimes.teacher_logits(teacher, [encoder.texts(ex.texts) for ex in examples], 4,
                                   tokenizer.pad_token_id).argmax(-1)


def test_latency_runs_every_model_on_every_runtime_and_thread_count(output, tiny_bert, task_files):
    rows = table(output, "latency")
    runs = {}
    for model, runtime, threads, *_ in rows:
        runs.setdefault((model.split(",")[0].split(":")[0], threads), set()).add(runtime)
    thread_counts = sorted({1, CPU_CORES})
    assert sorted(runs) == sorted((model, str(t)) for model in ("Bi-LSTM student", "teacher", "reference")
                                  for t in thread_counts)
    students = [row[0] for row in rows if row[0].startswith("Bi-LSTM")]
    assert sorted(set(students)) == ["Bi-LSTM student, hidden 150", "Bi-LSTM student, hidden 300"]
    for (model, _), served_by in runs.items():
        assert served_by == (STUDENT_RUNTIMES if model == "Bi-LSTM student" else TEACHER_RUNTIMES)
    assert all(number(cell) > 0 for row in rows for cell in row[3:5])
    agreement = {(row[0], row[1], row[2]): float(row[6].rstrip("%")) for row in rows}
    assert all(share == 100.0 for (_, runtime, _), share in agreement.items()
               if runtime in (serving.DYGRAPH, serving.PADDLE, serving.ONNXRUNTIME))  # fp32 agrees
    assert all(number(row[5]) in {round(k / 12, 4) for k in range(13)} for row in rows)  # of the 12 sentences
    labels = np.array([ex.label for ex in data.read_split(TASKS["sst-2"], "dev", task_files["sst-2"][1], "dev")[:12]])
    assert {row[5] for row in rows if row[1] == serving.DYGRAPH and row[0].startswith("teacher")} == {
        f"{(teacher_predictions(tiny_bert, task_files) == labels).mean():.4f}"}


def test_best_against_best_takes_each_models_fastest_runtime_near_its_dygraph_accuracy(output):
    rows, best = table(output, "latency"), table(output, "best against best")
    assert best[0][0] == "Bi-LSTM student, hidden 300" and best[0][5] == best[0][9] == "1.0x"
    for model_name, threads, fastest, accuracy, ms, _, most, accuracy64, per_second, _ in best:
        dygraph = next(number(row[5]) for row in rows if row[:3] == [model_name, serving.DYGRAPH, threads])
        own = [row for row in rows if row[0] == model_name and row[2] == threads and
               number(row[5]) >= dygraph - serving.MAX_ACCURACY_DROP - 1e-9]
        # the named runtime is one of the model's, and none of them is faster (ties in the printed digits allowed)
        assert [fastest, ms] in [row[1:4:2] for row in own] and number(ms) == min(number(row[3]) for row in own)
        assert [most, per_second] in [row[1:5:3] for row in own] and \
            number(per_second) == max(number(row[4]) for row in own)
        assert accuracy.split()[0] == next(row[5] for row in own if row[1] == fastest)
        assert accuracy64.split()[0] == next(row[5] for row in own if row[1] == most)
    left_out = {f"{row[0]}, {row[1]}" for row in rows if number(row[5]) < next(
        number(r[5]) for r in rows if r[:3] == [row[0], serving.DYGRAPH, row[2]]) - serving.MAX_ACCURACY_DROP - 1e-9}
    if left_out:
        note = output.split("Left out of the comparisons below")[1].split("\n\n")[0]
        assert all(pair in note for pair in left_out)


def test_end_to_end_serves_every_student_as_predict_py_can_and_shows_the_rest(output):
    rows = table(output, "end to end")
    assert [row[:2] for row in rows] == [[f"Bi-LSTM student, hidden {hidden}", runtime] for hidden in (300, 150)
                                         for runtime in serving.PREDICT_RUNTIMES]
    for _, _, total, model_ms, rest, share, encoding in rows:
        assert number(total) > 0 and number(model_ms) > 0 and number(encoding) > 0
        assert number(rest) == pytest.approx(number(total) - number(model_ms), abs=2e-3)
        assert float(share.rstrip("%")) == pytest.approx(100 * number(rest) / number(total), abs=1)


def test_profile_shows_where_each_students_time_goes(output):
    tables = profile_tables(output)
    assert list(tables) == [f"Bi-LSTM student, hidden {hidden}, {runtime}" for hidden in (300, 150)
                            for runtime in serving.PREDICT_RUNTIMES]
    for rows in tables.values():
        operators = {row[0]: row for row in rows[:-1]}
        assert rows[-1][0] == "all" and {"Gather", profile.BETWEEN} <= set(operators)
        assert operators.keys() & {"LSTM", "DynamicQuantizeLSTM"}
        for column in (2, 4):  # the shares at batch 1 and at batch 64, each rounded to 0.1%
            assert sum(float(row[column].rstrip("%")) for row in operators.values()) == pytest.approx(
                100, abs=0.05 * len(operators) + 1e-9)
        for column in (1, 3):  # the times add up to the whole
            assert sum(number(row[column]) for row in operators.values()) == pytest.approx(number(rows[-1][column]),
                                                                                         abs=0.1 * len(rows))


def test_distill_cost_times_both_ways_and_the_labelling(output):
    rows = table(output, "distill_cost")
    assert len(rows) == 3 and "cached" in rows[0][0] and "every batch" in rows[1][0] and "labelling" in rows[2][0]
    assert all(number(cell) > 0 for row in rows for cell in row[1:])
    assert rows[0][3] == "1.0x"
    assert "12 sentences" in output.split("### distill_cost:")[1].splitlines()[0]


def test_labelling_table(output):
    rows = {row[0][:3]: row for row in table(output, "labelling")}
    openvino = ["(g)"] + (["(h)"] if runtimes.cpu_has_bf16() else []) if importlib.util.find_spec("openvino") else []
    assert list(rows) == ["(a)", "(b)", "(c)", "(d)", "(e)", "(f)"] + openvino  # (e): ONNX Runtime, (f): its int8
    for name in ["(a)", "(b)", "(c)", "(d)", "(e)"] + openvino[:1]:  # every fp32 way gives the same logits
        assert number(rows[name][5]) < 1e-3 and rows[name][4] == "100.00%"
    assert number(rows["(e)"][3]) == 1.0  # today's labelling is the reference of the speed-ups
    for name in ["(f)"] + openvino[1:]:  # int8 and bf16: close, not equal
        assert 0 < number(rows[name][5]) < 0.5


def test_augmentation_table(output):
    rows = table(output, "augmentation")
    assert rows[0][0].startswith("POS tagging")
    built = rows[1:]
    assert [r[0] for r in built][0] == "augmentation, 1 process" and number(built[0][3]) == 1.0
    sizes = {int(r[2]) for r in built}
    assert len(sizes) == 1 and sizes.pop() > 12  # originals plus copies, the same for every worker count
    assert "identical: True" in output


def test_scaling_compares_one_process_with_one_per_core(tiny_bert, task_files, capsys):
    benchmark.main(["--sections", "scaling", "--teacher_dir", tiny_bert, "--data_file", task_files["sst-2"][0],
                    "--num_sentences", "160"])
    output = capsys.readouterr().out
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        assert "one core: nothing to compare" in output
        return
    rows = table(output, "scaling")
    assert [row[0] for row in rows] == ["1 process × 1 thread", f"1 process × {cores} threads",
                                        f"{cores} processes × 1 thread"]
    assert number(rows[1][2]) == 1.0 and all(number(row[1]) > 0 and number(row[3]) > 0 for row in rows)
    assert "Largest logit difference from the 1-process labelling: 0.0e+00" in output


def test_latency_measures_trained_students(tiny_bert, task_files, tmp_path, capsys):
    import small
    from conftest import STUDENT_FAST, data_flags

    small.main(data_flags(task_files, "sst-2") + STUDENT_FAST + [
        "--vocab_path", os.path.join(tiny_bert, "vocab.txt"), "--output_dir", str(tmp_path / "small")])
    best = str(tmp_path / "small" / "best")
    benchmark.main(["--sections", "latency", "--teacher_dir", tiny_bert, "--reference_config",
                    os.path.join(tiny_bert, "config.json"), "--student_dir", best, "--data_file",
                    task_files["sst-2"][1], "--num_sentences", "12", "--latency_sentences", "3"])
    output = capsys.readouterr().out
    name = f"Bi-LSTM student, hidden 32, emb 32 ({best})"
    assert {row[0] for row in table(output, "latency") if row[0].startswith("Bi-LSTM")} == {name}
    assert [row[:2] for row in table(output, "end to end")] == [[name, serving.ONNXRUNTIME],
                                                                 [name, serving.ONNXRUNTIME_INT8]]  # no calibration
    assert serving.ONNXRUNTIME_STATIC not in {row[1] for row in table(output, "latency")}


def test_every_section_the_flags_offer_is_measured():
    assert tuple(benchmark.SECTIONS) == BENCHMARK_SECTIONS
