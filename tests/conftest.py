import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import demo_data  # noqa: E402

TASK_NAMES = ("sst-2", "qqp", "chnsenticorp")


@pytest.fixture(scope="session")
def task_files(tmp_path_factory):
    """task -> (train.tsv, dev.tsv) of tiny synthetic data in the real layouts."""
    base = tmp_path_factory.mktemp("data")
    return {task: demo_data.write_task(task, str(base / task), n_train=160, n_dev=60) for task in TASK_NAMES}


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A 2-layer, 64-hidden BERT built from a config with a tiny vocabulary (random weights)."""
    return demo_data.write_tiny_bert(str(tmp_path_factory.mktemp("tiny-bert")))


def data_flags(task_files, task):
    train, dev = task_files[task]
    return ["--task_name", task, "--train_file", train, "--dev_file", dev]


FAST = ["--max_epoch", "1", "--batch_size", "16", "--eval_steps", "1000", "--logging_steps", "1000", "--device", "cpu"]
STUDENT_FAST = FAST + ["--hidden_size", "32", "--emb_dim", "32"]
