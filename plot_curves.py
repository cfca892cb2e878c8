"""Plot a dev metric against training steps for several runs, e.g. the baseline next to the distilled student.

    python plot_curves.py runs/small-sst-2 runs/distill-sst-2 --output curves-sst-2.png
    python plot_curves.py runs/small-qqp runs/distill-qqp --metric f1 --output curves-qqp-f1.png
    python plot_curves.py runs/distill-sst-2-selector --metric keep_rate --output keep-rate.png  # --selector runs

Each run directory needs the eval_log.jsonl its training writes; a run is labelled by the script in its
results.json (or, while it is still training, by its directory name) and its best value. --output names a .png
file that is written whole or not at all (through a symlink, to the file it points to); an existing file there is
replaced only when it is this script's own earlier plot (its PNG text records it), never another picture.
"""
import io
import json
import os
import struct

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402

from args import parse_args  # noqa: E402
from files import atomic_write, read_json, read_text  # noqa: E402
from utils import UserError, run_main  # noqa: E402

# What the reinforced selector logs with each evaluation (since the previous one), as the axis calls it.
SELECTOR_METRICS = {"keep_rate": "selector keep rate", "reward": "selector mean reward per step"}
# The PNG text entry every plot of this script carries: the mark of a file it may replace.
MARK_KEY, MARK = "Software", "plot_curves.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_output(path):
    """Refuse, before any work, an --output this script must not write: not a .png name, a directory, a missing
    directory to write in, or an existing file that is not one of its own plots."""
    if not path.lower().endswith(".png"):
        raise UserError(f"--output {path}: not a .png file name (plot_curves.py writes PNG images)")
    real = os.path.realpath(path)
    if os.path.isdir(real):
        raise UserError(f"--output {path}: is a directory; name a .png file")
    if not os.path.isdir(os.path.dirname(real)):
        raise UserError(f"--output {path}: no directory {os.path.dirname(real)} to write it in")
    if os.path.exists(real) and png_text(real).get(MARK_KEY) != MARK:
        raise UserError(f"--output {path}: exists and is not a plot of plot_curves.py; choose another file name")


def png_text(path):
    """The text entries (tEXt chunks before the image data) of a PNG file: keyword -> text; {} for a file that is not
    a PNG or cannot be read."""
    entries = {}
    try:
        with open(path, "rb") as f:
            if f.read(8) != PNG_SIGNATURE:
                return entries
            while True:
                header = f.read(8)
                if len(header) < 8:
                    return entries
                length, kind = struct.unpack(">I4s", header)
                if kind in (b"IDAT", b"IEND"):
                    return entries
                body = f.read(length)
                f.seek(4, os.SEEK_CUR)  # the chunk's CRC
                if kind == b"tEXt":
                    keyword, _, text = body.partition(b"\0")
                    entries[keyword.decode("latin-1")] = text.decode("latin-1")
    except OSError:
        return entries


def read_curve(run_dir, metric):
    """Steps and metric values of a run's evaluations (a step logged twice keeps its last value)."""
    path = os.path.join(run_dir, "eval_log.jsonl")
    if not os.path.isfile(path):
        raise UserError(f"run_dirs {run_dir}: no eval_log.jsonl (not a training output directory)")
    by_step = {}
    for number, line in enumerate(read_text(path, "run_dirs").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step, value = record["step"], record[metric]
        except (ValueError, KeyError, TypeError):
            step = value = None
        if not isinstance(step, int) or not isinstance(value, (int, float)) or isinstance(value, bool):
            raise UserError(f"run_dirs {path}:{number}: not an evaluation record with '{metric}'")
        by_step[step] = value
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def run_label(run_dir):
    name = os.path.basename(os.path.normpath(run_dir))
    results_path = os.path.join(run_dir, "results.json")
    if os.path.isfile(results_path):
        return f"{read_json(results_path, ('script',))['script']} ({name})"
    return f"{name} (running)"


def main(argv=None):
    args = parse_args("plot", argv, __doc__)
    check_output(args.output)
    curves = [(run_label(d), *read_curve(d, args.metric)) for d in args.run_dirs]
    figure, axes = plt.subplots(figsize=(8, 5))
    for label, steps, values in curves:
        best = max(range(len(values)), key=values.__getitem__, default=None)
        if best is None:
            continue
        line, = axes.plot(steps, values, marker="o", markersize=3,
                          label=f"{label}: best {args.metric} {values[best]:.4f} at step {steps[best]}")
        axes.plot(steps[best], values[best], marker="*", markersize=14, color=line.get_color())
    axes.set_xlabel("training step")
    name = SELECTOR_METRICS.get(args.metric, f"dev {args.metric}")
    axes.set_ylabel(name)
    axes.set_title(f"{name} during training")
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=120, metadata={MARK_KEY: MARK})
    plt.close(figure)
    atomic_write(args.output, lambda f: f.write(image.getvalue()), "wb")
    print(f"wrote {args.output}", flush=True)
    return args.output


if __name__ == "__main__":
    run_main(main)
