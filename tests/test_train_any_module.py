"""tfcore.train.train on a model that is not a tfcore Transformer (issue 14: the capstone GPT).

For objective "lm", ``train`` needs only a module mapping token ids (B, T) to logits (B, T, V):
the windows' length comes from ``TrainConfig.block_size``. Settings that need a tfcore
Transformer (other objectives, ``backend``, samples) are refused with a message, and checkpoints
of such a module resume bit for bit.
"""
from __future__ import annotations

import pytest
import torch
from helpers import single_thread  # noqa: F401 (autouse fixture: one thread for tiny tensors)
from torch import nn

from tfcore.checkpoints import CheckpointError, model_from_checkpoint
from tfcore.data import CharTokenizer
from tfcore.model import Transformer, TransformerConfig
from tfcore.train import TrainConfig, train

V = 23
_ORDER = torch.randperm(V, generator=torch.Generator().manual_seed(3))
PERMUTATION = torch.empty(V, dtype=torch.long)
PERMUTATION[_ORDER] = _ORDER.roll(-1)  # the next token of each token: one cycle through all V tokens


def corpus(n: int = 3000) -> torch.Tensor:
    """A text whose next token is PERMUTATION[this token]: a bigram table learns it exactly."""
    ids = [0]
    for _ in range(n - 1):
        ids.append(int(PERMUTATION[ids[-1]]))
    return torch.tensor(ids)


class Bigram(nn.Module):
    """logits[b, t] = table[tokens[b, t]]: no attention, no config, nothing of tfcore."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.table = nn.Embedding(vocab_size, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.table(tokens)


class OneHeadGPT(nn.Module):
    """Token and position embeddings, one causal attention head, a tied unembedding: a learner's own model."""

    def __init__(self, vocab_size: int, d: int, max_seq_len: int) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab_size, d), nn.Embedding(max_seq_len, d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        x = self.tok(tokens) + self.pos(torch.arange(t))
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        scores = (q @ k.transpose(1, 2) / q.shape[-1] ** 0.5).masked_fill(torch.ones(t, t).triu(1).bool(), -torch.inf)
        x = x + self.out(scores.softmax(-1) @ v)
        return x @ self.tok.weight.T


def cfg(**overrides) -> TrainConfig:
    fields = dict(steps=60, batch_size=8, block_size=16, lr=0.1, min_lr=0.1, warmup_steps=0, eval_interval=20,
                  eval_batches=2, log_interval=5, weight_decay=0.0)
    return TrainConfig(**{**fields, **overrides})



def test_a_plain_module_learns_the_next_token():
    torch.manual_seed(0)
    model = Bigram(V)
    result = train(model, cfg(), corpus(), corpus(500), progress=False)
    # The property, read from the table itself: each token's highest logit is the token that follows it.
    assert torch.equal(model.table.weight.argmax(dim=-1), PERMUTATION)
    assert result.final_val_loss < 0.05 < 2.5 < result.evals[0]["val_loss"]  # ln 23 = 3.1 at the start
    assert len(result.losses) == 60 and result.steps == 60


def test_a_learner_style_gpt_trains_with_tfcore_train():
    torch.manual_seed(0)
    model = OneHeadGPT(V, 32, 16)
    result = train(model, cfg(steps=40, lr=1e-2, min_lr=1e-2, eval_interval=0), corpus(), corpus(500),
                   progress=False)
    assert result.final_val_loss < 0.5 < 2.5 < result.losses[0]


def test_a_plain_module_resumes_bit_for_bit(tmp_path):
    torch.manual_seed(0)
    full_model = Bigram(V)
    full = train(full_model, cfg(steps=20, lr_decay_steps=20), corpus(), corpus(500), progress=False)
    torch.manual_seed(0)
    first = Bigram(V)
    train(first, cfg(steps=10, lr_decay_steps=20, out_dir=str(tmp_path)), corpus(), corpus(500), progress=False)
    second = Bigram(V)
    resumed = train(second, cfg(steps=20, lr_decay_steps=20, out_dir=str(tmp_path)), corpus(), corpus(500), progress=False, resume=True)
    assert torch.equal(second.table.weight, full_model.table.weight)
    assert resumed.losses == full.losses
    with pytest.raises(CheckpointError, match="not a tfcore Transformer"):
        model_from_checkpoint(tmp_path / "ckpt.pt")
    tfcore_model = Transformer(TransformerConfig(vocab_size=V, d_model=8, n_layers=1, n_heads=2, max_seq_len=16))
    with pytest.raises(CheckpointError, match="another nn.Module -> a tfcore Transformer"):
        train(tfcore_model, cfg(steps=20, out_dir=str(tmp_path)), corpus(), progress=False, resume=True)


@pytest.mark.parametrize("overrides, message", [
    (dict(objective="mlm"), "objective='mlm' needs a tfcore Transformer"),
    (dict(backend="sdpa"), "backend='sdpa' sets the attention backend of a tfcore Transformer"),
    (dict(sample_interval=10), "sample_interval=10 samples with a tfcore Transformer's generate"),
])
def test_settings_a_plain_module_would_ignore_are_refused(overrides, message):
    tokenizer = CharTokenizer([chr(97 + i) for i in range(V)])
    with pytest.raises(ValueError, match=message):
        train(Bigram(V), cfg(**overrides), corpus(), progress=False, tokenizer=tokenizer)


def test_a_module_that_does_not_return_logits_per_position_is_told_so():
    class LastOnly(Bigram):
        def forward(self, tokens):
            return self.table(tokens)[:, -1]  # (B, V): only the last position

    with pytest.raises(ValueError, match=r"logits \(B, T, V\), got \(8, 23\)"):
        train(LastOnly(V), cfg(steps=2), corpus(), progress=False)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        train(lambda tokens: tokens, cfg(steps=2), corpus(), progress=False)
