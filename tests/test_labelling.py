"""Teacher labelling at its precisions (fp32, OpenVINO's bf16) and the logits cache: bf16 logits cached apart,
labelled rows kept when a run is cut short, and no row lost when runs share the cache."""
import contextlib
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest
from conftest import ROOT, STUDENT_FAST, data_flags, fails_cleanly

import bert_distill
import data
import distillation
import model as models
import runtimes
from files import file_sha256
from tasks import TASKS
from utils import UserError


@pytest.fixture(scope="module")
def teacher(tiny_bert, task_files):
    """(teacher directory, model, pad id, records of the SST-2 dev examples)."""
    paddle.set_device("cpu")
    tokenizer = data.load_tokenizer(tiny_bert, "--teacher_dir")
    encoder = data.TeacherEncoder(tokenizer, 32, "en")
    examples = data.read_split(TASKS["sst-2"], "dev", task_files["sst-2"][1], "--dev_file")
    return tiny_bert, models.load_teacher(tiny_bert), tokenizer.pad_token_id, [encoder.texts(ex.texts)
                                                                               for ex in examples]


@pytest.mark.skipif(not runtimes.cpu_has_bf16(), reason="the CPU has no bf16 instructions")
def test_bf16_labelling_predicts_as_the_fp32_teacher(teacher):
    _, model, pad_id, records = teacher
    reference = runtimes.teacher_logits(model, records, 16, pad_id)
    logits = runtimes.label_with_teacher(model, records, 16, pad_id, "auto", "bf16")
    assert (logits.argmax(-1) == reference.argmax(-1)).all()
    assert 0 < np.abs(logits - reference).max() < 0.05  # bf16, not fp32: close, not equal


def test_a_bf16_runtime_that_predicts_other_classes_is_refused(teacher, monkeypatch):
    _, model, pad_id, records = teacher
    real = runtimes.openvino_in_child

    def flipped(*args):
        with real(*args) as run:
            yield lambda batch: -run(batch)  # every prediction the other class

    monkeypatch.setattr(runtimes, "openvino_in_child", runtimes.contextlib.contextmanager(flipped))
    with pytest.raises(UserError, match=r"--teacher_precision bf16 \(OpenVINO\): predicts another class than the "
                                        r"fp32 teacher on 100\.0% of 60 records .* use --teacher_precision fp32"):
        runtimes.label_with_teacher(model, records, 16, pad_id, "auto", "bf16")


@pytest.mark.parametrize("flipped_records, refused", [(1, False), (2, True)])
def test_the_bf16_check_forgives_a_near_tie_not_more(teacher, flipped_records, refused):
    """Of 60 records, one other class (1.7%) is the rounding of a near-tie and passes; two (3.3%) are refused: the
    threshold sits between bf16's rate and a wrong runtime's."""
    _, model, pad_id, records = teacher
    reference = runtimes.dygraph_runner(model, runtimes.TEACHER_INPUTS)
    calls = []

    def run(batch):  # the first row of the first batches the other class
        logits = reference(batch)
        calls.append(None)
        if len(calls) <= flipped_records:
            logits[0] = -logits[0]
        return logits

    expected = pytest.raises(UserError, match=r"bf16: predicts another class than the fp32 teacher on 3\.3% of 60")
    with expected if refused else contextlib.nullcontext():
        runtimes.check_agreement(model, run, records, data.teacher_collate(pad_id), "bf16")
    assert len(records) == 60 and len(calls) > flipped_records


def test_openvino_in_its_child_process_matches_dygraph_in_fp32(teacher):
    _, model, pad_id, records = teacher
    logits = runtimes.label_with_teacher(model, records, 16, pad_id, "openvino", "fp32")
    np.testing.assert_allclose(logits, runtimes.teacher_logits(model, records, 16, pad_id), atol=1e-4)


@pytest.mark.parametrize("backend, has_bf16, refused", [
    ("auto", True, None), ("openvino", True, None),
    ("inference", True, "runs on OpenVINO, not --teacher_backend inference"),
    ("onnxruntime", True, "runs on OpenVINO, not --teacher_backend onnxruntime"),
    ("auto", False, "this CPU has no bf16 instructions")])
def test_bf16_labelling_is_refused_before_any_work_where_it_cannot_run(capsys, task_files, tiny_bert, tmp_path,
                                                                       monkeypatch, backend, has_bf16, refused):
    monkeypatch.setattr(runtimes, "cpu_has_bf16", lambda: has_bf16)
    if refused is None:
        runtimes.check_labelling_precision("bf16", backend)
        return
    argv = data_flags(task_files, "sst-2") + STUDENT_FAST + ["--teacher_dir", tiny_bert, "--teacher_backend", backend,
                                                             "--teacher_precision", "bf16", "--output_dir",
                                                             str(tmp_path / "run")]
    fails_cleanly(capsys, bert_distill.main, argv, f"--teacher_precision bf16: {refused}")


def label_as(calls):
    """A stand-in for runtimes.label_with_teacher: logits that tell the precision apart, each call recorded."""
    def label(model, records, batch_size, pad_id, backend, chosen, chunk_done=None):
        calls.append((chosen, len(records)))
        return np.full((len(records), 2), {"fp32": 1.0, "bf16": 2.0}[chosen], "float32")
    return label


def test_bf16_logits_are_cached_apart_from_fp32(teacher, tmp_path, monkeypatch):
    teacher_dir, _, pad_id, records = teacher
    digest, calls = file_sha256(os.path.join(teacher_dir, "model_state.pdparams")), []
    monkeypatch.setattr(runtimes, "label_with_teacher", label_as(calls))
    for precision in ("fp32", "bf16", "fp32", "bf16"):
        logits = distillation.cached_teacher_logits(teacher_dir, digest, records, pad_id, 2, str(tmp_path), 16,
                                                    "auto", precision)
        assert (logits == {"fp32": 1.0, "bf16": 2.0}[precision]).all()
    assert calls == [("fp32", len(records)), ("bf16", len(records))]  # each labelled once, then from its table
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(distillation.logits_cache_path(
        str(tmp_path), digest, precision)) for precision in ("fp32", "bf16"))


class Cut(Exception):
    """The run stops (a kill, a lost machine) after some chunks were labelled."""


def test_a_run_cut_short_keeps_the_chunks_it_labelled(teacher, tmp_path, monkeypatch):
    teacher_dir, _, pad_id, records = teacher
    digest = file_sha256(os.path.join(teacher_dir, "model_state.pdparams"))
    monkeypatch.setattr(runtimes, "LABEL_CHUNK", 16)  # 60 records: chunks of 16, 16, 16, 12
    real, seen = runtimes.label_with_teacher, []

    def cut_after_two_chunks(*args, chunk_done, **kwargs):
        def done(start, logits):
            chunk_done(start, logits)
            if start == 16:
                raise Cut
        return real(*args, chunk_done=done, **kwargs)

    def recording(model, chosen, *args, **kwargs):
        seen.extend(chosen)
        return real(model, chosen, *args, **kwargs)

    label = lambda: distillation.cached_teacher_logits(  # noqa: E731
        teacher_dir, digest, records, pad_id, 2, str(tmp_path), 8, "dygraph")
    with monkeypatch.context() as patch:
        patch.setattr(runtimes, "label_with_teacher", cut_after_two_chunks)
        with pytest.raises(Cut):
            label()
    table = np.load(distillation.logits_cache_path(str(tmp_path), digest, "fp32"))
    assert len(table) == 32  # the two chunks labelled before the cut
    monkeypatch.setattr(runtimes, "label_with_teacher", recording)
    logits = label()
    assert len(seen) == len({distillation.record_key(r) for r in records}) - 32  # only what was not labelled
    np.testing.assert_allclose(logits, runtimes.teacher_logits(models.load_teacher(teacher_dir), records, 8, pad_id),
                               atol=1e-5)


WRITER = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import distillation
path, first = sys.argv[2], int(sys.argv[3])
table = np.zeros(0, distillation._table_dtype(2))
for start in range(first, first + 400, 20):
    keys = [i.to_bytes(16, "little") for i in range(start, start + 20)]
    table = distillation._merged(path, table, keys, np.full((20, 2), start, "float32"), 2, "test rows")
"""


def test_runs_sharing_a_cache_lose_no_rows(tmp_path):
    """Two runs adding rows to one table at once, each from its own copy: every row of both is there at the end
    (without the lock and the merge with what is on disk, each write would drop the other run's rows)."""
    path = str(tmp_path / "logits-shared.npy")
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, ROOT, path, str(first)]) for first in (0, 10_000)]
    assert [writer.wait(timeout=300) for writer in writers] == [0, 0]
    keys = {int.from_bytes(key, "little") for key in distillation._keys(np.load(path))}
    assert keys == set(range(0, 400)) | set(range(10_000, 10_400))
