"""results_table.py builds the README's table from results.json files."""
import pytest

import results_table
from utils import write_json


def run_dir(tmp_path, name, script, task, metrics, minutes):
    directory = tmp_path / name
    directory.mkdir()
    write_json(str(directory / "results.json"), {"script": script, "task": task, "metrics": metrics,
                                                 "train_seconds": minutes * 60})
    return str(directory)


def test_table_and_readme_block(tmp_path, capsys):
    dirs = [run_dir(tmp_path, "a", "small", "sst-2", {"acc": 0.84063}, 16),
            run_dir(tmp_path, "b", "distill", "qqp", {"acc": 0.8, "f1": 0.75}, 90),
            str(tmp_path / "not-a-run")]
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:begin -->\nold\n<!-- results:end -->\nend\n", encoding="utf-8")
    results_table.main(dirs + ["--readme", str(readme)])
    lines = readme.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "intro" and lines[-1] == "end" and "old" not in lines
    assert lines[2] == "| model | sst-2 dev acc | qqp dev acc / F1 |"
    assert "| Bi-LSTM baseline | 0.8406 (16 min) | - |" in lines
    assert "| Distilled Bi-LSTM | - | 0.8000 / 0.7500 (90 min) |" in lines
    assert "| Teacher (BERT) | - | - |" in lines
    assert capsys.readouterr().out.strip() == "\n".join(lines[2:-2])


def test_readme_without_markers_is_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="no <!-- results:begin -->"):
        results_table.main([run_dir(tmp_path, "a", "small", "sst-2", {"acc": 0.5}, 1), "--readme", str(readme)])
    assert readme.read_text(encoding="utf-8") == "no markers\n"
