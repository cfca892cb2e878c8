"""Convert a local HuggingFace checkpoint folder into a PaddleNLP model directory that teacher.py takes as
--model_name_or_path, for the teachers PaddleNLP 2.8.1 cannot read itself: MPNet (all-mpnet-base-v2), and BERT with
XLM-R's SentencePiece tokenizer (multilingual-e5-small), whose tokenizer PaddleNLP has under the name
LayoutXLMTokenizer.

    huggingface-cli download sentence-transformers/all-mpnet-base-v2 --local-dir hf/all-mpnet-base-v2
    python convert_teacher.py --hf_dir hf/all-mpnet-base-v2 --output_dir teachers/all-mpnet-base-v2
    python teacher.py --task_name sst-2 --model_name_or_path teachers/all-mpnet-base-v2 --output_dir runs/teacher

Every tensor of the checkpoint goes to one parameter of PaddleNLP's model (Linear weights transposed: torch stores
them [out, in], Paddle [in, out]), with the shape that config.json's sizes give it; a tensor that goes nowhere or does
not fit, or a missing file, stops the conversion in one line (exit code 2) with nothing written. The output holds
model_state.pdparams, PaddleNLP's config.json, the tokenizer's files and conversion.json (what it was made from);
a later conversion into the same --output_dir replaces it whole.
"""
import inspect
import logging
import os
import re
from dataclasses import dataclass

import numpy as np
import paddle

from args import parse_args
from files import check_replaceable_dir, own_files, read_json, replace_dir, write_json
from utils import UserError, prepare_output_dir, run_main

logger = logging.getLogger("distill")

CONVERSION_FILE = "conversion.json"  # marks an --output_dir this script wrote (and may replace)
SAFETENSORS, TORCH_BIN = "model.safetensors", "pytorch_model.bin"
SENTENCEPIECE = "sentencepiece.bpe.model"
ACTIVATIONS = ("gelu", "relu")  # the same function in HuggingFace and Paddle under these names
SPECIAL_ROLES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# XLM-R's tokenizer: fairseq's ids for its special tokens, SentencePiece's other pieces shifted by one
FAIRSEQ_SPECIAL = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
                   "cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>"}
FAIRSEQ_IDS = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
FAIRSEQ_OFFSET = 1
# texts on which the SentencePiece tokenizer is checked against sentencepiece itself
CHECK_TEXTS = ("Hello, world! It isn't bad at all.", "这部电影真的很好看。", "Ça coûte 3,50 € — naïve café", "a  b\tc")


@dataclass(frozen=True)
class Family:
    """How a HuggingFace model type becomes PaddleNLP's: the base model's prefix in HuggingFace checkpoints of heads
    (stripped), the name rules (HuggingFace regex, PaddleNLP name, whether the tensor is a Linear weight to
    transpose), HuggingFace's defaults of config fields where PaddleNLP's differ (for a config.json without them),
    and the sizes config.json must give."""
    model_type: str
    prefix: str
    rules: tuple
    hf_defaults: dict
    required: tuple = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                       "max_position_embeddings")

    def target(self, name):
        """(PaddleNLP parameter name, transpose) of a HuggingFace tensor name (prefix stripped), or None."""
        for pattern, replacement, transpose in self.rules:
            if re.fullmatch(pattern, name):
                return re.sub(pattern, replacement, name), transpose
        return None


LAYER = r"encoder\.layer\.(\d+)\."
MPNET = Family("mpnet", "mpnet.", (
    (r"embeddings\.(word|position)_embeddings\.weight", r"embeddings.\1_embeddings.weight", False),
    (r"embeddings\.LayerNorm\.(weight|bias)", r"embeddings.layer_norm.\1", False),
    (LAYER + r"attention\.attn\.([qkvo])\.weight", r"encoder.layer.\1.attention.\2.weight", True),
    (LAYER + r"attention\.attn\.([qkvo])\.bias", r"encoder.layer.\1.attention.\2.bias", False),
    (LAYER + r"attention\.LayerNorm\.(weight|bias)", r"encoder.layer.\1.attention.layer_norm.\2", False),
    (LAYER + r"intermediate\.dense\.weight", r"encoder.layer.\1.ffn.weight", True),
    (LAYER + r"intermediate\.dense\.bias", r"encoder.layer.\1.ffn.bias", False),
    (LAYER + r"output\.dense\.weight", r"encoder.layer.\1.ffn_output.weight", True),
    (LAYER + r"output\.dense\.bias", r"encoder.layer.\1.ffn_output.bias", False),
    (LAYER + r"output\.LayerNorm\.(weight|bias)", r"encoder.layer.\1.layer_norm.\2", False),
    (r"encoder\.relative_attention_bias\.weight", "encoder.relative_attention_bias.weight", False),
    (r"pooler\.dense\.weight", "pooler.dense.weight", True),
    (r"pooler\.dense\.bias", "pooler.dense.bias", False),
), {"layer_norm_eps": 1e-12})
BERT_ATTENTION = (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"))
BERT = Family("bert", "bert.", (
    (r"embeddings\.(word|position|token_type)_embeddings\.weight", r"embeddings.\1_embeddings.weight", False),
    (r"embeddings\.LayerNorm\.(weight|bias)", r"embeddings.layer_norm.\1", False),
    *((LAYER + rf"attention\.self\.{hf}\.weight", rf"encoder.layers.\1.self_attn.{pd}.weight", True)
      for hf, pd in BERT_ATTENTION),
    *((LAYER + rf"attention\.self\.{hf}\.bias", rf"encoder.layers.\1.self_attn.{pd}.bias", False)
      for hf, pd in BERT_ATTENTION),
    (LAYER + r"attention\.output\.dense\.weight", r"encoder.layers.\1.self_attn.out_proj.weight", True),
    (LAYER + r"attention\.output\.dense\.bias", r"encoder.layers.\1.self_attn.out_proj.bias", False),
    (LAYER + r"attention\.output\.LayerNorm\.(weight|bias)", r"encoder.layers.\1.norm1.\2", False),
    (LAYER + r"intermediate\.dense\.weight", r"encoder.layers.\1.linear1.weight", True),
    (LAYER + r"intermediate\.dense\.bias", r"encoder.layers.\1.linear1.bias", False),
    (LAYER + r"output\.dense\.weight", r"encoder.layers.\1.linear2.weight", True),
    (LAYER + r"output\.dense\.bias", r"encoder.layers.\1.linear2.bias", False),
    (LAYER + r"output\.LayerNorm\.(weight|bias)", r"encoder.layers.\1.norm2.\2", False),
    (r"pooler\.dense\.weight", "pooler.dense.weight", True),
    (r"pooler\.dense\.bias", "pooler.dense.bias", False),
), {"type_vocab_size": 2})


# ---------------------------------------------------------------------------------------------------------------
# Reading the HuggingFace folder


def _normalised(name):
    """Old checkpoints name LayerNorm's parameters gamma and beta (HuggingFace renames them on load)."""
    return re.sub(r"(LayerNorm)\.gamma$", r"\1.weight", re.sub(r"(LayerNorm)\.beta$", r"\1.bias", name))


def read_weights(hf_dir):
    """(path, {name: numpy array}) of the checkpoint's weights: model.safetensors, else pytorch_model.bin when torch
    is installed to read it."""
    path = os.path.join(hf_dir, SAFETENSORS)
    if os.path.isfile(path):
        from safetensors.numpy import load_file
        try:
            return path, load_file(path)
        except Exception as error:  # a truncated file, a header that is not JSON, a dtype numpy lacks (bfloat16)
            raise UserError(f"{path}: not readable as safetensors with numpy ({type(error).__name__}: "
                            f"{str(error).splitlines()[0] if str(error) else ''})") from None
    path = os.path.join(hf_dir, TORCH_BIN)
    if os.path.isfile(path):
        try:
            import torch
        except ImportError:
            raise UserError(f"{path}: reading a PyTorch checkpoint needs torch, which is not installed; save the "
                            f"weights as {SAFETENSORS} (safetensors.torch.save_file where torch is) and convert "
                            f"that") from None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise UserError(f"{path}: not readable by torch.load ({type(error).__name__}: {error})") from None
        return path, {name: (tensor.float() if tensor.is_floating_point() else tensor).numpy()
                      for name, tensor in state.items()}
    if os.path.isfile(os.path.join(hf_dir, SAFETENSORS + ".index.json")):
        raise UserError(f"{hf_dir}: a sharded checkpoint ({SAFETENSORS}.index.json); this converter reads one "
                        f"{SAFETENSORS}")
    raise UserError(f"{hf_dir}: no {SAFETENSORS} (or {TORCH_BIN}), the model's weights")


def read_config(hf_dir, family):
    """(config.json, its fields that PaddleNLP's config of the family takes but pad_token_id), checked."""
    path = os.path.join(hf_dir, "config.json")
    config = read_json(path, family.required)
    for name in family.required:
        value = config[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"{path}: {name} must be a positive integer, found {value!r}")
    if config["hidden_size"] % config["num_attention_heads"]:
        raise UserError(f"{path}: hidden_size {config['hidden_size']} is not a multiple of num_attention_heads "
                        f"{config['num_attention_heads']}")
    activation = config.get("hidden_act", "gelu")
    if activation not in ACTIVATIONS:
        raise UserError(f"{path}: hidden_act {activation!r} is not one this converter maps ({', '.join(ACTIVATIONS)})")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise UserError(f"{path}: position_embedding_type {config['position_embedding_type']!r}: PaddleNLP's "
                        f"{family.model_type} has absolute positions only")
    config_class = _classes(family)[0]
    takes = set(inspect.signature(config_class.__init__).parameters) - {"self", "kwargs", "pad_token_id", "fuse",
                                                                        "use_cache", "pool_act"}
    return config, {name: value for name, value in {**family.hf_defaults, **config}.items() if name in takes}


def _classes(family):
    from paddlenlp.transformers import BertConfig, BertModel, MPNetConfig, MPNetModel
    return {"mpnet": (MPNetConfig, MPNetModel), "bert": (BertConfig, BertModel)}[family.model_type]


def _tokenizer_settings(hf_dir):
    """tokenizer_config.json, then special_tokens_map.json over it (both optional), tokens as plain strings."""
    settings = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = os.path.join(hf_dir, name)
        if os.path.isfile(path):
            settings.update(read_json(path))
    for role in SPECIAL_ROLES:
        if isinstance(settings.get(role), dict):  # HuggingFace's AddedToken: {"content": "<mask>", "lstrip": ...}
            settings[role] = settings[role].get("content")
    return settings


def _max_length(settings):
    value = settings.get("model_max_length")
    return {"model_max_length": value} if isinstance(value, int) and 0 < value < 10 ** 6 else {}


def mpnet_tokenizer(hf_dir, pad_token_id):
    """PaddleNLP's MPNetTokenizer of vocab.txt with HuggingFace's settings (lower-casing, accents, special tokens),
    refused when a special token is not in the vocabulary or the pad token's id is not the config's."""
    from paddlenlp.transformers import MPNetTokenizer

    vocab_path = os.path.join(hf_dir, "vocab.txt")
    if not os.path.isfile(vocab_path):
        raise UserError(f"{vocab_path}: no such file (MPNet's WordPiece vocabulary)")
    settings = _tokenizer_settings(hf_dir)
    kwargs = {"do_lower_case": settings.get("do_lower_case", True), **_max_length(settings)}
    for name in ("strip_accents", "tokenize_chinese_chars"):
        if name in settings:
            kwargs[name] = settings[name]
    kwargs.update((role, settings[role]) for role in SPECIAL_ROLES if isinstance(settings.get(role), str))
    tokenizer = MPNetTokenizer(vocab_path, **kwargs)
    vocab = tokenizer.vocab.token_to_idx
    for role in SPECIAL_ROLES:
        token = str(getattr(tokenizer, role))
        if token not in vocab:
            raise UserError(f"{vocab_path}: has no {token} (the tokenizer's {role})")
    if vocab[str(tokenizer.pad_token)] != pad_token_id:
        raise UserError(f"{vocab_path}: the pad token {tokenizer.pad_token} has id {vocab[str(tokenizer.pad_token)]} "
                        f"but config.json's pad_token_id is {pad_token_id}")
    return tokenizer


def xlmr_tokenizer(hf_dir):
    """PaddleNLP's LayoutXLMTokenizer (its port of XLM-R's: fairseq's special ids, SentencePiece's pieces shifted
    by one), checked to encode CHECK_TEXTS as sentencepiece itself does."""
    import sentencepiece
    from paddlenlp.transformers import LayoutXLMTokenizer

    model_path = os.path.join(hf_dir, SENTENCEPIECE)
    settings = _tokenizer_settings(hf_dir)
    named = settings.get("tokenizer_class")
    if named is not None and named not in ("XLMRobertaTokenizer", "XLMRobertaTokenizerFast"):
        raise UserError(f"{os.path.join(hf_dir, 'tokenizer_config.json')}: tokenizer_class {named}; a "
                        f"{SENTENCEPIECE} is converted as XLM-R's tokenizer (XLMRobertaTokenizer)")
    for role, token in FAIRSEQ_SPECIAL.items():
        if settings.get(role, token) != token:
            raise UserError(f"{hf_dir}: the tokenizer's {role} is {settings[role]!r}; XLM-R's tokenizer has {token} "
                            f"(its id fixed at {FAIRSEQ_IDS.get(token, 'the last')})")
    try:
        pieces = sentencepiece.SentencePieceProcessor(model_file=model_path)
    except Exception as error:
        raise UserError(f"{model_path}: not a SentencePiece model ({type(error).__name__}: {error})") from None
    tokenizer = LayoutXLMTokenizer(model_path, **_max_length(settings))
    for text in CHECK_TEXTS:
        expected = [FAIRSEQ_IDS["<s>"]] + [i + FAIRSEQ_OFFSET if i else FAIRSEQ_IDS["<unk>"]
                                           for i in pieces.encode(text)] + [FAIRSEQ_IDS["</s>"]]
        if tokenizer(text)["input_ids"] != expected:
            raise UserError(f"{model_path}: PaddleNLP's LayoutXLMTokenizer encodes {text!r} otherwise than "
                            f"sentencepiece plus fairseq's offset; not converted")
    return tokenizer


# ---------------------------------------------------------------------------------------------------------------
# Converting


def paddle_shapes(family, config):
    """{parameter name: shape} of PaddleNLP's base model of the family with these sizes (built without memory)."""
    config_class, model_class = _classes(family)
    with paddle.LazyGuard():
        model = model_class(config_class(**config))
    return {name: list(value.shape) for name, value in model.state_dict().items()}


def convert_weights(family, tensors, shapes, weights_path):
    """{PaddleNLP name: float32 array} of the checkpoint's tensors, each mapped, transposed where it is a Linear
    weight, and shaped as `shapes` says; refused (naming the file and tensor) when one maps to nothing, does not
    fit, or a parameter other than the pooler's has no tensor."""
    params, source = {}, {}
    for name in sorted(tensors):
        array = tensors[name]
        key = _normalised(name[len(family.prefix):] if name.startswith(family.prefix) else name)
        if key == "embeddings.position_ids":  # a buffer of positions 0, 1, ... that older checkpoints hold
            if not (np.issubdtype(array.dtype, np.integer) and np.array_equal(array.reshape(-1),
                                                                               np.arange(array.size))):
                raise UserError(f"{weights_path}: tensor {name} is not the positions 0, 1, 2, ...")
            continue
        found = family.target(key)
        if found is None:
            raise UserError(f"{weights_path}: tensor {name} maps to no parameter of PaddleNLP's "
                            f"{family.model_type} model")
        paddle_name, transpose = found
        if paddle_name not in shapes:
            raise UserError(f"{weights_path}: tensor {name} has no place in a model of config.json's sizes "
                            f"(no parameter {paddle_name})")
        if paddle_name in params:
            raise UserError(f"{weights_path}: tensors {source[paddle_name]} and {name} both map to {paddle_name}")
        if not np.issubdtype(array.dtype, np.floating):
            raise UserError(f"{weights_path}: tensor {name} holds {array.dtype} values, not floating point")
        value = array.T if transpose else array
        if list(value.shape) != shapes[paddle_name]:
            wanted = shapes[paddle_name][::-1] if transpose else shapes[paddle_name]
            raise UserError(f"{weights_path}: tensor {name} has shape {list(array.shape)}; config.json's sizes "
                            f"give it {wanted}")
        params[paddle_name] = np.ascontiguousarray(value, dtype=np.float32)
        source[paddle_name] = name
    missing = [name for name in shapes if name not in params and not name.startswith("pooler.")]
    if missing:
        raise UserError(f"{weights_path}: no tensor for PaddleNLP's {missing[0]}"
                        + (f" (and {len(missing) - 1} more parameters)" if len(missing) > 1 else ""))
    return params


def main(argv=None):
    args = parse_args("convert_teacher", argv, __doc__)
    hf_dir = args.hf_dir
    # Replaced only if empty or an earlier conversion holding nothing else (CONVERSION_FILE lists what it wrote)
    check_replaceable_dir(args.output_dir, "--output_dir", CONVERSION_FILE, "convert_teacher.py")
    prepare_output_dir(args.output_dir)  # held from now on: a second conversion into it is refused
    if not os.path.isdir(hf_dir):
        raise UserError(f"--hf_dir {hf_dir}: no such directory")
    config_path = os.path.join(hf_dir, "config.json")
    if not os.path.isfile(config_path):
        raise UserError(f"{config_path}: no such file")
    model_type = read_json(config_path, ("model_type",))["model_type"]
    if model_type == "mpnet":
        family = MPNET
        hf_config, config = read_config(hf_dir, family)
        config["pad_token_id"] = hf_config.get("pad_token_id", 1)  # also where MPNet's positions start
        tokenizer = mpnet_tokenizer(hf_dir, config["pad_token_id"])
    elif model_type == "bert" and os.path.isfile(os.path.join(hf_dir, SENTENCEPIECE)):
        family = BERT
        config = read_config(hf_dir, family)[1]
        tokenizer = xlmr_tokenizer(hf_dir)
        # PaddleNLP's BERT masks the inputs equal to pad_token_id: the tokenizer's <pad>, not BERT's usual 0
        config["pad_token_id"] = tokenizer.pad_token_id
    elif model_type == "bert":
        raise UserError(f"{hf_dir}: a BERT without {SENTENCEPIECE}; PaddleNLP converts BERT with its WordPiece "
                        f"vocab.txt on load: give teacher.py --model_name_or_path {hf_dir} as it is")
    else:
        raise UserError(f"{config_path}: model_type {model_type!r}; this converter takes mpnet, and bert with "
                        f"XLM-R's {SENTENCEPIECE}")
    vocab_rows = config["vocab_size"]
    if len(tokenizer) > vocab_rows:
        raise UserError(f"{hf_dir}: the tokenizer has {len(tokenizer)} tokens but config.json's vocab_size is "
                        f"{vocab_rows}")
    weights_path, tensors = read_weights(hf_dir)
    params = convert_weights(family, tensors, paddle_shapes(family, config), weights_path)
    config_class, model_class = _classes(family)
    paddle_config = config_class(**config)
    paddle_config.architectures = [model_class.__name__]

    def build(directory):
        paddle.save(params, os.path.join(directory, "model_state.pdparams"))
        paddle_config.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        write_json(os.path.join(directory, CONVERSION_FILE), {
            "converted_by": "convert_teacher.py", "hf_dir": os.path.abspath(hf_dir),
            "weights": os.path.basename(weights_path), "model_type": model_type,
            "tokenizer": type(tokenizer).__name__, "parameters": len(params),
            "pooler": "pooler.dense.weight" in params, "files": own_files(directory, CONVERSION_FILE)})

    replace_dir(build, args.output_dir)
    logger.info("%s -> %s: %d tensors of %s into PaddleNLP's %s (%d layers, hidden %d%s), tokenizer %s",
                hf_dir, args.output_dir, len(params), os.path.basename(weights_path), model_class.__name__,
                config["num_hidden_layers"], config["hidden_size"],
                "" if "pooler.dense.weight" in params else "; no pooler in the checkpoint: PaddleNLP initialises it",
                type(tokenizer).__name__)
    return args.output_dir


if __name__ == "__main__":
    run_main(main)
