"""The layout: scripts import library modules only, never another script, and serving (predict.py, serve.py) imports no
training code."""
import ast
import glob
import os
import subprocess
import sys

import pytest
from conftest import ROOT

LIBRARIES = {"args", "augment", "basic_words", "checkpoint", "data", "distillation", "embeddings", "exported", "files",
             "model", "onnx_graph", "openvino_runtime", "quantization", "runtimes", "selector", "tasks", "training",
             "utils"}


def top_level_modules():
    return {os.path.basename(path)[:-3]: path for path in glob.glob(os.path.join(ROOT, "*.py"))}


def is_script(path):
    with open(path, encoding="utf-8") as f:
        return '__name__ == "__main__"' in f.read()


def imported_modules(path):
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_script_imports_another_script():
    modules = top_level_modules()
    scripts = {name for name, path in modules.items() if is_script(path)}
    assert {"small", "teacher", "bert_distill", "export_model", "predict", "serve", "benchmark"} <= scripts
    assert not scripts & LIBRARIES and LIBRARIES <= set(modules)
    for name, path in modules.items():
        local = imported_modules(path) & set(modules)
        assert not local & scripts, f"{name}.py imports the script(s) {sorted(local & scripts)}"


@pytest.mark.parametrize("script", ["predict", "serve"])
def test_serving_imports_no_training_code(script):
    code = "import sys, {script}; print(' '.join(sorted(set(sys.modules) & {names})))".format(
        script=script, names=repr(set(top_level_modules())))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert set(result.stdout.split()) == {script, "exported", "model", "runtimes", "data", "basic_words", "tasks",
                                          "utils", "files", "args"}
