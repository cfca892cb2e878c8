"""Nothing the user owns is deleted, replaced or mixed with a run's output: scripts write only paths they create or
their own earlier output (recognised by the mark they wrote), temporary names are unique, a symlinked output is
written through, the path reported is the path written; and one run (or export) at a time per output directory."""
import os
import shutil
import signal
import subprocess
import sys
import time

import matplotlib
import pytest
from conftest import ROOT, STUDENT_FAST, data_flags, fails_cleanly

import bert_distill
import data
import export_model
import files
import plot_curves
import results_table
import small
import utils
from files import read_json

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def tree(path):
    """Every file under path (path itself if a file) -> its bytes, and every directory -> None."""
    if os.path.isfile(path):
        return {"": open(path, "rb").read()}
    entries = {}
    for root, dirs, names in os.walk(path):
        for name in dirs:
            entries[os.path.relpath(os.path.join(root, name), path)] = None
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                entries[os.path.relpath(os.path.join(root, name), path)] = f.read()
    return entries


def users_dir(path, text="mine\n"):
    os.makedirs(path)
    with open(os.path.join(path, "notes.txt"), "w") as f:
        f.write(text)
    return tree(path)


@pytest.fixture(scope="module")
def run_flags(task_files, tiny_bert):
    return data_flags(task_files, "sst-2") + STUDENT_FAST + [
        "--vocab_path", os.path.join(tiny_bert, "vocab.txt"), "--lr_schedule", "constant"]


@pytest.fixture(scope="module")
def student_run(run_flags, tmp_path_factory):
    """The output directory of a finished one-epoch small.py run, and its flags."""
    output_dir = str(tmp_path_factory.mktemp("ownership") / "run")
    flags = run_flags + ["--output_dir", output_dir]
    small.main(flags)
    utils.release_dirs()  # as at the end of the script's process
    return output_dir, flags


# --- 1. a user's files deleted or replaced


def test_replace_dir_and_atomic_write_touch_no_name_but_their_own(tmp_path):
    def build(text):
        return lambda directory: open(os.path.join(directory, "version"), "w").write(text)

    out = str(tmp_path / "out")
    mine = {name: users_dir(out + suffix) for name, suffix in (("old", ".old"), ("tmp", ".tmp"))}
    files.replace_dir(build("1"), out)
    files.replace_dir(build("2"), out)
    assert sorted(os.listdir(tmp_path)) == ["out", "out.old", "out.tmp"]
    assert tree(out + ".old") == mine["old"] and tree(out + ".tmp") == mine["tmp"]
    # A symlinked directory is replaced where it points; the link stays a link.
    os.symlink(out, tmp_path / "link")
    files.replace_dir(build("3"), str(tmp_path / "link"))
    assert os.readlink(tmp_path / "link") == out and tree(out) == {"version": b"3"}
    # A file is never replaced by a directory.
    (tmp_path / "notes.txt").write_text("mine\n")
    with pytest.raises(utils.UserError, match="notes.txt: exists and is not a directory"):
        files.replace_dir(build("4"), str(tmp_path / "notes.txt"))
    assert (tmp_path / "notes.txt").read_text() == "mine\n"

    (tmp_path / "results.json.tmp").write_text("mine\n")
    (tmp_path / "real.json").write_text("old\n")
    (tmp_path / "real.json").chmod(0o640)
    os.symlink("real.json", tmp_path / "results.json")
    files.write_json(str(tmp_path / "results.json"), {"new": 1})
    assert (tmp_path / "results.json.tmp").read_text() == "mine\n"
    assert os.path.islink(tmp_path / "results.json") and read_json(str(tmp_path / "real.json")) == {"new": 1}
    assert (tmp_path / "real.json").stat().st_mode & 0o777 == 0o640  # the replaced file's permissions
    assert sorted(os.listdir(tmp_path)) == ["link", "notes.txt", "out", "out.old", "out.tmp", "real.json",
                                            "results.json", "results.json.tmp"]


def test_export_writes_only_its_own_directory(student_run, tmp_path, capsys):
    best = os.path.join(student_run[0], "best")
    exp = str(tmp_path / "exp")
    mine = {suffix: users_dir(exp + suffix) for suffix in (".old", ".tmp")}
    (tmp_path / "notes.txt").write_text("my notes\n")
    fails_cleanly(capsys, export_model.main, ["--student_dir", best, "--output_dir", str(tmp_path / "notes.txt")],
                  "--output_dir", "notes.txt", "not a directory")
    assert (tmp_path / "notes.txt").read_text() == "my notes\n"

    export_model.main(["--student_dir", best, "--output_dir", exp])
    assert sorted(os.listdir(tmp_path)) == ["exp", "exp.old", "exp.tmp", "notes.txt"]
    assert {suffix: tree(exp + suffix) for suffix in mine} == mine
    config = read_json(os.path.join(exp, "export_config.json"))
    assert config["files"] == sorted(os.listdir(exp))  # what a later export may replace

    # A re-export would delete the user's file inside: refused before any work, naming it, nothing changed.
    (tmp_path / "exp" / "predictions.txt").write_text("1\t0.9\n")
    before = tree(exp)
    fails_cleanly(capsys, export_model.main, ["--student_dir", best, "--output_dir", exp],
                  "--output_dir", "predictions.txt", "did not write")
    assert tree(exp) == before

    # Without it, an earlier export is replaced whole, also through a symlink (which stays one).
    os.remove(os.path.join(exp, "predictions.txt"))
    os.symlink(exp, tmp_path / "link")
    export_model.main(["--student_dir", best, "--output_dir", str(tmp_path / "link")])
    assert os.readlink(tmp_path / "link") == exp
    assert read_json(os.path.join(exp, "export_config.json"))["files"] == config["files"]
    assert sorted(os.listdir(tmp_path)) == ["exp", "exp.old", "exp.tmp", "link", "notes.txt"]
    assert {suffix: tree(exp + suffix) for suffix in mine} == mine


def test_a_resumed_run_leaves_the_users_directories_beside_best_alone(student_run, tmp_path):
    run = shutil.copytree(student_run[0], str(tmp_path / "run"), symlinks=True)
    flags = student_run[1][:-1] + [run]
    mine = {name: users_dir(os.path.join(run, name)) for name in ("best.old", "best.tmp", "checkpoint.old")}
    best = tree(os.path.join(run, "best"))
    results = small.main(flags)  # resumes: puts best/ back from the checkpoint and writes the checkpoint again
    assert results["steps"] == read_json(os.path.join(student_run[0], "results.json"))["steps"]
    assert {name: tree(os.path.join(run, name)) for name in mine} == mine
    assert tree(os.path.join(run, "best")) == best
    assert sorted(os.listdir(run)) == sorted(["best", "checkpoint", "eval_log.jsonl", "results.json", *mine])


def test_results_table_writes_only_the_readme(student_run, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:begin -->\nold\n<!-- results:end -->\n", encoding="utf-8")
    (tmp_path / "README.md.tmp").write_text("my draft\n")
    results_table.main([student_run[0], "--readme", str(readme)])
    assert "| sst-2 |" in readme.read_text(encoding="utf-8")
    assert (tmp_path / "README.md.tmp").read_text() == "my draft\n"
    assert sorted(os.listdir(tmp_path)) == ["README.md", "README.md.tmp"]
    # A symlinked README is written through: the file it points to gets the table, the link stays.
    os.symlink("README.md", tmp_path / "linked.md")
    readme.write_text("<!-- results:begin -->\n<!-- results:end -->\n", encoding="utf-8")
    results_table.main([student_run[0], "--readme", str(tmp_path / "linked.md")])
    assert os.readlink(tmp_path / "linked.md") == "README.md" and "| sst-2 |" in readme.read_text(encoding="utf-8")


def test_plot_curves_overwrites_only_its_own_plots(student_run, tmp_path, capsys):
    run = student_run[0]
    # A picture of the user's, even one matplotlib made, is refused and left as it was.
    figure = plt.figure()
    figure.savefig(tmp_path / "mine.png")
    plt.close(figure)
    mine = tree(str(tmp_path / "mine.png"))
    fails_cleanly(capsys, plot_curves.main, [run, "--output", str(tmp_path / "mine.png")], "--output", "mine.png",
                  "not a plot of plot_curves.py")
    assert tree(str(tmp_path / "mine.png")) == mine
    # A name without .png (which matplotlib would have written as userdir.png) and a directory are refused.
    (tmp_path / "userdir").mkdir()
    for name in ("userdir", "curves", "userdir.png"):
        if name == "userdir.png":
            (tmp_path / name).mkdir()
        fails_cleanly(capsys, plot_curves.main, [run, "--output", str(tmp_path / name)], "--output", name)
    assert sorted(os.listdir(tmp_path)) == ["mine.png", "userdir", "userdir.png"]

    # The path reported is the path written; its own earlier plot is replaced, also through a symlink.
    output = str(tmp_path / "curves.png")
    for target in (output, output, str(tmp_path / "link.png")):
        if target.endswith("link.png"):
            os.symlink("curves.png", target)
        capsys.readouterr()
        before = os.stat(output).st_mtime_ns if os.path.exists(output) else None
        assert plot_curves.main([run, "--output", target]) == target
        assert capsys.readouterr().out.strip() == f"wrote {target}"
        assert os.stat(output).st_mtime_ns != before and plot_curves.png_text(output)["Software"] == "plot_curves.py"
    assert os.readlink(tmp_path / "link.png") == "curves.png"
    assert sorted(os.listdir(tmp_path)) == ["curves.png", "link.png", "mine.png", "userdir", "userdir.png"]


# --- 2. two runs at once


def wait_for(condition, seconds, process, log):
    deadline = time.time() + seconds
    while not condition():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def test_a_second_run_into_a_held_output_dir_is_refused_and_a_killed_run_blocks_nothing(run_flags, tmp_path,
                                                                                      capsys, monkeypatch):
    output_dir = str(tmp_path / "run")
    flags = run_flags + ["--output_dir", output_dir]
    log = tmp_path / "first.log"
    with open(log, "w") as err:  # a file, not a pipe that a long run's progress bar could fill
        first = subprocess.Popen([sys.executable, os.path.join(ROOT, "small.py")] + flags + ["--max_epoch", "100000"],
                                 stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_for(lambda: os.path.exists(os.path.join(output_dir, "checkpoint")), 300, first, log)  # it trains

        def no_work(*args, **kwargs):
            raise AssertionError("data loaded before the output directory was found in use")

        with monkeypatch.context() as patch:
            patch.setattr(data, "load_examples", no_work)
            for other in ([], ["--seed", "7"]):  # the same command, and one with other flags
                fails_cleanly(capsys, small.main, flags + other, "--output_dir", output_dir,
                              "in use by another process")
        assert first.poll() is None
    finally:
        first.kill()
        first.wait()
    assert first.returncode == -signal.SIGKILL
    results = small.main(flags + ["--max_steps", "1"])  # the killed run's lock is gone with it; this one resumes it
    utils.release_dirs()
    assert results["steps"] >= 10 and os.path.isfile(os.path.join(output_dir, "results.json"))


HOLDER = """import sys
sys.path.insert(0, sys.argv[1])
import utils
utils.prepare_output_dir(sys.argv[2])
print("held", flush=True)
sys.stdin.read()
"""


def test_an_export_into_a_directory_another_export_holds_is_refused(student_run, tmp_path, capsys):
    """As two export_model.py into one new directory: the one that made it holds it until it ends."""
    exp = str(tmp_path / "exp")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, ROOT, exp], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        argv = ["--student_dir", os.path.join(student_run[0], "best"), "--output_dir", exp]
        fails_cleanly(capsys, export_model.main, argv, "--output_dir", exp, "in use by another process")
        assert os.listdir(exp) == []  # left to the export holding it
    finally:
        holder.kill()
        holder.wait()


def test_the_cache_cannot_be_the_output_dir(task_files, tiny_bert, tmp_path, capsys):
    """The run holds its directory, which the cache's merge would then wait for forever."""
    same = str(tmp_path / "run")
    fails_cleanly(capsys, bert_distill.main, data_flags(task_files, "sst-2") + STUDENT_FAST + [
        "--teacher_dir", tiny_bert, "--cache_dir", same, "--output_dir", same], "--cache_dir", "is the --output_dir")
