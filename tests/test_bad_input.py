"""Bad flags: a numeric flag out of its range is refused at parse time, and a --max_seq_length beyond the teacher's
position embeddings when the teacher is known, with exit code 2 and one line naming the flag and what is allowed, and
nothing written."""
import os

import pytest
from conftest import STUDENT_FAST, data_flags, fails_cleanly

import benchmark
import bert_distill
import data
import demo_data
import export_model
import model
import predict
import small
import teacher
from utils import UserError


@pytest.fixture(scope="module")
def flags(task_files, tiny_bert, tmp_path_factory):
    """Each script's valid arguments (a fresh --output_dir and --cache_dir that do not exist yet)."""
    base = tmp_path_factory.mktemp("bad-input")
    out, cache = ["--output_dir", str(base / "out")], ["--cache_dir", str(base / "cache")]
    sst = data_flags(task_files, "sst-2")
    vocab = ["--vocab_path", os.path.join(tiny_bert, "vocab.txt")]
    return {"teacher": sst + ["--model_name_or_path", tiny_bert, "--device", "cpu"] + out,
            "small": sst + STUDENT_FAST + vocab + out,
            "distill": sst + STUDENT_FAST + ["--teacher_dir", tiny_bert] + out + cache,
            "export": ["--teacher_dir", tiny_bert, "--task_name", "sst-2"] + out,
            "predict": ["--model_dir", str(base / "exported")],
            "benchmark": ["--teacher_dir", tiny_bert, "--data_file", task_files["sst-2"][1], "--sections", "size"],
            "demo_data": out}


MAINS = {"teacher": teacher.main, "small": small.main, "distill": bert_distill.main, "export": export_model.main,
         "predict": predict.main, "benchmark": benchmark.main, "demo_data": demo_data.main}

AT_LEAST_1 = "must be an integer >= 1"
AT_LEAST_0 = "must be an integer >= 0"
IN_0_1 = "must be a number in [0, 1]"
IN_0_1_OPEN = "must be a number in [0, 1)"
POSITIVE = "must be a number > 0"

# (script, flag, value, what the message says is allowed)
FLAG_CASES = [
    ("small", "--batch_size", "0", AT_LEAST_1),
    ("small", "--batch_size", "-4", AT_LEAST_1),
    ("small", "--eval_steps", "0", AT_LEAST_1),
    ("small", "--logging_steps", "0", AT_LEAST_1),
    ("small", "--max_seq_length", "0", AT_LEAST_1),
    ("teacher", "--max_seq_length", "1", "must be an integer >= 3"),
    ("distill", "--max_seq_length", "2", "must be an integer >= 3"),
    ("small", "--dropout_prob", "1.5", IN_0_1_OPEN),
    ("teacher", "--dropout_prob", "1", IN_0_1_OPEN),
    ("small", "--hidden_size", "0", AT_LEAST_1),
    ("small", "--emb_dim", "0", AT_LEAST_1),
    ("small", "--max_train_samples", "-1", AT_LEAST_1),
    ("small", "--max_dev_samples", "0", AT_LEAST_1),
    ("small", "--max_epoch", "0", AT_LEAST_1),
    ("teacher", "--max_steps", "0", AT_LEAST_1),
    ("small", "--lr", "0", POSITIVE),
    ("teacher", "--lr", "-0.00003", POSITIVE),
    ("small", "--lr", "nan", POSITIVE),
    ("small", "--seed", "-1", "must be an integer in [0, 4294967294]"),
    ("small", "--rho", "1", "must be a number in (0, 1)"),
    ("small", "--rho", "0", "must be a number in (0, 1)"),
    ("small", "--max_vocab_size", "0", AT_LEAST_1),
    ("small", "--min_freq", "0", AT_LEAST_1),
    ("small", "--batch_size", "2.5", "'2.5' is not an integer"),
    ("teacher", "--warmup_proportion", "1", IN_0_1_OPEN),
    ("teacher", "--warmup_proportion", "-0.1", IN_0_1_OPEN),
    ("teacher", "--weight_decay", "-0.01", "must be a number >= 0"),
    ("distill", "--teacher_batch_size", "0", AT_LEAST_1),
    ("distill", "--teacher_batch_size", "-5", AT_LEAST_1),
    ("distill", "--n_iter", "-3", AT_LEAST_0),
    ("distill", "--p_mask", "1.5", IN_0_1),
    ("distill", "--p_mask", "-0.5", IN_0_1),
    ("distill", "--p_pos", "2", IN_0_1),
    ("distill", "--p_ng", "inf", IN_0_1),
    ("distill", "--ngram_min", "0", AT_LEAST_1),
    ("distill", "--ngram_max", "0", AT_LEAST_1),
    ("distill", "--alpha", "2", IN_0_1),
    ("distill", "--temperature", "0", POSITIVE),
    ("distill", "--num_workers", "-1", AT_LEAST_0),
    ("export", "--max_seq_length", "0", "must be an integer >= 3"),
    ("predict", "--batch_size", "0", AT_LEAST_1),
    ("benchmark", "--num_sentences", "0", AT_LEAST_1),
    ("benchmark", "--latency_sentences", "0", AT_LEAST_1),
    ("benchmark", "--batch_size", "-1", AT_LEAST_1),
    ("benchmark", "--n_iter", "-1", AT_LEAST_0),
    ("benchmark", "--max_seq_length", "2", "must be an integer >= 3"),
    ("demo_data", "--n_train", "0", AT_LEAST_1),
    ("demo_data", "--n_dev", "-1", AT_LEAST_1),
]


@pytest.mark.parametrize("script, flag, value, allowed", FLAG_CASES,
                         ids=[f"{script}{flag}={value}" for script, flag, value, _ in FLAG_CASES])
def test_flag_out_of_range_is_refused_at_parse_time(capsys, flags, script, flag, value, allowed):
    fails_cleanly(capsys, MAINS[script], flags[script] + [flag, value], f"error: argument {flag}: ", allowed)


def test_ngram_range_must_not_be_reversed(capsys, flags):
    fails_cleanly(capsys, bert_distill.main, flags["distill"] + ["--ngram_min", "3", "--ngram_max", "2"],
                  "--ngram_min must not exceed --ngram_max")


# ---------------------------------------------------------------------------------------------------------------
# The teacher's position embeddings


@pytest.mark.parametrize("script", ["teacher", "distill", "export"])
def test_max_seq_length_beyond_the_teachers_positions(capsys, flags, tiny_bert, monkeypatch, script):
    if script == "distill":  # its teacher directory is checked before any work
        monkeypatch.setattr(data, "load_examples", lambda *a, **k: pytest.fail("data loaded before the check"))
    fails_cleanly(capsys, MAINS[script], flags[script] + ["--max_seq_length", "257"], "--max_seq_length 257",
                  "at most 256 tokens", tiny_bert)
    assert not os.path.exists(flags["distill"][flags["distill"].index("--cache_dir") + 1])


@pytest.mark.parametrize("config, limit", [
    ({"model_type": "bert", "max_position_embeddings": 512, "pad_token_id": 0}, 512),
    ({"model_type": "bert", "max_position_embeddings": 512, "pad_token_id": 1}, 512),  # multilingual-e5
    ({"model_type": "mpnet", "max_position_embeddings": 514, "pad_token_id": 1}, 512),  # all-mpnet-base-v2
    ({"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}, 512),
    ({"model_type": "xlm-roberta", "max_position_embeddings": 514, "pad_token_id": 1}, 512),
    ({"model_type": "ernie", "max_position_embeddings": 2048, "pad_token_id": 0}, 2048),
], ids=["bert", "bert-pad-1", "mpnet", "roberta", "xlm-roberta", "ernie"])
def test_teacher_length_limit_per_family(config, limit):
    model.check_teacher_length(config, limit, "--teacher_dir t")
    with pytest.raises(UserError, match=f"--max_seq_length {limit + 1}: .* at most {limit} tokens"):
        model.check_teacher_length(config, limit + 1, "--teacher_dir t")
    model.check_teacher_length({}, 10 ** 6, "--teacher_dir t")  # a config without the size: nothing to check
