"""The task table: every module, script and test reads the tasks from here."""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Task:
    dataset: tuple  # paddlenlp.datasets.load_dataset(*dataset)
    text_fields: tuple  # fields of the reader's examples holding the text(s)
    label_field: str
    language: str  # "en" or "zh"
    columns: dict  # split -> the columns of its local file (tab-separated, after a header line)
    label_column: str  # the column holding the label in those files
    metric: str = "acc"  # dev metric that picks the best checkpoint
    report_f1: bool = False
    labels: tuple = ("0", "1")
    student_defaults: dict = field(default_factory=dict)  # the student flags' defaults for this task (PaddleNLP's)

    @property
    def is_pair(self):
        return len(self.text_fields) == 2

    def layout(self, split):
        """(number of tab-separated fields, index of the label field) of a local file of this split."""
        return len(self.columns[split]), self.columns[split].index(self.label_column)


QQP_COLUMNS = ("id", "qid1", "qid2", "question1", "question2", "is_duplicate")


TASKS = {
    "sst-2": Task(("glue", "sst-2"), ("sentence",), "labels", "en",
                  {"train": ("sentence", "label"), "dev": ("sentence", "label")}, "label"),
    "qqp": Task(("glue", "qqp"), ("sentence1", "sentence2"), "labels", "en",
                {"train": QQP_COLUMNS, "dev": QQP_COLUMNS}, "is_duplicate",
                report_f1=True, student_defaults={"batch_size": 256, "n_iter": 10}),
    "chnsenticorp": Task(("chnsenticorp",), ("text",), "label", "zh",
                         {"train": ("label", "text_a"), "dev": ("qid", "label", "text_a")}, "label",
                         student_defaults={"ngram_min": 2, "ngram_max": 10}),
}
