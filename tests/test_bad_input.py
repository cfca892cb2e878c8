"""Bad flags, bad output and cache paths, and damaged caches. A flag out of its range is refused at parse time and a
bad --output_dir or --cache_dir before any work (exit code 2, one line naming the flag and what is allowed, nothing
written); a damaged cache entry is reported, moved aside to <name>.bad and computed again."""
import errno
import io
import json
import logging
import multiprocessing
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

import numpy as np
import paddle
import pytest
from conftest import ROOT, STUDENT_FAST, data_flags, fails_cleanly
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paddlenlp.datasets import load_dataset

import augment
import benchmark
import bert_distill
import data
import demo_data
import export_model
import model
import predict
import runtimes
import small
import teacher
from args import ACTS_ONLY_WITH
from tasks import TASKS
from utils import UserError, run_main


@pytest.fixture(scope="module")
def flags(task_files, tiny_bert, tmp_path_factory):
    """Each script's valid arguments (a fresh --output_dir and --cache_dir that do not exist yet)."""
    base = tmp_path_factory.mktemp("bad-input")
    out, cache = ["--output_dir", str(base / "out")], ["--cache_dir", str(base / "cache")]
    sst = data_flags(task_files, "sst-2")
    vocab = ["--vocab_path", os.path.join(tiny_bert, "vocab.txt")]
    return {"teacher": sst + ["--model_name_or_path", tiny_bert, "--device", "cpu"] + out,
            "small": sst + STUDENT_FAST + vocab + out,
            "distill": sst + STUDENT_FAST + ["--teacher_dir", tiny_bert] + out + cache,
            "export": ["--teacher_dir", tiny_bert, "--task_name", "sst-2"] + out,
            "predict": ["--model_dir", str(base / "exported")],
            "benchmark": ["--teacher_dir", tiny_bert, "--data_file", task_files["sst-2"][1], "--sections", "size"],
            "demo_data": out}


MAINS = {"teacher": teacher.main, "small": small.main, "distill": bert_distill.main, "export": export_model.main,
         "predict": predict.main, "benchmark": benchmark.main, "demo_data": demo_data.main}

AT_LEAST_1 = "must be an integer >= 1"
AT_LEAST_0 = "must be an integer >= 0"
IN_0_1 = "must be a number in [0, 1]"
IN_0_1_OPEN = "must be a number in [0, 1)"
POSITIVE = "must be a number > 0"

# (script, flag, value, what the message says is allowed)
FLAG_CASES = [
    ("small", "--batch_size", "0", AT_LEAST_1),
    ("small", "--batch_size", "-4", AT_LEAST_1),
    ("small", "--eval_steps", "0", AT_LEAST_1),
    ("small", "--logging_steps", "0", AT_LEAST_1),
    ("small", "--max_seq_length", "0", AT_LEAST_1),
    ("teacher", "--max_seq_length", "1", "must be an integer >= 3"),
    ("distill", "--max_seq_length", "2", "must be an integer >= 3"),
    ("small", "--dropout_prob", "1.5", IN_0_1_OPEN),
    ("teacher", "--dropout_prob", "1", IN_0_1_OPEN),
    ("small", "--hidden_size", "0", AT_LEAST_1),
    ("small", "--emb_dim", "0", AT_LEAST_1),
    ("small", "--max_train_samples", "-1", AT_LEAST_1),
    ("small", "--max_dev_samples", "0", AT_LEAST_1),
    ("small", "--max_epoch", "0", AT_LEAST_1),
    ("teacher", "--max_steps", "0", AT_LEAST_1),
    ("small", "--lr", "0", POSITIVE),
    ("teacher", "--lr", "-0.00003", POSITIVE),
    ("small", "--lr", "nan", POSITIVE),
    ("small", "--seed", "-1", "must be an integer in [0, 4294967294]"),
    ("small", "--rho", "1", "must be a number in (0, 1)"),
    ("small", "--rho", "0", "must be a number in (0, 1)"),
    ("small", "--max_vocab_size", "0", AT_LEAST_1),
    ("small", "--min_freq", "0", AT_LEAST_1),
    ("small", "--batch_size", "2.5", "'2.5' is not an integer"),
    ("teacher", "--warmup_proportion", "1", IN_0_1_OPEN),
    ("teacher", "--warmup_proportion", "-0.1", IN_0_1_OPEN),
    ("teacher", "--weight_decay", "-0.01", "must be a number >= 0"),
    ("distill", "--teacher_batch_size", "0", AT_LEAST_1),
    ("distill", "--teacher_batch_size", "-5", AT_LEAST_1),
    ("distill", "--n_iter", "-3", AT_LEAST_0),
    ("distill", "--p_mask", "1.5", IN_0_1),
    ("distill", "--p_mask", "-0.5", IN_0_1),
    ("distill", "--p_pos", "2", IN_0_1),
    ("distill", "--p_ng", "inf", IN_0_1),
    ("distill", "--ngram_min", "0", AT_LEAST_1),
    ("distill", "--ngram_max", "0", AT_LEAST_1),
    ("distill", "--alpha", "2", IN_0_1),
    ("distill", "--temperature", "0", POSITIVE),
    ("distill", "--num_workers", "-1", AT_LEAST_0),
    ("export", "--max_seq_length", "0", "must be an integer >= 3"),
    ("predict", "--batch_size", "0", AT_LEAST_1),
    ("benchmark", "--num_sentences", "0", AT_LEAST_1),
    ("benchmark", "--latency_sentences", "0", AT_LEAST_1),
    ("benchmark", "--batch_size", "-1", AT_LEAST_1),
    ("benchmark", "--n_iter", "-1", AT_LEAST_0),
    ("benchmark", "--max_seq_length", "2", "must be an integer >= 3"),
    ("benchmark", "--http_requests", "0", AT_LEAST_1),
    ("benchmark", "--http_time_limit", "0", POSITIVE),
    ("benchmark", "--http_concurrency", "0", AT_LEAST_1),
    ("demo_data", "--n_train", "0", AT_LEAST_1),
    ("demo_data", "--n_dev", "-1", AT_LEAST_1),
]


@pytest.mark.parametrize("script, flag, value, allowed", FLAG_CASES,
                         ids=[f"{script}{flag}={value}" for script, flag, value, _ in FLAG_CASES])
def test_flag_out_of_range_is_refused_at_parse_time(capsys, flags, script, flag, value, allowed):
    fails_cleanly(capsys, MAINS[script], flags[script] + [flag, value], f"error: argument {flag}: ", allowed)


GATED_CASES = [
    (["--reward_fraction", "0.2"], "--selector reinforce"), (["--episode_steps", "3"], "--selector reinforce"),
    (["--selector_gamma", "0.5"], "--selector reinforce"), (["--selector_lr", "0.01"], "--selector reinforce"),
    (["--selector_reward", "likelihood"], "--selector reinforce"), (["--edit_alpha", "2"], "--augment l2a"),
    (["--replace_temperature", "1"], "--augment l2a"), (["--mlm", "some-mlm"], "--augment l2a"),
    (["--max_unlabeled_samples", "5"], "--unlabeled_file"), (["--augment_unlabeled"], "--unlabeled_file"),
    (["--max_source_samples", "5"], "--source_file"),
    (["--selector_gamma", "0.5", "--selector", "reinforce", "--selector_reward", "influence"],
     "--selector_reward accuracy or likelihood"),
    (["--temperature", "2"], "--loss kl"), (["--rho", "0.9"], "--optimizer adadelta"),
    (["--language", "zh"], "--dataset_dir"),
    *((["--augment", "l2a", flag, value], "--augment rules") for flag, value in (
        ("--p_mask", "0.2"), ("--p_pos", "0"), ("--p_ng", "0.5"), ("--ngram_min", "2"), ("--ngram_max", "3"),
        ("--mask_token", "unk"), ("--pos_model", "xx_model"))),
    (["--augment", "l2a", "--whole_word_mask"], "--augment rules"),
    (["--generator", "learned", "--selector", "reinforce"], "--augment l2a"),
    (["--augment", "l2a", "--generator", "learned"], "--selector reinforce"),
    (["--augment", "l2a", "--generator_lr", "0.1"], "--generator learned"),
    (["--augment", "l2a", "--generator_temperature", "1"], "--generator learned")]


def gated_flag(argv):
    """The flag a GATED_CASES argv is about (the others set up its combination)."""
    return next(part for part in argv if part.startswith("--") and part != "--augment")


@pytest.mark.parametrize("flag,needed", GATED_CASES, ids=[gated_flag(flag) for flag, _ in GATED_CASES])
def test_a_flag_that_would_do_nothing_is_refused(capsys, flags, flag, needed):
    gated = {f"--{name}" for (gate, _), names in ACTS_ONLY_WITH.items() if gate not in ("sections", "int8")
             for name in names}  # the other scripts' gates: below
    assert gated == {gated_flag(case) for case, _ in GATED_CASES}  # every gated flag has its case
    fails_cleanly(capsys, bert_distill.main, flags["distill"] + flag, f"{gated_flag(flag)}: does nothing without "
                  f"{needed}", f"add {needed}")


HTTP_CASES = [("--student_model_dir", "exported"), ("--teacher_model_dir", "exported"), ("--http_requests", "5"),
              ("--http_time_limit", "5"), ("--http_concurrency", "2")]


@pytest.mark.parametrize("flag, value", HTTP_CASES, ids=[flag for flag, _ in HTTP_CASES])
def test_an_http_benchmark_flag_without_its_section_is_refused(capsys, flags, flag, value):
    assert {f"--{name}" for name in ACTS_ONLY_WITH["sections", "http"]} == {f for f, _ in HTTP_CASES}
    fails_cleanly(capsys, benchmark.main, flags["benchmark"] + [flag, value],
                  f"{flag}: does nothing without --sections http", "add --sections http")


@pytest.mark.parametrize("script, needed", [("export", "--int8 static"),
                                            ("benchmark", "--sections latency or profile")])
def test_calibration_text_without_what_it_calibrates_is_refused(capsys, flags, script, needed):
    fails_cleanly(capsys, MAINS[script], flags[script] + ["--calibration_file", "train.txt"],
                  f"--calibration_file: does nothing without {needed}", f"add {needed}")


def test_rho_is_refused_by_small_with_adam_too(capsys, flags):
    fails_cleanly(capsys, small.main, flags["small"] + ["--rho", "0.9"], "--rho: does nothing without --optimizer "
                  "adadelta")


def test_ngram_range_must_not_be_reversed(capsys, flags):
    fails_cleanly(capsys, bert_distill.main, flags["distill"] + ["--ngram_min", "3", "--ngram_max", "2"],
                  "--ngram_min must not exceed --ngram_max")


# ---------------------------------------------------------------------------------------------------------------
# The teacher's position embeddings


@pytest.mark.parametrize("script", ["teacher", "distill", "export"])
def test_max_seq_length_beyond_the_teachers_positions(capsys, flags, tiny_bert, monkeypatch, script):
    if script == "distill":  # its teacher directory is checked before any work
        monkeypatch.setattr(data, "load_examples", lambda *a, **k: pytest.fail("data loaded before the check"))
    fails_cleanly(capsys, MAINS[script], flags[script] + ["--max_seq_length", "257"], "--max_seq_length 257",
                  "at most 256 tokens", tiny_bert)
    assert not os.path.exists(flags["distill"][flags["distill"].index("--cache_dir") + 1])


@pytest.mark.parametrize("config, limit", [
    ({"model_type": "bert", "max_position_embeddings": 512, "pad_token_id": 0}, 512),
    ({"model_type": "bert", "max_position_embeddings": 512, "pad_token_id": 1}, 512),  # multilingual-e5
    ({"model_type": "mpnet", "max_position_embeddings": 514, "pad_token_id": 1}, 512),  # all-mpnet-base-v2
    ({"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}, 512),
    ({"model_type": "xlm-roberta", "max_position_embeddings": 514, "pad_token_id": 1}, 512),
    ({"model_type": "ernie", "max_position_embeddings": 2048, "pad_token_id": 0}, 2048),
], ids=["bert", "bert-pad-1", "mpnet", "roberta", "xlm-roberta", "ernie"])
def test_teacher_length_limit_per_family(config, limit):
    model.check_teacher_length(config, limit, "--teacher_dir t")
    with pytest.raises(UserError, match=f"--max_seq_length {limit + 1}: .* at most {limit} tokens"):
        model.check_teacher_length(config, limit + 1, "--teacher_dir t")
    model.check_teacher_length({}, 10 ** 6, "--teacher_dir t")  # a config without the size: nothing to check


# ---------------------------------------------------------------------------------------------------------------
# Damaged caches


@pytest.fixture(scope="module")
def distill_run(task_files, tiny_bert, tmp_path_factory):
    """A first, short bert_distill.py run on ChnSentiCorp (jieba POS tags, so both caches are written): its
    arguments, results, best weights and the cache files it wrote."""
    base = tmp_path_factory.mktemp("distill-run")
    argv = data_flags(task_files, "chnsenticorp") + STUDENT_FAST + [
        "--teacher_dir", tiny_bert, "--n_iter", "1", "--p_pos", "0.3", "--num_workers", "1",
        "--teacher_backend", "dygraph", "--max_dev_samples", "30", "--cache_dir", str(base / "cache"),
        "--output_dir", str(base / "first")]
    results = bert_distill.main(argv)
    cached = {name.split("-")[0]: str(base / "cache" / name) for name in os.listdir(base / "cache")}
    assert sorted(cached) == ["logits", "pos"]
    return SimpleNamespace(argv=argv, output_dir=str(base / "first"), results=results, logits=cached["logits"],
                           pos=cached["pos"], weights=best_weights(str(base / "first")))


def best_weights(output_dir):
    return {k: np.asarray(v) for k, v in paddle.load(os.path.join(output_dir, "best", "model.pdparams")).items()}


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def load_logits(raw):
    return np.load(io.BytesIO(raw))


def load_tags(raw):
    return pickle.loads(raw)


def with_logit(row, column, value):
    def damage(raw):
        table = load_logits(raw).copy()
        table["logits"][row, column] = value
        return npy_bytes(table)
    return damage


def with_logits(change):
    """A damage: the cached table with its logits column replaced by change(logits)."""
    def damage(raw):
        table = load_logits(raw)
        logits = change(table["logits"])
        changed = np.zeros(len(table), [("key", table.dtype["key"]), ("logits", logits.dtype, logits.shape[1:])])
        changed["key"], changed["logits"] = table["key"], logits
        return npy_bytes(changed)
    return damage


def missing_tag(raw):
    tags = load_tags(raw)
    tags[5][0] = tags[5][0][:-1]
    return pickle.dumps(tags)


# id -> (the cache file, damage(good bytes) -> bad bytes, what the warning says)
CACHE_CASES = {
    "logits-truncated": ("logits", lambda raw: raw[:len(raw) // 2], "unreadable"),
    "logits-random-bytes": ("logits", lambda raw: np.random.default_rng(0).bytes(len(raw)), "unreadable"),
    "logits-empty-file": ("logits", lambda raw: b"", "unreadable"),
    "logits-wrong-columns": ("logits", with_logits(lambda logits: np.tile(logits, 2)), "expected float32 and (2,)"),
    "logits-float64": ("logits", with_logits(lambda logits: logits.astype("float64")), "of dtype float64"),
    "logits-plain-array": ("logits", lambda raw: npy_bytes(load_logits(raw)["logits"]),
                           "expected one row per example of a"),  # the cache of an older version
    "logits-empty-array": ("logits", lambda raw: npy_bytes(np.zeros((0, 0), "float32")), "shape (0, 0)"),
    "logits-nan": ("logits", with_logit(3, 1, np.nan), "1 NaN or infinite"),
    "logits-inf": ("logits", with_logit(0, 0, -np.inf), "1 NaN or infinite"),
    "logits-pickled-object": ("logits", lambda raw: npy_bytes(np.array([{}], dtype=object)), "unreadable"),
    "pos-truncated": ("pos", lambda raw: raw[:len(raw) // 2], "unreadable"),
    "pos-random-bytes": ("pos", lambda raw: np.random.default_rng(0).bytes(len(raw)), "unreadable"),
    "pos-fewer-examples": ("pos", lambda raw: pickle.dumps(load_tags(raw)[:-1]), "159 examples, expected 160"),
    "pos-tag-missing": ("pos", missing_tag, "example 5: not one tag per word"),
    "pos-not-a-list": ("pos", lambda raw: pickle.dumps({"tags": load_tags(raw)}), "a dict, not a list"),
}


@pytest.mark.parametrize("case", CACHE_CASES.values(), ids=CACHE_CASES.keys())
def test_damaged_cache_is_moved_aside_and_computed_again(distill_run, tmp_path, caplog, case):
    kind, damage, reason = case
    path = getattr(distill_run, kind)
    with open(path, "rb") as f:
        good = f.read()
    bad = damage(good)
    try:
        with open(path, "wb") as f:
            f.write(bad)
        results = bert_distill.main(distill_run.argv + ["--output_dir", str(tmp_path / "rerun")])
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and path in r.getMessage()]
        assert len(warnings) == 1 and reason in warnings[0] and "\n" not in warnings[0], warnings
        with open(path + ".bad", "rb") as f:
            assert f.read() == bad
        with open(path, "rb") as f:
            assert f.read() == good  # computed again, the same
        assert results["metrics"] == distill_run.results["metrics"]
        weights = best_weights(str(tmp_path / "rerun"))
        for name, value in distill_run.weights.items():
            np.testing.assert_array_equal(weights[name], value, err_msg=name)
    finally:
        with open(path, "wb") as f:
            f.write(good)


def test_the_teacher_labels_only_inputs_the_cache_has_not_seen(distill_run, tmp_path, monkeypatch):
    """Another n_iter shares the originals and some copies with the first run: the teacher labels the rest only,
    the table grows by them, and the student gets the logits a run with an empty cache gets (up to the last bits:
    a record's logits depend a little on the padding of the batch it was labelled in)."""
    cache = tmp_path / "cache"
    shutil.copytree(os.path.dirname(distill_run.logits), cache)
    table = str(cache / os.path.basename(distill_run.logits))
    before = np.load(table)
    labelled, student = [], {}
    label, make_loader = runtimes.label_with_teacher, data.make_loader
    monkeypatch.setattr(runtimes, "label_with_teacher",
                        lambda teacher, records, *args, **kwargs: labelled.extend(records) or
                        label(teacher, records, *args, **kwargs))

    def student_records(records, *args, **kwargs):
        student[len(student)] = np.stack([record["logits"] for record in records])
        return make_loader(records, *args, **kwargs)

    monkeypatch.setattr(data, "make_loader", student_records)
    argv = distill_run.argv + ["--n_iter", "2"]
    bert_distill.main(argv + ["--cache_dir", str(cache), "--output_dir", str(tmp_path / "reused")])
    after = np.load(table)
    assert 0 < len(labelled) < len(student[0]) and len(after) == len(before) + len(labelled)
    assert after[:len(before)].tobytes() == before.tobytes()  # rows are only ever added
    asked = len(labelled)
    bert_distill.main(argv + ["--cache_dir", str(tmp_path / "empty"), "--output_dir", str(tmp_path / "fresh")])
    assert len(labelled) - asked == len(after)  # with an empty cache the teacher labels every distinct input
    np.testing.assert_allclose(student[0], student[1], rtol=1e-5, atol=1e-6)


def test_bad_fresh_logits_are_never_cached(capsys, distill_run, tmp_path, monkeypatch):
    label = runtimes.label_with_teacher

    def nan_logits(*args, chunk_done, **kwargs):  # each chunk reaches the cache as it is labelled: NaN there too
        return label(*args, chunk_done=lambda start, logits: chunk_done(start, logits * np.nan), **kwargs) * np.nan

    monkeypatch.setattr(runtimes, "label_with_teacher", nan_logits)
    cache = str(tmp_path / "cache")
    argv = distill_run.argv + ["--p_pos", "0", "--cache_dir", cache, "--output_dir", str(tmp_path / "out")]
    fails_cleanly(capsys, bert_distill.main, argv, "--teacher_dir", "the teacher's logits are bad",
                  "NaN or infinite values", "not cached")
    assert not os.path.exists(cache)


def test_bad_fresh_tags_are_never_cached(capsys, distill_run, tmp_path, monkeypatch):
    monkeypatch.setattr(augment, "_zh_tags", lambda words: [])
    cache = str(tmp_path / "cache")
    fails_cleanly(capsys, bert_distill.main, distill_run.argv + ["--cache_dir", cache, "--output_dir",
                                                                 str(tmp_path / "out")],
                  "the POS tags of jieba.posseg are bad", "not one tag per word", "not cached")
    assert not os.path.exists(cache)


# ---------------------------------------------------------------------------------------------------------------
# Output and cache paths, refused before any work


def snapshot(path):
    """Every entry under path (path itself included) with its size and modification time; None if path is absent."""
    if not os.path.lexists(path):
        return None
    entries = {}
    for root, dirs, files in os.walk(path):
        for name in [""] + dirs + files:
            stat = os.lstat(os.path.join(root, name))
            entries[os.path.relpath(os.path.join(root, name), path)] = (stat.st_size, stat.st_mtime_ns)
    return entries


@pytest.fixture(scope="module")
def small_run(flags, tmp_path_factory):
    """The output directory of a finished one-step small.py run."""
    output_dir = str(tmp_path_factory.mktemp("small-run"))
    small.main(flags["small"] + ["--max_steps", "1", "--output_dir", output_dir])
    return output_dir


def a_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a directory\n")
    return str(path)


def read_only_dir(tmp_path, monkeypatch):
    path = tmp_path / "read-only"
    path.mkdir()
    path.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: let os.access answer as for another user
        access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: os.path.abspath(p) != str(path)
                            and access(p, mode, **kw))
    return str(path)


def foreign_dir(tmp_path):
    path = tmp_path / "documents"
    path.mkdir()
    (path / "notes.txt").write_text("mine\n")
    return str(path)


# id -> (script, lambda tmp_path, monkeypatch, runs: (flag values appended), parts of the message)
PATH_CASES = {
    "teacher-output-is-a-file": ("teacher", lambda t, m, r: ["--output_dir", a_file(t)],
                                 ["--output_dir", "exists and is not a directory"]),
    "small-output-is-a-file": ("small", lambda t, m, r: ["--output_dir", a_file(t)],
                               ["--output_dir", "exists and is not a directory"]),
    "distill-output-is-a-file": ("distill", lambda t, m, r: ["--output_dir", a_file(t)],
                                 ["--output_dir", "exists and is not a directory"]),
    "small-output-under-a-file": ("small", lambda t, m, r: ["--output_dir", os.path.join(a_file(t), "run")],
                                  ["--output_dir", "a-file is not a directory"]),
    "small-output-read-only": ("small", lambda t, m, r: ["--output_dir", read_only_dir(t, m)],
                               ["--output_dir", "read-only: the directory is not writable"]),
    "teacher-output-under-read-only": ("teacher", lambda t, m, r: ["--output_dir",
                                                                   os.path.join(read_only_dir(t, m), "run")],
                                       ["--output_dir", "read-only is not writable"]),
    "distill-cache-is-a-file": ("distill", lambda t, m, r: ["--cache_dir", a_file(t)],
                                ["--cache_dir", "exists and is not a directory"]),
    "distill-cache-read-only": ("distill", lambda t, m, r: ["--cache_dir", read_only_dir(t, m)],
                                ["--cache_dir", "the directory is not writable"]),
    "distill-into-a-small-run": ("distill", lambda t, m, r: ["--output_dir", r.small],
                                 ["--output_dir", "holds a checkpoint of a run with other flags",
                                  "--script small -> distill"]),
    "teacher-into-a-small-run": ("teacher", lambda t, m, r: ["--output_dir", r.small],
                                 ["--output_dir", "holds a checkpoint of a run with other flags"]),
    "small-into-a-distill-run": ("small", lambda t, m, r: ["--output_dir", r.distill.output_dir],
                                 ["--output_dir", "holds a checkpoint of a run with other flags"]),
    "distill-rerun-with-other-flags": ("distill", lambda t, m, r: r.distill.argv + ["--alpha", "0.5"],
                                       ["--output_dir", "other flags (--alpha 0.0 -> 0.5)"]),
    "distill-into-a-foreign-dir": ("distill", lambda t, m, r: ["--output_dir", foreign_dir(t)],
                                   ["--output_dir", "not empty and not a run's output (notes.txt)"]),
}


@pytest.mark.parametrize("case", PATH_CASES.values(), ids=PATH_CASES.keys())
def test_bad_output_or_cache_path_is_refused_before_any_work(capsys, flags, small_run, distill_run, tmp_path,
                                                            monkeypatch, case):
    script, extra, expected = case
    argv = flags[script] + extra(tmp_path, monkeypatch, SimpleNamespace(small=small_run, distill=distill_run))
    # argparse keeps the last value given
    watched = [argv[len(argv) - argv[::-1].index(flag)] for flag in ("--output_dir", "--cache_dir") if flag in argv]
    before = [snapshot(path) for path in watched]

    def no_work(*args, **kwargs):
        raise AssertionError("data loaded before the output paths were checked")

    monkeypatch.setattr(data, "load_examples", no_work)
    fails_cleanly(capsys, MAINS[script], argv, *expected)
    assert [snapshot(path) for path in watched] == before


# --- a vocabulary that does not belong to the model


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def test_a_swapped_student_vocabulary_is_refused_at_export_and_predict(capsys, small_run, tmp_path):
    best = os.path.join(small_run, "best")
    export_dir = str(tmp_path / "exported")
    export_model.main(["--student_dir", best, "--output_dir", export_dir])
    vocab = open(os.path.join(export_dir, "vocab.txt"), encoding="utf-8").read().splitlines()
    write_lines(os.path.join(export_dir, "vocab.txt"), vocab + ["extra1", "extra2"])  # larger
    fails_cleanly(capsys, predict.main, ["--model_dir", export_dir], "--model_dir", f"{len(vocab) + 2} entries",
                  f"exported with {len(vocab)}")
    write_lines(os.path.join(export_dir, "vocab.txt"), vocab[:-1] + ["zzzz"])  # same size, another token
    fails_cleanly(capsys, predict.main, ["--model_dir", export_dir], "--model_dir", "not the vocabulary")
    swapped = tmp_path / "student"
    swapped.mkdir()
    for name in ("config.json", "model.pdparams"):
        (swapped / name).write_bytes(open(os.path.join(best, name), "rb").read())
    write_lines(swapped / "vocab.txt", vocab + ["extra"])
    fails_cleanly(capsys, export_model.main, ["--student_dir", str(swapped), "--output_dir", str(tmp_path / "e2")],
                  "--student_dir", f"{len(vocab) + 1} entries", f"trained with {len(vocab)}")


def test_a_teacher_vocabulary_larger_than_its_embeddings_is_refused(capsys, flags, tiny_bert, tmp_path):
    teacher_dir = tmp_path / "teacher"
    teacher_dir.mkdir()
    for name in os.listdir(tiny_bert):
        (teacher_dir / name).write_bytes(open(os.path.join(tiny_bert, name), "rb").read())
    vocab = open(os.path.join(tiny_bert, "vocab.txt"), encoding="utf-8").read().splitlines()
    write_lines(teacher_dir / "vocab.txt", vocab + [f"extra{i}" for i in range(5)])
    argv = [str(teacher_dir) if value == tiny_bert else value for value in flags["distill"]]
    fails_cleanly(capsys, bert_distill.main, argv, "--teacher_dir", f"{len(vocab) + 5} tokens", f"{len(vocab)} rows")


# ---------------------------------------------------------------------------------------------------------------
# Damaged exports, unreadable files and operating-system errors: one line naming the path, no traceback


@pytest.fixture(scope="module")
def exported(small_run, tmp_path_factory):
    """An export_model.py directory of the small run's student (SST-2)."""
    export_dir = str(tmp_path_factory.mktemp("exported") / "student")
    export_model.main(["--student_dir", os.path.join(small_run, "best"), "--output_dir", export_dir])
    return export_dir


def damage(name, content):
    def write(directory):
        with open(os.path.join(directory, name), "rb") as f:
            raw = f.read()
        with open(os.path.join(directory, name), "wb") as f:
            f.write(content(raw))
    return write


# id -> (damage(export directory), parts of the message, --runtime)
EXPORT_CASES = {
    "config-not-json": (damage("export_config.json", lambda raw: b'{"kind": '),
                        ["export_config.json", "not a valid JSON file"], "auto"),
    "config-not-an-object": (damage("export_config.json", lambda raw: b"[1, 2]"),
                             ["export_config.json", "expected a JSON object, found list"], "auto"),
    "config-missing-fields": (damage("export_config.json", lambda raw: b'{"kind": "student"}'),
                              ["export_config.json", "missing field(s) model, labels"], "auto"),
    "config-unknown-kind": (damage("export_config.json", lambda raw: raw.replace(b'"student"', b'"robot"')),
                            ["export_config.json", "kind 'robot'"], "auto"),
    "weights-random-bytes": (damage("model.pdiparams", lambda raw: np.random.default_rng(0).bytes(len(raw))),
                             ["model.pdiparams", "Paddle cannot load them", "export the model again"], "paddle"),
    "weights-truncated": (damage("model.pdiparams", lambda raw: raw[:300]),
                          ["model.pdiparams", "Paddle cannot load them"], "paddle"),
    "program-missing": (lambda d: os.remove(os.path.join(d, "model.json" if os.path.exists(
        os.path.join(d, "model.json")) else "model.pdmodel")),
                        ["model.json: missing", "export the model again"], "paddle"),
    "onnx-random-bytes": (damage("model.onnx", lambda raw: np.random.default_rng(0).bytes(len(raw))),
                          ["model.onnx", "ONNX Runtime cannot load it", "export the model again"], "auto"),
    "onnx-truncated": (damage("model.onnx", lambda raw: raw[:len(raw) // 2]),
                       ["model.onnx", "ONNX Runtime cannot load it"], "auto"),
    "onnx-missing": (lambda d: os.remove(os.path.join(d, "model.onnx")), ["model.onnx", "cannot load it"], "auto"),
}


@pytest.mark.parametrize("case", EXPORT_CASES.values(), ids=EXPORT_CASES.keys())
def test_a_damaged_export_is_refused(capsys, exported, tmp_path, case):
    spoil, expected, runtime = case
    copy = str(tmp_path / "export")
    shutil.copytree(exported, copy)
    spoil(copy)
    fails_cleanly(capsys, predict.main, ["--model_dir", copy, "--runtime", runtime], copy, *expected)


UNREADABLE = "/proc/self/mem"  # a file that exists and fails to read (EIO), even for root


@pytest.mark.parametrize("script, flag", [("small", "--train_file"), ("small", "--dev_file"),
                                          ("small", "--vocab_path"), ("predict", "--input_file")])
def test_an_unreadable_input_file_is_named(capsys, flags, exported, script, flag):
    argv = (flags[script] if script != "predict" else ["--model_dir", exported]) + [flag, UNREADABLE]
    fails_cleanly(capsys, MAINS[script], argv, f"{flag} {UNREADABLE}" if script != "predict" else UNREADABLE,
                  "cannot be read (Input/output error)")


def test_a_full_disk_is_one_line_naming_the_path(capsys, flags, tmp_path, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(paddle, "save", no_space)
    output_dir = str(tmp_path / "run")
    fails_cleanly(capsys, small.main, flags["small"] + ["--output_dir", output_dir],
                  f"error: {os.path.join(output_dir, 'best')}: No space left on device", code=1)


def test_predict_into_a_closed_pipe_exits_quietly(exported, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("a fine film\n" * 20000)
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "predict.py"), "--model_dir", exported,
                                "--input_file", str(lines)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = process.stdout.readline()  # `predict.py ... | head -1`
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait() == 141 and first.count(b"\t") == 2
    assert "Traceback" not in err and "Error" not in err, err


# ---------------------------------------------------------------------------------------------------------------
# Ctrl-C and SIGTERM outside the training loop: everything cleaned up, exit 130, no traceback


def interrupted(capfd, main, argv, signal_name):
    """Run main(argv) as a script, expecting the interruption; returns stderr."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(main, argv)
    err = capfd.readouterr().err
    assert exit_info.value.code == 130
    # The message ends stderr; a progress bar cut short (drawn with carriage returns) may precede it on its line.
    assert err.strip().splitlines()[-1].split("\r")[-1].endswith(f"interrupted ({signal_name})")
    assert "Traceback" not in err and "Error" not in err, err
    return err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_interrupted_labelling_leaves_no_exported_teacher_behind(capfd, distill_run, tmp_path, monkeypatch, signum):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    scratch = temp / f"distill-scratch-{os.getuid()}"  # where the teacher is exported (utils.scratch_dir)
    verified_predictor = runtimes.verified_predictor

    def interrupting(*args, **kwargs):
        assert os.listdir(scratch)  # the exported teacher
        result = verified_predictor(*args, **kwargs)
        signal.raise_signal(signum)
        return result

    monkeypatch.setattr(runtimes, "verified_predictor", interrupting)
    output_dir, cache = tmp_path / "out", tmp_path / "cache"
    argv = distill_run.argv + ["--teacher_backend", "inference", "--p_pos", "0", "--cache_dir", str(cache),
                               "--output_dir", str(output_dir)]
    interrupted(capfd, bert_distill.main, argv, signal.Signals(signum).name)
    assert os.listdir(temp) == [scratch.name] and os.listdir(scratch) == [] and not output_dir.exists()
    assert not [name for name in os.listdir(cache) if name.startswith("logits")] if cache.exists() else True


INTERRUPTION = {}  # what _augment_then_interrupt does, set by the test before the workers are forked


def _augment_then_interrupt(bounds):
    """augment._augment_range, run in an augmentation worker, sending a signal to the parent (and with Ctrl-C, which a
    terminal sends to the whole process group, to the worker too) once, from the first worker to reach a range after
    the first (two signals would be a second Ctrl-C, which may cut the cleanup short)."""
    if bounds[0] > 0 and _first_time(INTERRUPTION["flag"]):
        os.kill(INTERRUPTION["parent"], INTERRUPTION["signum"])
        if INTERRUPTION["signum"] == signal.SIGINT:
            os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)
    return INTERRUPTION["augment"](bounds)


def _first_time(flag_path):
    """True for the first process that asks, False for every later one (the file is created once)."""
    try:
        os.close(os.open(flag_path, os.O_CREAT | os.O_EXCL))
        return True
    except FileExistsError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_interrupted_augmentation_stops_its_workers(capfd, distill_run, tmp_path, monkeypatch, signum):
    INTERRUPTION.update(parent=os.getpid(), signum=signum, augment=augment._augment_range,
                        flag=str(tmp_path / "signalled"))
    monkeypatch.setattr(augment, "_augment_range", _augment_then_interrupt)
    argv = distill_run.argv + ["--num_workers", "2", "--p_pos", "0", "--cache_dir", str(tmp_path / "cache"),
                               "--output_dir", str(tmp_path / "out")]
    interrupted(capfd, bert_distill.main, argv, signal.Signals(signum).name)
    assert multiprocessing.active_children() == []
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------
# What a line is: the validation pass, PaddleNLP's reader and predict.py agree


def test_a_file_without_its_header_line_is_refused(capsys, flags, task_files, tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text("".join(open(task_files["sst-2"][0], encoding="utf-8").readlines()[1:]), encoding="utf-8")
    argv = flags["small"] + ["--train_file", str(train)]
    fails_cleanly(capsys, small.main, argv, f"--train_file {train}:1: is an example", "add a header line")


# Characters that end a line somewhere: str.splitlines() breaks at all of them, the reader at \n, \r\n and \r only.
LINE_CHARACTERS = "ab 01\t\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x00\ufeffé"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.text(alphabet=LINE_CHARACTERS, min_size=1, max_size=40))
def test_validation_accepts_exactly_what_the_reader_reads(tmp_path, body):
    path = str(tmp_path / "train.tsv")
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("sentence\tlabel\n" + body)
    task = TASKS["sst-2"]
    try:
        ours = data.read_split(task, "train", path, "--train_file")
    except UserError:
        ours = None
    try:
        rows = load_dataset(*task.dataset, splits="train", data_files=path, lazy=False)
        read = [row for row in rows] if all(row["labels"] in (0, 1, "0", "1") for row in rows) else None
    except Exception:
        read = None
    if ours is not None:  # accepted: PaddleNLP's reader reads the same examples, one per line validated
        assert read is not None, ours
        assert [(ex.texts, ex.label) for ex in ours] == [((row["sentence"],), int(row["labels"])) for row in read]


@pytest.mark.parametrize("character", "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
def test_characters_the_reader_keeps_inside_a_line_are_accepted(tmp_path, character):
    path = str(tmp_path / "train.tsv")
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(f"sentence\tlabel\na bad{character}film\t0\n")
    task = TASKS["sst-2"]
    assert len(data.check_tsv(path, "--train_file", task, "train")) == 1
    assert [ex.texts for ex in data.read_split(task, "train", path, "--train_file")] == [(f"a bad{character}film",)]


def test_predict_gives_one_line_per_input_line_whatever_the_bytes(capsys, exported, monkeypatch):
    rng = np.random.default_rng(0)
    every_byte = bytes(b for b in range(256) if b != ord("\n"))
    lines = [every_byte, b"", b"\r", b"\xff\xfe invalid utf-8 \xc3", "\u2028 \x85 \x0b \x0c".encode()]
    lines += [bytes(rng.choice(list(every_byte), size=int(rng.integers(0, 30)))) for _ in range(40)]
    for json_flag in ([], ["--json"]):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\n".join(lines) + b"\n")))
        capsys.readouterr()
        assert predict.main(["--model_dir", exported] + json_flag) == 0
        out = capsys.readouterr().out.split("\n")
        assert out[-1] == "" and len(out) - 1 == len(lines)
        if json_flag:
            assert [json.loads(line)["line"] for line in out[:-1]] == list(range(1, len(lines) + 1))


@pytest.mark.parametrize("task_name", list(TASKS))
@pytest.mark.parametrize("split", ["train", "dev"])
def test_local_files_read_as_paddlenlp_reads_them(task_files, task_name, split):
    # One reader for every local file (built-in layouts and --dataset_dir folders): on the built-in tasks' layouts it
    # gives exactly the examples PaddleNLP's own reader gives.
    task = TASKS[task_name]
    path = task_files[task_name][split == "dev"]
    rows = load_dataset(*task.dataset, splits=split, data_files=path, lazy=False)
    *text_fields, label_field = task.download_fields
    expected = [(tuple(row[f] for f in text_fields), int(row[label_field])) for row in rows]
    assert [(ex.texts, ex.label) for ex in data.read_split(task, split, path, "--train_file")] == expected
