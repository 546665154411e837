"""Triage on real failures: the corpus's shape, the metric formats real frameworks print, honest verdicts
(`unknown`, never a false `healthy`), the root kind first, stdin and --explain, the prose classifier, and
the diff against the last healthy run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter, defaultdict

import pytest

from evolve.triage import KINDS, corpus, load_playbook, prose, triage, triage_text
from evolve.triage.scan import scan_text
from tests.conftest import ROOT

BOOK = load_playbook()


# ------------------------------------------------------------------------------------------ the corpus

def test_the_corpus_has_200_cases_modelled_on_threads_and_a_third_prose():
    cases = corpus.load()
    assert len(cases) >= 200
    per_kind = Counter(c.kind for c in cases)
    assert set(per_kind) == set(KINDS) - {"unknown"}
    thin = {k: n for k, n in per_kind.items() if n < 8}
    assert not thin, f"kinds with fewer than 8 cases: {thin}"
    prose_share = sum(c.form == "prose" for c in cases) / len(cases)
    assert 0.28 <= prose_share <= 0.45
    assert all(c.url.startswith("https://github.com/") for c in cases)


def test_the_halves_are_split_by_thread_and_each_case_sits_in_its_threads_half():
    halves = defaultdict(set)
    for c in corpus.load():
        assert c.split == corpus.split_of(c.url), f"{c.name} is in {c.split}, its thread belongs in the other half"
        halves[c.split].add(c.url)
    assert halves["dev"] and halves["test"] and not halves["dev"] & halves["test"]


def test_a_case_file_with_an_unknown_key_or_kind_is_refused(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("url: https://github.com/a/b/issues/1\nframework: trl\nkind: oom\nform: log\ntext: x\n")
    with pytest.raises(ValueError, match="kind 'oom' is not in the vocabulary"):
        corpus.read_case(bad)
    bad.write_text("url: https://github.com/a/b/issues/1\nframework: trl\nkind: crash\nform: log\ntext: x\nlabel: y\n")
    with pytest.raises(ValueError, match="unknown keys"):
        corpus.read_case(bad)


def test_place_moves_a_new_case_into_its_threads_half(tmp_path):
    new = tmp_path / "new.yaml"
    new.write_text("url: https://github.com/a/b/issues/7\nframework: trl\nkind: crash\nform: log\ntext: boom\n")
    moved = corpus.place([new], root=tmp_path)
    half = corpus.split_of("https://github.com/a/b/issues/7")
    assert moved[half] == 1 and (tmp_path / half / "new.yaml").is_file() and not new.exists()


# ------------------------------------------------------------------------------------------ metric formats

@pytest.mark.parametrize("text,key,nonfinite", [
    ('{"loss": 0.3, "kl": NaN, "step": 5}\n{"loss": 0.3, "kl": 0.1}\n', "kl", 1),  # ms-swift JSON lines
    ("{'loss': 0.53, 'grad_norm': nan, 'learning_rate': 1e-06, 'epoch': 0.1}\n" * 2, "grad_norm", 2),  # HF/TRL
    ("step:3 - actor/pg_loss:-inf - actor/grad_norm:0.5\nstep:4 - actor/pg_loss:0.1\n", "actor/pg_loss", 1),  # verl
    ("loss=inf grad_norm=0.1\nloss=0.3\n", "loss", 1),  # key=value
    (" 12%|█▏  | 12/100 [00:10<01:10, 1.2it/s, loss=nan, reward=0.1]\n loss=0.2\n", "loss", 1),  # tqdm postfix
    ("loss: -inf\nloss: 0.5\n", "loss", 1),  # key: value
    ("{'loss': np.float64(nan), 'grad_norm': 0.2}\n{'loss': 0.1}\n", "loss", 1),  # numpy reprs
    ("Step,run-7 - train/loss,run-7 - train/loss__MIN\n1,0.5,0.4\n2,NaN,0.3\n3,0.2,0.1\n", "train/loss", 1),  # W&B
    (",step,loss\n0,1,0.5\n1,2,nan\n", "loss", 1),  # pandas to_csv: an unnamed index column
    ("step    loss     reward\n10      0.53     0.1\n20      nan      0.0\n", "loss", 1),  # whitespace-aligned
    ("step\tloss\n1\t0.5\n2\tinf\n", "loss", 1),  # tab-separated
    ("| step | loss |\n|------|------|\n| 1 | 0.5 |\n| 2 | nan |\n", "loss", 1),  # markdown table
    ("Epoch 1. Mean loss: 0.412.\nEpoch 2. Mean loss: nan.\n", "loss", 1),  # a value ends the sentence
    ("Step  Training Loss  Validation Loss\n10    0.61           0.70\n20    nan            0.72\n", "loss", 1),  # HF
    ("        learner_stats:\n          kl: 0.01874\n        learner_stats:\n          kl: .inf\n"
     "          kl: .nan\n          kl: -.inf\n", "kl", 3),  # YAML's spellings: RLlib's results
    ("kl: 0.02\nkl: .inf\nkl: 0.03\nkl: 0.04\n", "kl", 1),  # ... one among numbers of the same shape
])
def test_real_metric_formats_become_series_with_their_non_finite_values(text, key, nonfinite):
    scan = BOOK.scanner()
    scan_text(scan, text)
    assert key in scan.series, sorted(scan.series)
    s = scan.series[key]
    assert s.nonfinite == nonfinite and s.n + s.nonfinite >= 2


def test_a_csv_table_ends_at_the_first_line_that_is_not_a_row():
    scan = BOOK.scanner()
    scan_text(scan, "Step,train/loss\n1,0.5\n2,0.4\nthen the loss went nan\n3,0.9\n")
    assert scan.series["train/loss"].n == 2


def test_a_sentence_is_no_table_header_and_a_version_is_no_value():
    scan = BOOK.scanner()
    scan_text(scan, "the loss and reward look fine\n1 2 3 4 5 6\nloss 1.2.3 reward v0.4.1\n")
    assert "loss" not in scan.series and "reward" not in scan.series, sorted(scan.series)


def test_a_reward_that_never_moves_is_reward_collapse():
    """`constant`: every value within `value` of every other; a reward pinned at any level gives GRPO
    zero advantages."""
    log = "".join(f"{{'loss': {0.01 * (i % 3):.3f}, 'reward': 0.25, 'kl': {0.001 * i:.4f}}}\n" for i in range(12))
    d = triage_text(log)
    assert d.kind == "reward_collapse" and "stayed at 0.25" in d.evidence[0].text, (d.kind, d.evidence)


def test_a_tensorboard_csv_takes_its_metric_from_the_file_name(tmp_path):
    """TensorBoard's download has no key in its header (`Wall time,Step,Value`); the tag is in the file
    name, with `/` written as `_`."""
    rows = "".join(f"17000{i:03d}.5,{i * 10},{0.01 * 1.6 ** i:.6g}\n" for i in range(30))
    log = tmp_path / "run-grpo_7b-tag-train_kl.csv"
    log.write_text("Wall time,Step,Value\n" + rows)
    d = triage(log)
    assert d.kind == "kl_blowup" and "train/kl" in d.evidence[0].text, (d.kind, d.evidence)
    plain = tmp_path / "run-x-tag-train_loss.csv"
    plain.write_text("Wall time,Step,Value\n" + "".join(f"17000{i}.5,{i},{0.5 - i / 100}\n" for i in range(9)))
    assert triage(plain).kind != "timeout"  # `Wall time` in a header is not a wall-clock limit


def test_a_reward_spread_that_narrows_is_no_quality_that_fell():
    """Regression: a healthy TRL run (reward up, rewards/correctness/std down as the policy got consistent)
    was called reward_hacking, and the rules brain 'fixed' it with a KL penalty."""
    log = "".join(f"{{'reward': '{0.75 + i / 100:.3f}', 'rewards/correctness/mean': '{0.7 + i / 100:.3f}', "
                  f"'rewards/correctness/std': '{0.46 - i / 100:.3f}'}}\n" for i in range(8))
    log += "{'train_runtime': '46.17', 'train_loss': '-0.0017', 'epoch': '0.5'}\n"
    assert triage_text(log).kind == "healthy"


def test_nan_in_a_json_metrics_line_is_nan_loss():
    log = "\n".join(json.dumps({"loss": 0.4 - i / 100, "grad_norm": 1.0, "step": i}) for i in range(5))
    log += '\n{"loss": NaN, "grad_norm": NaN, "step": 5}\n'
    assert triage_text(log).kind == "nan_loss"


# ------------------------------------------------------------------------------------------ honest verdicts

def test_an_error_that_nothing_explains_is_unknown_with_the_lines_as_evidence():
    d = triage_text("epoch 1 ok\nepoch 2 ok\nERROR flux capacitor misaligned on node 3\n")
    assert d.kind == "unknown" and d.kind != "healthy"
    assert any("flux capacitor" in e.text for e in d.evidence)


def test_healthy_needs_a_clean_finish_marker_and_no_symptom():
    done = "{'train_runtime': 812.3, 'train_samples_per_second': 3.1, 'train_loss': 0.41, 'epoch': 3.0}\n"
    assert triage_text(done).kind == "healthy"
    assert triage_text("epoch 1\nepoch 2\n").kind == "unknown"  # silence is not health
    assert triage_text(done + "RuntimeError: the reward server crashed\n").kind != "healthy"


SHUTDOWN = """Traceback (most recent call last):
  File "/usr/lib/python3.10/multiprocessing/queues.py", line 244, in _feed
    send_bytes(obj)
  File "/usr/lib/python3.10/multiprocessing/connection.py", line 200, in send_bytes
    self._send_bytes(m[offset:offset + size])
BrokenPipeError: [Errno 32] Broken pipe
"""


def test_an_inferred_crash_is_never_as_sure_as_a_verdict_the_run_wrote():
    """1.0 is reserved for a run's own verdict: a crash read from many strong lines still stays below it."""
    log = "".join(f"Segmentation fault (core dumped)\nFatal Python error: Aborted\nTraceback (most recent call last):\n"
                  f"RuntimeError: CUDA error: an illegal memory access was encountered {i}\n" for i in range(20))
    d = triage_text(log)
    assert d.kind == "crash" and d.confidence < 1.0, (d.kind, d.confidence)


def test_a_closed_pipe_traceback_after_the_finish_marker_is_shutdown_noise_but_not_before_it():
    finish = "epoch 30/30 loss=0.081 acc=0.972\nsaving model to out/final.pt ... done\nTraining completed.\n"
    d = triage_text(finish + SHUTDOWN)
    assert d.kind == "healthy", d.explain
    assert any("shutdown traceback" in line for line in d.explain)
    assert triage_text(SHUTDOWN + finish).kind != "healthy"  # a traceback before the finish is the run's own
    crashed = SHUTDOWN.replace("multiprocessing/queues.py", "site-packages/trl/trainer/grpo_trainer.py")
    assert triage_text(finish + crashed).kind != "healthy"  # a frame outside the plumbing: the run's own
    assert triage_text(finish + SHUTDOWN.replace("BrokenPipeError: [Errno 32] Broken pipe",
                                                 "ValueError: bad value")).kind != "healthy"


POOL_DEL = """Exception ignored in: <function Pool.__del__ at 0x7f3c2a1b9e50>
Traceback (most recent call last):
  File "/usr/lib/python3.10/multiprocessing/pool.py", line 268, in __del__
    self._change_notifier.put(None)
  File "/usr/lib/python3.10/multiprocessing/queues.py", line 377, in put
    self._writer.send_bytes(obj)
OSError: [Errno 9] Bad file descriptor
Exception ignored in sys.unraisablehook: <built-in function unraisablehook>
"""


def test_a_pools_unraisable_del_after_the_finish_marker_is_shutdown_noise_its_errno_and_hook_line_too():
    """Python prints what a `__del__` raised and carries on (`Exception ignored in: ...`); a closed pipe there,
    spelt `OSError: [Errno 9]`, says nothing of the training, nor does the hook's own note after it."""
    finish = "step 113 pg_loss -0.0063 reward 0.742\nSaving checkpoint to ckpt/global_step_113\nTraining finished.\n"
    d = triage_text(finish + POOL_DEL)
    assert d.kind == "healthy", d.explain
    assert not any("Exception ignored" in e.text for e in d.evidence)
    assert triage_text(POOL_DEL + finish).kind != "healthy"
    assert triage_text(finish + POOL_DEL.replace("[Errno 9] Bad file descriptor", "[Errno 5] Input/output error")
                       ).kind != "healthy"  # not a closed pipe: an I/O error is the run's own


CANCELLED = ("Exception in thread Thread-3:\nTraceback (most recent call last):\n"
             '  File "/opt/py/lib/python3.8/threading.py", line 932, in _bootstrap_inner\n    self.run()\n'
             '  File "/opt/app/train_loop.py", line 61, in feed\n    sess.run(enqueue_op, feed_dict=batch)\n'
             "tensorflow.python.framework.errors_impl.CancelledError: Enqueue operation was cancelled\n"
             "\t [[node input_queue_enqueue (defined at /opt/app/train_loop.py:40) ]]\n")


def test_a_cancelled_thread_after_the_finish_marker_is_shutdown_noise_but_not_before_it_or_with_an_error():
    finish = "step 90000 loss 0.0021\nstep 100000 loss 0.0019\nTraining completed.\n"
    d = triage_text(finish + CANCELLED + "saved the last snapshot in models/\n")
    assert d.kind == "healthy", d.explain
    assert any("cancelled thread" in line for line in d.explain)
    assert triage_text(CANCELLED + finish).kind != "healthy"  # cancelled before the finish: the run's own
    assert triage_text(finish + CANCELLED.replace("Exception in thread Thread-3:\n", "")).kind != "healthy"
    assert triage_text(finish + CANCELLED + "RuntimeError: the session was closed\n").kind != "healthy"
    assert triage_text(finish + CANCELLED.replace("CancelledError", "ResourceExhaustedError")).kind != "healthy"


def test_a_reward_models_score_that_moves_below_zero_is_a_signal_but_one_that_stays_at_zero_is_none():
    def chat(scores: list[float]) -> str:  # DeepSpeed-Chat's step 3
        steps = "".join(f"epoch: 0|step: {i}|ppo_ep: 1|act_loss: 0.0{i}|cri_loss: 0.08\naverage reward score: {r}\n"
                        for i, r in enumerate(scores))
        return steps + "saving model ...\n[launch.py:347:main] Process 184201 exits successfully.\n"
    d = triage_text(chat([-0.4873, -0.4602, -0.4719, -0.4655]))
    assert d.kind == "healthy", d.explain
    assert triage_text(chat([0.0, 0.0, 0.0, 0.0])).kind == "reward_collapse"
    assert triage_text(chat([-1.0, -1.0, -1.0, -1.0])).kind == "reward_collapse"  # one penalty for everything


def test_a_worried_question_under_two_finish_markers_is_healthy_but_an_error_line_is_not():
    log = ("Epoch 9: 100%|##########| 800/800 [03:10<00:00,  4.20it/s, loss=0.212]\n"
           "`Trainer.fit` stopped: `max_epochs=10` reached.\nTraining finished, writing the final report\n")
    worried = "training stops after epoch 9 and prints this, did something crash? i expected more epochs\n\n"
    d = triage_text(worried + log)
    assert d.kind == "healthy" and d.confidence <= 0.7, d.explain
    assert triage_text(worried + log + "RuntimeError: CUDA error: an illegal memory access\n").kind != "healthy"
    weak = log.splitlines(keepends=True)[0]  # one full progress bar is too little to overrule the user's words
    assert triage_text(worried + weak).kind != "healthy"


def test_the_root_kind_comes_first_and_the_timeout_it_caused_is_listed():
    log = ("[rank2]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 2 has a total "
           "capacity of 79.1 GiB of which 1.2 GiB is free.\n"
           + "[rank0]:[E ProcessGroupNCCL.cpp:616] [Rank 0] Watchdog caught collective operation timeout: "
             "WorkNCCL(SeqNum=812, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600071 "
             "milliseconds before timing out.\n" * 3)
    d = triage_text(log)
    assert d.kind == "cuda_oom" and "dist_timeout" in d.also


def _verl(steps, loss, kl):
    return [f"step:{i} - actor/pg_loss:{loss(i)} - actor/ppo_kl:{kl(i)} - critic/score/mean:"
            f"{0.4 + i / 100 if loss(i) != 'nan' else 'nan'}" for i in steps]


def _tqdm(steps, loss, kl):
    return [f"Episode [1/1]:  {i}%|  | {i}/272 [1:00:00<2:00:00, 176.40s/it, policy_loss={loss(i)}, kl={kl(i)}, "
            f"reward={0.5 + i / 100 if loss(i) != 'nan' else 0}]" for i in steps]


def test_a_kl_that_grew_before_the_loss_went_nan_is_the_root_but_a_kl_nan_on_the_same_step_is_not():
    nan = "nan".format
    grew = _verl(range(7), lambda i: 0.3, lambda i: round(0.01 * 4 ** i, 3)) + _verl([7, 8], nan, nan)
    d = triage_text("\n".join(grew))
    assert d.kind == "kl_blowup" and "nan_loss" in d.also  # the NaN scores higher, but came after the growth
    # a KL that is NaN only from the step the loss is: both come from the same NaN, which is the root
    same = _tqdm(range(6), lambda i: 0.013, lambda i: 0.004) + _tqdm(range(6, 9), nan, nan)
    d = triage_text("\n".join(same))
    assert d.kind == "nan_loss" and "kl_blowup" in d.also


def test_a_report_in_prose_is_understood():
    d = triage_text("most tokens are routed to the same expert after a few hundred steps, the other experts get "
                    "almost nothing")
    assert d.kind == "router_collapse" and d.confidence < 0.99


def test_the_classifier_ships_and_is_small_and_never_beats_a_hard_signature():
    model = prose.load()
    assert model is not None and (ROOT / "playbooks" / "triage_prose.json").stat().st_size < 2 << 20
    assert {"cuda_oom", "router_collapse", "healthy"} <= set(model.classes)
    d = triage_text("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.00 GiB\n"
                    "most tokens are routed to the same expert")
    assert d.kind == "cuda_oom"


def test_the_packed_weights_file_loads_to_the_weights_trained(tmp_path):
    model = {"classes": ["a", "b"], "bias": [0.1, -0.1],
             "weights": {"w:loss": [[0, 0.123], [1, -2.5]], "c:nan": [[1, 0.1]], "b:x y": [[0, -0.007]]}}
    path = tmp_path / "prose.json"
    path.write_text(json.dumps(prose.pack(model)))
    loaded = prose.load.__wrapped__(path)
    assert loaded.weights == model["weights"] and loaded.classes == ["a", "b"] and loaded.bias == [0.1, -0.1]
    assert json.loads(path.read_text())["weights"]["w:loss"] == [0, 123, 1, -2500]


def test_the_classifier_reads_a_long_line_of_a_report_to_its_end():
    """Evidence keeps an excerpt of each line, but the classifier was trained on whole texts: a report written
    as one long paragraph must reach it whole (it once read only the first 300 characters of each line)."""
    from evolve.triage.scan import EXCERPT
    from evolve.triage.weigh import classifier_text

    words = "I ran the recipe unchanged on eight cards and the numbers look like this for a while " * 8
    report = words + "and then most tokens are routed to the same expert, the other experts get almost nothing."
    assert len(report) > 2 * EXCERPT
    scan = BOOK.scanner()
    scan_text(scan, report, "<report>")
    assert classifier_text(scan).strip() == report
    long_log = "\n".join(f"step {i} loss 0.5" for i in range(1000))
    scan = BOOK.scanner()
    scan_text(scan, long_log, "<log>")
    text = classifier_text(scan)
    assert text.startswith("step 0 loss 0.5") and text.endswith("step 999 loss 0.5") and len(text) < len(long_log)


def test_words_alone_never_claim_more_than_the_prose_cap():
    from evolve.triage.weigh import PROSE_CAP
    for case in corpus.load("dev")[:40]:
        d = triage_text(case.text, BOOK)
        decided_by_words = all(e.source == "classifier" for e in d.evidence)
        if d.evidence and decided_by_words:
            assert d.confidence <= PROSE_CAP


# ------------------------------------------------------------------------------------------ input, output

def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evolve", "triage", *args], input=stdin, capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def test_a_report_pasted_on_stdin_is_triaged_and_explained():
    r = _cli("-", "--explain", stdin="CUDA out of memory regardless of batch size, even with batch size 1\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("kind: cuda_oom") and "\nwhy:\n" in r.stdout


def test_json_output_carries_also_explain_and_candidates():
    r = _cli("-", "--json", stdin="[Errno 28] No space left on device while saving checkpoint-500\n")
    d = json.loads(r.stdout)
    assert d["kind"] == "disk_full" and d["explain"] and d["candidates"][0] == "disk_full" and "also" in d


def test_bad_triage_flags_are_one_line_errors(tmp_path):
    r = _cli("-", "--model-url", "http://localhost:1/v1", stdin="x")
    assert r.returncode == 2 and "--model-url and --model go together" in r.stderr and "Traceback" not in r.stderr
    r = _cli("-", "--baseline", str(tmp_path / "missing"), stdin="x")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------ the diff

def test_the_diff_against_a_healthy_run_points_at_the_new_lines_and_metrics(tmp_path):
    healthy, failed = tmp_path / "healthy", tmp_path / "failed"
    healthy.mkdir()
    failed.mkdir()
    banner = "".join(f"[INFO] loading shard {i} of 8\nWARNING: deprecated flag --foo\n" for i in range(8))
    (healthy / "stdout.log").write_text(banner + "".join(f"step {i} loss: {1 - i / 50:.3f}\n" for i in range(20)))
    (failed / "stdout.log").write_text(banner + "".join(f"step {i} loss: {1 - i / 50:.3f}\n" for i in range(9))
                                       + "step 9 loss: nan\nERROR worker 3 lost its heartbeat to the store\n")
    d = triage(str(failed), baseline=str(healthy))
    assert d.diff["baseline"] == str(healthy)
    texts = [e["text"] for e in d.diff["new_lines"]]
    assert any("heartbeat" in t for t in texts) and not any("loading shard" in t for t in texts)
    assert any(m.startswith("loss:") and "non-finite" in m for m in d.diff["metrics"])


# ------------------------------------------------------------------------------------------ the figure

def test_the_published_accuracy_holds_and_no_failure_is_called_healthy():
    """The README's figure (benchmarks/triage_accuracy.py on the test half) must not quietly get worse."""
    results = [(c, triage_text(c.text, BOOK, c.name)) for c in corpus.load("test")]
    right = sum(c.kind == d.kind for c, d in results) / len(results)
    assert right >= 0.88, f"test-half accuracy fell to {right:.1%} (published: 90.2%)"
    assert not [c.name for c, d in results if d.kind == "healthy" and c.kind != "healthy"]


def test_words_never_turn_a_plain_log_line_or_malformed_output_into_a_failure(tmp_path):
    assert triage_text("step 10 loss 0.5\n").kind == "unknown"
    run = tmp_path / "run"
    run.mkdir()
    (run / "status.json").write_text("[1]")
    (run / "stdout.log").write_text("step 10 loss 0.5\n")
    assert triage(str(run)).kind == "crash"


@pytest.mark.parametrize("report", [
    "The loss just freezes at 0.693 and does not move.",
    "loss stops decreasing after 2 hours of training",
    "my loss is stuck at 2.3 from the start, is this normal?",
    "the loss doesn't decrease at all",
])
def test_a_report_of_a_run_that_does_not_learn_is_never_healthy(report):
    """Regression: the classifier's `healthy` (p 0.42-0.67) and a `loss ... decreasing` finish signature
    called these healthy. No kind explains a loss that does not move, so the answer is unknown."""
    assert triage_text(report).kind != "healthy"


class _SaysRewardCollapse:
    """A classifier stand-in with the weak guess the shipped one gave a real healthy TRL run (p=0.17)."""

    def predict(self, text):
        return [("reward_collapse", 0.17), ("entropy_collapse", 0.17), ("healthy", 0.15)]

    def words_for(self, text, kind, n=6):
        return [("reward", 1.0)]


def test_words_alone_do_not_overrule_a_finish_marker_in_a_log_with_progress_bars():
    """Regression (TRL quickstart, round 3): a tqdm bar's `[00:00<?, ?it/s]` and a torch warning's "won't"
    made the run's log read as a user's question, so a p=0.17 guess beat TRL's `train_runtime` finish."""
    from evolve.triage.weigh import _REPORT
    assert not _REPORT.search("Loading weights:   0%|          | 0/39 [00:00<?, ?it/s]")
    assert _REPORT.search("is this normal?") and _REPORT.search("这样正常吗？")
    book = load_playbook()
    book.words = _SaysRewardCollapse()
    log = ("Loading weights:   0%|          | 0/39 [00:00<?, ?it/s]\n"
           + "".join(f"{{'loss': 0.01, 'reward': {0.7 + (i % 3) / 20:.2f}, 'kl': 0.001}}\n" for i in range(6))
           + "UserWarning: no accelerator is found, then device pinned memory won't be used.\n"
           + "{'train_runtime': '46.17', 'train_samples_per_second': 2.1, 'train_loss': '0.01', 'epoch': '1.0'}\n")
    assert triage_text(log, book).kind == "healthy"


def test_a_sentence_wrapped_over_two_lines_meets_its_signature_and_the_classifier_reads_the_report_once():
    from evolve.triage import targets
    from evolve.triage.weigh import classifier_text

    report = "Training GRPO on gsm8k for 300 steps now and the reward\nnever moves off zero at all.\n"
    assert triage_text(report).kind == "reward_collapse"
    scan = load_playbook().scanner()
    scan_text(scan, report)
    targets._unwrapped(scan, report, "<text>")
    assert classifier_text(scan) == report  # the joined copy is for the signatures only
    assert triage_text(report.replace("\n", " ", 1)).kind == "reward_collapse"


def test_kl_under_other_loggers_names_is_read_and_trls_sequence_kl_has_its_own_scale():
    """CleanRL's losses/approx_kl and verl's actor/ppo_kl are the per-token estimates the KL rules know as approx_kl;
    TRL PPO's objective/kl sums over a response's tokens, so a healthy 3-6 is no blow-up but growing tenfold is."""
    clean = "".join(f"global_step={i} losses/approx_kl={v} charts/episodic_return={r}\n"
                    for i, (v, r) in enumerate([(0.004, 12), (0.9, 10), (3.7, 4)], 1))
    assert triage_text(clean).kind == "kl_blowup"

    def trl(kls: list[float]) -> str:
        return "".join(f"{{'objective/kl': {k}, 'objective/entropy': 40.1, 'ppo/mean_scores': 0.{i + 3}}}\n"
                       for i, k in enumerate(kls))
    assert triage_text(trl([0.041, 0.19, 0.70, 1.95])).kind == "kl_blowup"
    assert triage_text(trl([3.1, 4.4, 5.2, 5.9])).kind != "kl_blowup"  # the adaptive controller's target is 6


@pytest.mark.parametrize("report", [
    "GRPO on Qwen2.5-7B with beta=0.04. After about 300 steps the kl reaches 50 and the completions turn into garbage.",
    "After 1 epoch the KL between policy and ref is around 40, which seems way too big",
    "The kl metric in wandb shoots to 1e4 at step 800 and the model outputs repeated tokens.",
    "KL went through the roof after we switched to bf16.",
    "Why does the KL increase so fast in DPO? by epoch 2 it is at 30",
    "Why does ref_kl keep increasing? it is now 12 and the model repeats itself",
    "训练到 200 步 kl 直接飙到 30 多，配置是 beta=0.0",
    "The kl loss is increasing continuously from 0 to 4 during GRPO training, is the model broken?",
])
def test_a_kl_told_at_a_size_or_soaring_in_other_words_is_kl_blowup_never_healthy(report):
    """Each was `unknown` or, worse, `healthy` before (the last at 0.9: a healthy rule for GRPO's loss near 0 read
    the KL loss rising "from 0")."""
    assert triage_text(report).kind == "kl_blowup"


def test_a_kl_coefficient_or_a_reward_that_climbs_beside_the_kl_is_no_blowup():
    for report in ["I set kl_coef to 10 and the reward barely moves",
                   "we trained for 30 epochs with kl penalty beta 0.05 and it went fine"]:
        assert triage_text(report).kind != "kl_blowup"
    signature = [s for s in BOOK.kinds["kl_blowup"]["signatures"] if "through the roof" in s["regex"]]
    assert signature and not re.search(signature[0]["regex"], "kl reaches 0.1 after 1000 steps and the reward keeps "
                                                              "climbing")


def test_a_grad_norm_logged_above_max_grad_norm_is_the_norm_before_clipping_not_an_explosion():
    asked = ("My logged grad_norm is 3-5 on most steps even though I set max_grad_norm=1.0. "
             "Is gradient clipping not working?")
    assert triage_text(asked).kind == "healthy"
    exploding = "grad_norm spikes above 100 although I set max_grad_norm=1, training diverges"
    assert triage_text(exploding).kind == "grad_explosion"
