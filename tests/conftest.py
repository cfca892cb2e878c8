import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import demo_data  # noqa: E402
import tiny_models  # noqa: E402
from tasks import TASKS  # noqa: E402


@pytest.fixture(scope="session")
def task_files(tmp_path_factory):
    """task -> (train.tsv, dev.tsv) of tiny synthetic data in the real layouts."""
    base = tmp_path_factory.mktemp("data")
    return {task: demo_data.write_task(task, str(base / task), n_train=160, n_dev=60) for task in TASKS}


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A 2-layer, 64-hidden BERT built from a config with a tiny vocabulary (random weights)."""
    return tiny_models.write_tiny_bert(str(tmp_path_factory.mktemp("tiny-bert")))


class _MadeOnFirstUse(dict):
    """A dict whose missing value for a key is made by make(key) when first asked for, then kept."""

    def __init__(self, make):
        super().__init__()
        self._make = make

    def __missing__(self, key):
        self[key] = value = self._make(key)
        return value


@pytest.fixture(scope="session")
def students(task_files, tiny_bert, tmp_path_factory):
    """task -> (run directory, export directory) of a baseline student trained for two epochs and exported with
    --int8, trained when a test first asks for the task (predict.py's and serve.py's tests share them)."""
    import export_model
    import small

    def train_and_export(task):
        run_dir = str(tmp_path_factory.mktemp(f"small-{task}"))
        vocab = ["--vocab_path", os.path.join(tiny_bert, "vocab.txt")] if task != "chnsenticorp" else []
        pooling = ["--pooling", "max" if task == "qqp" else "last"]  # the export covers both sentence encoders
        small.main(data_flags(task_files, task) + STUDENT_FAST + vocab + pooling + [
            "--output_dir", run_dir, "--max_epoch", "2", "--eval_steps", "5", "--optimizer", "adam", "--lr", "0.01"])
        export_dir = os.path.join(run_dir, "export")
        export_model.main(["--student_dir", os.path.join(run_dir, "best"), "--output_dir", export_dir, "--int8"])
        return run_dir, export_dir

    return _MadeOnFirstUse(train_and_export)


@pytest.fixture(scope="session")
def teacher_export(tiny_bert, tmp_path_factory):
    """The tiny BERT exported as a QQP teacher (sentence pairs), max_seq_length 24."""
    import export_model

    export_dir = str(tmp_path_factory.mktemp("teacher-export"))
    export_model.main(["--teacher_dir", tiny_bert, "--task_name", "qqp", "--max_seq_length", "24",
                       "--output_dir", export_dir])
    return export_dir


def student_eval(best_dir, task_name, dev_file):
    """Reload a saved student directory on its own and score the dev file."""
    import data
    import model
    import runtimes
    from utils import classification_metrics

    student = model.load_student(best_dir)
    task = TASKS[task_name]
    dev = data.read_split(task, "dev", dev_file, "dev")
    records = student.records(dev)
    return classification_metrics(runtimes.student_logits(student.model, records, 7), [ex.label for ex in dev], task)


def teacher_eval(best_dir, task_name, dev_file):
    """Reload a saved teacher directory on its own and score the dev file."""
    import data
    import model
    import runtimes
    from utils import classification_metrics

    teacher = model.load_teacher(best_dir)
    tokenizer = data.load_tokenizer(best_dir, "dir")
    task = TASKS[task_name]
    encoder = data.TeacherEncoder(tokenizer, 128, task.language)
    dev = data.read_split(task, "dev", dev_file, "dev")
    logits = runtimes.teacher_logits(teacher, [encoder.texts(ex.texts) for ex in dev], 5, tokenizer.pad_token_id)
    return classification_metrics(logits, [ex.label for ex in dev], task)


def english_examples(n=40, pair=False, seed=0):
    """n random sentences (or pairs) of 3 to 8 words from a small movie-review vocabulary, random labels 0/1."""
    from data import Example

    rng = np.random.default_rng(seed)
    words = ["good", "bad", "movie", "plot", "acting", "dull", "lovely", "story", "unwatchable", "the", "a", "not"]
    make = lambda: " ".join(rng.choice(words, size=rng.integers(3, 9)))  # noqa: E731
    return [Example((make(), make()) if pair else (make(),), int(rng.integers(2))) for _ in range(n)]


def data_flags(task_files, task):
    train, dev = task_files[task]
    return ["--task_name", task, "--train_file", train, "--dev_file", dev]


FAST = ["--max_epoch", "1", "--batch_size", "16", "--eval_steps", "1000", "--logging_steps", "1000", "--device", "cpu"]
STUDENT_FAST = FAST + ["--hidden_size", "32", "--emb_dim", "32"]


def fails_cleanly(capsys, main, argv, *expected, code=2):
    """main(argv) run as a script ends with exit code `code` (2: bad input) and one last stderr line holding each
    expected part, no traceback, and its --output_dir (if it names one) exists afterwards only if it existed before;
    returns that line."""
    from utils import run_main

    output_dir = argv[argv.index("--output_dir") + 1] if "--output_dir" in argv else None
    existed = output_dir is not None and os.path.exists(output_dir)
    with pytest.raises(SystemExit) as exit_info:
        run_main(main, argv)
    assert exit_info.value.code == code
    err = capsys.readouterr().err.strip().splitlines()
    message = err[-1]
    assert "Traceback" not in "\n".join(err)
    for part in expected:
        assert part in message, message
    if output_dir is not None:
        assert os.path.exists(output_dir) == existed, "a failed run left its output directory behind"
    return message
