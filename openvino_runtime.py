"""OpenVINO, the teacher's fastest runtime on a CPU with bf16 instructions: a compiled ONNX model in this process
(session), or served to another process over a pipe (serve, which runtimes.openvino_in_child starts in a child so
that OpenVINO never shares a process with Paddle's training). Imports neither Paddle nor the project's modules, so
the child starts in a second."""
import contextlib
import ctypes
import os
import pickle
import signal
import sys
import time

import numpy as np


class _SignalStack(ctypes.Structure):
    """Linux's stack_t: a thread's alternate signal stack."""
    _fields_ = [("sp", ctypes.c_void_p), ("flags", ctypes.c_int), ("size", ctypes.c_size_t)]


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


@contextlib.contextmanager
def _signal_stack_kept():
    """Within the block, OpenVINO's CPU plugin (2026.4) gives the calling thread an alternate signal stack that it
    later frees without putting the previous one back; every signal handled afterwards on the alternate stack
    (Python's own handlers are: Ctrl-C, SIGTERM) then kills the process with SIGSEGV instead of ending it cleanly.
    The thread's alternate stack as it was before is put back when the block ends."""
    if _LIBC is None:
        yield
        return
    saved = _SignalStack()
    _LIBC.sigaltstack(None, ctypes.byref(saved))
    try:
        yield
    finally:
        _LIBC.sigaltstack(ctypes.byref(saved), None)


def session(onnx_path, threads, precision):
    """run(batch) -> logits of an ONNX model compiled by OpenVINO for the CPU on `threads` threads, computing in
    precision ("f32", or "bf16" on a CPU with bf16 instructions), fed the batch's fields named as its inputs. Safe in
    a process that handles signals (see _signal_stack_kept)."""
    import openvino

    with _signal_stack_kept():
        compiled = openvino.Core().compile_model(onnx_path, "CPU", {"INFERENCE_NUM_THREADS": int(threads),
                                                                   "INFERENCE_PRECISION_HINT": precision})
        names = [port.get_any_name() for port in compiled.inputs]
        request = compiled.create_infer_request()

    def run(batch):
        with _signal_stack_kept():
            return np.asarray(request.infer({name: batch[name] for name in names})[compiled.output(0)],
                              dtype="float32")
    return run


def serve(onnx_path, threads, precision):
    """The child's loop: replies on standard output (pickled) None once the model is compiled, or the reason it is
    not; then, for each pickled batch read from standard input, its logits and the seconds computing them took here
    (a benchmark's model time, without the pipe), until standard input closes. Ctrl-C is left to the parent, which
    ends this process on any interruption."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever OpenVINO prints goes to standard error, never into the replies

    def reply(value):
        pickle.dump(value, replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()

    try:
        run = session(onnx_path, threads, precision)
    except Exception as error:  # an unreadable model, a precision the CPU lacks: the parent reports it
        reply(f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}")
        return 1
    reply(None)
    requests = sys.stdin.buffer
    while True:
        try:
            batch = pickle.load(requests)
        except EOFError:
            return 0
        start = time.perf_counter()
        logits = run(batch)
        reply((logits, time.perf_counter() - start))
