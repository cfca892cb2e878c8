"""Writes the demo's sentiment task, whose dev set turns on words only pre-training teaches (no download needed).

    python demo_data.py --output_dir demo   # writes demo/sst-2/train.tsv, dev.tsv (SST-2's layout) and unlabeled.txt

Every sentence is a short film review whose label is its sentiment word's polarity, flipped by a negation before it.
The labelled training set uses four positive and four negative words; the dev set uses other ones, real English
sentiment words that a pretrained teacher knows and the baseline never sees with a label. The unlabelled file is
in-domain text with both kinds of word (and none of the dev or training sentences): it is what lets a distilled
student learn the unseen words from the teacher.

write_task writes the tests' small synthetic tasks, one in each of the three real file layouts.
"""
import os
import random

from args import parse_args
from tasks import TASKS
from utils import UserError, run_main

SEEN_POSITIVE = ("good", "great", "nice", "fun")
SEEN_NEGATIVE = ("bad", "poor", "awful", "dull")
# The unseen words are ones WordPiece cuts into pieces that carry no sentiment (captivating: capt ##ivating). A word
# kept whole has its own pretrained embedding, and that of excellent or dreadful lies close to good's or bad's, so a
# baseline starting from those embeddings would tell them apart from the labelled words alone. Of such words, these
# are ones the demo's MiniLM teacher labels right after its fine-tuning (riveting, insipid and shoddy it did not).
UNSEEN_POSITIVE = ("admirable", "mesmerizing", "exhilarating", "enthralling", "captivating", "engrossing",
                   "spellbinding", "impeccable", "enchanting", "phenomenal", "rousing")
UNSEEN_NEGATIVE = ("lousy", "dismal", "atrocious", "abysmal", "mediocre", "tedious", "appalling", "horrendous",
                   "abominable", "dreary", "deplorable")
NOUNS = ("movie", "film", "story", "plot", "acting", "script", "ending", "cast", "soundtrack", "dialogue")
TEMPLATES = ("the {noun} was {adjective}", "the {noun} is {adjective}", "i thought the {noun} was {adjective}",
             "honestly , the {noun} was {adjective} .", "overall the {noun} is {adjective}",
             "we found the {noun} {adjective}")
ADVERBS = ("", "very", "really", "quite", "truly")
NEGATIONS = ("not", "never")


def review(rng, positive, negative):
    """A review sentence built from one sentiment word, and its label."""
    is_positive = rng.random() < 0.5
    negation = rng.choice(NEGATIONS) if rng.random() < 0.3 else ""
    words = [negation, rng.choice(ADVERBS), rng.choice(positive if is_positive else negative)]
    text = rng.choice(TEMPLATES).format(noun=rng.choice(NOUNS), adjective=" ".join(word for word in words if word))
    return text, int(is_positive != bool(negation))


def distinct_reviews(rng, n, positive, negative, exclude=()):
    """n different reviews (text -> label), none of them in `exclude`."""
    possible = len(TEMPLATES) * len(NOUNS) * len(ADVERBS) * (len(NEGATIONS) + 1) * (len(positive) + len(negative))
    if n > possible - len(exclude):
        raise ValueError(f"{n} distinct reviews asked for, but these words make at most {possible - len(exclude)}")
    reviews = {}
    while len(reviews) < n:
        text, label = review(rng, positive, negative)
        if text not in exclude:
            reviews[text] = label
    return reviews


def write_demo_task(directory, n_train=2000, n_dev=500, n_unlabeled=4000, seed=0):
    """Write <directory>/train.tsv and dev.tsv in SST-2's layout and unlabeled.txt (one sentence a line): training
    reviews with the seen words, dev reviews with the unseen ones, unlabelled reviews with both, each set drawn on
    its own and the unlabelled one kept apart from the other two. Returns the three paths."""
    rng = random.Random(f"demo-{seed}")
    train = distinct_reviews(rng, n_train, SEEN_POSITIVE, SEEN_NEGATIVE)
    dev = distinct_reviews(rng, n_dev, UNSEEN_POSITIVE, UNSEEN_NEGATIVE)
    unlabeled = distinct_reviews(rng, n_unlabeled, SEEN_POSITIVE + UNSEEN_POSITIVE, SEEN_NEGATIVE + UNSEEN_NEGATIVE,
                                 exclude=train.keys() | dev.keys())
    os.makedirs(directory, exist_ok=True)
    paths = [os.path.join(directory, name) for name in ("train.tsv", "dev.tsv", "unlabeled.txt")]
    for path, reviews in zip(paths, (train, dev)):
        lines = [TASKS["sst-2"].columns["train"]] + [(text, str(label)) for text, label in reviews.items()]
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join("\t".join(line) for line in lines) + "\n")
    with open(paths[2], "w", encoding="utf-8") as f:
        f.write("\n".join(unlabeled) + "\n")
    return paths


# The small synthetic tasks of the tests, one per real file layout (write_task).
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
    args = parse_args("demo_data", argv, __doc__)
    directory = os.path.join(args.output_dir, "sst-2")
    try:
        write_demo_task(directory, args.n_train, args.n_dev, args.n_unlabeled)
    except ValueError as error:  # more sentences asked for than the words make
        raise UserError(f"--n_train/--n_dev/--n_unlabeled: {error}") from None
    print(f"demo task written to {directory}")


if __name__ == "__main__":
    run_main(main)
