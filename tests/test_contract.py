"""The contract every script keeps: what a resume and the teacher-logits cache notice (a teacher is its weights,
config and tokenizer files), faults leave no litter (temporary exports removed however a run ends, and swept after a
SIGKILL; a full disk named by its path), and bad input is one line naming the file or flag, exit code 2, nothing
written."""
import errno
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
from conftest import ROOT, STUDENT_FAST, data_flags, fails_cleanly

import benchmark
import bert_distill
import convert_teacher
import distillation
import export_model
import files
import model as models
import plot_curves
import results_table
import runtimes
import small
import teacher
import utils
from utils import run_main


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
        return models.teacher_sha256({os.path.basename(path): files.file_sha256(path)
                                      for path in models.teacher_files(str(teacher_dir))})

    before = identity()
    (teacher_dir / "notes.md").write_text("a file that shapes nothing")
    (teacher_dir / "task.json").write_text("{}")
    assert identity() == before
    with open(teacher_dir / name, "a") as f:
        f.write(" changed")  # or added
    assert identity() != before


# ---------------------------------------------------------------------------------------------------------------
# 4. Faults leave no litter


def scratch_root_in(directory):
    return directory / f"distill-scratch-{os.getuid()}"


@pytest.mark.parametrize("interruption", ["SIGTERM", "KeyboardInterrupt"])
def test_an_interrupted_labelling_leaves_no_export_behind(capfd, task_files, tiny_bert, tmp_path, monkeypatch,
                                                          interruption):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setattr(runtimes, "LABEL_CHUNK", 64)  # 160 records: three chunks
    batched_logits, chunks = runtimes.batched_logits, []

    def interrupted_mid_labelling(run, records, batch_size, collate, progress=None, sharded=False):
        if progress and progress.startswith("teacher labelling"):
            chunks.append(progress)
            if len(chunks) == 2:
                exports = os.listdir(scratch_root_in(temp))
                assert len(exports) == 1 and "model.pdiparams" in os.listdir(scratch_root_in(temp) / exports[0])
                if interruption == "SIGTERM":
                    signal.raise_signal(signal.SIGTERM)
                raise KeyboardInterrupt
        return batched_logits(run, records, batch_size, collate, progress, sharded)

    monkeypatch.setattr(runtimes, "batched_logits", interrupted_mid_labelling)
    output_dir = tmp_path / "out"
    argv = distill_flags(task_files, tiny_bert, tmp_path / "cache", output_dir, "--teacher_backend", "inference")
    with pytest.raises(SystemExit) as exit_info:
        run_main(bert_distill.main, argv)
    assert exit_info.value.code == 130 and len(chunks) == 2
    assert "Traceback" not in capfd.readouterr().err
    assert os.listdir(scratch_root_in(temp)) == [] and not output_dir.exists()


def ends_by(how):
    """Something that ends a run the way `how` says, from inside it."""
    def end():
        if how in ("SIGTERM", "SIGHUP", "SIGINT"):
            signal.raise_signal(getattr(signal, how))
        elif how == "bad input":
            raise utils.UserError("--flag x: bad")
        elif how == "disk full":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "x")
    return end


@pytest.mark.parametrize("has_checkpoint", [False, True])
@pytest.mark.parametrize("how, code", [("SIGTERM", 130), ("bad input", 2), ("disk full", 1)])
def test_an_output_directory_the_run_made_stays_only_to_resume_from(capsys, tmp_path, how, code, has_checkpoint):
    """However a run fails, the output directory it created goes, unless it holds a checkpoint: a fault found
    mid-run (a bf16 check of a later epoch's copies, say) must not take the training done so far with it."""
    output_dir = tmp_path / "run"

    def main(argv):
        utils.prepare_output_dir(str(output_dir))
        if has_checkpoint:
            (output_dir / "checkpoint").mkdir()
        ends_by(how)()

    with pytest.raises(SystemExit) as exit_info:
        run_main(main, [])
    assert exit_info.value.code == code and "Traceback" not in capsys.readouterr().err
    assert output_dir.exists() == has_checkpoint


@pytest.mark.parametrize("how, code", [("SIGTERM", 130), ("SIGHUP", 130), ("SIGINT", 130), ("bad input", 2),
                                       ("disk full", 1), ("success", None)])
def test_a_scratch_directory_goes_however_the_run_ends(capsys, tmp_path, monkeypatch, how, code):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    made = []

    def main(argv):
        with utils.scratch_dir("export") as path:
            made.append(path)
            open(os.path.join(path, "model.pdiparams"), "wb").close()
            ends_by(how)()

    # SIGHUP as a closed terminal delivers it: a suite started under nohup inherits it ignored, and run_main rightly
    # leaves it ignored then (test_under_nohup_a_closed_terminal_still_ends_nothing).
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        if code is None:
            run_main(main, [])
        else:
            with pytest.raises(SystemExit) as exit_info:
                run_main(main, [])
            assert exit_info.value.code == code
            assert "Traceback" not in capsys.readouterr().err
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert len(made) == 1 and os.listdir(scratch_root_in(tmp_path)) == []


def test_under_nohup_a_closed_terminal_still_ends_nothing():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        assert run_main(lambda argv: signal.raise_signal(signal.SIGHUP) or "went on", []) == "went on"
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


KILLED_MID_LABELLING = """
import os, signal, sys, tempfile
sys.path.insert(0, sys.argv[1])
tempfile.tempdir = sys.argv[2]
import paddle, data, model, runtimes
paddle.set_device("cpu")
teacher, tokenizer = model.load_teacher(sys.argv[3]), data.load_tokenizer(sys.argv[3], "--teacher_dir")
records = [data.TeacherEncoder(tokenizer, 32, "en").texts((text,)) for text in ("a good film", "not bad at all")]
runtimes.verified_predictor = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # once the teacher is exported
runtimes.label_with_teacher(teacher, records, 2, tokenizer.pad_token_id, "inference", "fp32")
"""


def test_the_export_of_a_sigkilled_labelling_is_removed_by_the_next_run(task_files, tiny_bert, tmp_path,
                                                                         monkeypatch):
    temp = tmp_path / "temp"
    temp.mkdir()
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_LABELLING, ROOT, str(temp), tiny_bert])
    assert killed.returncode == -signal.SIGKILL
    (leftover,) = os.listdir(scratch_root_in(temp))
    assert "model.pdiparams" in os.listdir(scratch_root_in(temp) / leftover)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    output_dir = tmp_path / "next"
    bert_distill.main(distill_flags(task_files, tiny_bert, tmp_path / "cache", output_dir,
                                    "--teacher_backend", "inference"))
    assert os.listdir(scratch_root_in(temp)) == []


HOLDING_A_SCRATCH_DIR = """
import sys, tempfile, time
sys.path.insert(0, sys.argv[1])
tempfile.tempdir = sys.argv[2]
import utils
with utils.scratch_dir("busy") as path:
    print(path, flush=True)
    time.sleep(600)
"""


def test_a_scratch_directory_in_use_is_never_swept(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    holder = subprocess.Popen([sys.executable, "-c", HOLDING_A_SCRATCH_DIR, ROOT, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        path = holder.stdout.readline().strip()
        assert os.path.isdir(path)
        utils.sweep_scratch()
        with utils.scratch_dir("mine") as mine:
            assert os.path.isdir(path) and os.path.isdir(mine)  # another live run's directory stays
    finally:
        holder.kill()
        holder.wait()
    utils.sweep_scratch()
    assert os.listdir(scratch_root_in(tmp_path)) == []


PARENT_OF_A_CHILD = """
import subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import runtimes
child = subprocess.Popen([sys.executable, "-c", runtimes.child_code("import time; time.sleep(600)")])
print(child.pid, flush=True)
time.sleep(600)
"""


def gone(pid):
    """Whether process pid has ended (a zombie nobody reaps in a container counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_child_process_of_the_labelling_dies_with_its_parent():
    """OpenVINO's and paddle2onnx's processes are started by runtimes.child_code: killed with their parent, even
    when the parent gets SIGKILL (no cleanup of its own runs then)."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT_OF_A_CHILD, ROOT], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert not gone(child)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    while not gone(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gone(child)


SIGNAL_AFTER_OPENVINO = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
import paddle, data, model, openvino_runtime, runtimes
paddle.set_device("cpu")
teacher, tokenizer = model.load_teacher(sys.argv[2]), data.load_tokenizer(sys.argv[2], "--teacher_dir")
records = [data.TeacherEncoder(tokenizer, 32, "en").texts(("a good film",))]
prefix = runtimes.export_static(teacher, runtimes.teacher_input_spec(list(records[0])), sys.argv[3])
onnx_path, batch = runtimes.export_onnx(prefix, os.path.join(sys.argv[3], "model.onnx")), \
    data.teacher_collate(tokenizer.pad_token_id)(records)
first, second = openvino_runtime.session(onnx_path, 1, "f32"), openvino_runtime.session(onnx_path, 2, "f32")
first(batch), second(batch)
del first, second  # the first compiled model goes first, as in benchmark.py's latency section
signal.signal(signal.SIGTERM, lambda signum, frame: print("handled", flush=True))
signal.raise_signal(signal.SIGTERM)
"""


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is not installed")
def test_a_signal_after_openvino_ran_in_the_process_is_handled(tiny_bert, tmp_path):
    """Two OpenVINO models released in the order they were made left the thread's alternate signal stack pointing at
    freed memory: the next Ctrl-C or SIGTERM was a segmentation fault instead of a clean exit (benchmark.py runs
    OpenVINO in its own process; so did the test suite, after test_benchmark.py)."""
    result = subprocess.run([sys.executable, "-c", SIGNAL_AFTER_OPENVINO, ROOT, tiny_bert, str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == "handled", result.stderr[-2000:]


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
                                     OSError("43093 requested and 7504 written")], ids=["ENOSPC", "numpy-short-write"])
def test_a_full_disk_while_caching_logits_names_the_cache_file(capsys, task_files, tiny_bert, tmp_path, monkeypatch,
                                                               failure):
    def disk_full(file, array):
        file.write(b"\x93NUMPY" + b"\0" * 100)  # half a table, then the disk is full
        raise failure

    monkeypatch.setattr(np, "save", disk_full)
    cache, output_dir = tmp_path / "cache", tmp_path / "out"
    message = fails_cleanly(capsys, bert_distill.main, distill_flags(task_files, tiny_bert, cache, output_dir),
                            f"error: {cache / 'logits-'}", ".npy: cannot be written", str(failure.strerror or failure),
                            "the cache keeps what it held before")
    assert "Traceback" not in message
    assert os.listdir(cache) == [] and not output_dir.exists()  # no half-written table, no temporary file


def test_any_os_error_while_writing_a_file_names_it(tmp_path):
    path = str(tmp_path / "results.json")

    def short_write(f):
        f.write("{")
        raise OSError("43093 requested and 7504 written")

    with pytest.raises(OSError) as error:
        files.atomic_write(path, short_write)
    assert error.value.filename == path and "43093 requested" in error.value.strerror
    assert os.listdir(tmp_path) == []


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
    files.write_json(str(directory / "results.json"), {k: v for k, v in results.items() if v is not None})
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
                                          ["--output", "curves.pgn: not a .png file name"]),
    "plot-output-without-extension": (plot_curves.main, lambda t: [results_run(t, "run"), "--output",
                                                                   str(t / "curves")],
                                      ["--output", "curves: not a .png file name"]),
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
