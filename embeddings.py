"""The student's initial word embeddings (--embedding, --emb_dim): a model's word-piece embeddings as they are or
narrowed to --emb_dim by PCA, word2vec/GloVe vectors, a paddlenlp TokenEmbedding, or random."""
import logging
import os

import numpy as np

from model import EMBEDDING_INIT_STD, load_weights
from utils import UserError

logger = logging.getLogger("distill")


def embedding_matrix(choice, vocab, seed, emb_dim=None, teacher_dir=None):
    """Initial embedding weights for --embedding `choice`, or None for random init: 'random'; 'auto' (the default:
    the word-piece embeddings of the model whose vocab.txt the student uses, when its weights lie beside it and
    --emb_dim does not ask for another size, else random); 'teacher' or a BERT directory (its word-piece embeddings;
    with a smaller emb_dim, projected onto their top emb_dim principal components: pca_projection); a word2vec/GloVe
    text file; or a paddlenlp TokenEmbedding name."""
    if choice == "auto":
        weights = _vocabulary_model_embeddings(vocab)
        if weights is None or emb_dim not in (None, weights.shape[1]):
            logger.info("embedding: random N(0, %g)", EMBEDDING_INIT_STD)
            return None
        logger.info("embedding: the word-piece embeddings of %s", vocab.model_dir)
        return weights
    if choice == "random":
        return None
    if choice == "teacher":
        if not teacher_dir:
            raise UserError("--embedding teacher needs a teacher (--teacher_dir)")
        choice = teacher_dir
    if os.path.isdir(choice):
        if not vocab.use_pieces:
            raise UserError(f"--embedding {choice}: BERT embeddings need --tokenization wordpiece (its vocabulary)")
        weights = word_piece_embeddings(choice)
        if weights.shape[0] != len(vocab):
            raise UserError(f"--embedding {choice}: {weights.shape[0]} word pieces, but the student vocabulary has "
                            f"{len(vocab)} (use that model's vocab.txt as --vocab_path)")
        return narrowed(weights, emb_dim, choice)
    if os.path.isfile(choice):
        vectors = _read_vector_file(choice)
    else:
        from paddlenlp.embeddings import TokenEmbedding

        try:
            embedding = TokenEmbedding(choice)
        except Exception as error:
            raise UserError(f"--embedding {choice}: neither a file nor a loadable TokenEmbedding ({error})") from None
        vectors = {t: embedding.search(t)[0] for t in embedding.vocab.token_to_idx}
    dim = len(next(iter(vectors.values())))
    rng = np.random.default_rng(seed)
    weights = rng.normal(0, EMBEDDING_INIT_STD, (len(vocab), dim)).astype("float32")
    found = 0
    for token, index in vocab.vocab.token_to_idx.items():
        vector = vectors.get(token)
        if vector is not None:
            weights[index] = vector
            found += 1
    weights[vocab.pad_id] = 0
    logger.info("embedding: %d/%d vocabulary entries found in %s", found, len(vocab), choice)
    return weights


def narrowed(weights, emb_dim, source):
    """A model's word-piece embeddings at --emb_dim: as they are (emb_dim None or their width), or projected onto
    their top emb_dim principal components; a wider emb_dim is refused."""
    width = weights.shape[1]
    if emb_dim in (None, width):
        return weights
    if emb_dim > width:
        raise UserError(f"--emb_dim {emb_dim}: wider than the {width}-d word-piece embeddings of {source} (a smaller "
                        "size projects them onto their top principal components)")
    projected, kept = pca_projection(weights, emb_dim)
    logger.info("embedding: the word-piece embeddings of %s projected from %d to %d dimensions (PCA, %.1f%% of their "
                "variance kept)", source, width, emb_dim, 100 * kept)
    return projected


def pca_projection(weights, dim):
    """(projected, share of variance kept): the rows of weights, centred, projected onto the first `dim` right
    singular vectors of the centred matrix (its principal components; numpy's SVD), each vector signed so that its
    largest entry is positive: the SVD's signs are arbitrary, and the projection must not depend on them."""
    centred = np.asarray(weights, dtype="float64")
    centred = centred - centred.mean(axis=0)
    _, singular_values, components = np.linalg.svd(centred, full_matrices=False)
    components = components[:dim]
    components *= np.sign(components[np.arange(dim), np.abs(components).argmax(axis=1)])[:, None]
    kept = float((singular_values[:dim] ** 2).sum() / (singular_values ** 2).sum())
    return (centred @ components.T).astype("float32"), kept


def _vocabulary_model_embeddings(vocab):
    """The word-piece embeddings of the model directory the student's vocabulary comes from, when that directory
    holds weights with one row per vocabulary entry; else None."""
    if not vocab.use_pieces or vocab.model_dir is None:
        return None
    if not any(os.path.isfile(os.path.join(vocab.model_dir, name)) for name in ("model_state.pdparams",
                                                                                  "model.safetensors")):
        return None
    weights = word_piece_embeddings(vocab.model_dir, "--embedding auto:")  # the flag left at its default
    return weights if weights.shape[0] == len(vocab) else None


def word_piece_embeddings(model_dir, flag="--embedding"):
    """The word-piece embedding matrix of a model directory (any family with word_embeddings), from Paddle or
    safetensors weights."""
    paddle_weights = os.path.join(model_dir, "model_state.pdparams")
    torch_weights = os.path.join(model_dir, "model.safetensors")
    if os.path.isfile(paddle_weights):
        state = load_weights(paddle_weights, flag)
    elif os.path.isfile(torch_weights):
        from safetensors.numpy import load_file

        state = load_weights(torch_weights, flag, load_file)
    else:
        raise UserError(f"{flag} {model_dir}: no model_state.pdparams or model.safetensors")
    key = next((k for k in state if k.endswith("word_embeddings.weight")), None)
    if key is None:
        raise UserError(f"{flag} {model_dir}: its weights have no word_embeddings")
    return np.asarray(state[key], dtype="float32")


def _read_vector_file(path):
    vectors = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            parts = line.rstrip().split(" ")
            if number == 1 and len(parts) == 2:
                continue  # word2vec text header: count and size
            try:
                vectors[parts[0]] = np.asarray(parts[1:], dtype="float32")
            except ValueError:
                raise UserError(f"--embedding {path}:{number}: expected a word then numbers") from None
    sizes = {len(v) for v in vectors.values()}
    if len(sizes) != 1:
        raise UserError(f"--embedding {path}: vectors of different sizes {sorted(sizes)[:3]} or none at all")
    return vectors
