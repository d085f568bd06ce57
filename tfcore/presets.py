"""Tested pairings of model, training configuration and data: ``build(name)`` and ``python -m tfcore.train``.

``build("shakespeare-char-tiny")`` returns ``(model, cfg, train_data, val_data, tokenizer)``,
ready for ``tfcore.train.train``; keyword arguments replace ``TrainConfig`` fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from tfcore.data import shakespeare_splits
from tfcore.model import Transformer, TransformerConfig
from tfcore.samplers import copy_sampler, digit_sampler, induction_sampler
from tfcore.train import TrainConfig


@dataclass(frozen=True)
class Preset:
    """A tested pairing of model, training configuration and data."""

    description: str
    model: dict  # TransformerConfig fields; vocab_size is filled in from the data unless given
    train: TrainConfig
    data: str = "shakespeare"  # "shakespeare" | "induction" | "copy" | "digits-reverse"
    data_options: dict = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    # Tuned for a 2-core CPU (benchmarks/train_cpu.py): val 1.55 in 130 s on an idle 2-core Intel Xeon
    # (2,800 steps: 1.53 in 149 s; 2,400 leaves room for a slower CPU). Small batches (16 x 64 tokens)
    # and many steps beat 32 x 128 at the same budget (1.77 vs 2.16 at 1.5M tokens). Muon beats AdamW
    # per step (2,800 steps: 1.53 vs 1.65) but costs more per step on the CPU (Newton-Schulz). Slower
    # CPUs take longer: an AMD EPYC machine ran AdamW at 7.9k tokens/s against 18.7k here (before the
    # fused norms and GELU, which took this machine from 20k to 30k tokens/s in a bare training step).
    # On a 2-core AMD EPYC the 2,400 steps took about 236 s: `--time-budget 180` stretches the same
    # schedule (warm-up 50/2400 of the budget, cosine to min_lr at its end) over 180 s on any CPU.
    "shakespeare-char-cpu": Preset(
        "character-level Shakespeare in ~3 minutes on a 2-core CPU",
        dict(d_model=128, n_layers=4, n_heads=4, max_seq_len=64, dropout=0.0, backend="sdpa"),
        TrainConfig(steps=2400, batch_size=16, block_size=64, lr=3e-3, min_lr=1e-4, warmup_steps=50,
                    weight_decay=0.1, eval_interval=800, eval_batches=10, sample_interval=0, optimizer="muon",
                    backend="sdpa"),
    ),
    # Lesson 09's live demo: ~15 s on a 2-core CPU.
    "shakespeare-char-tiny": Preset(
        "a tiny character-level GPT for a live notebook demo (~15 s on 2 CPU cores)",
        dict(d_model=64, n_layers=2, n_heads=4, max_seq_len=64, backend="sdpa"),
        TrainConfig(steps=300, batch_size=16, block_size=64, lr=3e-3, min_lr=3e-4, warmup_steps=30,
                    eval_interval=100, eval_batches=8, callback_interval=20, backend="sdpa"),
    ),
    # A tiny masked-LM (encoder) on the same corpus, for lesson 09.
    "shakespeare-mlm-tiny": Preset(
        "a tiny masked-LM (bidirectional encoder) on character-level Shakespeare",
        dict(architecture="encoder", d_model=64, n_layers=2, n_heads=4, max_seq_len=64, backend="sdpa"),
        TrainConfig(steps=300, batch_size=16, block_size=64, lr=3e-3, min_lr=3e-4, warmup_steps=30,
                    eval_interval=100, eval_batches=8, objective="mlm", backend="sdpa"),
    ),
    # Lesson 03 (its weights ship in tfcore/weights: tfcore.train.pretrained("induction-tiny")).
    # Repeated random segments whose length varies per row (min_half_len): no fixed offset to learn
    # instead of induction. Rotary positions: "one token back" is the same rotation at every position.
    # Measured: the copy loss sits near ln 64 until step ~550, then drops to 0.2 by step 800 (0.091 at
    # 2,000), 208 s on one thread. With learned positions the same model was still on its plateau at
    # step 1,750, and with learned positions and copies of one fixed length it learned the offset instead.
    # One thread: on a busy 2-core machine two threads made each step ~10x slower.
    "induction-tiny": Preset(
        "a 2-layer RoPE model learning to copy repeated random segments (induction heads)",
        dict(d_model=64, n_layers=2, n_heads=4, max_seq_len=64, positions="rope", backend="sdpa"),
        TrainConfig(steps=2000, batch_size=64, block_size=63, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                    eval_interval=100, eval_batches=4, weight_decay=0.0, betas=(0.9, 0.98), backend="sdpa",
                    num_threads=1),
        data="induction", data_options=dict(half_len=32, vocab_size=64, min_half_len=8),
    ),
    # GPT-2 small (124M) on a GPU: bf16 autocast, torch.compile, fused AdamW, PyTorch's SDPA.
    # The bundled corpus is characters (65 ids of 50304): a shape and speed check, not GPT-2 training.
    "gpt2-small-gpu": Preset(
        "GPT-2 small shape on one CUDA GPU (bf16, compiled, fused AdamW)",
        dict(vocab_size=50304, d_model=768, n_layers=12, n_heads=12, max_seq_len=1024, mlp="gelu_tanh",
             backend="sdpa"),
        TrainConfig(steps=5000, batch_size=12, block_size=1024, grad_accum=1, lr=6e-4, min_lr=6e-5,
                    warmup_steps=200, weight_decay=0.1, eval_interval=500, eval_batches=20, log_interval=10,
                    device="auto", dtype="auto", compile=True, fused_adamw=True, backend="sdpa"),
    ),
}


def build(preset: str | Preset, **overrides) -> tuple[Transformer, TrainConfig, Any, Any, Any]:
    """(model, cfg, train_data, val_data, tokenizer) for a preset; overrides replace TrainConfig fields.

    The model is initialised from ``torch.manual_seed(cfg.seed)``.
    """
    if isinstance(preset, str) and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; presets: {', '.join(sorted(PRESETS))}")
    p = PRESETS[preset] if isinstance(preset, str) else preset
    cfg = replace(p.train, **overrides)
    model_fields = dict(p.model)
    tokenizer = None
    if p.data == "shakespeare":
        tokenizer, train_data, val_data = shakespeare_splits()
        extra = 1 if cfg.objective == "mlm" else 0  # the [MASK] id after the characters
        model_fields.setdefault("vocab_size", tokenizer.vocab_size + extra)
    elif p.data == "induction":
        train_data = val_data = induction_sampler(**p.data_options)
        model_fields.setdefault("vocab_size", p.data_options["vocab_size"])
    elif p.data == "copy":
        train_data = val_data = copy_sampler(**p.data_options)
        model_fields.setdefault("vocab_size", p.data_options["vocab_size"] + 1)
    elif p.data.startswith("digits-"):
        train_data = val_data = digit_sampler(p.data[len("digits-"):], **p.data_options)
        model_fields.setdefault("vocab_size", 11)
    else:
        raise ValueError(f"unknown data {p.data!r}")
    torch.manual_seed(cfg.seed)
    model = Transformer(TransformerConfig(**model_fields))
    return model, cfg, train_data, val_data, tokenizer
