"""Small synthetic tasks in the three real file layouts, so the pipeline runs with no download.

    python demo_data.py --output_dir demo   # writes demo/{sst-2,qqp,chnsenticorp}/{train,dev}.tsv

Sentiment follows a word's polarity, flipped by a negation before it, so word order matters; QQP pairs are
duplicates when both questions ask about the same topic.
"""
import argparse
import os
import random

from args import COUNT
from tasks import TASKS

POSITIVE = ["good", "great", "lovely", "superb", "charming", "unforgettable"]
NEGATIVE = ["bad", "awful", "dull", "boring", "poor", "unwatchable"]
FILLER = ["the", "movie", "film", "story", "was", "is", "a", "very", "plot", "acting", "really", "quite", ",", "."]
NEGATION = ["not", "never"]
TOPICS = ["python", "paris", "music", "money", "health", "cars", "cats", "math"]
QUESTION = ["how", "do", "i", "learn", "about", "what", "is", "best", "way", "to", "understand", "?"]
ZH_POSITIVE = ["很好", "不错", "满意", "喜欢", "干净"]
ZH_NEGATIVE = ["很差", "失望", "糟糕", "讨厌", "脏乱"]
ZH_FILLER = ["这个", "酒店", "房间", "服务", "我们", "觉得", "真的", "非常", "，", "。"]
ZH_NEGATION = ["不", "没有"]


def sentiment(rng, positive, negative, filler, negation, join):
    polar_positive = rng.random() < 0.5
    word = rng.choice(positive if polar_positive else negative)
    negated = rng.random() < 0.3
    words = [rng.choice(filler) for _ in range(rng.randint(2, 7))]
    at = rng.randint(0, len(words))
    words[at:at] = ([rng.choice(negation)] if negated else []) + [word]
    return join(words), int(polar_positive != negated)


def question(rng, topic):
    words = [rng.choice(QUESTION) for _ in range(rng.randint(3, 7))]
    words.insert(rng.randint(0, len(words)), topic)
    return " ".join(words)


def rows(task, n, rng):
    for i in range(n):
        if task == "sst-2":
            text, label = sentiment(rng, POSITIVE, NEGATIVE, FILLER, NEGATION, " ".join)
            yield [text, str(label)]
        elif task == "qqp":
            first = rng.choice(TOPICS)
            duplicate = rng.random() < 0.4
            second = first if duplicate else rng.choice([t for t in TOPICS if t != first])
            yield [str(i), str(2 * i), str(2 * i + 1), question(rng, first), question(rng, second), str(int(duplicate))]
        else:
            text, label = sentiment(rng, ZH_POSITIVE, ZH_NEGATIVE, ZH_FILLER, ZH_NEGATION, "".join)
            yield [str(label), text]


def write_task(task, directory, n_train=400, n_dev=100, seed=0):
    """Write <directory>/train.tsv and dev.tsv in the layout PaddleNLP's reader for `task` expects."""
    rng = random.Random(f"{task}-{seed}")
    os.makedirs(directory, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        header = TASKS[task].columns[split]
        lines = list(rows(task, n, rng))
        if header[0] == "qid":  # ChnSentiCorp's dev file numbers its lines
            lines = [[str(i)] + line for i, line in enumerate(lines)]
        with open(os.path.join(directory, f"{split}.tsv"), "w", encoding="utf-8") as f:
            f.write("\n".join("\t".join(line) for line in [list(header)] + lines) + "\n")
    return os.path.join(directory, "train.tsv"), os.path.join(directory, "dev.tsv")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="demo", help="Where the task folders go.")
    parser.add_argument("--n_train", type=COUNT, default=2000, help="Training examples per task.")
    parser.add_argument("--n_dev", type=COUNT, default=500, help="Dev examples per task.")
    args = parser.parse_args(argv)
    for task in TASKS:
        write_task(task, os.path.join(args.output_dir, task), args.n_train, args.n_dev)
    print(f"demo data written to {args.output_dir}")


if __name__ == "__main__":
    main()
