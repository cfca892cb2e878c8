"""Interrupting a run as Ctrl-C or kill would, and checking that its resumed run ends exactly as a straight one."""
import json
import os
import signal

import numpy as np
import paddle
import pytest

import files
from files import read_json


def interrupt_at(call, signum):
    """Wrap a function so that its call number `call` sends the process `signum` (as Ctrl-C or kill would)
    once the wrapped function has returned."""
    def wrap(function):
        calls = []

        def wrapped(*args, **kwargs):
            result = function(*args, **kwargs)
            calls.append(1)
            if len(calls) == call:
                signal.raise_signal(signum)
            return result
        return wrapped
    return wrap


def final_state(output_dir):
    """What a finished run leaves: its results, its evaluations, and its final and best weights."""
    results = read_json(os.path.join(output_dir, "results.json"))
    with open(os.path.join(output_dir, "eval_log.jsonl")) as f:
        log = [json.loads(line) for line in f]
    weights = {path: paddle.load(os.path.join(output_dir, path))
               for path in ("checkpoint/model.pdparams", "best/model.pdparams", "best/model_state.pdparams")
               if os.path.exists(os.path.join(output_dir, path))}
    return results, log, weights


def assert_same_run(resumed_dir, straight_dir):
    resumed, straight = final_state(resumed_dir), final_state(straight_dir)
    for key in ("metrics", "best_step", "steps"):
        assert resumed[0][key] == straight[0][key], key
    assert resumed[1] == straight[1]  # the same evaluations at the same steps, none skipped or repeated
    assert resumed[2].keys() == straight[2].keys() and len(straight[2]) == 2
    for name in straight[2]:
        for key, value in straight[2][name].items():
            np.testing.assert_array_equal(np.asarray(resumed[2][name][key]), np.asarray(value), err_msg=key)


def run_interrupted(main, argv, expected_step):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 130
    ckpt = os.path.join(argv[argv.index("--output_dir") + 1], "checkpoint")
    assert {"model.pdparams", "optimizer.pdopt", "rng.pkl", "state.json"} <= set(os.listdir(ckpt))
    assert read_json(os.path.join(ckpt, "state.json"))["step"] == expected_step
    assert not [name for name in os.listdir(os.path.dirname(ckpt)) if files.staged_name(name)]  # no work left over
    assert not os.path.exists(os.path.join(os.path.dirname(ckpt), "results.json"))
