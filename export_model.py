"""Export a trained student (or, for comparison, a teacher) for predict.py.

    python export_model.py --student_dir runs/distill-sst-2/best --output_dir exported/distill-sst-2 [--int8]
    python export_model.py --student_dir runs/distill-sst-2/best --output_dir exported/distill-sst-2 \
        --int8 static --calibration_file train_sentences.txt
    python export_model.py --teacher_dir runs/teacher-sst-2/best --output_dir exported/teacher-sst-2

The output directory holds the Paddle static model (model.json or, on Paddle 2, model.pdmodel, and model.pdiparams),
its ONNX model (model.onnx, converted by paddle2onnx, for a student with each LSTM fed the sentence lengths; for a
student with --int8 also model.int8.onnx, quantised dynamically, or with --int8 static --calibration_file FILE
statically from that text), the vocabulary (a student's vocab.txt, or the
teacher's tokenizer files) and export_config.json: the kind of model, task, label names, language, (students)
WordPieces or whole words and lower-casing, max_seq_length, padding id, input names and model files, everything
needed to turn text into the model's inputs. Every model written is first checked against the trained model's own
logits on a padded batch (and, for ONNX, at batch 1); a disagreeing model is not written. It is written beside
<output_dir> under a temporary name and swapped in at the end. --output_dir is new, empty or an earlier export (which
is replaced) holding only the files that export wrote (export_config.json lists them); it is held by this export
until it ends, so a second export into it is refused.
"""
import logging
import os

import paddle

import data
import model as models
import quantization
import runtimes
from args import parse_args
from files import check_replaceable_dir, file_sha256, own_files, replace_dir, write_json
from tasks import TASKS, custom_task
from utils import UserError, prepare_output_dir, run_main

logger = logging.getLogger("distill")


ONNX_FILE, INT8_FILE = "model.onnx", "model.int8.onnx"
CHECK_TEXTS = ("a", "the film is not good at all , but the actors are fine", "很好的酒店")  # padded to one batch


def verified_onednn(model, prefix, batch, flag, source):
    """Whether predict.py should run the export with oneDNN: with it when its logits on the check batch match the
    dygraph model's, else without; neither matching refuses the export."""
    verified = runtimes.verified_predictor(model, prefix, batch)
    if verified is None:
        raise UserError(f"{flag} {source}: the exported model's logits differ from the model's own, with and "
                        "without oneDNN; nothing exported")
    return verified[1]


def write_onnx(model, prefix, directory, samples, flag, source):
    """Convert the static export at prefix to ONNX_FILE in directory and check it against the model's own logits on
    the collated samples; refuses a disagreeing conversion. Returns the file name for export_config.json."""
    path = runtimes.export_onnx(prefix, os.path.join(directory, ONNX_FILE))
    if runtimes.verified_onnx_runner(model, path, samples) is None:
        raise UserError(f"{flag} {source}: the ONNX model's logits differ from the model's own; nothing exported")
    return ONNX_FILE


def check_texts(is_pair):
    return [(text, text[::-1]) if is_pair else (text,) for text in CHECK_TEXTS]


def student_export(student_dir, int8, calibration_file=None):
    """(build, config): build(directory) writes the student's static model, its ONNX model (and with int8,
    'dynamic' or 'static', its int8 ONNX model) and its vocabulary, returning the static model's path prefix."""
    student = models.load_student(student_dir, "--student_dir")
    config = student.config
    onnx = runtimes.onnx_available()
    if int8 and not onnx:
        raise UserError("--int8: needs paddle2onnx, onnx and onnxruntime (pip install -r requirements.txt)")
    calibration = None
    if int8 == "static":
        if not calibration_file:
            raise UserError("--int8 static: needs --calibration_file (text like the training data, one example per "
                            "line) to fix the activation ranges")
        task = custom_task(config.task_name, config.language, config.labels, config.is_pair, {})
        examples = data.read_unlabeled(task, calibration_file, quantization.CALIBRATION_EXAMPLES,
                                       "--calibration_file")
        calibration = quantization.calibration_batches(examples, student.analyzer, student.vocab,
                                                       config.max_seq_length)
    if not onnx:
        logger.warning("paddle2onnx, onnx or onnxruntime does not import: no ONNX model, predict.py will use Paddle")

    def build(directory):
        student.vocab.save(os.path.join(directory, "vocab.txt"))
        exported["vocab_sha256"] = file_sha256(os.path.join(directory, "vocab.txt"))
        prefix = runtimes.export_static(student.model, models.student_input_spec(config), directory)
        collate = data.student_collate(student.vocab.pad_id)
        records = [data.student_record(student.analyzer.sentences(texts), student.vocab, config.max_seq_length)
                   for texts in check_texts(config.is_pair)]
        exported["onednn"] = verified_onednn(student.model, prefix, collate(records), "--student_dir", student_dir)
        if onnx:
            samples = [collate(records)] + [collate([record]) for record in records]  # padded, and batch 1
            exported["onnx"] = write_onnx(student.model, prefix, directory, samples, "--student_dir", student_dir)
        if int8:
            fp32_path, int8_path = os.path.join(directory, ONNX_FILE), os.path.join(directory, INT8_FILE)
            if int8 == "static":
                quantization.quantize_static(fp32_path, int8_path, calibration)
                logger.info("static int8: the same class as the fp32 model on %.1f%% of the calibration examples",
                            100 * quantization.same_class_share(runtimes.onnx_runner(int8_path),
                                                                runtimes.onnx_runner(fp32_path), calibration))
            else:
                quantization.quantize_dynamic(fp32_path, int8_path)
            exported["onnx_int8"], exported["int8"] = INT8_FILE, int8
        return prefix

    exported = {"kind": "student", "onnx": None, "task_name": config.task_name, "labels": list(config.labels),
                "is_pair": config.is_pair, "language": config.language, "use_pieces": config.use_pieces,
                "do_lower_case": student.analyzer.lower_cases, "max_seq_length": config.max_seq_length,
                "pad_id": student.vocab.pad_id, "inputs": list(config.input_names), "vocab_size": len(student.vocab)}
    return build, exported


def teacher_export(teacher_dir, task_name, max_seq_length):
    """(build, config): build(directory) writes the teacher's static model, its ONNX model (where paddle2onnx
    converts the family) and tokenizer files, returning the static model's path prefix."""
    recorded = models.teacher_task(teacher_dir)
    max_seq_length = max_seq_length or recorded.get("max_seq_length")
    if task_name:
        task = TASKS[task_name].record()
    elif recorded.get("task_name") in TASKS and "language" not in recorded:  # written before teacher.py recorded all
        task = TASKS[recorded["task_name"]].record()
    elif recorded:
        task = recorded
    else:
        raise UserError(f"--task_name: needed, {teacher_dir} records no task (it was not written by teacher.py)")
    model = models.load_teacher(teacher_dir, flag="--teacher_dir")
    if model.config.num_labels != len(task["labels"]):
        raise UserError(f"--teacher_dir {teacher_dir}: {model.config.num_labels} classes, but its task "
                        f"{task['task_name']} has {len(task['labels'])} labels")
    max_seq_length = max_seq_length or 128
    tokenizer = models.checked_teacher_tokenizer(teacher_dir, model.config.to_dict(), max_seq_length, "--teacher_dir")
    encoder = data.TeacherEncoder(tokenizer, max_seq_length, task["language"])

    def build(directory):
        tokenizer.save_pretrained(directory)
        prefix = runtimes.export_static(model, runtimes.teacher_input_spec(encoder.input_names), directory)
        collate = data.teacher_collate(tokenizer.pad_token_id)
        records = [encoder.texts(texts) for texts in check_texts(task["is_pair"])]
        exported["onednn"] = verified_onednn(model, prefix, collate(records), "--teacher_dir", teacher_dir)
        if runtimes.onnx_available():
            samples = [collate(records)] + [collate([record]) for record in records]  # padded, and batch 1
            try:
                exported["onnx"] = write_onnx(model, prefix, directory, samples, "--teacher_dir", teacher_dir)
            except UserError:
                raise
            except Exception as error:  # a family paddle2onnx cannot convert: paddle.inference serves it
                logger.warning("no ONNX model of the teacher (%s: %s); predict.py will use paddle.inference",
                               type(error).__name__, error)
        return prefix

    exported = {"kind": "teacher", "onnx": None, **{key: task[key] for key in ("task_name", "labels", "is_pair",
                                                                             "language")},
                "max_seq_length": max_seq_length,
                "pad_id": tokenizer.pad_token_id, "inputs": encoder.input_names, "vocab_size": len(tokenizer)}
    return build, exported


def main(argv=None):
    args = parse_args("export", argv, __doc__)
    source_flag, source = ("--student_dir", args.student_dir) if args.student_dir else ("--teacher_dir",
                                                                                         args.teacher_dir)
    if not os.path.isdir(source):
        raise UserError(f"{source_flag} {source}: no such directory")
    if args.student_dir and (args.task_name or args.max_seq_length):
        raise UserError("--task_name/--max_seq_length: only with --teacher_dir (a student directory records them)")
    if args.teacher_dir and args.int8:
        raise UserError("--int8: only with --student_dir (teachers are exported in fp32)")
    out = args.output_dir
    check_replaceable_dir(out, "--output_dir", models.EXPORT_CONFIG, "export_model.py")
    prepare_output_dir(out)  # held from now on (made if new, removed again if the export fails)
    paddle.set_device("cpu")  # the export is device-independent; predict.py picks the device
    if args.student_dir:
        build, config = student_export(args.student_dir, args.int8, args.calibration_file)
    else:
        build, config = teacher_export(args.teacher_dir, args.task_name, args.max_seq_length)

    def write_all(directory):
        config["model"] = os.path.basename(build(directory))  # path prefix of the model files in the directory
        config["files"] = own_files(directory, models.EXPORT_CONFIG)  # what a later export may replace
        write_json(os.path.join(directory, models.EXPORT_CONFIG), config)

    replace_dir(write_all, out)
    print(f"exported {config['kind']} ({config['task_name']}) from {source} to {out}", flush=True)
    return config


if __name__ == "__main__":
    run_main(main)
