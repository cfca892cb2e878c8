"""benchmark.py on the tiny BERT: the size section counts parameters right, and every section prints its table."""
import contextlib
import importlib.util
import io
import os
import re

import pytest

import benchmark
import runtimes
from args import BENCHMARK_SECTIONS
from benchmarks import serving
from files import read_json, write_json
from utils import CPU_CORES


@pytest.fixture(scope="module")
def output(tiny_bert, task_files, tmp_path_factory):
    """stdout of one run of every section but scaling and http (tested on their own; http in test_serve.py), with the
    tiny BERT as teacher and as reference (its config saying use_cache, as HuggingFace configs do)."""
    reference = str(tmp_path_factory.mktemp("reference") / "config.json")
    write_json(reference, {**read_json(os.path.join(tiny_bert, "config.json")), "use_cache": True})
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        benchmark.main(["--teacher_dir", tiny_bert, "--reference_config", reference,
                        "--data_file", task_files["sst-2"][1], "--num_sentences", "12", "--latency_sentences", "3",
                        "--sections", *(section for section in benchmark.SECTIONS
                                        if section not in ("scaling", "http"))])
    return stdout.getvalue()


def table(output, section):
    """The rows (lists of cells) of the Markdown table printed under '### <section>:'."""
    text = output.split(f"### {section}:")[1].split("\n### ")[0]
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(lines) > 2 and set(lines[1]) <= set("|-: "), f"no table under {section}"
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def number(cell):
    return float(re.sub(r"[,x]", "", cell))


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


STUDENT_RUNTIMES = {serving.DYGRAPH, serving.PADDLE_ONEDNN_CACHE, serving.PADDLE_ONEDNN, serving.PADDLE,
                    serving.ONNXRUNTIME, serving.ONNXRUNTIME_INT8}
# the teachers (the tiny BERT converts to ONNX; int8 is for students) also on OpenVINO, where it is installed
TEACHER_RUNTIMES = STUDENT_RUNTIMES - {serving.ONNXRUNTIME_INT8} | (
    {serving.OPENVINO} | ({serving.OPENVINO_BF16} if runtimes.cpu_has_bf16() else set())
    if importlib.util.find_spec("openvino") else set())


def test_latency_runs_every_model_on_every_runtime_and_thread_count(output):
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
    agreement = {(row[0], row[1], row[2]): float(row[5].rstrip("%")) for row in rows}
    assert all(share == 100.0 for (_, runtime, _), share in agreement.items()
               if runtime in (serving.DYGRAPH, serving.PADDLE, serving.ONNXRUNTIME))  # fp32 agrees


def test_best_against_best_takes_each_models_fastest_runtime(output):
    rows, best = table(output, "latency"), table(output, "best against best")
    assert best[0][0] == "Bi-LSTM student, hidden 300" and best[0][4] == best[0][7] == "1.0x"
    for model, threads, fastest, ms, _, most, per_second, _ in best:
        own = [row for row in rows if row[0] == model and row[2] == threads and float(row[5].rstrip("%")) >= 99]
        # the named runtime is one of the model's, and none of them is faster (ties in the printed digits allowed)
        assert [fastest, ms] in [row[1:4:2] for row in own] and number(ms) == min(number(row[3]) for row in own)
        assert [most, per_second] in [row[1:5:3] for row in own] and \
            number(per_second) == max(number(row[4]) for row in own)


def test_end_to_end_serves_every_student_on_fp32_and_int8(output):
    rows = table(output, "end to end")
    assert [row[:2] for row in rows] == [[f"Bi-LSTM student, hidden {hidden}", runtime] for hidden in (300, 150)
                                         for runtime in (serving.ONNXRUNTIME, serving.ONNXRUNTIME_INT8)]
    assert all(number(row[2]) > 0 for row in rows)


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
    name = f"Bi-LSTM student, hidden 32 ({best})"
    assert {row[0] for row in table(output, "latency") if row[0].startswith("Bi-LSTM")} == {name}
    assert [row[:2] for row in table(output, "end to end")] == [[name, serving.ONNXRUNTIME],
                                                                 [name, serving.ONNXRUNTIME_INT8]]


def test_every_section_the_flags_offer_is_measured():
    assert tuple(benchmark.SECTIONS) == BENCHMARK_SECTIONS
