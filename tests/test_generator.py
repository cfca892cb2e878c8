"""--generator learned: L2A's learned generator starts as P_s draw for draw, learns towards the copies the policy
keeps and away from those it drops, draws each epoch's copies anew, and a run resumes exactly."""
import json
import os
import signal

import numpy as np
import paddle
from conftest import STUDENT_FAST, data_flags, english_examples, fails_cleanly
from resumed_runs import assert_same_run, interrupt_at, run_interrupted

import bert_distill
import data
import distillation
import generator as generators
from args import AugmentConfig, GeneratorConfig
from augment import build_transfer_set, edit_distance_probabilities, embedding_neighbours, l2a_sentence

WORDS = [f"w{i}" for i in range(6)]
SENTENCE = [(word, (word,)) for word in WORDS]


class WholeWords:
    @staticmethod
    def pieces(word):
        return (word,)


def toy_generator(lr=0.05, tau=0.1):
    """A generator over a six-word sentence whose every word has two candidates of equal score, keep_<word> and
    drop_<word>, and one with three of unequal scores."""
    replacements = {word: ([f"keep_{word}", f"drop_{word}"], np.array([0.5, 0.5], "float32")) for word in WORDS}
    replacements["w5"] = (["keep_w5", "drop_w5", "other_w5"], np.array([0.9, 0.5, 0.1], "float32"))
    augment_config = AugmentConfig(augment="l2a", n_iter=1, edit_alpha=2.0, replace_temperature=0.5)
    return generators.LearnedGenerator(replacements, GeneratorConfig("learned", lr, tau), augment_config), \
        augment_config


def draw(generator, augment_config, epoch, count, seed=0):
    """count (copy, trace) of SENTENCE from the generator's draws of the epoch."""
    draws = generator.draws(epoch)
    rng = np.random.default_rng(seed)
    return [l2a_sentence(SENTENCE, rng, augment_config, draws.replacements, WholeWords, draws.edit_bias)
            for _ in range(count)]


def test_the_generator_starts_as_p_s_draw_for_draw():
    generator, augment_config = toy_generator()
    learned = draw(generator, augment_config, 0, 2000)
    rng = np.random.default_rng(0)
    fixed = [l2a_sentence(SENTENCE, rng, augment_config, generator.replacements, WholeWords) for _ in range(2000)]
    assert learned == fixed
    np.testing.assert_allclose(generator.log_ratios([(trace,) for _, trace in learned]).numpy(), 0, atol=1e-6)
    # ... so its frequencies are P_s's: the edit distance's, and the replacement's exp(score / T)
    distances = np.bincount([trace[1] for _, trace in learned], minlength=7)[1:] / len(learned)
    np.testing.assert_allclose(distances, edit_distance_probabilities(6, 2.0), atol=0.03)
    w5 = [copy[5][0] for copy, _ in learned if copy[5][0] != "w5"]
    expected = np.exp(np.array([0.9, 0.5, 0.1]) / 0.5)
    frequencies = [w5.count(word) / len(w5) for word in ("keep_w5", "drop_w5", "other_w5")]
    np.testing.assert_allclose(frequencies, expected / expected.sum(), atol=0.05)


def keep_probability(trace):
    """The toy policy: keeps a copy that replaced one word by its keep_ candidate, drops every other."""
    _, d, choices = trace
    return float(d == 1 and all(k == 0 for _, k in choices))


def test_learning_moves_the_generator_towards_what_the_policy_keeps():
    generator, augment_config = toy_generator()
    start = edit_distance_probabilities(6, 2.0)
    for episode in range(40):  # each episode on fresh draws of the generator as it is, as epochs do
        drawn = draw(generator, augment_config, episode, 64, seed=episode)
        generator.learn([(trace,) for _, trace in drawn], [keep_probability(trace) for _, trace in drawn])
    edit_bias, word_bias = generator.biases.edit.numpy(), generator.biases.word.numpy()
    now = edit_distance_probabilities(6, 2.0, edit_bias)
    assert now[0] > start[0] + 0.2  # one edit, what the policy keeps, is more likely than under P_s
    column = {word: i for i, word in enumerate(generator.words)}
    for word in WORDS[:5]:  # the keep_ candidates gained over the drop_ ones, from even
        assert word_bias[column[f"keep_{word}"]] - word_bias[column[f"drop_{word}"]] > 0.5
    kept_before = np.mean([keep_probability(trace) for _, trace in draw(toy_generator()[0], augment_config, 0, 2000)])
    kept_now = np.mean([keep_probability(trace) for _, trace in draw(generator, augment_config, 99, 2000)])
    assert kept_now > kept_before + 0.15
    assert generator.report()["generator_log_ratio"] > 0.05  # its own draws: log G / P_s, a KL, above 0


def test_an_even_policy_leaves_the_generator_near_p_s():
    generator, augment_config = toy_generator()
    for episode in range(40):
        drawn = draw(generator, augment_config, episode, 64, seed=episode)
        generator.learn([(trace,) for _, trace in drawn], [0.5] * len(drawn))
    assert np.abs(generator.biases.edit.numpy()).max() < 0.5  # noise of 40 steps of 0.05, no drift to a side
    keep_minus_drop = [generator.biases.word.numpy()[generator.words.index(f"keep_{word}")] -
                       generator.biases.word.numpy()[generator.words.index(f"drop_{word}")] for word in WORDS[:5]]
    assert abs(np.mean(keep_minus_drop)) < 0.3


def distill_flags(task_files, tiny_bert, tmp_path):
    return data_flags(task_files, "sst-2") + STUDENT_FAST + [
        "--teacher_dir", tiny_bert, "--augment", "l2a", "--generator", "learned", "--generator_lr", "0.05",
        "--n_iter", "2", "--num_workers", "1", "--max_epoch", "3", "--eval_steps", "6", "--selector", "reinforce",
        "--episode_steps", "2", "--reward_fraction", "0.2", "--cache_dir", str(tmp_path / "cache")]


def test_the_learned_generator_trains_draws_anew_and_resumes_exactly(task_files, tiny_bert, tmp_path,
                                                                      monkeypatch):
    flags = distill_flags(task_files, tiny_bert, tmp_path)
    labelled = []
    original = distillation.cached_teacher_logits
    monkeypatch.setattr(distillation, "cached_teacher_logits",
                        lambda *args, **kwargs: labelled.append(len(args[2])) or original(*args, **kwargs))
    straight = bert_distill.main(flags + ["--output_dir", str(tmp_path / "straight"), "--save_transfer_set"])
    monkeypatch.undo()
    # Every epoch's set: the 128 training examples (160 less the reward split) and 2 copies of each, repeats kept.
    assert labelled == [128 * 3] * 3
    epoch_0 = (tmp_path / "straight" / "transfer_set.tsv").read_text(encoding="utf-8").splitlines()[1:]
    table, = [name for name in os.listdir(tmp_path / "cache") if name.startswith("logits-")]
    assert len(np.load(str(tmp_path / "cache" / table))) > len(set(epoch_0))  # later epochs drew copies epoch 0 did not have
    log = [json.loads(line) for line in (tmp_path / "straight" / "eval_log.jsonl").read_text().splitlines()]
    assert all("generator_log_ratio" in record for record in log)
    saved = paddle.load(str(tmp_path / "straight" / "generator.pdparams"))
    assert np.abs(np.asarray(saved["word"])).max() > 0 and len(saved["words"]) == len(saved["word"])

    interrupted_at = straight["steps"] * 5 // 6 + 1  # mid-epoch 3, mid-episode
    monkeypatch.setattr(distillation, "distill_loss", interrupt_at(interrupted_at, signal.SIGTERM)(
        distillation.distill_loss))
    resumed = flags + ["--output_dir", str(tmp_path / "resumed"), "--save_transfer_set"]
    run_interrupted(bert_distill.main, resumed, expected_step=interrupted_at)
    monkeypatch.undo()
    bert_distill.main(resumed)
    assert_same_run(tmp_path / "resumed", tmp_path / "straight")
    generators_saved = [paddle.load(str(tmp_path / name / "generator.pdparams")) for name in ("straight", "resumed")]
    for key in ("edit", "word"):
        np.testing.assert_array_equal(np.asarray(generators_saved[1][key]), np.asarray(generators_saved[0][key]))


def test_the_learned_generator_takes_no_masked_lm(task_files, tiny_bert, tmp_path, capsys):
    flags = data_flags(task_files, "sst-2") + ["--teacher_dir", tiny_bert, "--augment", "l2a", "--generator",
                                               "learned", "--selector", "reinforce", "--mlm", "some-mlm"]
    fails_cleanly(capsys, bert_distill.main, flags + ["--output_dir", str(tmp_path / "run")],
                  "--generator learned: draws its replacements from the teacher's embedding neighbours")
    assert not os.path.exists(tmp_path / "run")  # (the other combinations: test_bad_input's GATED_CASES)


def test_an_epoch_s_copies_depend_on_the_seed_and_epoch_not_the_workers(tiny_bert):
    tokenizer = data.load_tokenizer(tiny_bert, "--teacher_dir")
    analyzer = data.Analyzer("en", tokenizer)
    rng = np.random.default_rng(0)
    examples = english_examples(40)
    config = AugmentConfig(augment="l2a", n_iter=3, edit_alpha=2.0, replace_temperature=0.5)
    table = embedding_neighbours([tuple(analyzer.sentence(t) for t in ex.texts) for ex in examples], tokenizer,
                                 rng.normal(size=(len(tokenizer), 8)), k=3)
    generator = generators.LearnedGenerator(table, GeneratorConfig("learned"), config)

    def epoch(number, workers):
        return build_transfer_set(examples, analyzer, config, None, 5, workers, learned=generator.draws(number))

    one, two = epoch(1, 1), epoch(1, 2)
    assert one == two and len(one) == 40 * 4  # every draw kept, repeats included
    assert all(example.trace is not None for example in one[40:])
    assert [example.sentences for example in epoch(2, 2)] != [example.sentences for example in one]


def test_at_learning_rate_zero_the_generator_stays_p_s_and_only_redraws(task_files, tiny_bert, tmp_path):
    flags = distill_flags(task_files, tiny_bert, tmp_path)
    flags[flags.index("--generator_lr") + 1] = "0"
    bert_distill.main(flags + ["--output_dir", str(tmp_path / "run"), "--save_transfer_set"])
    saved = paddle.load(str(tmp_path / "run" / "generator.pdparams"))
    assert not np.asarray(saved["edit"]).any() and not np.asarray(saved["word"]).any()
    log = [json.loads(line) for line in (tmp_path / "run" / "eval_log.jsonl").read_text().splitlines()]
    assert all(abs(record["generator_log_ratio"]) < 1e-5 for record in log)  # float32 rounding of log 1
    epoch_0 = (tmp_path / "run" / "transfer_set.tsv").read_text(encoding="utf-8").splitlines()[1:]
    table, = [name for name in os.listdir(tmp_path / "cache") if name.startswith("logits-")]
    assert len(np.load(str(tmp_path / "cache" / table))) > len(set(epoch_0))  # later epochs drew other copies


def test_source_text_is_labelled_copied_and_selected_apart(task_files, tiny_bert, tmp_path, caplog):
    from tasks import TASKS

    train = data.read_split(TASKS["sst-2"], "train", task_files["sst-2"][0], "train")
    source = [" ".join(reversed(example.texts[0].split())) for example in train[:20]]  # a "related domain"
    lines = [text + ("\t1" if i % 2 else "") for i, text in enumerate(source)]  # labelled or not: labels left out
    (tmp_path / "source.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    flags = [f for f in distill_flags(task_files, tiny_bert, tmp_path) if f not in ("--generator", "learned")]
    flags = flags[:flags.index("--generator_lr")] + flags[flags.index("--generator_lr") + 2:]
    bert_distill.main(flags + ["--source_file", str(tmp_path / "source.txt"), "--max_epoch", "1",
                               "--save_transfer_set", "--output_dir", str(tmp_path / "run")])
    rows = [line.split("\t") for line in
            (tmp_path / "run" / "transfer_set.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    texts = [row[0] for row in rows]
    kept_train = len(train) - 32  # the reward split held out
    assert texts[kept_train:kept_train + len(source)] == [data.sentence_text(
        data.Analyzer("en", data.load_tokenizer(tiny_bert, "dir")).sentence(text), "en") for text in source]
    assert all(row[1] == "-1" for row in rows[kept_train:])  # no hard label: the teacher's logits only
    assert len(rows) > kept_train + len(source)  # copies
    log = [json.loads(line) for line in (tmp_path / "run" / "eval_log.jsonl").read_text().splitlines()]
    assert {"keep_rate_train_copy", "keep_rate_source", "keep_rate_source_copy"} <= set(log[-1])
    assert "--source_file: 20 examples (0 left out" in caplog.text
