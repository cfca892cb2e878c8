"""L2A's generator (--augment l2a): the edit distance follows exp(-d / alpha) * C(m, d), replacements follow
exp(score / T), the candidate words are the nearest in the teacher's word-piece embeddings."""
import math
import types

import numpy as np
import pytest
from conftest import STUDENT_FAST, data_flags, english_examples

import augment
import bert_distill
import data
from args import AugmentConfig
from augment import draw_by_score, edit_distance_probabilities, embedding_neighbours, l2a_sentence


def l2a_config(alpha=1.0, temperature=1.0, n_iter=1):
    return AugmentConfig(augment="l2a", n_iter=n_iter, edit_alpha=alpha, replace_temperature=temperature)


WHOLE_WORDS = types.SimpleNamespace(pieces=lambda word: (word,))


@pytest.mark.parametrize("m, alpha", [(6, 1.0), (6, 3.0), (12, 0.5)])
def test_the_edit_distance_follows_the_formula(m, alpha):
    weights = np.array([math.exp(-d / alpha) * math.comb(m, d) for d in range(1, m + 1)])
    np.testing.assert_allclose(edit_distance_probabilities(m, alpha), weights / weights.sum(), rtol=1e-9)

    sentence = [(f"w{i}", (f"w{i}",)) for i in range(m)]
    replacements = {f"w{i}": ([f"new{i}"], np.zeros(1)) for i in range(m)}  # every edit changes its word
    rng = np.random.default_rng(0)
    draws = 20000
    edited = [sum(a != b for a, b in zip(l2a_sentence(sentence, rng, l2a_config(alpha), replacements, WHOLE_WORDS)[0],
                                         sentence)) for _ in range(draws)]
    frequencies = np.bincount(edited, minlength=m + 1)[1:] / draws
    np.testing.assert_allclose(frequencies, weights / weights.sum(), atol=0.012)


def test_the_replacement_temperature():
    scores = np.array([0.9, 0.8, 0.1])
    rng = np.random.default_rng(0)
    assert {draw_by_score(scores, 1e-6, rng) for _ in range(500)} == {0}  # T -> 0: the best word, always
    draws = np.bincount([draw_by_score(scores, 0.2, rng) for _ in range(20000)], minlength=3) / 20000
    expected = np.exp(scores / 0.2) / np.exp(scores / 0.2).sum()
    np.testing.assert_allclose(draws, expected, atol=0.012)
    hot = np.bincount([draw_by_score(scores, 100.0, rng) for _ in range(20000)], minlength=3) / 20000
    np.testing.assert_allclose(hot, 1 / 3, atol=0.015)  # high T: near uniform, further from the data


class PieceTokenizer:
    """A tokenizer of one piece per word, its id the word's index in `words`."""
    unk_token_id = 0

    def __init__(self, words):
        self.ids = {word: i + 1 for i, word in enumerate(words)}

    def tokenize(self, word):
        return [word]

    def convert_tokens_to_ids(self, tokens):
        return [self.ids.get(token, 0) for token in tokens]


def test_candidates_are_the_nearest_words_in_the_teachers_embeddings():
    words = ["good", "great", "bad", "awful", "film"]
    vectors = np.array([[0, 0, 0], [1, 0.1, 0], [1, 0.2, 0], [-1, 0, 0.1], [-1, 0, 0.2], [0, 0, 1]], "float32")
    sentences = [([(w, (w,)) for w in words],)]
    table = embedding_neighbours(sentences, PieceTokenizer(words), vectors, k=2)
    assert set(table) == set(words)
    assert table["good"][0][0] == "great" and table["awful"][0][0] == "bad"  # nearest first, never itself
    assert all(word not in candidates for word, (candidates, _) in table.items())
    cosine = vectors[2] @ vectors[1] / np.linalg.norm(vectors[2]) / np.linalg.norm(vectors[1])
    assert table["great"][1][0] == pytest.approx(cosine, rel=1e-6)


def test_distillation_with_the_l2a_generator(task_files, tiny_bert, tmp_path):
    flags = data_flags(task_files, "sst-2") + STUDENT_FAST + [
        "--teacher_dir", tiny_bert, "--augment", "l2a", "--n_iter", "3", "--num_workers", "1",
        "--replace_temperature", "0.05", "--save_transfer_set", "--cache_dir", str(tmp_path / "cache")]
    bert_distill.main(flags + ["--output_dir", str(tmp_path / "run")])
    lines = (tmp_path / "run" / "transfer_set.tsv").read_text(encoding="utf-8").splitlines()[1:]
    originals = [line.split("\t")[0].split() for line in lines if line.split("\t")[1] != "-1"]
    copies = [line.split("\t")[0].split() for line in lines if line.split("\t")[1] == "-1"]
    assert len(copies) > len(originals)
    vocabulary = {word for sentence in originals for word in sentence}
    assert {word for copy in copies for word in copy} <= vocabulary  # replacements are corpus words


def test_each_copy_replaces_words_of_its_source_by_their_candidates(tiny_bert):
    tokenizer = data.load_tokenizer(tiny_bert, "--teacher_dir")
    analyzer = data.Analyzer("en", tokenizer)
    rng = np.random.default_rng(0)
    examples = english_examples(30)
    tables = []

    def replacements_of(sentences):
        tables.append(embedding_neighbours(sentences, tokenizer, rng.normal(size=(len(tokenizer), 8)), k=3))
        return tables[-1]

    transfer = augment.build_transfer_set(examples, analyzer, l2a_config(alpha=2.0), None, seed=0, num_workers=2,
                                       replacements_of=replacements_of)
    copies = transfer[len(examples):]
    assert len(copies) > len(examples) // 2
    for copy in copies:
        source = transfer[copy.source].sentences[0]
        changed = [(old, new) for (old, _), (new, _) in zip(source, copy.sentences[0]) if old != new]
        assert len(copy.sentences[0]) == len(source) and changed
        assert all(new in tables[0][old][0] for old, new in changed)


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory, tiny_bert):
    """A randomly initialised 2-layer BertForMaskedLM with the tiny vocabulary, saved as a model directory."""
    import paddle
    from paddlenlp.transformers import BertConfig, BertForMaskedLM

    directory = str(tmp_path_factory.mktemp("tiny-mlm"))
    tokenizer = data.load_tokenizer(tiny_bert, "dir")
    paddle.seed(0)
    BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=128)).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_masked_lm_candidates_are_its_most_likely_whole_words(tiny_mlm):
    import paddle
    import paddle.nn.functional as F

    import model as models

    mlm, tokenizer = models.load_masked_lm(tiny_mlm), data.load_tokenizer(tiny_mlm, "--mlm")
    candidates_of = models.masked_lm_candidates(mlm, tokenizer, " ", k=4)
    words = ["the", "movie", "is", "not", "good"]
    [options] = candidates_of([(words, [1, 4])])
    ids = tokenizer(" ".join(["the", tokenizer.mask_token, "is", "not", tokenizer.mask_token]))["input_ids"]
    with paddle.no_grad():
        log_p = F.log_softmax(mlm(input_ids=paddle.to_tensor([ids]))[0], axis=-1).numpy()
    vocab = tokenizer.get_vocab()
    for option, at in zip(options, [i for i, t in enumerate(ids) if t == tokenizer.mask_token_id]):
        whole = {t: log_p[at, i] for t, i in vocab.items()
                 if t not in tokenizer.all_special_tokens and not t.startswith("##")}
        best = sorted(whole, key=whole.get, reverse=True)[:4]
        assert option[0] == best
        np.testing.assert_allclose(option[1], [whole[t] for t in best], rtol=1e-5)


def test_the_masked_lm_generator_at_low_temperature_takes_the_top_candidate(tiny_mlm, tiny_bert):
    import model as models

    tokenizer = data.load_tokenizer(tiny_bert, "--teacher_dir")
    analyzer = data.Analyzer("en", tokenizer)
    candidates_of = models.masked_lm_candidates(models.load_masked_lm(tiny_mlm),
                                                data.load_tokenizer(tiny_mlm, "--mlm"), " ", k=5)
    asked = []

    def recording(queries):
        asked.extend(queries)
        return candidates_of(queries)

    sentences = [(analyzer.sentence("the movie is not good at all"),), (analyzer.sentence("a lovely story"),)]
    copies = augment.l2a_masked_lm_copies(sentences, [0, 1], l2a_config(temperature=1e-6, n_iter=3), 0, recording,
                                       analyzer)
    options = candidates_of(asked)
    flat = [sides[0] for example in copies for sides, _ in example]
    assert len(flat) == len(asked) == 6
    for copy, (words, positions), option in zip(flat, asked, options):
        assert [w for w, _ in copy] == [option[positions.index(i)][0][0] if i in positions else word
                                        for i, word in enumerate(words)]


def test_distillation_with_a_masked_lm_generator(task_files, tiny_bert, tiny_mlm, tmp_path):
    bert_distill.main(data_flags(task_files, "sst-2") + STUDENT_FAST + [
        "--teacher_dir", tiny_bert, "--augment", "l2a", "--mlm", tiny_mlm, "--n_iter", "2", "--num_workers", "1",
        "--save_transfer_set", "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "run")])
    lines = (tmp_path / "run" / "transfer_set.tsv").read_text(encoding="utf-8").splitlines()[1:]
    assert sum(line.split("\t")[1] == "-1" for line in lines) > 100
