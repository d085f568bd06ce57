"""The training loop: schedule, weight-decay groups, learning, exact resume, atomic checkpoints,
the command line, DDP on two CPU processes, the masked-LM objective, callbacks."""

import json
import math
import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from helpers import TRAIN_CORPUS, single_thread, train_config, train_model  # noqa: F401 (autouse fixture)

import tfcore.train as tr
from tfcore.data import induction_batch
from tfcore.model import Transformer, TransformerConfig
from tfcore.train import (
    PRESETS,
    AttentionEntropy,
    LossPlot,
    ResidualNorms,
    TrainConfig,
    atomic_save,
    batch_loss,
    build,
    corpus_sampler,
    digit_sampler,
    induction_sampler,
    load_checkpoint,
    lr_at,
    param_group_names,
    param_groups,
    pretrained,
    save_weights,
    train,
)

ROOT = Path(__file__).resolve().parents[1]


tiny_model, tiny_cfg, CORPUS = train_model, train_config, TRAIN_CORPUS



# ----------------------------------------------------------------------------- schedule and groups


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(steps=110, warmup_steps=10, lr=1.0, min_lr=0.1)
    warm = [lr_at(s, cfg) for s in range(10)]
    assert warm[0] == pytest.approx(0.1) and warm[-1] == pytest.approx(1.0)
    assert all(b - a == pytest.approx(0.1) for a, b in zip(warm, warm[1:]))  # linear
    assert lr_at(10, cfg) == pytest.approx(1.0)  # the peak, where the cosine starts
    assert lr_at(60, cfg) == pytest.approx(0.55)  # half way: the mean of lr and min_lr
    decay = [lr_at(s, cfg) for s in range(10, 111)]
    assert all(b <= a for a, b in zip(decay, decay[1:]))
    assert lr_at(35, cfg) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))
    assert lr_at(110, cfg) == pytest.approx(0.1) and lr_at(500, cfg) == pytest.approx(0.1)
    longer = TrainConfig(steps=50, warmup_steps=10, lr=1.0, min_lr=0.1, lr_decay_steps=110)
    assert [lr_at(s, longer) for s in range(50)] == [lr_at(s, cfg) for s in range(50)]


def test_weight_decay_groups():
    model = tiny_model(tie_weights=True)
    decay, no_decay = param_group_names(model)
    linears = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "unembed"}
    assert set(decay) == linears  # every Linear weight matrix, and nothing else
    assert "embed.weight" in no_decay and "positions.table.weight" in no_decay  # lookup tables
    assert all(n.endswith("bias") or "norm" in n or n in ("embed.weight", "positions.table.weight") for n in no_decay)
    assert any("norm" in n and n.endswith("weight") for n in no_decay)
    groups = param_groups(model, 0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))  # each tensor once (tied: once)
    untied = tiny_model(tie_weights=False)
    assert "unembed.weight" in param_group_names(untied)[0]  # an untied unembedding is a Linear weight


# ----------------------------------------------------------------------------- learning


def test_loss_decreases_on_tiny_task():
    model = tiny_model()
    result = train(model, tiny_cfg(steps=40, eval_interval=20), CORPUS, CORPUS, progress=False)
    assert len(result.losses) == 40 and result.steps == 40
    assert result.evals[0]["step"] == 0 and result.evals[0]["val_loss"] == pytest.approx(math.log(32), abs=0.3)
    assert result.final_val_loss < result.evals[0]["val_loss"] - 1.0
    assert sum(result.losses[-5:]) / 5 < sum(result.losses[:5]) / 5 - 0.5
    assert result.tokens_per_s > 0


def test_induction_sampler_scores_the_repeated_half():
    inputs, targets = induction_sampler(8, 32)(4, torch.Generator().manual_seed(0))
    assert inputs.shape == targets.shape == (4, 15)
    assert (targets[:, :7] == -100).all() and torch.equal(targets[:, 7:], inputs[:, :8])


def test_corpus_sampler_matches_random_batch_and_shifts():
    from tfcore.data import random_batch

    data = torch.arange(1000)
    inputs, targets = corpus_sampler(data, 16)(4, torch.Generator().manual_seed(3))
    windows = random_batch(data, 4, 16, torch.Generator().manual_seed(3))
    assert torch.equal(inputs, windows[:, :-1]) and torch.equal(targets, windows[:, 1:])


def test_mlm_objective_runs():
    model, cfg, train_data, val_data, tok = build("shakespeare-mlm-tiny", steps=6, eval_interval=3, eval_batches=2)
    assert model.config.architecture == "encoder" and model.config.vocab_size == tok.vocab_size + 1
    inputs, targets = tr.as_sampler(train_data, cfg, model)(8, torch.Generator().manual_seed(0))
    assert (inputs == tok.vocab_size).any()  # the [MASK] id is the extra last id
    scored = targets[targets != -100]
    assert 0 < scored.numel() < targets.numel() and (scored < tok.vocab_size).all()  # only chosen positions
    result = train(model, cfg, train_data, val_data, progress=False)
    assert len(result.losses) == 6 and all(math.isfinite(x) for x in result.losses)
    assert result.final_val_loss < math.log(66) + 0.5


def test_seq2seq_objective_runs():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=11, d_model=32, n_layers=1, n_heads=4, max_seq_len=16,
                                          architecture="encoder-decoder", backend="sdpa"))
    cfg = tiny_cfg(steps=4, objective="seq2seq", eval_interval=2)
    result = train(model, cfg, digit_sampler("reverse", 8), digit_sampler("reverse", 8), progress=False)
    assert len(result.losses) == 4 and math.isfinite(result.final_val_loss)


def test_callbacks_and_live_plot():
    model = tiny_model()
    calls = []
    plot = LossPlot(display=False)
    probe = torch.randint(32, (2, 16))
    norms, entropy = ResidualNorms(probe), AttentionEntropy(probe)
    train(model, tiny_cfg(steps=10, callback_interval=4), CORPUS, CORPUS, progress=False,
          callbacks=[lambda s: calls.append((s.step, s.loss, len(s.losses))), plot, norms, entropy])
    assert [c[0] for c in calls] == [4, 8, 10]  # every callback_interval steps, and after the last
    assert all(n == step for step, _, n in calls)
    assert plot.widget.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(norms.history) == {"decoder.0", "decoder.1"} and len(norms.history["decoder.0"]) == 3
    assert all(r > 0 for _, r in norms.history["decoder.1"])
    step, h = entropy.history["decoder.0.attn"][-1]
    assert step == 10 and h.shape == (4,) and (h >= 0).all() and (h <= math.log(16) + 1e-5).all()
    assert model.training  # the callbacks put the model back in training mode


# ----------------------------------------------------------------------------- checkpoints


def _params(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_exact_resume_is_bitwise(tmp_path, optimizer):
    cfg = tiny_cfg(steps=12, grad_accum=2, eval_interval=3, optimizer=optimizer)  # evaluates at step 6 too
    straight = tiny_model(dropout=0.1)
    full = train(straight, cfg, CORPUS, CORPUS, progress=False)

    first = tiny_model(dropout=0.1)
    half = replace(cfg, steps=6, lr_decay_steps=12, out_dir=str(tmp_path))
    train(first, half, CORPUS, CORPUS, progress=False)
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 6

    # A fresh "process": other weights, other RNG states. Resuming must restore all of it.
    torch.manual_seed(1234), random.seed(1234)
    second = tiny_model(seed=99, dropout=0.1)
    resumed = train(second, replace(cfg, out_dir=str(tmp_path)), CORPUS, CORPUS, progress=False, resume=True)
    a, b = straight.state_dict(), second.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.losses == full.losses  # the history continues too, bit for bit
    assert [e["val_loss"] for e in resumed.evals] == [e["val_loss"] for e in full.evals]
    assert resumed.steps == 12


def test_atomic_save_survives_a_crash_mid_write(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    atomic_save({"step": 1, "w": torch.ones(3)}, path)
    real_save = torch.save

    def crash(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")  # some bytes reach the file, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    old = torch.load(path, weights_only=True)
    assert old["step"] == 1 and torch.equal(old["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temporary file left behind


def test_crash_during_training_keeps_last_checkpoint(tmp_path, monkeypatch):
    cfg = tiny_cfg(steps=8, checkpoint_interval=2, out_dir=str(tmp_path))
    real_save, saves = torch.save, []

    def save_then_crash(obj, f, *args, **kwargs):
        saves.append(obj["step"])
        if obj["step"] == 4:
            f.write(b"garbage")
            raise OSError("disk full")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_crash)
    with pytest.raises(OSError, match="disk full"):
        train(tiny_model(), cfg, CORPUS, CORPUS, progress=False)
    monkeypatch.setattr(torch, "save", real_save)
    assert saves == [2, 4]
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 2
    result = train(tiny_model(seed=5), cfg, CORPUS, CORPUS, progress=False, resume=True)
    assert result.steps == 8 and len(result.losses) == 8
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in lines].count("start") == 2


def test_resume_refuses_a_different_model(tmp_path):
    train(tiny_model(), tiny_cfg(steps=2, out_dir=str(tmp_path)), CORPUS, CORPUS, progress=False)
    with pytest.raises(ValueError, match="different model"):
        train(tiny_model(d_model=64), tiny_cfg(steps=4, out_dir=str(tmp_path)), CORPUS, CORPUS, progress=False,
              resume=True)


# ----------------------------------------------------------------------------- presets, CLI, DDP


def test_presets_build():
    assert {"shakespeare-char-cpu", "shakespeare-char-tiny", "gpt2-small-gpu", "induction-tiny"} <= set(PRESETS)
    gpt2 = PRESETS["gpt2-small-gpu"]
    assert gpt2.model["d_model"] == 768 and gpt2.model["n_layers"] == 12 and gpt2.model["vocab_size"] == 50304
    assert gpt2.train.compile and gpt2.train.fused_adamw and gpt2.train.batch_size == 12
    model, cfg, *_ = build("induction-tiny", steps=1)
    assert cfg.steps == 1 and model.config.vocab_size == PRESETS["induction-tiny"].data_options["vocab_size"]


def _run(args, tmp_path, **env):
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=environment)


def test_cli_trains_prints_paths_and_resumes(tmp_path):
    out = tmp_path / "run"
    first = _run(["-m", "tfcore.train", "--preset", "shakespeare-char-tiny", "--steps", "3", "--out-dir", str(out),
                  "--no-progress", "--save-weights", str(tmp_path / "w" / "tiny.pt")], tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"checkpoint: {out / 'ckpt.pt'}" in first.stdout and f"log (JSON lines): {out / 'log.jsonl'}" in first.stdout
    ckpt = load_checkpoint(out / "ckpt.pt")
    assert ckpt["step"] == 3
    model, record = pretrained(tmp_path / "w" / "tiny.pt")  # the weights file pretrained() reads
    assert record["preset"] == "shakespeare-char-tiny" and record["steps"] == 3
    assert record["losses"] == ckpt["history"]["losses"]
    assert all(torch.equal(v, ckpt["model"][k]) for k, v in model.state_dict().items())
    # 5 steps instead of 3 moves the end of the cosine: refused, with the field, unless allowed
    args = ["-m", "tfcore.train", "--preset", "shakespeare-char-tiny", "--steps", "5", "--out-dir", str(out),
            "--resume", "--no-progress"]
    refused = _run(args, tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"{out / 'ckpt.pt'} was written by a different model or training configuration" in refused.stderr
    assert "train.steps (where the cosine reaches min_lr): 3 -> 5" in refused.stderr
    assert "--allow-config-change" in refused.stderr
    assert load_checkpoint(out / "ckpt.pt")["step"] == 3  # untouched
    second = _run([*args, "--allow-config-change"], tmp_path)
    assert second.returncode == 0, second.stderr
    assert "resuming from step 3" in second.stdout and "changed configuration: train.steps" in second.stdout
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert {"start", "train", "eval"} <= {r["event"] for r in records}
    assert max(r["step"] for r in records if r["event"] == "eval") == 5
    assert len(load_checkpoint(out / "ckpt.pt")["history"]["losses"]) == 5


def test_ddp_two_gloo_processes_match_one_process(tmp_path):
    """torchrun with 2 CPU processes (Gloo), each half of the batch, follows one process's losses."""
    args = ["--preset", "shakespeare-char-tiny", "--steps", "4", "--no-progress"]
    single = _run(["-m", "tfcore.train", *args, "--out-dir", str(tmp_path / "one")], tmp_path)
    assert single.returncode == 0, single.stderr
    ddp = _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "tfcore.train", *args,
                "--out-dir", str(tmp_path / "two")], tmp_path)
    assert ddp.returncode == 0, ddp.stderr
    assert ddp.stdout.count("checkpoint:") == 1  # only rank 0 speaks
    one, two = load_checkpoint(tmp_path / "one" / "ckpt.pt"), load_checkpoint(tmp_path / "two" / "ckpt.pt")
    assert len(two["history"]["losses"]) == 4
    torch.testing.assert_close(torch.tensor(two["history"]["losses"]), torch.tensor(one["history"]["losses"]),
                               rtol=1e-5, atol=1e-5)
    for k, v in one["model"].items():
        torch.testing.assert_close(two["model"][k], v, rtol=1e-4, atol=1e-5)
    val_one, val_two = one["history"]["evals"][-1]["val_loss"], two["history"]["evals"][-1]["val_loss"]
    assert val_two == pytest.approx(val_one, abs=1e-4)



def test_save_weights_and_pretrained_round_trip(tmp_path):
    model = tiny_model(seed=3)
    result = train(model, TrainConfig(steps=2, batch_size=4, block_size=8, eval_interval=2, eval_batches=1,
                                      warmup_steps=1, device="cpu"), induction_sampler(4, 32), progress=False)
    path = tmp_path / "w.pt"
    save_weights(path, model, "test", result)
    loaded, record = pretrained(path)
    tokens = torch.randint(32, (2, 9))
    assert torch.equal(loaded(tokens), model.eval()(tokens))
    assert record["preset"] == "test" and record["losses"] == result.losses and record["steps"] == 2
    with pytest.raises(FileNotFoundError, match=r"no weights at .*nothing-here.*shipped: \['induction-tiny', 'shakespeare-char-cpu'\]"):
        pretrained("nothing-here")


def test_shipped_induction_model_copies_with_a_two_layer_circuit():
    """The shipped weights behave as lesson 03 says: previous-token head in layer 0, induction
    heads in layer 1, near-zero loss on the copy, and each part needed."""
    from tfcore.diagnostics import ablate_heads
    from tfcore.model import capture_attention

    model, record = pretrained("induction-tiny")
    opts = PRESETS["induction-tiny"].data_options
    H, V = opts["half_len"], opts["vocab_size"]
    tokens = induction_batch(32, H, V, torch.Generator().manual_seed(99))
    inputs, targets = tokens[:, :-1], tokens[:, 1:].clone()
    targets[:, :H] = -100

    def copy_loss():
        return torch.nn.functional.cross_entropy(model(inputs).flatten(0, 1), targets.flatten(), ignore_index=-100).item()

    with torch.no_grad(), capture_attention(model) as weights:
        base = copy_loss()
    t = torch.arange(1, 2 * H - 1)
    prev = weights["decoder.0.attn"][:, :, t, t - 1].mean(dim=(0, 2))  # (h,)
    t2 = torch.arange(H, 2 * H - 1)
    induct = weights["decoder.1.attn"][:, :, t2, t2 - H + 1].mean(dim=(0, 2))  # (h,)
    assert base < 0.3, f"copy loss {base:.3f}; ln(vocab) = {math.log(V):.3f}"
    assert prev.max() > 0.5, f"no previous-token head in layer 0: {prev}"
    assert induct.min() > 0.5, f"layer 1 heads' induction scores {induct}"
    with torch.no_grad():
        with ablate_heads(model, {"decoder.0.attn": [int(prev.argmax())]}):
            without_prev = copy_loss()
        with ablate_heads(model, {"decoder.1.attn": list(range(model.config.n_heads))}):
            without_induction = copy_loss()
    assert without_prev > base + 2 and without_induction > base + 2, (base, without_prev, without_induction)


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rope", "alibi", "t5"])
@pytest.mark.parametrize("architecture", ["decoder", "encoder", "encoder-decoder"])
def test_the_training_loss_traces_to_one_graph(architecture, positions):
    """torch.compile must see the whole loss as one graph: a break (say, a value read back from the
    device to check an input) splits it in two and, on a GPU, stalls the step while the value arrives."""
    import torch._dynamo as dynamo

    model = tiny_model(architecture=architecture, positions=positions)
    tokens = torch.randint(32, (2, 16), generator=torch.Generator().manual_seed(0))
    batch = (tokens, tokens, tokens) if architecture == "encoder-decoder" else (tokens, tokens)
    dynamo.reset()
    explained = dynamo.explain(batch_loss)(model, batch)
    assert explained.graph_break_count == 0, [str(b.reason).splitlines()[0] for b in explained.break_reasons]
    dynamo.reset()


# ----------------------------------------------------------------------------- bad input: clear errors


@pytest.mark.parametrize("field, value, expected", [
    ("steps", 0, "TrainConfig.steps must be a positive integer, got 0"),
    ("steps", 10.0, "TrainConfig.steps must be a positive integer, got 10.0"),
    ("batch_size", -4, "TrainConfig.batch_size must be a positive integer"),
    ("grad_accum", True, "TrainConfig.grad_accum must be a positive integer, got True"),
    ("warmup_steps", -1, "TrainConfig.warmup_steps must be an integer >= 0, got -1"),
    ("eval_interval", -200, "TrainConfig.eval_interval must be an integer >= 0"),
    ("sample_interval", -1, "TrainConfig.sample_interval must be an integer >= 0"),
    ("checkpoint_interval", -5, "TrainConfig.checkpoint_interval must be an integer >= 0"),
    ("log_interval", 0, "TrainConfig.log_interval must be a positive integer"),
    ("callback_interval", -1, "TrainConfig.callback_interval must be a positive integer"),
    ("lr_decay_steps", 0, "TrainConfig.lr_decay_steps must be a positive integer or None"),
    ("eval_batch_size", 0, "TrainConfig.eval_batch_size must be a positive integer or None"),
    ("mask_id", -1, "TrainConfig.mask_id must be an integer >= 0 or None"),
    ("lr", 0.0, "TrainConfig.lr must be a number > 0, got 0.0"),
    ("lr", float("nan"), "TrainConfig.lr must be a number > 0, got nan"),
    ("min_lr", 1.0, "TrainConfig.min_lr must be a number in [0, lr=0.001], got 1.0"),
    ("min_lr", -1e-4, "TrainConfig.min_lr must be a number in [0, lr=0.001]"),
    ("weight_decay", -0.1, "TrainConfig.weight_decay must be a number >= 0, got -0.1"),
    ("grad_clip", -1.0, "TrainConfig.grad_clip must be a number >= 0 (0: no clipping), got -1.0"),
    ("grad_clip", float("inf"), "TrainConfig.grad_clip must be a number >= 0"),
    ("eps", 0.0, "TrainConfig.eps must be a number > 0"),
    ("mask_prob", 1.5, "TrainConfig.mask_prob must be a probability in [0, 1], got 1.5"),
    ("mask_prob", -0.1, "TrainConfig.mask_prob must be a probability in [0, 1], got -0.1"),
    ("time_budget", 0, "TrainConfig.time_budget must be a number of seconds > 0, or None, got 0"),
    ("time_budget", "3m", "TrainConfig.time_budget must be a number of seconds > 0"),
    ("betas", (0.9, 1.0), "TrainConfig.betas must be two numbers in [0, 1), got (0.9, 1.0)"),
    ("betas", (0.9,), "TrainConfig.betas must be two numbers in [0, 1)"),
    ("objective", "clm", "TrainConfig.objective must be one of ('lm', 'mlm', 'seq2seq'), got 'clm'"),
    ("optimizer", "sgd", "TrainConfig.optimizer must be one of ('adamw', 'muon'), got 'sgd'"),
    ("dtype", "fp16", "TrainConfig.dtype must be one of"),
])
def test_train_config_refuses_bad_values(field, value, expected):
    with pytest.raises(ValueError) as error:
        TrainConfig(**{field: value})
    assert expected in str(error.value)


def test_train_config_accepts_the_edges():
    cfg = TrainConfig(warmup_steps=0, eval_interval=0, sample_interval=0, checkpoint_interval=0, weight_decay=0.0,
                      grad_clip=0.0, mask_prob=0.0, min_lr=1e-3, lr=1e-3, betas=[0.0, 0.0], time_budget=0.5)
    assert cfg.betas == (0.0, 0.0)
    assert TrainConfig(mask_prob=1.0).mask_prob == 1.0


def test_train_refuses_an_objective_the_model_cannot_learn():
    with pytest.raises(ValueError, match=r"objective='mlm' trains a model with architecture 'encoder', but this model "
                                         r"has architecture='decoder': a causal decoder never sees"):
        train(tiny_model(), tiny_cfg(objective="mlm"), CORPUS, progress=False)
    with pytest.raises(ValueError, match=r"objective='seq2seq' .* 'encoder-decoder', but this model has "
                                         r"architecture='encoder'"):
        train(tiny_model(architecture="encoder"), tiny_cfg(objective="seq2seq"), digit_sampler("reverse", 4),
              progress=False)
    with pytest.raises(ValueError, match=r"objective='lm' .* 'decoder' or 'encoder', .*architecture='encoder-decoder'"):
        train(tiny_model(architecture="encoder-decoder"), tiny_cfg(), digit_sampler("reverse", 4), progress=False)


def test_train_refuses_data_that_is_neither_a_corpus_nor_a_sampler():
    with pytest.raises(TypeError, match=r"train_data must be a 1-D tensor of token ids \(N,\) or a sampler"):
        train(tiny_model(), tiny_cfg(), CORPUS.tolist(), progress=False)
    with pytest.raises(TypeError, match="val_data must be"):
        train(tiny_model(), tiny_cfg(), CORPUS, "CORPUS", progress=False)


def test_build_names_the_presets_for_an_unknown_one():
    with pytest.raises(ValueError, match=r"unknown preset 'shakespeare-char'; presets: .*gpt2-small-gpu, "
                                         r"induction-tiny, shakespeare-char-cpu, shakespeare-char-tiny"):
        build("shakespeare-char")
    with pytest.raises(ValueError, match="TrainConfig.checkpoint_interval must be an integer >= 0"):
        build("shakespeare-char-tiny", checkpoint_interval=-1)


def test_the_names_the_lessons_import_from_tfcore_train_still_work():
    """The split into optim, samplers, checkpoints, presets and viz.training keeps every old import."""
    import tfcore.checkpoints
    import tfcore.optim
    import tfcore.presets
    import tfcore.samplers
    import tfcore.viz.training

    homes = {tfcore.optim: ["lr_at", "param_groups", "param_group_names", "make_optimizer", "orthogonalize", "Muon",
                            "Optimizers"],
             tfcore.samplers: ["corpus_sampler", "induction_sampler", "copy_sampler", "digit_sampler", "as_sampler"],
             tfcore.checkpoints: ["atomic_save", "rng_states", "set_rng_states", "save_checkpoint", "load_checkpoint",
                                  "model_from_checkpoint", "save_weights", "pretrained", "WEIGHTS_DIR",
                                  "CHECKPOINT_NAME"],
             tfcore.presets: ["Preset", "PRESETS", "build"],
             tfcore.viz.training: ["LossPlot", "ResidualNorms", "AttentionEntropy"]}
    for module, names in homes.items():
        for name in names:
            assert getattr(tr, name) is getattr(module, name), name
    for name in ("TrainConfig", "TrainState", "TrainResult", "train", "evaluate", "batch_loss", "autocast_dtype",
                 "resolve_device", "distributed_context", "setup_distributed", "main", "LOG_NAME", "OBJECTIVES"):
        assert hasattr(tr, name), name
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        tr.nothing_here
