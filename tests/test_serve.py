"""serve.py over HTTP, started as a user starts it on a free port of 127.0.0.1: its answers are predict.py's for the
same texts (a student of single sentences served by two worker processes, a teacher of pairs by one); a bad request
gets a 4xx and one line, and the next request is answered; bad flags end it at startup in one line. And
benchmark.py's http section on the same tiny models."""
import contextlib
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT, fails_cleanly

import benchmark
import data
import export_model
import predict
import serve
from tasks import TASKS

STARTUP_SECONDS = 180  # importing Paddle in the server and its workers, on 2 busy cores
MAX_TEXTS, MAX_BYTES = 40, 20000  # the student server's limits
AWKWARD = ["", "   ", "a great film", "good " * 300, "ok 😀 très bien 好极了 ✓ Ω\x07 \u200b\ufeff", "x" * 3000,
           "not\tone\ttab", "caf\ufffd"]


def launch(argv, log_path):
    """serve.py started with argv on a free port of 127.0.0.1, its output going to log_path."""
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, os.path.join(ROOT, "serve.py"), *argv, "--port", "0"], stdout=log,
                                stderr=subprocess.STDOUT, cwd=ROOT)


def serving(process, log_path):
    """((host, port), /health's answer) of a launched server, once /health answers."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, open(log_path, errors="replace").read()[-3000:]
        found = re.search(r" on http://127\.0\.0\.1:(\d+) ", open(log_path, errors="replace").read())
        if found:
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, health = call(("127.0.0.1", int(found[1])), "GET", "/health")
                if status == 200:
                    return ("127.0.0.1", int(found[1])), health
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"serve.py not answering after {STARTUP_SECONDS} s: {open(log_path).read()[-3000:]}")


def call(address, method, path, body=None, headers=None, chunked=False):
    """(status, decoded JSON answer) of one request on a new connection."""
    connection = http.client.HTTPConnection(*address, timeout=60)
    try:
        try:
            connection.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (413) and closed before the whole body was sent: read its answer
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def post(address, texts):
    return call(address, "POST", "/predict", json.dumps({"texts": texts}), {"Content-Type": "application/json"})


def children(pid):
    """The processes whose parent is pid."""
    found = []
    for name in os.listdir("/proc"):
        with contextlib.suppress(OSError, IndexError):
            if name.isdigit() and int(open(f"/proc/{name}/stat").read().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(name))
    return found


def alive(pid):
    with contextlib.suppress(OSError):
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    return False


@pytest.fixture(scope="module")
def launched(students, teacher_export, tmp_path_factory):
    """The two servers of the module, started side by side: name -> (process, log path, export directory)."""
    logs = tmp_path_factory.mktemp("servers")
    student_dir = students["sst-2"][1]
    servers = {"student": (["--model_dir", student_dir, "--int8", "--workers", "2", "--max_batch_texts",
                            str(MAX_TEXTS), "--max_request_bytes", str(MAX_BYTES)], student_dir),
               "teacher": (["--model_dir", teacher_export], teacher_export)}
    launched = {name: (launch(argv, logs / f"{name}.log"), logs / f"{name}.log", directory)
                for name, (argv, directory) in servers.items()}
    yield launched
    for process, _, _ in launched.values():
        if process.poll() is None:  # a fixture below failed before it ended its server
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def student_server(launched):
    """(address, /health, export directory, worker pids) of the SST-2 student (int8) served by two worker
    processes; at the end the server is killed with SIGKILL, and its workers must die with it."""
    process, log_path, export_dir = launched["student"]
    address, health = serving(process, log_path)
    workers = [pid for pid in children(process.pid) if "spawn_main" in open(f"/proc/{pid}/cmdline").read()]
    yield address, health, export_dir, workers
    process.kill()
    process.wait()
    deadline = time.monotonic() + 30
    while any(map(alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(alive, workers)), "a worker outlived its server"


@pytest.fixture(scope="module")
def teacher_server(launched):
    """(address, /health, export directory) of the QQP teacher (pairs) served by one process; at the end SIGTERM
    stops it as Ctrl-C would: exit code 130, after a clean shutdown."""
    process, log_path, export_dir = launched["teacher"]
    address, health = serving(process, log_path)
    yield address, health, export_dir
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 130
    log = open(log_path, errors="replace").read()
    assert log.rstrip().endswith("interrupted (SIGTERM)") and "Traceback" not in log, log[-2000:]


def predict_json(capsys, export_dir, lines, tmp_path, *flags):
    """What predict.py --json prints for the lines: [{"label", "probs"}, ...]."""
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert predict.main(["--model_dir", export_dir, "--input_file", str(path), "--json", *flags]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["line"] for r in records] == list(range(1, len(lines) + 1))
    return [{"label": r["label"], "probs": r["probs"]} for r in records]


def test_health_describes_the_model_served(student_server, teacher_server):
    _, student, _, workers = student_server
    assert {k: student[k] for k in ("status", "kind", "task", "labels", "pairs", "runtime", "int8", "threads")} == {
        "status": "ok", "kind": "student", "task": "sst-2", "labels": ["0", "1"], "pairs": False,
        "runtime": "onnxruntime", "int8": True, "threads": 1}
    assert (student["max_batch_texts"], student["max_request_bytes"]) == (MAX_TEXTS, MAX_BYTES)
    assert len(workers) == 2 and student["pid"] in workers  # answered by a worker, which loaded the model
    teacher = teacher_server[1]
    assert (teacher["kind"], teacher["task"], teacher["pairs"], teacher["runtime"], teacher["int8"]) == (
        "teacher", "qqp", True, "onnxruntime", False)


def test_the_student_answers_as_predict_py(student_server, task_files, tmp_path, capsys):
    address, _, export_dir, _ = student_server
    sentences = [ex.texts[0] for ex in data.read_split(TASKS["sst-2"], "dev", task_files["sst-2"][1], "dev")]
    texts = sentences[:30] + AWKWARD
    status, answer = post(address, texts)
    assert status == 200
    assert answer["predictions"] == predict_json(capsys, export_dir, texts, tmp_path, "--int8")
    # Alone, nearly the same: int8 quantises activations with scales of the whole batch.
    status, one = post(address, texts[3:4])
    assert status == 200 and one["predictions"][0]["label"] == answer["predictions"][3]["label"]
    assert one["predictions"][0]["probs"] == pytest.approx(answer["predictions"][3]["probs"], abs=1e-3)


def test_the_teacher_answers_pairs_as_predict_py(teacher_server, task_files, tmp_path, capsys):
    address, _, export_dir = teacher_server
    pairs = [list(ex.texts) for ex in data.read_split(TASKS["qqp"], "dev", task_files["qqp"][1], "dev")][:20]
    pairs += [["how do i learn python ? " * 20, "short"], ["", ""], ["好极了 😀", "caf\ufffd"]]
    status, answer = post(address, pairs)
    assert status == 200
    assert answer["predictions"] == predict_json(capsys, export_dir, ["\t".join(p) for p in pairs], tmp_path)


def test_concurrent_requests_get_their_own_answers(student_server):
    address = student_server[0]
    texts = [["a great film"], ["dull and bad", "fun"], ["not good at all"] * 3, ["\ud800 a lone surrogate"]] * 4
    expected = [post(address, t) for t in texts[:4]]
    answers = [None] * len(texts)

    def ask(i):
        answers[i] = post(address, texts[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(status == 200 for status, _ in expected)
    assert answers == expected * 4


JSON = {"Content-Type": "application/json"}
TOO_LARGE = json.dumps({"texts": ["a" * MAX_BYTES]}).encode()
# id -> (method, path, body, headers, status, what the error says); sent to the student server
BAD_REQUESTS = {
    "malformed-json": ("POST", "/predict", b'{"texts": ["a"', JSON, 400, "not JSON (Expecting ',' delimiter"),
    "empty-body": ("POST", "/predict", b"", JSON, 400, "not JSON (Expecting value at line 1 column 1)"),
    "not-utf8": ("POST", "/predict", b'{"texts": ["caf\xe9"]}', JSON, 400, "not UTF-8 (invalid continuation byte"),
    "utf16": ("POST", "/predict", '{"texts": ["a"]}'.encode("utf-16"), JSON, 400, "not UTF-8"),
    "nested-too-deep": ("POST", "/predict", b"[" * 15000, JSON, 400, "nested too deep"),
    "huge-integer": ("POST", "/predict", b'{"texts": [' + b"7" * 5000 + b"]}", JSON, 400, "not JSON this service"),
    "not-an-object": ("POST", "/predict", b'["a film"]', JSON, 422, "expected a JSON object"),
    "wrong-field": ("POST", "/predict", b'{"text": ["a film"]}', JSON, 422, "unknown field(s) 'text'"),
    "extra-field": ("POST", "/predict", b'{"texts": ["a"], "top_k": 1}', JSON, 422, "unknown field(s) 'top_k'"),
    "no-texts": ("POST", "/predict", b"{}", JSON, 422, "no field 'texts'"),
    "texts-a-string": ("POST", "/predict", b'{"texts": "a film"}', JSON, 422, "'texts' is a string"),
    "empty-list": ("POST", "/predict", b'{"texts": []}', JSON, 422, "'texts' is empty"),
    "null-text": ("POST", "/predict", b'{"texts": ["a", null]}', JSON, 422, "texts[1]: expected a string, found null"),
    "pair-to-a-single-text-model": ("POST", "/predict", b'{"texts": [["a", "b"]]}', JSON, 422,
                                    "texts[0]: expected a string, found an array"),
    "too-many-texts": ("POST", "/predict", json.dumps({"texts": ["a"] * (MAX_TEXTS + 1)}).encode(), JSON, 413,
                       f"{MAX_TEXTS + 1} texts, over the limit of {MAX_TEXTS}"),
    "body-too-large": ("POST", "/predict", TOO_LARGE, JSON, 413,
                       f"request body of {len(TOO_LARGE)} bytes, over the limit of {MAX_BYTES} (--max_request_bytes)"),
    "body-too-large-chunked": ("POST", "/predict", iter([b'{"texts": ["', b"a" * MAX_BYTES, b'"]}']), JSON, 413,
                               f"request body over the limit of {MAX_BYTES} bytes"),
    "text-plain": ("POST", "/predict", b'{"texts": ["a"]}', {"Content-Type": "text/plain"}, 415,
                   "Content-Type text/plain: send application/json"),
    "latin1-charset": ("POST", "/predict", b'{"texts": ["a"]}', {"Content-Type": "application/json; charset=latin-1"},
                       415, "charset latin-1"),
    "get-predict": ("GET", "/predict", None, {}, 405, "GET /predict: method not allowed"),
    "post-health": ("POST", "/health", b"{}", JSON, 405, "POST /health: method not allowed"),
    "unknown-path": ("POST", "/labels", b"{}", JSON, 404, "no endpoint /labels"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_a_bad_request_gets_a_4xx_in_one_line_and_the_next_is_answered(student_server, case):
    address, health = student_server[:2]
    method, path, body, headers, status, expected = case
    got, answer = call(address, method, path, body, headers, chunked=not isinstance(body, (bytes, type(None))))
    assert got == status and list(answer) == ["error"], answer
    assert expected in answer["error"] and "\n" not in answer["error"], answer["error"]
    status, good = post(address, ["a great film"])
    assert status == 200 and good["predictions"][0]["label"] in ("0", "1")
    assert call(address, "GET", "/health")[1]["status"] == "ok"


@pytest.mark.parametrize("item, found", [(["a"], "an array of 1"), ("a", "a string"), (["a", 1], "an array of 2")])
def test_the_teacher_of_pairs_refuses_what_is_not_a_pair(teacher_server, item, found):
    address = teacher_server[0]
    status, answer = post(address, [["a", "b"], item])
    assert status == 422 and answer["error"] == (f"texts[1]: this model labels pairs, expected an array of two "
                                                 f"strings, found {found}")
    assert post(address, [["a", "b"]])[0] == 200


def test_bad_flags_end_the_server_at_startup_in_one_line(capsys, students, teacher_export, tiny_bert, tmp_path):
    export_dir = students["sst-2"][1]
    fails_cleanly(capsys, serve.main, ["--model_dir", str(tmp_path / "nope")], f"--model_dir {tmp_path / 'nope'}: "
                  "no such directory")
    fails_cleanly(capsys, serve.main, ["--model_dir", tiny_bert, "--port", "0"], "--model_dir", "no export_config.json")
    fails_cleanly(capsys, serve.main, ["--model_dir", teacher_export, "--int8", "--port", "0"], "--int8",
                  "has no int8 model")
    fails_cleanly(capsys, serve.main, ["--model_dir", export_dir, "--port", "65536"], "argument --port",
                  "must be an integer in [0, 65535]")
    fails_cleanly(capsys, serve.main, ["--model_dir", export_dir, "--workers", "0"], "argument --workers")
    fails_cleanly(capsys, serve.main, ["--model_dir", export_dir, "--max_batch_texts", "0"],
                  "argument --max_batch_texts")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        fails_cleanly(capsys, serve.main, ["--model_dir", export_dir, "--port", str(port)],
                      f"--host 127.0.0.1 --port {port}: cannot listen there (Address already in use)")
    fails_cleanly(capsys, serve.main, ["--model_dir", export_dir, "--host", "192.0.2.1", "--port", "0"],
                  "--host 192.0.2.1 --port 0: cannot listen there")  # an address of no interface here


# ---------------------------------------------------------------------------------------------------------------
# benchmark.py --sections http


@pytest.fixture(scope="module")
def sst2_teacher_export(tiny_bert, tmp_path_factory):
    export_dir = str(tmp_path_factory.mktemp("sst2-teacher") / "export")
    export_model.main(["--teacher_dir", tiny_bert, "--task_name", "sst-2", "--max_seq_length", "24",
                       "--output_dir", export_dir])
    return export_dir


def table(output, heading):
    """The rows (lists of cells) of the Markdown table printed under '### <heading>:'."""
    text = output.split(f"### {heading}:")[1].split("\n### ")[0]
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(lines) > 2 and set(lines[1]) <= set("|-: "), f"no table under {heading}"
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_the_http_benchmark_serves_both_models_at_each_concurrency(students, sst2_teacher_export, task_files):
    student_dir = students["sst-2"][1]
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        benchmark.main(["--sections", "http", "--data_file", task_files["sst-2"][1], "--num_sentences", "8",
                        "--student_model_dir", student_dir, "--teacher_model_dir", sst2_teacher_export,
                        "--http_requests", "12"])
    output = output.getvalue()
    rows = table(output, "http")
    assert [(row[0], row[2]) for row in rows] == [(f"{name} ({directory})", str(concurrency))
                                                  for name, directory in (("student", student_dir),
                                                                          ("teacher", sst2_teacher_export))
                                                  for concurrency in (1, 8, 32)]
    assert {row[1] for row in rows[:3]} == {"ONNX Runtime, int8, 1 thread"}  # the student as the README recommends
    for _, runtime, _, answered, per_second, p50, p99, errors in rows:
        assert answered == "12" and errors == "0" and float(per_second) > 0 and 0 < float(p50) <= float(p99)
    ratios = table(output, "http, student against teacher")
    assert [row[0] for row in ratios] == ["1", "8", "32"]
    assert all(re.fullmatch(r"\d+(\.\d+)?(e[-+]\d+)?x", cell) for row in ratios for cell in row[1:]), ratios
    assert re.search(r"### http: .*, \d+ cores?\n", output)  # the processor is named


def test_the_http_benchmark_refuses_what_it_cannot_measure(capsys, students, teacher_export, task_files):
    flags = ["--data_file", task_files["sst-2"][1], "--sections", "http"]
    student_dir = students["sst-2"][1]
    fails_cleanly(capsys, benchmark.main, flags + ["--student_model_dir", student_dir], "--sections http: needs "
                  "--teacher_model_dir")
    fails_cleanly(capsys, benchmark.main, flags + ["--student_model_dir", student_dir, "--teacher_model_dir",
                                                   teacher_export], "--teacher_model_dir", "a model of sentence pairs")
    fails_cleanly(capsys, benchmark.main, flags + ["--student_model_dir", teacher_export, "--teacher_model_dir",
                                                   student_dir], "--student_model_dir", "an export of a teacher")
    fails_cleanly(capsys, benchmark.main, ["--data_file", task_files["sst-2"][1], "--sections", "size",
                                           "--student_model_dir", student_dir],
                  "--student_model_dir: does nothing without --sections http")
