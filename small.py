"""Train the Bi-LSTM student alone on hard labels (the baseline).

    python small.py --task_name sst-2 --train_file ../shared/data/SST-2/train.tsv \
        --dev_file ../shared/data/SST-2/dev.tsv --vocab_path teachers/sst-2/best/vocab.txt \
        --output_dir small_models/sst-2
"""
import paddle.nn.functional as F

import checkpoint
import data
import training
from args import parse_args
from model import student_inputs
from utils import prepare_output_dir, run_main


def main(argv=None):
    args = parse_args("small", argv, __doc__)
    task = data.load_task(args.task_name, args.dataset_dir, args.language)
    run = checkpoint.RunConfig.from_args(args, task)
    checkpoint.check_output_dir(run)
    setup = training.student_setup(args, task)
    records = setup.records(setup.train)
    loader = data.make_loader(records, data.student_collate(setup.vocab.pad_id), args.batch_size, shuffle=True,
                              seed=args.seed)

    def loss_fn(model, batch):
        return F.cross_entropy(model(**student_inputs(batch)), batch["label"])

    prepare_output_dir(args.output_dir)
    optimizer, lr_scheduler = training.make_optimizer(setup.model, args.optimizer, args.lr, args.lr_schedule,
                                                      run.total_steps(len(loader)), args.rho)
    results = training.fit(run, setup.model, optimizer, loader, loss_fn, setup.evaluate, setup.save, lr_scheduler)
    return training.scored_on_test(run, results, task, setup.evaluate_saved)


if __name__ == "__main__":
    run_main(main)
