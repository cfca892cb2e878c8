"""Serve a model written by export_model.py over HTTP: a student (or, for comparison, a teacher) labels the texts of
each request with predict.py's runtime and threads (ONNX Runtime; int8 with --int8), so its probabilities are the
ones predict.py prints for the same texts.

    python serve.py --model_dir exported/distill-sst-2 --int8        # listens on http://127.0.0.1:8000
    curl -s localhost:8000/predict -H 'Content-Type: application/json' -d '{"texts": ["a great film", "dull"]}'
    curl -s localhost:8000/health
    # pair tasks (qqp): {"texts": [["how do i learn python?", "what is the best way to learn python?"]]}

POST /predict with {"texts": [text, ...]} (pair tasks: [[text, text], ...]) answers {"predictions": [{"label": ...,
"probs": {label: probability}}, ...]}, one per text in order, as predict.py --json labels the same texts; GET /health
answers {"status": "ok", "kind", "task", "labels", "pairs", "runtime", "int8", "threads", ...} once the model is
loaded. A bad request gets {"error": "<one line>"} with a 4xx status and the server answers the next request as
before: 400 for a body that is not UTF-8 JSON, 413 for a body over --max_request_bytes (refused before it is read) or
more than --max_batch_texts texts, 415 for a Content-Type other than JSON, 422 for JSON of another shape (no
"texts", another field, an empty list, an item that is not a text, or not a pair on a pair task); 404 and 405 for
other paths and methods. Texts are labelled like predict.py's lines: empty, over-long (cut to max_seq_length tokens)
and unknown characters included. Bad flags, a bad model directory or an address that cannot be listened on end the
server at startup in one line, exit code 2; Ctrl-C or SIGTERM ends it after the requests under way, exit code 130.

Each worker process loads the model once and runs one batch at a time (a lock: paddle.inference predictors and the
tokenizers are not thread-safe); --workers N runs N of them on one socket (uvicorn's supervisor, which restarts a
worker that dies).

Why not paddlenlp.server.SimpleServer, PaddleNLP's serving convention: it builds its own paddle.inference predictor
from a *.pdmodel file in the directory (Paddle 3 exports model.json; no ONNX Runtime, no int8) and an AutoTokenizer
(a student has none), takes {"data": ..., "parameters": ...} and answers a malformed request with pydantic's
validation errors. So ExportedModel is served directly with FastAPI and uvicorn, which SimpleServer is made of and
which paddlenlp installs.
"""
import ctypes
import json
import logging
import os
import signal
import socket
import sys
import threading

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from args import parse_args
from exported import ExportedModel
from utils import CPU_CORES, Interrupted, UserError, run_main

logger = logging.getLogger("distill")
ENDPOINTS = "POST /predict, GET /health"
BACKLOG = 2048  # connections waiting to be accepted (uvicorn's default)
# Seconds a worker may take to answer its supervisor's health check before it is killed and replaced: a new worker
# answers only once it has imported Paddle, several seconds and more on a busy machine (with uvicorn's 5 s, workers
# were killed and restarted while starting).
WORKER_HEALTHCHECK = 120


class RequestError(Exception):
    """A request the service refuses: its HTTP status and a one-line reason. close: the body was not read to its end,
    so the connection is closed after the answer."""

    def __init__(self, status, message, close=False):
        super().__init__(message)
        self.status, self.message, self.close = status, message, close


def json_type(value):
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def check_content_type(header):
    """Refuse (415) a body declared as anything but UTF-8 JSON; no Content-Type at all is read as JSON."""
    if header is None:
        return
    media_type, *parameters = [part.strip().lower() for part in header.split(";")]
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise RequestError(415, f"Content-Type {media_type or '(empty)'}: send application/json")
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            raise RequestError(415, f"Content-Type charset {value.strip()}: send UTF-8")


async def read_body(request, limit):
    """The request's body, refused (413) once it is larger than limit bytes: at once when its Content-Length says so,
    else as soon as more than limit bytes arrived."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"request body of {int(declared)} bytes, over the limit of {limit} "
                           "(--max_request_bytes)", close=True)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"request body over the limit of {limit} bytes (--max_request_bytes)", close=True)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_request(body, is_pair, max_texts):
    """The examples (tuples of one text, or of two for a pair task) of a /predict body, or RequestError saying what
    is wrong with it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestError(400, f"the body is not UTF-8 ({error.reason} at byte {error.start})") from None
    try:
        request = json.loads(text)
    except json.JSONDecodeError as error:
        raise RequestError(400, f"the body is not JSON ({error.msg} at line {error.lineno} column {error.colno})") \
            from None
    except (ValueError, RecursionError) as error:  # an integer of over 4,300 digits; arrays nested too deep
        reason = "nested too deep" if isinstance(error, RecursionError) else str(error).splitlines()[0]
        raise RequestError(400, f"the body is not JSON this service reads ({reason})") from None
    expected = '{"texts": [["text", "text"], ...]}' if is_pair else '{"texts": ["text", ...]}'
    if not isinstance(request, dict):
        raise RequestError(422, f"expected a JSON object {expected}, found {json_type(request)}")
    others = sorted(set(request) - {"texts"})
    if others:
        raise RequestError(422, f"unknown field(s) {', '.join(map(repr, others))}: expected {expected}")
    if "texts" not in request:
        raise RequestError(422, f"no field 'texts': expected {expected}")
    texts = request["texts"]
    if not isinstance(texts, list):
        raise RequestError(422, f"'texts' is {json_type(texts)}: expected {expected}")
    if not texts:
        raise RequestError(422, "'texts' is empty: nothing to label")
    if len(texts) > max_texts:
        raise RequestError(413, f"{len(texts)} texts, over the limit of {max_texts} per request (--max_batch_texts)")
    examples = []
    for i, item in enumerate(texts):
        if is_pair:
            if not (isinstance(item, list) and len(item) == 2 and all(isinstance(t, str) for t in item)):
                found = f"an array of {len(item)}" if isinstance(item, list) else json_type(item)
                raise RequestError(422, f"texts[{i}]: this model labels pairs, expected an array of two strings, "
                                   f"found {found}")
            examples.append(tuple(item))
        else:
            if not isinstance(item, str):
                raise RequestError(422, f"texts[{i}]: expected a string, found {json_type(item)}")
            examples.append((item,))
    return examples


def load_model(settings):
    return ExportedModel(settings["model_dir"], settings["runtime"], settings["int8"], settings["threads"],
                         cores=max(1, CPU_CORES // settings["workers"]), label_file=settings["label_file"])


def build_app(model, settings):
    """The FastAPI application serving model: /predict, /health, and every refusal as {"error": one line}."""
    app = FastAPI(title="distilled Bi-LSTM", docs_url=None, redoc_url=None, openapi_url=None)
    config = model.config
    lock = threading.Lock()
    health = {"status": "ok", "kind": config["kind"], "task": config.get("task_name"), "labels": config["labels"],
              "pairs": config["is_pair"], "runtime": model.runtime, "int8": model.int8, "threads": model.threads,
              "batch_size": settings["batch_size"], "max_batch_texts": settings["max_batch_texts"],
              "max_request_bytes": settings["max_request_bytes"], "model_dir": settings["model_dir"]}

    def label(examples):
        with lock:
            probabilities = model.probabilities(examples, settings["batch_size"])
        return [model.prediction(row) for row in probabilities]

    @app.get("/health")
    async def health_check():
        return JSONResponse({**health, "pid": os.getpid()})

    @app.post("/predict")
    async def predict(request: Request):
        check_content_type(request.headers.get("content-type"))
        body = await read_body(request, settings["max_request_bytes"])
        examples = parse_request(body, config["is_pair"], settings["max_batch_texts"])
        try:
            predictions = await run_in_threadpool(label, examples)
        except Exception as error:  # the request's texts broke the model: that request fails, the service stays
            logger.exception("labelling %d text(s) failed", len(examples))
            raise RequestError(500, f"labelling failed ({type(error).__name__}); see the server's log") from None
        return JSONResponse({"predictions": predictions})

    @app.exception_handler(RequestError)
    async def refused(request, error):
        logger.warning("%s %s: %d %s", request.method, request.url.path, error.status, error.message)
        return JSONResponse({"error": error.message}, status_code=error.status,
                            headers={"Connection": "close"} if error.close else None)

    @app.exception_handler(HTTPException)  # Starlette's own: a path or method that is not served
    async def not_served(request, error):
        message = {404: f"no endpoint {request.url.path} ({ENDPOINTS})",
                   405: f"{request.method} {request.url.path}: method not allowed ({ENDPOINTS})"}.get(
            error.status_code, str(error.detail))
        return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)

    return app


class Service:
    """The ASGI application of one worker process, which loads the model when the worker starts (uvicorn's lifespan
    startup), once; the server's own process passes the model it loaded. Pickled into each worker without it."""

    def __init__(self, settings, model=None):
        self.settings = settings
        self._app = None if model is None else build_app(model, settings)

    def __getstate__(self):
        return {"settings": self.settings, "_app": None}

    async def __call__(self, scope, receive, send):
        if self._app is None:
            _die_with(self.settings["server_pid"])
            self._app = build_app(load_model(self.settings), self.settings)
        await self._app(scope, receive, send)


def _die_with(parent):
    """Have the kernel kill this worker when the server process that started it dies, however it dies (Linux's
    PR_SET_DEATHSIG), and end now if it is gone already: a worker never serves on without its supervisor."""
    try:
        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))
    except AttributeError:  # not Linux
        return
    if os.getppid() != parent:
        os._exit(1)


class Workers(Multiprocess):
    """uvicorn's supervisor of --workers processes (a worker that dies is replaced), remembering the signal that ended
    it."""
    stopped_by = None

    def handle_int(self):
        self.stopped_by = "SIGINT"
        super().handle_int()

    def handle_term(self):
        self.stopped_by = "SIGTERM"
        super().handle_term()


def listen(host, port):
    """A socket listening on host:port, or a UserError naming the flags when it cannot be."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as error:
        raise UserError(f"--host {host}: not an address to listen on ({error.strerror})") from None
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(BACKLOG)
    except OSError as error:
        listener.close()
        raise UserError(f"--host {host} --port {port}: cannot listen there ({error.strerror})") from None
    listener.set_inheritable(True)  # handed to the worker processes
    return listener


def main(argv=None):
    args = parse_args("serve", argv, __doc__)
    if not os.path.isdir(args.model_dir):
        raise UserError(f"--model_dir {args.model_dir}: no such directory")
    settings = {name: getattr(args, name) for name in ("model_dir", "runtime", "int8", "threads", "label_file",
                                                       "batch_size", "workers", "max_batch_texts",
                                                       "max_request_bytes")}
    settings["server_pid"] = os.getpid()
    with listen(args.host, args.port) as listener:
        model = load_model(settings)  # refused here, in one line, if the directory or the flags are wrong
        config = uvicorn.Config(Service(settings, model if args.workers == 1 else None), workers=args.workers,
                                lifespan="on", backlog=BACKLOG, log_level="info",
                                timeout_worker_healthcheck=WORKER_HEALTHCHECK)
        host, port = listener.getsockname()[:2]
        print(f"serving the {model.config['kind']} of {args.model_dir} ({model.config.get('task_name')}, "
              f"{model.runtime}{', int8' if args.int8 else ''}) on http://{f'[{host}]' if ':' in host else host}:"
              f"{port} with {args.workers} worker(s); POST /predict, GET /health", flush=True)
        if args.workers == 1:
            uvicorn.Server(config).run(sockets=[listener])  # re-raises SIGINT or SIGTERM once shut down
            return 0
        del model  # each worker loads its own
        previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
        supervisor = Workers(config, sockets=[listener])
        try:
            supervisor.run()
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        raise UserError(f"--model_dir {args.model_dir}: a worker could not load the model (see the log above)")
    if supervisor.stopped_by:
        raise Interrupted(supervisor.stopped_by)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
