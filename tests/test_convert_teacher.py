"""convert_teacher.py on tiny checkpoints in HuggingFace's layout, written here (config.json, model.safetensors of
random tensors under HuggingFace's names, the tokenizer's files): MPNet with a WordPiece vocab.txt, and BERT with
an XLM-R SentencePiece tokenizer (multilingual-e5's arrangement) trained here. The converted weights are checked
against numpy computations from the HuggingFace tensors, not against the converter's own name table."""
import importlib.util
import json
import math
import os
import shutil

import numpy as np
import paddle
import pytest
import sentencepiece
from conftest import FAST, data_flags, fails_cleanly
from paddlenlp.transformers import AutoModelForSequenceClassification, BertModel, MPNetModel
from paddlenlp.transformers.model_utils import PretrainedModel
from safetensors.numpy import load_file, save_file
from script_output import softmax

import convert_teacher
import data
import tiny_models
import teacher
from files import read_json

HIDDEN, LAYERS, HEADS, FFN, POSITIONS = 32, 2, 4, 48, 66
MPNET_VOCAB = ["<s>", "<pad>", "</s>", "<unk>"] + tiny_models.tiny_vocab() + ["<mask>"]  # all-mpnet-base-v2's order
EXTRA_ROWS = 5  # word embeddings beyond the tokenizer's tokens, as multilingual-e5's 250037 rows for 250002 tokens


def random_tensors(shapes, seed):
    """HuggingFace's tensors: LayerNorm weights near 1, everything else of a scale that makes the layers work."""
    rng = np.random.default_rng(seed)
    return {name: ((1.0 if name.endswith("LayerNorm.weight") else 0.0)
                   + rng.normal(0, 0.1 if "LayerNorm" in name or name.endswith("bias") else 0.3, shape))
            .astype("float32") for name, shape in shapes.items()}


def hf_mpnet_shapes(vocab_size):
    shapes = {"embeddings.word_embeddings.weight": [vocab_size, HIDDEN],
              "embeddings.position_embeddings.weight": [POSITIONS, HIDDEN],
              "embeddings.LayerNorm.weight": [HIDDEN], "embeddings.LayerNorm.bias": [HIDDEN],
              "encoder.relative_attention_bias.weight": [32, HEADS],
              "pooler.dense.weight": [HIDDEN, HIDDEN], "pooler.dense.bias": [HIDDEN]}
    for i in range(LAYERS):
        layer = f"encoder.layer.{i}."
        for name in "qkvo":
            shapes[f"{layer}attention.attn.{name}.weight"] = [HIDDEN, HIDDEN]
            shapes[f"{layer}attention.attn.{name}.bias"] = [HIDDEN]
        shapes.update({f"{layer}attention.LayerNorm.weight": [HIDDEN], f"{layer}attention.LayerNorm.bias": [HIDDEN],
                       f"{layer}intermediate.dense.weight": [FFN, HIDDEN], f"{layer}intermediate.dense.bias": [FFN],
                       f"{layer}output.dense.weight": [HIDDEN, FFN], f"{layer}output.dense.bias": [HIDDEN],
                       f"{layer}output.LayerNorm.weight": [HIDDEN], f"{layer}output.LayerNorm.bias": [HIDDEN]})
    return shapes


def hf_bert_shapes(vocab_size):
    shapes = {"embeddings.word_embeddings.weight": [vocab_size, HIDDEN],
              "embeddings.position_embeddings.weight": [POSITIONS, HIDDEN],
              "embeddings.token_type_embeddings.weight": [2, HIDDEN],
              "embeddings.LayerNorm.weight": [HIDDEN], "embeddings.LayerNorm.bias": [HIDDEN],
              "pooler.dense.weight": [HIDDEN, HIDDEN], "pooler.dense.bias": [HIDDEN]}
    for i in range(LAYERS):
        layer = f"encoder.layer.{i}."
        for name in ("self.query", "self.key", "self.value", "output.dense"):
            shapes[f"{layer}attention.{name}.weight"] = [HIDDEN, HIDDEN]
            shapes[f"{layer}attention.{name}.bias"] = [HIDDEN]
        shapes.update({f"{layer}attention.output.LayerNorm.weight": [HIDDEN],
                       f"{layer}attention.output.LayerNorm.bias": [HIDDEN],
                       f"{layer}intermediate.dense.weight": [FFN, HIDDEN], f"{layer}intermediate.dense.bias": [FFN],
                       f"{layer}output.dense.weight": [HIDDEN, FFN], f"{layer}output.dense.bias": [HIDDEN],
                       f"{layer}output.LayerNorm.weight": [HIDDEN], f"{layer}output.LayerNorm.bias": [HIDDEN]})
    return shapes


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)


def hf_config(model_type, vocab_size, **others):
    return {"architectures": [{"mpnet": "MPNetModel", "bert": "BertModel"}.get(model_type, "Model")],
            "model_type": model_type,
            "vocab_size": vocab_size, "hidden_size": HIDDEN, "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS, "intermediate_size": FFN, "max_position_embeddings": POSITIONS,
            "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "initializer_range": 0.02, "torch_dtype": "float32", "transformers_version": "4.41.2", **others}


def write_hf_mpnet(directory):
    """A sentence-transformers MPNet folder: HuggingFace's config, weights (with the position_ids buffer older
    checkpoints hold), vocab.txt and tokenizer files."""
    os.makedirs(directory)
    config = hf_config("mpnet", len(MPNET_VOCAB), layer_norm_eps=1e-5, relative_attention_num_buckets=32,
                       pad_token_id=1, bos_token_id=0, eos_token_id=2)
    write_json(os.path.join(directory, "config.json"), config)
    tensors = random_tensors(hf_mpnet_shapes(len(MPNET_VOCAB)), seed=1)
    save_file({**tensors, "embeddings.position_ids": np.arange(POSITIONS, dtype="int64")[None]},
              os.path.join(directory, "model.safetensors"))
    with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(MPNET_VOCAB) + "\n")
    mask = {"content": "<mask>", "single_word": False, "lstrip": True, "rstrip": False, "normalized": True}
    write_json(os.path.join(directory, "tokenizer_config.json"), {
        "do_lower_case": True, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "[UNK]", "sep_token": "</s>",
        "pad_token": "<pad>", "cls_token": "<s>", "mask_token": mask, "tokenize_chinese_chars": True,
        "strip_accents": None, "model_max_length": 512, "tokenizer_class": "MPNetTokenizer"})
    write_json(os.path.join(directory, "special_tokens_map.json"), {
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "[UNK]", "sep_token": "</s>", "pad_token": "<pad>",
        "cls_token": "<s>", "mask_token": mask})
    return directory, tensors, config


def write_hf_e5(directory, texts):
    """A multilingual-e5 folder: HuggingFace BertModel weights and config (pad_token_id 0 as BERT's), XLM-R's
    SentencePiece tokenizer files (a unigram model trained here on texts)."""
    os.makedirs(directory)
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=os.path.join(directory, "sentencepiece.bpe"), vocab_size=150,
        model_type="unigram", character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    os.remove(os.path.join(directory, "sentencepiece.bpe.vocab"))
    pieces = sentencepiece.SentencePieceProcessor(model_file=os.path.join(directory, "sentencepiece.bpe.model"))
    vocab_size = len(pieces) + 2 + EXTRA_ROWS  # fairseq's <pad> and <mask>, then unused rows
    config = hf_config("bert", vocab_size, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0,
                       position_embedding_type="absolute")
    write_json(os.path.join(directory, "config.json"), config)
    tensors = random_tensors(hf_bert_shapes(vocab_size), seed=2)
    save_file(tensors, os.path.join(directory, "model.safetensors"))
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
               "pad_token": "<pad>", "cls_token": "<s>",
               "mask_token": {"content": "<mask>", "single_word": False, "lstrip": True, "rstrip": False,
                              "normalized": False}}
    write_json(os.path.join(directory, "tokenizer_config.json"),
               {**special, "model_max_length": 512, "tokenizer_class": "XLMRobertaTokenizer"})
    write_json(os.path.join(directory, "special_tokens_map.json"), special)
    return directory, tensors, config, pieces


def task_texts(task_files, task):
    texts = []
    for path in task_files[task]:
        with open(path, encoding="utf-8") as f:
            texts += [line.rstrip("\n").split("\t")[-1] for line in f][1:]  # the text is the last column
    return texts


@pytest.fixture(scope="module")
def mpnet(tmp_path_factory):
    base = tmp_path_factory.mktemp("mpnet")
    hf_dir, tensors, config = write_hf_mpnet(str(base / "hf"))
    convert_teacher.main(["--hf_dir", hf_dir, "--output_dir", str(base / "paddle")])
    return {"hf_dir": hf_dir, "out": str(base / "paddle"), "tensors": tensors, "config": config}


@pytest.fixture(scope="module")
def e5(tmp_path_factory, task_files):
    base = tmp_path_factory.mktemp("e5")
    texts = task_texts(task_files, "sst-2") + task_texts(task_files, "chnsenticorp")
    hf_dir, tensors, config, pieces = write_hf_e5(str(base / "hf"), texts)
    convert_teacher.main(["--hf_dir", hf_dir, "--output_dir", str(base / "paddle")])
    return {"hf_dir": hf_dir, "out": str(base / "paddle"), "tensors": tensors, "config": config, "pieces": pieces}


@pytest.fixture(params=["mpnet", "e5"])
def converted(request):
    return request.param, request.getfixturevalue(request.param)


# ---------------------------------------------------------------------------------------------------------------
# numpy references, from HuggingFace's tensors as HuggingFace's models use them ([out, in] Linear weights)


def linear(x, tensors, name):
    return x @ tensors[name + ".weight"].T + tensors[name + ".bias"]


def layer_norm(x, tensors, name, eps):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * tensors[name + ".weight"] + tensors[name + ".bias"]


def gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def self_attention(x, tensors, names, additive):
    """Multi-head attention of HuggingFace's q, k, v, o Linear layers (names: their four tensor names), with
    `additive` ([batch or 1, heads or 1, query, key]) added to the scores."""
    batch, length, _ = x.shape
    size = HIDDEN // HEADS

    def heads(y):
        return y.reshape(batch, length, HEADS, size).transpose(0, 2, 1, 3)
    q, k, v = (heads(linear(x, tensors, name)) for name in names[:3])
    probabilities = softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(size) + additive)
    context = (probabilities @ v).transpose(0, 2, 1, 3).reshape(batch, length, HIDDEN)
    return linear(context, tensors, names[3])


def relative_bucket(relative, buckets=32, max_distance=128):
    """MPNet's (T5's) bucket of a key's position relative to the query's: half of the buckets for keys after the
    query, half for keys before; in each, exact distances below 8, then log-spaced ones up to max_distance."""
    half = buckets // 2
    exact = half // 2
    distance = np.abs(relative)
    far = exact + (np.log(np.maximum(distance, 1) / exact) / math.log(max_distance / exact)
                   * (half - exact)).astype(int)
    return (relative > 0) * half + np.where(distance < exact, distance, np.minimum(far, half - 1))


def hf_mpnet_forward(t, config, ids):
    pad, eps = config["pad_token_id"], config["layer_norm_eps"]
    keep = ids != pad
    positions = np.cumsum(keep, axis=1) * keep + pad  # fairseq's positions, counted after the pad id
    x = layer_norm(t["embeddings.word_embeddings.weight"][ids] + t["embeddings.position_embeddings.weight"][positions],
                   t, "embeddings.LayerNorm", eps)
    length = ids.shape[1]
    relative = np.arange(length)[None, :] - np.arange(length)[:, None]  # key position - query position
    bias = t["encoder.relative_attention_bias.weight"][relative_bucket(relative)].transpose(2, 0, 1)[None]
    additive = bias + np.where(keep, 0.0, -1e4)[:, None, None, :]
    for i in range(config["num_hidden_layers"]):
        layer = f"encoder.layer.{i}."
        attended = self_attention(x, t, [f"{layer}attention.attn.{n}" for n in "qkvo"], additive)
        x = layer_norm(attended + x, t, f"{layer}attention.LayerNorm", eps)
        x = layer_norm(linear(gelu(linear(x, t, f"{layer}intermediate.dense")), t, f"{layer}output.dense") + x,
                       t, f"{layer}output.LayerNorm", eps)
    return x, np.tanh(linear(x[:, 0], t, "pooler.dense"))


def hf_bert_forward(t, config, ids, pad):
    eps = config["layer_norm_eps"]
    x = (t["embeddings.word_embeddings.weight"][ids] + t["embeddings.position_embeddings.weight"][:ids.shape[1]]
         + t["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(x, t, "embeddings.LayerNorm", eps)
    additive = np.where(ids != pad, 0.0, -1e4)[:, None, None, :]
    for i in range(config["num_hidden_layers"]):
        layer = f"encoder.layer.{i}.attention."
        names = [layer + n for n in ("self.query", "self.key", "self.value", "output.dense")]
        x = layer_norm(self_attention(x, t, names, additive) + x, t, layer + "output.LayerNorm", eps)
        layer = f"encoder.layer.{i}."
        x = layer_norm(linear(gelu(linear(x, t, layer + "intermediate.dense")), t, layer + "output.dense") + x,
                       t, layer + "output.LayerNorm", eps)
    return x, np.tanh(linear(x[:, 0], t, "pooler.dense"))


def hf_ids(rng, low, high, pad):
    """Two inputs of 14 ids: a full one and a padded one (lengths under 16 keep MPNet's relative buckets away
    from the log-spaced boundaries where float32 rounding could tip a bucket)."""
    ids = np.full((2, 14), pad, dtype="int64")
    ids[0] = [0, *rng.integers(low, high, 12), 2]
    ids[1, :9] = [0, *rng.integers(low, high, 7), 2]
    return ids


# ---------------------------------------------------------------------------------------------------------------
# the tests


def test_every_hf_tensor_lands_in_a_paddle_parameter(converted, monkeypatch):
    """PaddleNLP's own loading into a sequence classifier finds every parameter but the new classifier's in the
    converted weights, and no weight it has no parameter for."""
    family, c = converted
    loads = []
    load = PretrainedModel._load_pretrained_model.__func__

    def spy(cls, *args, **kwargs):
        result = load(cls, *args, **kwargs)
        loads.append(result[1:])  # missing, unexpected and mismatched keys
        return result
    monkeypatch.setattr(PretrainedModel, "_load_pretrained_model", classmethod(spy))
    model = AutoModelForSequenceClassification.from_pretrained(c["out"], num_classes=2)
    assert type(model).__name__ == {"mpnet": "MPNetForSequenceClassification",
                                    "e5": "BertForSequenceClassification"}[family]
    missing, unexpected, mismatched = loads[-1]
    assert sorted(missing) == ["classifier.bias", "classifier.weight"]
    assert list(unexpected) == [] and list(mismatched) == []
    saved = paddle.load(os.path.join(c["out"], "model_state.pdparams"))
    assert len(saved) == len(c["tensors"])  # one parameter per tensor (MPNet's position_ids buffer is none)
    assert read_json(os.path.join(c["out"], convert_teacher.CONVERSION_FILE))["parameters"] == len(c["tensors"])


def test_converted_weights_compute_what_the_hf_tensors_do(converted):
    """Word-embedding rows are HuggingFace's rows; layer 0's query computes W x + b with HuggingFace's [out, in] W;
    the whole model's hidden states and pooled output equal a numpy forward pass over HuggingFace's tensors."""
    family, c = converted
    tensors, rng = c["tensors"], np.random.default_rng(3)
    model = {"mpnet": MPNetModel, "e5": BertModel}[family].from_pretrained(c["out"])
    model.eval()
    np.testing.assert_array_equal(model.embeddings.word_embeddings.weight.numpy(),
                                  tensors["embeddings.word_embeddings.weight"])
    if family == "mpnet":
        query, hf_query = model.encoder.layer[0].attention.q, "encoder.layer.0.attention.attn.q"
    else:
        query, hf_query = model.encoder.layers[0].self_attn.q_proj, "encoder.layer.0.attention.self.query"
    x = rng.normal(size=HIDDEN).astype("float32")
    with paddle.no_grad():
        applied = query(paddle.to_tensor(x[None])).numpy()[0]
    np.testing.assert_allclose(applied, tensors[hf_query + ".weight"] @ x + tensors[hf_query + ".bias"],
                               rtol=1e-5, atol=1e-5)
    pad = 1  # <pad> in both vocabularies
    if family == "mpnet":
        ids = hf_ids(rng, 4, len(MPNET_VOCAB) - 1, pad)
        expected_hidden, expected_pooled = hf_mpnet_forward(tensors, c["config"], ids)
    else:
        ids = hf_ids(rng, 4, len(c["pieces"]) + 1, pad)
        expected_hidden, expected_pooled = hf_bert_forward(tensors, c["config"], ids, pad)
    with paddle.no_grad():
        hidden, pooled = model(paddle.to_tensor(ids))
    assert np.abs(expected_hidden).max() > 1 and np.abs(expected_pooled).std() > 0.1  # values that tell apart
    # At the padding's own positions Paddle differs: its nn.Embedding(padding_idx=1) of MPNet gives zeros for the
    # pad id where torch's gives the row. No other position reads them (padding is masked as keys).
    real = ids != pad
    np.testing.assert_allclose(hidden.numpy()[real], expected_hidden[real], atol=2e-4)
    np.testing.assert_allclose(pooled.numpy(), expected_pooled, atol=2e-4)


def test_bert_weights_are_those_of_paddlenlp_s_own_conversion(e5, tmp_path):
    """For BERT, PaddleNLP converts HuggingFace weights itself: the converter gives the same parameters."""
    hf_copy = shutil.copytree(e5["hf_dir"], str(tmp_path / "hf"))  # PaddleNLP writes its conversion beside them
    theirs = BertModel.from_pretrained(hf_copy, convert_from_torch=True).state_dict()
    ours = paddle.load(os.path.join(e5["out"], "model_state.pdparams"))
    assert set(ours) == set(theirs)
    for name, value in ours.items():
        np.testing.assert_array_equal(value.numpy(), theirs[name].numpy(), err_msg=name)


def test_converted_tokenizers_encode_as_the_hf_vocabularies(mpnet, e5):
    """MPNet: lower-cased (accents stripped) WordPieces of vocab.txt, HuggingFace's special tokens and pair layout;
    e5: sentencepiece's own ids shifted by fairseq's offset, <s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=last, and the
    config's pad id the tokenizer's (PaddleNLP's BERT masks by it)."""
    tokenizer = data.load_tokenizer(mpnet["out"], "--model_name_or_path")
    assert type(tokenizer).__name__ == "MPNetTokenizer"
    index = {token: i for i, token in enumerate(MPNET_VOCAB)}.__getitem__
    assert tokenizer("The MOVIE was Unwatchable, GÓOD zebra")["input_ids"] == [
        0, index("the"), index("movie"), index("was"), index("un"), index("##watch"), index("##able"), index(","),
        index("good"), index("[UNK]"), 2]
    assert tokenizer("good", "movie")["input_ids"] == [0, index("good"), 2, 2, index("movie"), 2]
    assert (tokenizer.pad_token_id, tokenizer.mask_token_id, tokenizer.unk_token_id) == (1, index("<mask>"),
                                                                                          index("[UNK]"))

    tokenizer = data.load_tokenizer(e5["out"], "--model_name_or_path")
    assert type(tokenizer).__name__ == "LayoutXLMTokenizer"
    pieces = e5["pieces"]
    for text in ["这个酒店的房间真的非常干净。", "The plot was really boring, never again!", "Zürich ☃ 42"]:
        expected = [0] + [i + 1 if i else 3 for i in pieces.encode(text)] + [2]
        assert tokenizer(text)["input_ids"] == expected, text
    assert 3 in tokenizer("☃")["input_ids"]  # a character sentencepiece never saw: <unk>
    assert (tokenizer.cls_token_id, tokenizer.pad_token_id, tokenizer.sep_token_id, tokenizer.unk_token_id,
            tokenizer.mask_token_id) == (0, 1, 2, 3, len(pieces) + 1)
    config = read_json(os.path.join(e5["out"], "config.json"))
    assert e5["config"]["pad_token_id"] == 0 and config["pad_token_id"] == 1
    assert len(tokenizer) <= config["vocab_size"] == e5["config"]["vocab_size"]


def test_the_converted_teacher_fine_tunes_with_teacher_py(converted, task_files, tmp_path):
    family, c = converted
    task = "sst-2" if family == "mpnet" else "chnsenticorp"
    out = str(tmp_path / "teacher")
    teacher.main(data_flags(task_files, task) + FAST + ["--model_name_or_path", c["out"], "--max_steps", "1",
                                                        "--max_seq_length", "32", "--output_dir", out])
    assert os.path.isfile(os.path.join(out, "best", "model_state.pdparams"))
    assert "acc" in json.dumps(read_json(os.path.join(out, "results.json")))


def edit_tensors(hf_dir, change):
    path = os.path.join(hf_dir, "model.safetensors")
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path)


def remove(hf_dir, name):
    os.remove(os.path.join(hf_dir, name))


BAD_CHECKPOINTS = {
    "no weights": (lambda d: remove(d, "model.safetensors"), ["model.safetensors"]),
    "a tensor that maps to nothing": (
        lambda d: edit_tensors(d, lambda t: t.update({"lm_head.dense.weight": np.zeros((HIDDEN, HIDDEN), "float32")})),
        ["model.safetensors", "lm_head.dense.weight", "maps to no parameter"]),
    "a layer the config does not have": (
        lambda d: edit_tensors(d, lambda t: t.update(
            {"encoder.layer.2.output.dense.bias": np.zeros(HIDDEN, "float32")})),
        ["encoder.layer.2.output.dense.bias", "no place"]),
    "a shape that does not fit": (
        lambda d: edit_tensors(d, lambda t: t.update(
            {"encoder.layer.1.intermediate.dense.weight": np.zeros((FFN, HIDDEN + 1), "float32")})),
        ["encoder.layer.1.intermediate.dense.weight", f"[{FFN}, {HIDDEN + 1}]", f"[{FFN}, {HIDDEN}]"]),
    "a missing tensor": (
        lambda d: edit_tensors(d, lambda t: t.pop("encoder.layer.1.output.LayerNorm.bias")),
        ["model.safetensors", "no tensor for", "encoder.layer.1.layer_norm.bias"]),
    "no vocab.txt": (lambda d: remove(d, "vocab.txt"), ["vocab.txt", "no such file"]),
    "another model type": (
        lambda d: write_json(os.path.join(d, "config.json"), hf_config("roberta", len(MPNET_VOCAB))),
        ["config.json", "roberta"]),
}


@pytest.mark.parametrize("case", BAD_CHECKPOINTS)
def test_a_bad_checkpoint_is_refused_in_one_line_with_nothing_written(mpnet, tmp_path, capsys, case):
    hf_dir = shutil.copytree(mpnet["hf_dir"], str(tmp_path / "hf"))
    spoil, parts = BAD_CHECKPOINTS[case]
    spoil(hf_dir)
    out = str(tmp_path / "out")
    fails_cleanly(capsys, convert_teacher.main, ["--hf_dir", hf_dir, "--output_dir", out], *parts)
    assert sorted(os.listdir(tmp_path)) == ["hf"]  # no out, out.tmp or out.old either


def test_pytorch_weights_without_torch_ask_for_safetensors(mpnet, tmp_path, capsys):
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed here: pytorch_model.bin would be read")
    hf_dir = shutil.copytree(mpnet["hf_dir"], str(tmp_path / "hf"))
    os.replace(os.path.join(hf_dir, "model.safetensors"), os.path.join(hf_dir, "pytorch_model.bin"))
    fails_cleanly(capsys, convert_teacher.main, ["--hf_dir", hf_dir, "--output_dir", str(tmp_path / "out")],
                  "pytorch_model.bin", "torch", "model.safetensors")


def test_a_bert_with_a_wordpiece_vocabulary_is_sent_to_paddlenlp_s_own_conversion(e5, tmp_path, capsys):
    hf_dir = shutil.copytree(e5["hf_dir"], str(tmp_path / "hf"))
    remove(hf_dir, "sentencepiece.bpe.model")
    with open(os.path.join(hf_dir, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(tiny_models.tiny_vocab()) + "\n")
    fails_cleanly(capsys, convert_teacher.main, ["--hf_dir", hf_dir, "--output_dir", str(tmp_path / "out")],
                  "--model_name_or_path", "as it is")


def test_output_dir_only_an_earlier_conversion_is_replaced(mpnet, tmp_path, capsys):
    """A non-empty directory the converter did not write is refused and left as it was, and so is an earlier
    conversion holding a file it did not write (the user's, which replacing it would delete); an earlier conversion
    holding only its own files is replaced whole."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    fails_cleanly(capsys, convert_teacher.main, ["--hf_dir", mpnet["hf_dir"], "--output_dir", str(other)],
                  str(other), "not empty", convert_teacher.CONVERSION_FILE)
    assert os.listdir(other) == ["notes.txt"] and (other / "notes.txt").read_text() == "mine"

    out = shutil.copytree(mpnet["out"], str(tmp_path / "out"))
    with open(os.path.join(out, "notes.txt"), "w") as f:
        f.write("mine")
    fails_cleanly(capsys, convert_teacher.main, ["--hf_dir", mpnet["hf_dir"], "--output_dir", out],
                  out, "notes.txt", "did not write")
    assert sorted(os.listdir(out)) == sorted(os.listdir(mpnet["out"]) + ["notes.txt"])
    os.remove(os.path.join(out, "notes.txt"))
    convert_teacher.main(["--hf_dir", mpnet["hf_dir"], "--output_dir", out])
    assert sorted(os.listdir(out)) == sorted(os.listdir(mpnet["out"]))
    assert sorted(os.listdir(tmp_path)) == ["other", "out"]


def test_config_fields_left_out_take_huggingface_s_defaults(mpnet, tmp_path):
    """A config.json without layer_norm_eps means HuggingFace's MPNet default, 1e-12, not PaddleNLP's 1e-5."""
    hf_dir = shutil.copytree(mpnet["hf_dir"], str(tmp_path / "hf"))
    config = {k: v for k, v in mpnet["config"].items() if k != "layer_norm_eps"}
    write_json(os.path.join(hf_dir, "config.json"), config)
    convert_teacher.main(["--hf_dir", hf_dir, "--output_dir", str(tmp_path / "out")])
    assert read_json(str(tmp_path / "out" / "config.json"))["layer_norm_eps"] == 1e-12
