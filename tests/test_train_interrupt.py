"""Training that survives interruption: Ctrl-C and SIGTERM stop after a whole step and save, a
resumed run lands on the same weights as one that was never stopped, a corrupt checkpoint falls
back to the previous one (or is refused), a changed configuration is refused, and a time budget
stretches the schedule over the clock.

Same weights means bitwise equal here: the resumed process restores everything the arithmetic
depends on (weights, optimiser moments, step and hence learning rate, every random generator,
the data generator's position) and runs the same kernels on the same CPU with the same thread
count, so every operation repeats exactly. Evaluation draws from its own generator and leaves
the training state alone.
"""

import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import TRAIN_CORPUS, single_thread, train_config, train_model  # noqa: F401 (autouse fixture)

from tfcore.checkpoints import CheckpointError, latest_checkpoint, load_checkpoint, previous_path
from tfcore.optim import lr_at, lr_at_time
from tfcore.train import StopRequests, TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
CORPUS, tiny_model = TRAIN_CORPUS, train_model


def tiny_cfg(**overrides):
    """``train_config`` with callbacks after every step (where a stop request is seen)."""
    return train_config(**{"callback_interval": 1, **overrides})



def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def signal_at(step: int, signum: int):
    """A callback that sends this process ``signum`` just before step ``step`` (1-based) begins, as if
    it arrived while that step ran: the loop should finish that step and stop."""

    def callback(state):
        if state.step == step - 1:
            os.kill(os.getpid(), signum)

    return callback


# ----------------------------------------------------------------------------- in a notebook: train() itself


def test_ctrl_c_in_train_stops_after_a_whole_step(capsys):
    """What a learner gets after pressing stop: a TrainResult saying so, and the model after step 5
    exactly (the same as a 5-step run on the same schedule), not a traceback mid-update."""
    handler_before = signal.getsignal(signal.SIGINT)
    model = tiny_model(dropout=0.1)
    result = train(model, tiny_cfg(), CORPUS, CORPUS, progress=False, callbacks=[signal_at(5, signal.SIGINT)])
    assert result.interrupted and result.stop_reason == "SIGINT" and result.steps == 5 and len(result.losses) == 5
    assert capsys.readouterr().err == "stopped by SIGINT after step 5: the model holds that step's weights\n"
    assert result.evals[-1]["step"] == 5 and math.isfinite(result.final_val_loss)  # the stopped model is scored
    assert signal.getsignal(signal.SIGINT) is handler_before  # Ctrl-C works as usual again
    reference = tiny_model(dropout=0.1)
    train(reference, tiny_cfg(steps=5, lr_decay_steps=12), CORPUS, CORPUS, progress=False)
    assert same_weights(model, reference)


def test_sigterm_writes_a_checkpoint_and_resume_matches_an_uninterrupted_run(tmp_path):
    cfg = tiny_cfg(optimizer="muon", out_dir=str(tmp_path))
    stopped = train(tiny_model(dropout=0.1), cfg, CORPUS, CORPUS, progress=False,
                    callbacks=[signal_at(7, signal.SIGTERM)])
    assert stopped.stop_reason == "SIGTERM" and stopped.steps == 7
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 7
    resumed_model = tiny_model(seed=99, dropout=0.1)
    resumed = train(resumed_model, cfg, CORPUS, CORPUS, progress=False, resume=True)
    straight_model = tiny_model(dropout=0.1)
    straight = train(straight_model, replace(cfg, out_dir=None), CORPUS, CORPUS, progress=False)
    assert same_weights(resumed_model, straight_model)
    assert resumed.losses == straight.losses and resumed.evals == straight.evals  # the stop left no trace
    events = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [(e["step"], e["reason"]) for e in events if e["event"] == "stop"] == [(7, "SIGTERM"), (12, "steps")]


def test_a_second_ctrl_c_aborts_at_once():
    with StopRequests() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.received == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs between bytecodes; it raises before this ends


# ----------------------------------------------------------------------------- checkpoints: previous, corrupt


def test_the_previous_checkpoint_is_kept_beside_the_latest(tmp_path):
    cfg = tiny_cfg(steps=6, checkpoint_interval=2, out_dir=str(tmp_path))
    train(tiny_model(), cfg, CORPUS, CORPUS, progress=False)
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 6
    assert load_checkpoint(tmp_path / "ckpt.prev.pt")["step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.prev.pt", "ckpt.pt", "log.jsonl"]
    # a fresh run in the same folder does not leave the old run's previous checkpoint behind
    train(tiny_model(), replace(cfg, steps=1, checkpoint_interval=0), CORPUS, CORPUS, progress=False)
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 1 and not (tmp_path / "ckpt.prev.pt").exists()


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous(tmp_path):
    cfg = tiny_cfg(steps=8, lr_decay_steps=8, checkpoint_interval=2, out_dir=str(tmp_path))
    train(tiny_model(), replace(cfg, steps=6), CORPUS, CORPUS, progress=False)
    latest = tmp_path / "ckpt.pt"
    data = latest.read_bytes()
    latest.write_bytes(data[: len(data) // 2])  # the disk filled up, the machine lost power...

    messages = []
    model = tiny_model(seed=5)
    result = train(model, cfg, CORPUS, CORPUS, progress=False, resume=True, log=messages.append)
    fallback = [m for m in messages if "previous checkpoint" in m]
    assert len(fallback) == 1 and str(latest) in fallback[0] and str(tmp_path / "ckpt.prev.pt") in fallback[0]
    assert "truncated or corrupt" in fallback[0] and "(step 4)" in fallback[0]
    assert result.steps == 8 and len(result.losses) == 8
    straight = tiny_model()
    train(straight, replace(cfg, out_dir=None), CORPUS, CORPUS, progress=False)
    assert same_weights(model, straight)  # steps 5..8 again, from step 4's state, land on the same weights
    # the good previous checkpoint stayed until a new latest existed; now the two are 8 and 6
    assert load_checkpoint(latest)["step"] == 8 and load_checkpoint(tmp_path / "ckpt.prev.pt")["step"] == 6


def test_a_missing_latest_after_a_crash_between_renames_uses_the_previous(tmp_path):
    train(tiny_model(), tiny_cfg(steps=4, checkpoint_interval=2, out_dir=str(tmp_path)), CORPUS, CORPUS,
          progress=False)
    (tmp_path / "ckpt.pt").unlink()
    messages = []
    ckpt, source = latest_checkpoint(tmp_path / "ckpt.pt", say=messages.append)
    assert source == tmp_path / "ckpt.prev.pt" and ckpt["step"] == 2
    assert "is missing" in messages[0] and str(source) in messages[0]


@pytest.mark.parametrize("damage", [b"", b"not a checkpoint at all", "truncate"])
def test_a_corrupt_checkpoint_with_no_previous_is_refused(tmp_path, damage):
    train(tiny_model(), tiny_cfg(steps=2, out_dir=str(tmp_path)), CORPUS, CORPUS, progress=False)
    latest = tmp_path / "ckpt.pt"
    assert not previous_path(latest).exists()
    latest.write_bytes(latest.read_bytes()[:1000] if damage == "truncate" else damage)
    with pytest.raises(CheckpointError, match="no previous checkpoint") as error:
        train(tiny_model(), tiny_cfg(steps=4, out_dir=str(tmp_path)), CORPUS, CORPUS, progress=False, resume=True)
    assert str(latest) in str(error.value) and "truncated or corrupt" in str(error.value)
    assert str(tmp_path / "ckpt.prev.pt") in str(error.value) and "delete" in str(error.value)


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    torch.save({"weights": torch.ones(2)}, tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match=r"is not a training checkpoint \(no step, model"):
        train(tiny_model(), tiny_cfg(steps=2, out_dir=str(tmp_path)), CORPUS, CORPUS, progress=False, resume=True)


def test_resume_needs_somewhere_to_resume_from(tmp_path):
    with pytest.raises(ValueError, match="resume=True continues from out_dir/ckpt.pt, but cfg.out_dir is None"):
        train(tiny_model(), tiny_cfg(steps=2), CORPUS, progress=False, resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint there"):
        train(tiny_model(), tiny_cfg(steps=2), CORPUS, progress=False, resume=tmp_path / "nothing.pt")
    messages = []  # resume=True with nothing saved yet is a fresh start (the first run of a resumable job)
    result = train(tiny_model(), tiny_cfg(steps=2, out_dir=str(tmp_path)), CORPUS, progress=False, resume=True,
                   log=messages.append)
    assert result.steps == 2 and any("starting from step 0" in m for m in messages)


# ----------------------------------------------------------------------------- a changed configuration


def test_a_changed_configuration_is_refused_with_the_fields_that_differ(tmp_path):
    cfg = tiny_cfg(steps=4, out_dir=str(tmp_path))
    train(tiny_model(), cfg, CORPUS, CORPUS, progress=False)
    changed = replace(cfg, steps=6, lr=1e-3, weight_decay=0.0)
    with pytest.raises(CheckpointError) as error:
        train(tiny_model(dropout=0.1), changed, CORPUS, CORPUS, progress=False, resume=True)
    message = str(error.value)
    assert "different model or training configuration" in message
    for change in ("model.dropout: 0.0 -> 0.1", "train.lr: 0.003 -> 0.001", "train.weight_decay: 0.1 -> 0.0",
                   "train.steps (where the cosine reaches min_lr): 4 -> 6"):
        assert change in message
    assert "allow_config_change=True" in message and "--allow-config-change" in message
    result = train(tiny_model(dropout=0.1), changed, CORPUS, CORPUS, progress=False, resume=True,
                   allow_config_change=True)
    assert result.steps == 6 and len(result.losses) == 6


def test_where_and_how_a_run_executes_may_change_on_resume(tmp_path):
    cfg = tiny_cfg(steps=4, lr_decay_steps=8, out_dir=str(tmp_path))
    train(tiny_model(), cfg, CORPUS, CORPUS, progress=False)
    other = replace(cfg, steps=8, eval_interval=0, eval_batches=1, log_interval=3, checkpoint_interval=2,
                    device="cpu", num_threads=1, backend="naive", out_dir=str(tmp_path))
    assert train(tiny_model(backend="naive"), other, CORPUS, CORPUS, progress=False, resume=True).steps == 8


def test_a_checkpoint_that_does_not_fit_is_refused_even_when_allowed(tmp_path):
    train(tiny_model(), tiny_cfg(steps=2, out_dir=str(tmp_path)), CORPUS, progress=False)
    with pytest.raises(CheckpointError, match=r"does not fit this model .*model.d_model: 32 -> 64"):
        train(tiny_model(d_model=64), tiny_cfg(steps=4, out_dir=str(tmp_path)), CORPUS, progress=False,
              resume=True, allow_config_change=True)


# ----------------------------------------------------------------------------- time budget


def test_lr_at_time_is_the_step_schedule_stretched_over_the_budget():
    cfg = TrainConfig(steps=200, warmup_steps=20, lr=1.0, min_lr=0.1, time_budget=50.0)
    assert lr_at_time(0.0, cfg) == pytest.approx(1.0 / 20)  # the first step learns as the step schedule's does
    assert lr_at_time(50.0 * 19 / 200, cfg) == pytest.approx(1.0)  # warm-up: the same fraction of the budget
    for seconds in (3.0, 12.5, 25.0, 40.0):
        assert lr_at_time(seconds, cfg) == pytest.approx(lr_at(seconds / 50.0 * 200, cfg))
    assert lr_at_time(50.0, cfg) == 0.1 and lr_at_time(80.0, cfg) == 0.1  # min_lr at the end, and after
    early = replace(cfg, lr_decay_steps=100)  # the cosine ends half way
    assert lr_at_time(25.0, early) == 0.1 and lr_at_time(24.0, early) > 0.1


def test_a_time_budget_stops_on_time_and_ends_at_min_lr():
    budget, seen = 1.5, []
    cfg = tiny_cfg(steps=100, warmup_steps=10, eval_interval=0, time_budget=budget)
    result = train(tiny_model(), cfg, CORPUS, CORPUS, progress=False,
                   callbacks=[lambda s: seen.append((s.elapsed_seconds, s.lr))])
    assert result.stop_reason == "time budget" and not result.interrupted and result.steps == len(seen) > 10
    elapsed = [t for t, _ in seen]
    step_time = max(b - a for a, b in zip(elapsed, elapsed[1:]))
    assert elapsed[-2] < budget <= elapsed[-1] < budget + step_time + 0.1  # stopped at the first step past it
    assert result.wall_seconds < budget + 2.0  # the final evaluation and the set-up included
    # every step's rate is the schedule at the moment the step began, between the ends of the step before and its own
    for (t0, _), (t1, lr) in zip(seen, seen[1:]):
        lo, hi = sorted((lr_at_time(t0, cfg), lr_at_time(t1, cfg)))
        peak = budget * (cfg.warmup_steps - 1) / cfg.steps
        assert lo - 1e-12 <= lr <= hi + 1e-12 or t0 <= peak <= t1
    last_lr = seen[-1][1]
    assert cfg.min_lr <= last_lr < cfg.min_lr + 0.05 * (cfg.lr - cfg.min_lr)  # the last 14% of the cosine


def test_a_time_budget_counts_the_time_before_a_resume(tmp_path):
    cfg = tiny_cfg(steps=100, warmup_steps=10, eval_interval=0, time_budget=1.0, out_dir=str(tmp_path))
    first = train(tiny_model(), cfg, CORPUS, progress=False, callbacks=[signal_at(5, signal.SIGINT)])
    assert first.steps == 5
    spent = load_checkpoint(tmp_path / "ckpt.pt")["history"]["elapsed_seconds"]
    assert 0 < spent < 1.0
    seen = []
    train(tiny_model(), cfg, CORPUS, progress=False, resume=True, callbacks=[lambda s: seen.append(s.elapsed_seconds)])
    assert seen[0] > spent and 1.0 <= seen[-1] < 1.5


# ----------------------------------------------------------------------------- the command line


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _run(args, cwd):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=180, env=_env())


@pytest.mark.slow
def test_ctrl_c_on_the_command_line_then_resume_gives_the_uninterrupted_weights(tmp_path):
    steps = 150  # ~14 ms a step on one core: Ctrl-C lands between the first log line (step 10) and the end
    args = ["-m", "tfcore.train", "--preset", "shakespeare-char-tiny", "--steps", str(steps), "--no-progress"]
    straight = _run([*args, "--out-dir", str(tmp_path / "straight")], tmp_path)
    assert straight.returncode == 0, straight.stderr

    out = tmp_path / "stopped"
    proc = subprocess.Popen([sys.executable, *args, "--out-dir", str(out)], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "log.jsonl").exists() or '"event": "train"' not in (out / "log.jsonl").read_text():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "Traceback" not in stderr
    stopped_at = load_checkpoint(out / "ckpt.pt")["step"]
    assert 10 <= stopped_at < steps, "the run ended before Ctrl-C arrived: the machine is too fast or too busy"
    assert f"stopped by SIGINT after step {stopped_at}: the model holds that step's weights; checkpoint: " \
           f"{out / 'ckpt.pt'}" in stdout
    command = next(line for line in stdout.splitlines() if line.startswith("resume with: "))
    resume = shlex.split(command[len("resume with: "):])
    assert resume[:3] == ["python", "-m", "tfcore.train"] and "--resume" in resume

    resumed = _run(resume[1:], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from step {stopped_at}" in resumed.stdout
    a, b = load_checkpoint(tmp_path / "straight" / "ckpt.pt"), load_checkpoint(out / "ckpt.pt")
    assert a["step"] == b["step"] == steps
    assert a["model"].keys() == b["model"].keys() and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["history"]["losses"] == b["history"]["losses"]


@pytest.mark.slow
def test_command_line_time_budget_and_a_refused_corrupt_checkpoint(tmp_path):
    out = tmp_path / "run"
    args = ["-m", "tfcore.train", "--preset", "shakespeare-char-tiny", "--time-budget", "3", "--no-progress",
            "--out-dir", str(out), "--checkpoint-interval", "50"]
    timed = _run(args, tmp_path)
    assert timed.returncode == 0, timed.stderr
    assert "model: 0.11 M parameters; 3 s of 16 x 64 tokens" in timed.stdout and "(time budget)" in timed.stdout
    events = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    stop = next(e for e in events if e["event"] == "stop")
    last = [e for e in events if e["event"] == "train"][-1]
    assert stop["reason"] == "time budget" and 3.0 <= stop["loop_s"] < 4.0  # the loop's time: one more step at most
    assert last["step"] == stop["step"] > 50
    assert 3e-4 <= last["lr"] < 3e-4 + 0.05 * (3e-3 - 3e-4)  # the preset's min_lr, or the last 14% of the cosine
    assert load_checkpoint(out / "ckpt.prev.pt")["step"] % 50 == 0

    (out / "ckpt.pt").write_bytes(b"\x00" * 100)
    previous_path(out / "ckpt.pt").unlink()
    refused = _run([*args, "--resume"], tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"error: {out / 'ckpt.pt'} is truncated or corrupt" in refused.stderr
    assert f"no previous checkpoint {out / 'ckpt.prev.pt'}" in refused.stderr


@pytest.mark.slow
def test_interrupting_a_notebook_kernel_returns_an_interrupted_result():
    """The learner's Ctrl-C: Jupyter's interrupt (SIGINT to the kernel) while a cell runs train()."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", env={**_env(), "PYTHONPATH": str(ROOT)})
    try:
        def execute(code, interrupt_on=None):
            msg_id, text, interrupted = kc.execute(code), [], False
            while True:
                msg = kc.get_iopub_msg(timeout=120)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    text.append(content["text"])
                    if interrupt_on and interrupt_on in content["text"] and not interrupted:
                        km.interrupt_kernel()
                        interrupted = True
                elif kind == "error":
                    text.append(f"{content['ename']}: {content['evalue']}")
                elif kind == "status" and content["execution_state"] == "idle":
                    return "".join(text)

        setup = execute(
            "import torch\n"
            "from tfcore.model import Transformer, TransformerConfig\n"
            "from tfcore.train import TrainConfig, train\n"
            "torch.set_num_threads(1); torch.manual_seed(0)\n"
            "model = Transformer(TransformerConfig(vocab_size=32, d_model=32, n_layers=2, n_heads=4, max_seq_len=32))\n"
            "corpus = torch.arange(4000) % 29\n"
            "started = lambda s: print('step', s.step, flush=True) if s.step == 3 else None\n")
        assert setup == ""
        # a safety net: without the interrupt the cell would end after 60 s, by its time budget
        cfg = ("TrainConfig(steps=1000, batch_size=8, block_size=16, eval_interval=0, callback_interval=1, "
               "time_budget=60)")
        out = execute(f"result = train(model, {cfg}, corpus, corpus, progress=False, callbacks=[started])",
                      interrupt_on="step 3")
        assert "KeyboardInterrupt" not in out and "stopped by SIGINT after step" in out, out
        check = execute("print(result.interrupted, result.stop_reason, result.steps == len(result.losses) >= 3,\n"
                        "      all(p.isfinite().all().item() for p in model.parameters()))\n"
                        "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)")
        assert check == "True SIGINT True True\nTrue\n", check
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
