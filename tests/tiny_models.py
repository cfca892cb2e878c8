"""Tiny teachers of four families, built from configs with random weights, for the tests (no download)."""
import os
import random

from demo_data import (FILLER, NEGATION, NEGATIVE, POSITIVE, QUESTION, TOPICS, ZH_FILLER, ZH_NEGATION, ZH_NEGATIVE,
                       ZH_POSITIVE, question, sentiment)


def tiny_vocab():
    """Special tokens, every word of the synthetic tasks (demo_data.write_task), a few WordPieces (so words split)
    and the Chinese characters."""
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
    SentencePiece tokenizer (XLM-R's, as multilingual-e5 has) trained here on the synthetic sentences."""
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
    """A unigram SentencePiece model of a few hundred pieces over the synthetic sentences of every task."""
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

