"""Tiny folders of a user's own data, in PaddleNLP's text-classification layout (label.txt, train.txt, dev.txt,
test.txt): multi-class English topics, Chinese sentiment with a neutral class, and English question pairs."""
import os
import random

from demo_data import QUESTION, ZH_FILLER, ZH_NEGATIVE, ZH_POSITIVE

# English topics: the label is the topic word's class (names with spaces and punctuation, as real label names have).
TOPIC_LABELS = {"python": "programming", "math": "programming", "paris": "travel & places", "cars": "travel & places",
                "music": "arts", "cats": "pets and animals", "money": "finance", "health": "health care"}
# Pairs: the same topic, topics of one label, or unrelated.
PAIR_LABELS = ("duplicate", "related", "different")


def english_topic(rng):
    topic = rng.choice(sorted(TOPIC_LABELS))
    words = [rng.choice(QUESTION) for _ in range(rng.randint(3, 7))]
    words.insert(rng.randint(0, len(words)), topic)
    return [" ".join(words), TOPIC_LABELS[topic]]


def chinese_sentiment(rng):
    label = rng.choice(["正面", "负面", "中性"])
    words = [rng.choice(ZH_FILLER) for _ in range(rng.randint(2, 7))]
    if label != "中性":
        words.insert(rng.randint(0, len(words)), rng.choice(ZH_POSITIVE if label == "正面" else ZH_NEGATIVE))
    return ["".join(words), label]


def question_pair(rng):
    first, second = english_topic(rng), english_topic(rng)
    label = "duplicate" if first[0] == second[0] else "related" if first[1] == second[1] else "different"
    if rng.random() < 0.3:
        second, label = first, "duplicate"
    return [first[0], second[0], label]


KINDS = {"en": (english_topic, sorted(set(TOPIC_LABELS.values()))),
         "zh": (chinese_sentiment, ["负面", "中性", "正面"]), "pair": (question_pair, list(PAIR_LABELS))}


def write_dataset_dir(directory, kind, n_train=240, n_dev=60, n_test=60, seed=0):
    """A folder in PaddleNLP's text-classification layout: label.txt, train.txt, dev.txt, test.txt."""
    make, labels = KINDS[kind]
    rng = random.Random(f"{kind}-{seed}")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "label.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(labels) + "\n")
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        with open(os.path.join(directory, f"{split}.txt"), "w", encoding="utf-8") as f:
            f.write("".join("\t".join(make(rng)) + "\n" for _ in range(n)))
    return directory
