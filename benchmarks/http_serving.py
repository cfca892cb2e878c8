"""Section http: serve.py answering HTTP requests under load, the student against the teacher (see benchmark.py)."""
import contextlib
import http.client
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np

import model as models
import runtimes
from benchmarks.common import cpu_name, data_source, ratio, read_examples, task_of
from files import read_json
from utils import UserError, scratch_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVE_SCRIPT = os.path.join(ROOT, "serve.py")
STARTUP_SECONDS = 600  # to import Paddle and load a bert-base teacher on a busy machine
WARM_UP = 20  # unmeasured requests to each server before its rows
HEADERS = {"Content-Type": "application/json"}
RUNTIME_NAMES = {"onnxruntime": "ONNX Runtime", "paddle": "paddle.inference"}


def http_under_load(args):
    """Each export served alone by serve.py, as a user starts it (one worker, its default runtime and threads; the
    student with --int8 when exported so), then loaded by a local client at each concurrency: requests per second and
    p50/p99 latency, and the student against the teacher."""
    sentences, is_pair = read_examples(args), task_of(args).is_pair
    bodies = [json.dumps({"texts": [list(example.texts) if is_pair else example.texts[0]]}).encode()
              for example in sentences]
    served = [("student", "--student_model_dir", args.student_model_dir),
              ("teacher", "--teacher_model_dir", args.teacher_model_dir)]
    configs = {name: check_export(flag, directory, name, is_pair) for name, flag, directory in served}
    int8 = {name: name == "student" and bool(config.get("onnx_int8")) for name, config in configs.items()}
    rows = []  # (model, runtime, concurrency, answered, requests/s, p50 s, p99 s, errors)
    with scratch_dir("benchmark-http") as scratch:
        for name, _, directory in served:
            with serving(directory, int8[name], os.path.join(scratch, f"{name}.log")) as (address, health):
                for body in itertools.islice(itertools.cycle(bodies), WARM_UP):
                    post(address, body)
                runtime = (f"{RUNTIME_NAMES[health['runtime']]}{', int8' if health['int8'] else ''}, "
                           f"{health['threads']} thread{'s' if health['threads'] > 1 else ''}")
                for concurrency in args.http_concurrency:
                    seconds, latencies, errors = load(address, bodies, args.http_requests, concurrency,
                                                      args.http_time_limit)
                    p50, p99 = np.percentile(latencies, [50, 99]) if latencies else (float("nan"),) * 2
                    rows.append((f"{name} ({directory})", runtime, concurrency, len(latencies),
                                 len(latencies) / seconds, p50, p99, errors))
    print(f"\n### http: serve.py under load, one {'pair' if is_pair else 'sentence'} per request, {cpu_name()}\n")
    print(f"Each model served alone by serve.py on 127.0.0.1 (one worker; the runtime and threads of predict.py), the "
          f"client in this process on the same cores (one thread and keep-alive connection per concurrent client, "
          f"each sending its next request when answered); {args.http_requests} requests per row (the first "
          f"{len(sentences)} examples of {data_source(args)} in turn), fewer where {args.http_time_limit:g} s ran out, "
          f"after {WARM_UP} unmeasured ones. Latency: from sending a request to its whole answer.\n")
    print("| model | runtime | concurrency | requests | requests/s | p50 ms | p99 ms | errors |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for model, runtime, concurrency, answered, per_second, p50, p99, errors in rows:
        print(f"| {model} | {runtime} | {concurrency} | {answered} | {per_second:.1f} | {p50 * 1000:.2f} | "
              f"{p99 * 1000:.2f} | {errors} |")
    print(f"\n### http, student against teacher: from the same run, {cpu_name()}\n")
    print("| concurrency | requests/s: student ÷ teacher | p50: teacher ÷ student | p99: teacher ÷ student |")
    print("| ---: | ---: | ---: | ---: |")
    half = len(args.http_concurrency)
    for student, teacher in zip(rows[:half], rows[half:]):
        print(f"| {student[2]} | {quotient(student[4], teacher[4])} | {quotient(teacher[5], student[5])} | "
              f"{quotient(teacher[6], student[6])} |")


def quotient(numerator, denominator):
    """numerator / denominator as a ratio, or - where a row had no answered request."""
    return ratio(numerator / denominator) if numerator > 0 and denominator > 0 else "-"


def check_export(flag, directory, kind, is_pair):
    """export_config.json of an export of `kind` (student or teacher) for pairs (is_pair) or single texts, as the data
    sent, else a UserError."""
    if directory is None:
        raise UserError(f"--sections http: needs {flag} (an export_model.py directory)")
    config = read_json(os.path.join(directory, models.EXPORT_CONFIG), ("kind", "is_pair"), flag)
    if config["kind"] != kind:
        raise UserError(f"{flag} {directory}: an export of a {config['kind']}, not of a {kind}")
    if config["is_pair"] != is_pair:
        raise UserError(f"{flag} {directory}: a model of {'sentence pairs' if config['is_pair'] else 'single texts'}; "
                        f"the benchmark sends the {'pairs' if is_pair else 'single sentences'} of its data")
    return config


@contextlib.contextmanager
def serving(model_dir, int8, log_path):
    """((host, port), /health's answer) of serve.py started on a free port of 127.0.0.1 for model_dir, for the
    block; it dies with this process however this one ends (runtimes.child_code), its output goes to log_path."""
    argv = [SERVE_SCRIPT, "--model_dir", model_dir, "--port", "0"] + ["--int8"] * int8
    code = runtimes.child_code(f"import runpy, sys\nsys.path.insert(0, {ROOT!r})\nsys.argv = {argv!r}\n"
                               f"runpy.run_path({SERVE_SCRIPT!r}, run_name='__main__')")
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        yield wait_until_serving(process, log_path, model_dir)
    finally:
        process.terminate()  # SIGTERM: serve.py shuts down
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_serving(process, log_path, model_dir):
    """((host, port), /health's answer) once the server started by process answers /health."""
    deadline = time.monotonic() + STARTUP_SECONDS
    address = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                lines = [line.strip() for line in f if line.strip()]
            raise UserError(f"serve.py --model_dir {model_dir} ended at startup: {lines[-1] if lines else ''}")
        if address is None:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                found = re.search(r" on http://([\d.]+):(\d+) ", f.read())
            address = (found[1], int(found[2])) if found else None
        if address is not None:
            with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
                connection = http.client.HTTPConnection(*address, timeout=10)
                connection.request("GET", "/health")
                response = connection.getresponse()
                health = json.loads(response.read())
                connection.close()
                if response.status == 200:
                    return address, health
        time.sleep(0.2)
    raise UserError(f"serve.py --model_dir {model_dir}: not answering after {STARTUP_SECONDS} s (log: {log_path})")


def post(address, body):
    """One /predict request on a new connection; refused unless answered 200."""
    connection = http.client.HTTPConnection(*address, timeout=60)
    try:
        connection.request("POST", "/predict", body, HEADERS)
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise UserError(f"serve.py at {address[0]}:{address[1]} answered {response.status}: {answer[:200]!r}")


def load(address, bodies, requests, concurrency, time_limit):
    """(seconds, latencies of the requests answered 200, requests that failed) of `concurrency` clients sending
    `requests` bodies in all (bodies in turn), each its next when answered, none sent after time_limit seconds."""
    issued = itertools.count()  # next() of a count is atomic under the GIL: each request index goes to one client
    latencies, failures, lock = [], [], threading.Lock()
    start = time.perf_counter()
    deadline = start + time_limit

    def client():
        connection = http.client.HTTPConnection(*address, timeout=time_limit + 60)
        mine, failed = [], 0
        try:
            while time.perf_counter() < deadline:
                index = next(issued)
                if index >= requests:
                    break
                sent = time.perf_counter()
                try:
                    connection.request("POST", "/predict", bodies[index % len(bodies)], HEADERS)
                    response = connection.getresponse()
                    response.read()
                    answered = response.status == 200
                except (OSError, http.client.HTTPException):
                    answered = False
                    connection.close()  # connects again at the next request
                if answered:
                    mine.append(time.perf_counter() - sent)
                else:
                    failed += 1
        finally:
            connection.close()
            with lock:
                latencies.extend(mine)
                failures.append(failed)

    clients = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    return time.perf_counter() - start, latencies, sum(failures)
