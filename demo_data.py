"""Small synthetic tasks in the three real file layouts, and a tiny BERT, so the pipeline runs with no download.

    python demo_data.py --output_dir demo   # writes demo/{sst-2,qqp,chnsenticorp}/{train,dev}.tsv and demo/tiny-bert

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


def tiny_vocab():
    """Special tokens, every demo word, a few WordPieces (so words split) and the Chinese characters."""
    words = set(POSITIVE + NEGATIVE + FILLER + NEGATION + TOPICS + QUESTION + ["un", "##watch", "##able", "##s"])
    words -= {"unwatchable", "unforgettable"}
    words |= {"##forget", "##table"}
    chars = sorted({c for w in ZH_POSITIVE + ZH_NEGATIVE + ZH_FILLER + ZH_NEGATION for c in w})
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(words) + chars


def write_tiny_bert(directory, hidden_size=64, num_layers=2, seed=0):
    """A randomly initialised 2-layer BERT with the tiny vocabulary, saved like a PaddleNLP model directory."""
    return write_tiny_teacher(directory, "bert", hidden_size, num_layers, seed)


TEACHER_FAMILIES = ("bert", "ernie", "mpnet", "bert-sentencepiece")


def write_tiny_teacher(directory, family, hidden_size=64, num_layers=2, seed=0):
    """A randomly initialised tiny sequence classifier of one family, built from a config and saved with its
    tokenizer as a PaddleNLP model directory: BERT, ERNIE or MPNet with the tiny WordPiece vocabulary, or BERT with a
    SentencePiece tokenizer (XLM-R's, as multilingual-e5 has) trained here on the demo sentences."""
    import paddle
    from paddlenlp import transformers as t

    os.makedirs(directory, exist_ok=True)
    if family == "bert-sentencepiece":
        tokenizer = t.LayoutXLMTokenizer(_train_sentencepiece(directory))
    else:
        vocab = tiny_vocab()
        if family == "mpnet":  # MPNet's own special tokens, with its pad id 1
            vocab = ["<s>", "<pad>", "</s>", "<mask>"] + vocab
        vocab_file = os.path.join(directory, "vocab.txt")
        with open(vocab_file, "w", encoding="utf-8") as f:
            f.write("\n".join(vocab) + "\n")
        tokenizer = {"bert": t.BertTokenizer, "ernie": t.ErnieTokenizer, "mpnet": t.MPNetTokenizer}[family](vocab_file)
    sizes = dict(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
                 num_attention_heads=2, intermediate_size=hidden_size * 2, max_position_embeddings=256, num_labels=2,
                 pad_token_id=tokenizer.pad_token_id)
    config_class, model_class = {"bert": (t.BertConfig, t.BertForSequenceClassification),
                                 "bert-sentencepiece": (t.BertConfig, t.BertForSequenceClassification),
                                 "ernie": (t.ErnieConfig, t.ErnieForSequenceClassification),
                                 "mpnet": (t.MPNetConfig, t.MPNetForSequenceClassification)}[family]
    paddle.seed(seed)
    model_class(config_class(**sizes)).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _train_sentencepiece(directory):
    """A unigram SentencePiece model of a few hundred pieces over the demo sentences of every task."""
    import sentencepiece

    rng = random.Random(0)
    corpus = [sentiment(rng, POSITIVE, NEGATIVE, FILLER, NEGATION, " ".join)[0] for _ in range(300)]
    corpus += [sentiment(rng, ZH_POSITIVE, ZH_NEGATIVE, ZH_FILLER, ZH_NEGATION, "".join)[0] for _ in range(300)]
    corpus += [question(rng, rng.choice(TOPICS)) for _ in range(300)]
    prefix = os.path.join(directory, "sentencepiece.bpe")
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_prefix=prefix, vocab_size=200,
                                             model_type="unigram", character_coverage=1.0, minloglevel=2,
                                             normalization_rule_name="nmt_nfkc")
    os.remove(prefix + ".vocab")
    return prefix + ".model"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="demo", help="Where the task folders and tiny-bert go.")
    parser.add_argument("--n_train", type=COUNT, default=2000, help="Training examples per task.")
    parser.add_argument("--n_dev", type=COUNT, default=500, help="Dev examples per task.")
    args = parser.parse_args(argv)
    for task in TASKS:
        write_task(task, os.path.join(args.output_dir, task), args.n_train, args.n_dev)
    write_tiny_bert(os.path.join(args.output_dir, "tiny-bert"))
    print(f"demo data and tiny-bert written to {args.output_dir}")


if __name__ == "__main__":
    from utils import run_main

    run_main(main)
