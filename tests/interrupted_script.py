"""Runs a training script (argv[1]: small, teacher or bert_distill) with the remaining arguments, as
paddle.distributed.launch runs a script, except that rank 0 sends the launcher SIGTERM (as `kill <launcher>` would)
after its training step number $INTERRUPT_AT_STEP."""
import importlib
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import training  # noqa: E402
import utils  # noqa: E402

INTERRUPT_AT_STEP = int(os.environ["INTERRUPT_AT_STEP"])
train_step = training.train_step
steps = []


def interrupting_train_step(*args, **kwargs):
    loss = train_step(*args, **kwargs)
    steps.append(1)
    if len(steps) == INTERRUPT_AT_STEP and utils.WORLD.is_main:
        os.kill(os.getppid(), signal.SIGTERM)
        time.sleep(2)  # for the launcher to pass it on to every rank
    return loss


if __name__ == "__main__":
    training.train_step = interrupting_train_step
    utils.run_main(importlib.import_module(sys.argv[1]).main, sys.argv[2:])
