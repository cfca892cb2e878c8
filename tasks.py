"""The task table: every module, script and test reads the tasks from here. A task read from a folder of the user's
own data (--dataset_dir, data.task_from_dir) is a Task like the built-in ones, made from the folder's label.txt."""
from dataclasses import dataclass, field
from typing import Optional

METRICS = ("acc", "macro_f1")  # dev metrics that can pick the best checkpoint (--metric)


@dataclass(frozen=True)
class Task:
    name: str
    language: str  # "en" or "zh"
    labels: tuple  # label names, in the order of the model's outputs
    columns: dict  # split -> the columns of its local file, tab-separated
    text_columns: tuple  # the columns holding the text(s): one, or two for a pair task
    label_column: str  # the column holding the label (one of labels)
    header: bool = True  # local files start with a header line, which is skipped
    files: dict = field(default_factory=dict)  # split -> local file, for a task read from a folder
    dataset: Optional[tuple] = None  # paddlenlp.datasets.load_dataset(*dataset), for the built-in tasks' download
    download_fields: tuple = ()  # the downloaded examples' text field(s) and label field
    metric: str = "acc"  # default dev metric that picks the best checkpoint
    report_f1: bool = False  # also the precision, recall and F1 of label 1
    student_defaults: dict = field(default_factory=dict)  # the student flags' defaults for this task (PaddleNLP's)

    @property
    def is_pair(self):
        return len(self.text_columns) == 2

    def layout(self, split):
        """(number of tab-separated fields, indices of the text fields, index of the label field) of a local file
        of this split."""
        columns = self.columns[split]
        return len(columns), tuple(columns.index(c) for c in self.text_columns), columns.index(self.label_column)

    def record(self):
        """What a trained model records of its task (teacher.py's task.json, a student's config): enough to read
        text for it and name its outputs without the task table or the data folder."""
        return {"task_name": self.name, "labels": list(self.labels), "language": self.language,
                "is_pair": self.is_pair}


QQP_COLUMNS = ("id", "qid1", "qid2", "question1", "question2", "is_duplicate")


TASKS = {
    "sst-2": Task("sst-2", "en", ("0", "1"), {"train": ("sentence", "label"), "dev": ("sentence", "label")},
                  ("sentence",), "label", dataset=("glue", "sst-2"), download_fields=("sentence", "labels")),
    "qqp": Task("qqp", "en", ("0", "1"), {"train": QQP_COLUMNS, "dev": QQP_COLUMNS}, ("question1", "question2"),
                "is_duplicate", dataset=("glue", "qqp"), download_fields=("sentence1", "sentence2", "labels"),
                report_f1=True, student_defaults={"batch_size": 256, "n_iter": 10}),
    "chnsenticorp": Task("chnsenticorp", "zh", ("0", "1"),
                         {"train": ("label", "text_a"), "dev": ("qid", "label", "text_a")}, ("text_a",), "label",
                         dataset=("chnsenticorp",), download_fields=("text", "label"),
                         student_defaults={"ngram_min": 2, "ngram_max": 10}),
}


def custom_task(name, language, labels, is_pair, files):
    """The Task of a folder in PaddleNLP's text-classification layout: no header; a line is text<TAB>label, or
    text_a<TAB>text_b<TAB>label for pairs, the label one of labels (label.txt's names); macro-F1 picks the best
    checkpoint, as label counts are often uneven."""
    columns = ("text_a", "text_b", "label") if is_pair else ("text_a", "label")
    return Task(name, language, tuple(labels), {split: columns for split in files}, columns[:-1], "label",
                header=False, files=dict(files), metric="macro_f1")
