"""Every public module refuses wrong calls with an error that names the argument (issue 17).

One row per wrong call: the module, the argument the message must name (as a whole word), the
call, the exception type and a regular expression the message must match (the axis, the sizes,
the accepted range). A row that returns a result, raises another type, or raises a message that
does not name its argument fails. The rows cover the kinds of mistake, not single examples:
sizes that are zero, negative or fractional; shapes that broadcast but mean something else;
dtypes that would be silently reinterpreted; values that give NaN; arguments the callee would
ignore. Masks follow the one rule in ``tfcore.masks`` (its docstring), the same in every backend.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Callable, NamedTuple

import matplotlib
import pytest
import torch
from torch import nn

matplotlib.use("Agg")

from helpers import single_thread  # noqa: E402, F401 (autouse fixture: one thread for tiny tensors)

from tfcore import attention, blocks, complexity, data, diagnostics, flash, heads, losses, masks, mlp, model, norms  # noqa: E402
from tfcore import capstone, checkpoints, extrapolation, neurons, sampling, threads, viz  # noqa: E402
from tfcore import positions as pos  # noqa: E402
from tfcore.viz import plots  # noqa: E402


class Row(NamedTuple):
    module: str
    arg: str  # the message must name it, as a whole word
    call: Callable[[], object]
    error: type[Exception]
    match: str  # and match this (the axis, the sizes, the accepted values)


def r(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(dtype)


def ones(*shape: int, dtype: torch.dtype = torch.bool) -> torch.Tensor:
    return torch.ones(*shape, dtype=dtype)


def ids(*shape: int, high: int = 11, dtype: torch.dtype = torch.long) -> torch.Tensor:
    return torch.randint(high, shape, generator=torch.Generator().manual_seed(0)).to(dtype)


B, H, T, D = 2, 4, 5, 8
Q, K, V = r(B, H, T, D), r(B, H, T, D), r(B, H, T, D)
sdpa = attention.scaled_dot_product_attention
attend = heads.attend
CFG = model.TransformerConfig(vocab_size=11, d_model=16, n_layers=1, n_heads=4, max_seq_len=16)
DEC = model.Transformer(CFG).eval()
ENC = model.Transformer(model.with_changes(CFG, architecture="encoder")).eval()
SEQ2SEQ = model.Transformer(model.with_changes(CFG, architecture="encoder-decoder")).eval()
TOK = ids(2, 6)
MHA = heads.MultiHeadAttention(16, 4)
BLOCK = blocks.Block(16, 4, 32)
DEC_BLOCK = blocks.decoder_block(16, 4, 32)
LOGITS, TARGETS = r(2, 5, 7), ids(2, 5, high=7)
CHARS = data.CharTokenizer(list("abc"))
ROPE = model.Transformer(model.with_changes(CFG, positions="rope")).eval()
GPT_ARGS = dict(vocab_size=11, d_model=16, n_layers=1, n_heads=4, max_seq_len=16)
NAN, INF = float("nan"), float("inf")


def with_head_mask(m: heads.MultiHeadAttention, head_mask: torch.Tensor) -> heads.MultiHeadAttention:
    m.head_mask = head_mask
    return m


# ------------------------------------------------------------------ helpers for the rows added in the second pass
def hf_model(kind: str = "gpt2"):
    """A tiny random transformers model (the row is skipped without transformers)."""
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    if kind == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=11, n_positions=8, n_embd=8, n_layer=1, n_head=2, bos_token_id=None, eos_token_id=None)).eval()
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=11, hidden_size=8, intermediate_size=12, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=8, bos_token_id=None, eos_token_id=None,
        pad_token_id=None)).eval()


def hf(name: str) -> Callable:
    """``tfcore.hf.<name>`` (the row is skipped without transformers)."""
    pytest.importorskip("transformers")
    from tfcore import hf as tfcore_hf
    return getattr(tfcore_hf, name)


def from_hf_with(kind: str = "gpt2", drop: str | None = None, **put):
    """from_hf of a tiny model's state dict with one key dropped or some keys replaced."""
    from tfcore.hf import from_hf
    m = hf_model(kind)
    state = {k: v for k, v in m.state_dict().items() if k != drop}
    return from_hf({**state, **put}, m.config)


def from_hf_config(kind: str = "gpt2", **changes):
    """from_hf of a tiny model's weights with a config that contradicts them."""
    from tfcore.hf import from_hf
    m = hf_model(kind)
    return from_hf(m.state_dict(), type(m.config)(**{**m.config.to_dict(), **changes}))


GPT_CFG = model.with_changes(CFG, mlp="gelu", d_ff=64)


def gpt_state(**put) -> dict:
    from tfcore.capstone import to_gpt
    return {**to_gpt(model.Transformer(GPT_CFG)), **put}


def gpt_state_without(name: str) -> dict:
    return {k: v for k, v in gpt_state().items() if k != name}


class Bigram(nn.Module):
    """A plain nn.Module language model: ids (B, T) -> logits (B, T, V) (``out`` changes what it returns)."""

    def __init__(self, vocab_size: int = 11, out: Callable | None = None):
        super().__init__()
        self.table, self.out = nn.Embedding(vocab_size, vocab_size), out

    def forward(self, tokens):
        logits = self.table(tokens)
        return self.out(logits) if self.out else logits


CORPUS = ids(300)


def train_cfg(**changes):
    from tfcore.train import TrainConfig
    return TrainConfig(**{**dict(steps=2, batch_size=2, block_size=8, warmup_steps=1, eval_interval=0, eval_batches=1),
                          **changes})


def fit(m: nn.Module = None, data=CORPUS, val=None, **changes):
    from tfcore.train import train
    return train(Bigram() if m is None else m, train_cfg(**changes), data, val, progress=False)


def file_with(content) -> str:
    """A file in a fresh temporary folder holding ``content`` (bytes as they are, anything else torch.save'd)."""
    import tempfile
    path = f"{tempfile.mkdtemp(prefix='tfcore-bad-')}/file.pt"
    if isinstance(content, bytes):
        with open(path, "wb") as f:
            f.write(content)
    else:
        torch.save(content, path)
    return path


def resume_with(first: nn.Module, second: nn.Module):
    """Train ``first`` two steps into a fresh out_dir, then resume ``second`` from there."""
    import tempfile
    from tfcore.train import train
    out = tempfile.mkdtemp(prefix="tfcore-bad-")
    train(first, train_cfg(out_dir=out), CORPUS, progress=False)
    return train(second, train_cfg(out_dir=out), CORPUS, progress=False, resume=True)


def cli(*argv: str) -> None:
    """``python -m tfcore.train ARGV``: argparse's refusal (exit status 2) as a ValueError with its message."""
    import contextlib
    import io
    import tempfile
    from tfcore import train_cli
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            train_cli.main([*argv, "--out-dir", tempfile.mkdtemp(prefix="tfcore-bad-"), "--no-progress"])
        except SystemExit as e:
            raise ValueError(f"exit status {e.code}: {err.getvalue()}") from None


ROWS: list[Row] = [
    # ------------------------------------------------------------------------------------- attention
    Row("attention", "x", lambda: attention.softmax(ones(3, dtype=torch.long)), TypeError, "floating-point"),
    Row("attention", "dim", lambda: attention.softmax(r(3, 4), dim=5), ValueError, r"\[-2, 2\).*got 5"),
    Row("attention", "q", lambda: sdpa(r(4), r(3, 4), r(3, 4)), ValueError, r"at least 2 axes"),
    Row("attention", "q", lambda: sdpa(Q.long(), K, V), TypeError, "floating-point"),
    Row("attention", "d_head", lambda: sdpa(Q, r(B, H, T, 4), V), ValueError, "k has d_head=4 but q has d_head=8"),
    Row("attention", "T_k", lambda: sdpa(Q, K, r(B, H, 3, D)), ValueError, "v has T_k=3 but k has T_k=5"),
    Row("attention", "B", lambda: sdpa(Q, r(3, H, T, D), r(3, H, T, D)), ValueError, "k has B=3 but q has B=2"),
    Row("attention", "h", lambda: sdpa(Q, r(B, 3, T, D), r(B, 3, T, D)), ValueError, "k has h=3 but q has h=4"),
    Row("attention", "B", lambda: sdpa(Q, K, r(3, H, T, D)), ValueError, "v has B=3 but q has B=2"),
    Row("attention", "T_k", lambda: sdpa(Q, r(B, H, 0, D), r(B, H, 0, D)), ValueError, "k has T_k=0"),
    Row("attention", "d_head", lambda: sdpa(r(B, H, T, 0), r(B, H, T, 0), V), ValueError, "d_head=0"),
    Row("attention", "mask", lambda: sdpa(Q, K, V, mask=ones(T, T, dtype=torch.long)), TypeError, "integer mask is ambiguous"),
    Row("attention", "mask", lambda: sdpa(Q, K, V, mask=ones(T, T, dtype=torch.uint8)), TypeError, r"mask\.bool\(\)"),
    Row("attention", "mask", lambda: sdpa(Q, K, V, mask=ones(B, T)), ValueError, r"\(B, 1, 1, T_k\)"),
    Row("attention", "mask", lambda: sdpa(Q, K, V, mask=ones(B, 1, T)), ValueError, "head axis h=4"),
    Row("attention", "mask", lambda: sdpa(Q, K, V, mask=ones(1, T, T)), ValueError, "head axis"),
    Row("attention", "mask", lambda: sdpa(Q, K, V, mask=ones(T)), ValueError, "has 1 axis"),
    Row("attention", "mask", lambda: sdpa(Q, K, V, mask=ones(1, B, H, T, T)), ValueError, "does not broadcast"),
    Row("attention", "mask", lambda: sdpa(Q, K, V, mask=ones(T, T + 1)), ValueError, r"\(5, 6\) does not broadcast"),
    Row("attention", "mask", lambda: sdpa(Q, K, V, mask=[[True] * T] * T), TypeError, "torch.Tensor"),
    Row("attention", "mask", lambda: sdpa(Q, K, V, mask=ones(T, T).to("meta")), ValueError, "on meta"),
    Row("attention", "scale", lambda: sdpa(Q, K, V, scale=0.0), ValueError, r"\(0, inf\)"),
    Row("attention", "scale", lambda: sdpa(Q, K, V, scale=-1.0), ValueError, r"\(0, inf\)"),
    Row("attention", "scale", lambda: sdpa(Q, K, V, scale=NAN), ValueError, "finite"),
    Row("attention", "scale", lambda: sdpa(Q, K, V, scale=INF), ValueError, "finite"),
    Row("attention", "t_k", lambda: sdpa(r(1, 1, 6, D), r(1, 1, 3, D), r(1, 1, 3, D), is_causal=True), ValueError,
        "t_k >= t_q"),
    Row("attention", "mask", lambda: attention.apply_mask(r(B, H, T, T), ones(B, T)), ValueError, "does not broadcast"),
    # ------------------------------------------------------------------------------------- masks
    Row("masks", "t_q", lambda: masks.causal_mask(0), ValueError, "positive integer"),
    Row("masks", "t_q", lambda: masks.causal_mask(2.5), ValueError, "positive integer"),
    Row("masks", "t_k", lambda: masks.causal_mask(5, 3), ValueError, "t_k >= t_q"),
    Row("masks", "t", lambda: masks.sliding_window_mask(-1, 2), ValueError, "positive integer"),
    Row("masks", "window", lambda: masks.sliding_window_mask(5, 0), ValueError, "positive integer"),
    Row("masks", "prefix_len", lambda: masks.prefix_lm_mask(4, 5), ValueError, r"\[0, T=4\]"),
    Row("masks", "prefix_len", lambda: masks.prefix_lm_mask(4, 1.5), ValueError, r"\[0, T=4\]"),
    Row("masks", "lengths", lambda: masks.padding_mask([1.0, 2.0], 4), TypeError, "integers"),
    Row("masks", "lengths", lambda: masks.padding_mask(torch.tensor([True, False]), 3), TypeError, "integers"),
    Row("masks", "lengths", lambda: masks.padding_mask([[1, 2]], 4), ValueError, r"\(B,\)"),
    Row("masks", "lengths", lambda: masks.padding_mask([5], 4), ValueError, r"\[0, T=4\]"),
    Row("masks", "lengths", lambda: masks.padding_mask(torch.zeros(0, dtype=torch.long)), ValueError, "B=0"),
    Row("masks", "t", lambda: masks.padding_mask([1], 2.5), ValueError, "integer"),
    Row("masks", "source_lengths", lambda: masks.cross_attention_mask([7], 4), ValueError, r"\[0, T=4\]"),
    Row("masks", "segment_ids", lambda: masks.block_diagonal_mask(torch.zeros(1, 2, 3, dtype=torch.long)), ValueError,
        r"\(B, T\)"),
    Row("masks", "segment_ids", lambda: masks.block_diagonal_mask(torch.zeros(0, dtype=torch.long)), ValueError, "T=0"),
    Row("masks", "mask", lambda: masks.combine_masks(ones(3, 3), ones(3, 3, dtype=torch.long)), TypeError, "mask 1 must be bool"),
    Row("masks", "mask", lambda: masks.combine_masks(ones(3, 3), ones(4, 4)), ValueError, "do not broadcast together"),
    Row("masks", "mask", lambda: masks.combine_masks(ones(B, 1, T), ones(B, 1, 1, T)), ValueError, "3 axes but another mask has 4"),
    Row("masks", "mask", lambda: masks.combine_masks(ones(3, 3), [[True]]), TypeError, "torch.Tensor"),
    Row("masks", "mask", lambda: masks.to_additive(ones(3, 3, dtype=torch.long)), TypeError, "must be bool"),
    Row("masks", "dtype", lambda: masks.to_additive(ones(3, 3), dtype=torch.long), TypeError, "floating-point dtype"),
    Row("masks", "fill", lambda: masks.to_additive(ones(3, 3), fill=INF), ValueError, "negative"),
    Row("masks", "fill", lambda: masks.to_additive(ones(3, 3), fill=NAN), ValueError, "negative"),
    Row("masks", "mask", lambda: masks.check_mask(ones(B, 1, T), (B, H, T, T)), ValueError, "head axis"),
    # ------------------------------------------------------------------------------------- heads
    Row("heads", "n_heads", lambda: heads.split_heads(r(B, T, 8), 0), ValueError, "positive integer"),
    Row("heads", "n_heads", lambda: heads.split_heads(r(B, T, 10), 4), ValueError, "d_model=10"),
    Row("heads", "x", lambda: heads.split_heads(r(T, 8), 2), ValueError, r"\(B, T, d_model\)"),
    Row("heads", "x", lambda: heads.merge_heads(r(B, T, 8)), ValueError, r"\(B, h, T, d_head\)"),
    Row("heads", "n_rep", lambda: heads.repeat_kv(r(B, 2, T, D), -1), ValueError, "positive integer"),
    Row("heads", "n_layers", lambda: heads.ModelCache.empty(-1), ValueError, "positive integer"),
    Row("heads", "max_length", lambda: heads.KVCache(max_length=0), ValueError, "positive integer"),
    Row("heads", "k", lambda: heads.KVCache().append(r(2, 3, 4), r(2, 3, 4)), ValueError, r"\(B, h_kv, T_new, d_head\)"),
    Row("heads", "v", lambda: heads.KVCache().append(r(2, 2, 3, 4), r(2, 2, 3, 5)), ValueError, r"shape \(2, 2, 3, 5\)"),
    Row("heads", "v", lambda: heads.KVCache().append(r(2, 2, 3, 4), r(2, 2, 3, 4, dtype=torch.float64)), TypeError,
        "dtype torch.float64"),
    Row("heads", "d_model", lambda: heads.MultiHeadAttention(0, 4), ValueError, "positive integer"),
    Row("heads", "n_heads", lambda: heads.MultiHeadAttention(16, 0), ValueError, "positive integer"),
    Row("heads", "n_heads", lambda: heads.MultiHeadAttention(16, -1), ValueError, "positive integer"),
    Row("heads", "n_kv_heads", lambda: heads.MultiHeadAttention(16, 4, 0), ValueError, "positive integer"),
    Row("heads", "n_kv_heads", lambda: heads.MultiHeadAttention(16, 4, 8), ValueError, "exceeds n_heads=4"),
    Row("heads", "n_kv_heads", lambda: heads.MultiHeadAttention(24, 6, 4), ValueError, "not a multiple"),
    Row("heads", "dropout", lambda: heads.MultiHeadAttention(16, 4, dropout=1.5), ValueError, r"\[0, 1\)"),
    Row("heads", "rope_base", lambda: heads.MultiHeadAttention(16, 4, rope_base=0.0), ValueError, r"\(0, inf\)"),
    Row("heads", "rope_base", lambda: heads.MultiHeadAttention(16, 4, rope_base=NAN), ValueError, "finite"),
    Row("heads", "rope_layout", lambda: heads.MultiHeadAttention(16, 4, rope_base=1e4, rope_layout="rot"), ValueError,
        "one of"),
    Row("heads", "scale", lambda: heads.MultiHeadAttention(16, 4, scale=-1.0), ValueError, r"\(0, inf\)"),
    Row("heads", "x", lambda: MHA(ones(1, 3, 16, dtype=torch.long)), TypeError, "floating-point"),
    Row("heads", "x", lambda: MHA(r(3, 16)), ValueError, r"\(B, T, d_model\)"),
    Row("heads", "x", lambda: MHA(r(1, 3, 12)), ValueError, "x has d_model=12 but the layer has d_model=16"),
    Row("heads", "x", lambda: MHA(r(1, 0, 16)), ValueError, "T=0"),
    Row("heads", "x", lambda: MHA(r(1, 3, 16, dtype=torch.float64)), TypeError, "float64 but the layer's weights"),
    Row("heads", "source", lambda: MHA(r(2, 3, 16), source=r(2, 4, 12)), ValueError, "source has d_model=12"),
    Row("heads", "source", lambda: MHA(r(2, 3, 16), source=r(3, 4, 16)), ValueError, "source has B=3 but x has B=2"),
    Row("heads", "source", lambda: MHA(r(2, 3, 16), source=r(1, 4, 16)), ValueError, "source has B=1 but x has B=2"),
    Row("heads", "source", lambda: MHA(r(2, 3, 16), source=r(4, 16)), ValueError, r"\(B, T_k, d_model\)"),
    Row("heads", "source", lambda: MHA(r(2, 3, 16), source=ones(2, 4, 16, dtype=torch.long)), TypeError, "floating-point"),
    Row("heads", "mask", lambda: MHA(r(2, 3, 16), mask=ones(2, 1, 3)), ValueError, "3-axis mask would land on the head axis"),
    Row("heads", "mask", lambda: MHA(r(2, 3, 16), mask=ones(2, 3)), ValueError, r"a 2-axis mask means \(T_q, T_k\)"),
    Row("heads", "mask", lambda: MHA(r(4, 3, 16), mask=ones(4, 1, 3)), ValueError, "head axis h=4"),
    Row("heads", "mask", lambda: MHA(r(2, 3, 16), mask=ones(3, 3, dtype=torch.long)), TypeError, "ambiguous"),
    Row("heads", "mask", lambda: MHA(r(2, 3, 16), source=r(2, 4, 16), mask=ones(2, 1, 1, 3)), ValueError,
        r"\(2, 4, 3, 4\)"),
    Row("heads", "cache", lambda: MHA(r(2, 1, 16), cache="cache"), TypeError, "KVCache"),
    Row("heads", "head_mask", lambda: with_head_mask(heads.MultiHeadAttention(16, 4), torch.ones(3))(r(1, 3, 16)),
        ValueError, r"\(h,\) = \(4,\)"),
    Row("heads", "backend", lambda: attend(Q, K, V, None, False, None, "fast"), ValueError, "one of"),
    Row("heads", "backend", lambda: attend(Q, K, V, None, False, None, "sdpa", True), ValueError, "'naive'"),
    Row("heads", "q", lambda: attend(r(H, T, D), r(H, T, D), r(H, T, D), None, False, None), ValueError, "4 axes"),
    Row("heads", "B", lambda: attend(Q, r(3, H, T, D), r(3, H, T, D), None, False, None), ValueError, "k has B=3 but q has B=2"),
    Row("heads", "B", lambda: attend(Q, r(1, H, T, D), r(1, H, T, D), None, False, None), ValueError, "k has B=1 but q has B=2"),
    Row("heads", "h_kv", lambda: attend(r(B, 2, T, D), K, V, None, False, None), ValueError, r"h=2 query heads.*h_kv=4"),
    Row("heads", "h_kv", lambda: attend(r(B, 6, T, D), K, V, None, False, None), ValueError, "not a multiple"),
    Row("heads", "h_kv", lambda: attend(Q, r(B, 2, T, D), r(B, 4, T, D), None, False, None), ValueError,
        "v has h_kv=4 but k has h_kv=2"),
    Row("heads", "d_head", lambda: attend(Q, r(B, H, T, 4), r(B, H, T, 4), None, False, None, "sdpa"), ValueError,
        "k has d_head=4 but q has d_head=8"),
    Row("heads", "k", lambda: attend(Q, K.double(), V.double(), None, False, None, "sdpa"), TypeError, "dtype"),
    Row("heads", "mask", lambda: attend(Q, K, V, ones(T, T), False, None, "tiled"), ValueError, "'naive' and 'sdpa'"),
    Row("heads", "mask", lambda: attend(Q, K, V, torch.zeros(B, 1, 1, T), False, None, "tiled"), ValueError,
        "bool key padding mask"),
    Row("heads", "mask", lambda: attend(Q, K, V, ones(B, 1, 1, T), False, None, "triton"), ValueError,
        "'tiled' also takes a bool key padding mask"),
    Row("heads", "mask", lambda: attend(Q, K, V, ones(T, T), False, None, "triton"), ValueError, "is_causal only"),
    # the same wrong call is refused the same way by every backend
    *[Row("heads", arg, call, err, match) for backend in ("naive", "sdpa", "tiled", "triton") for arg, call, err, match in (
        ("T_k", lambda b=backend: attend(Q, r(B, H, 0, D), r(B, H, 0, D), None, False, None, b), ValueError, "k has T_k=0"),
        ("mask", lambda b=backend: attend(Q, K, V, ones(T, T, dtype=torch.long), False, None, b), TypeError, "ambiguous"),
        ("mask", lambda b=backend: attend(Q, K, V, ones(B, 1, T), False, None, b), ValueError, "head axis"),
        ("mask", lambda b=backend: attend(Q, K, V, ones(B, T), False, None, b), ValueError, r"\(B, 1, 1, T_k\)"),
        ("mask", lambda b=backend: attend(Q, K, V, ones(T), False, None, b), ValueError, "has 1 axis"),
        ("T_k", lambda b=backend: attend(r(B, H, 6, D), K, V, None, True, None, b), ValueError, "T_k >= T_q"),
        ("scale", lambda b=backend: attend(Q, K, V, None, False, NAN, b), ValueError, "finite"),
        ("scale", lambda b=backend: attend(Q, K, V, None, False, 0.0, b), ValueError, r"\(0, inf\)"),
    )],
    # ------------------------------------------------------------------------------------- mlp
    Row("mlp", "d_ff", lambda: mlp.MLP(16, 0), ValueError, "positive integer"),
    Row("mlp", "d_ff", lambda: mlp.MLP(16, -1), ValueError, "positive integer"),
    Row("mlp", "d_model", lambda: mlp.MLP(2.5, 16), ValueError, "positive integer"),
    Row("mlp", "d_ff", lambda: mlp.SwiGLU(16, 0), ValueError, "positive integer"),
    Row("mlp", "d_ff", lambda: mlp.make_mlp("gelu", 16, 0), ValueError, "positive integer"),
    Row("mlp", "kind", lambda: mlp.make_mlp("tanh", 16, 32), ValueError, "one of"),
    Row("mlp", "activation", lambda: mlp.MLP(16, 32, "tanh"), ValueError, "one of"),
    Row("mlp", "dropout", lambda: mlp.MLP(16, 32, dropout=2.0), ValueError, r"\[0, 1\)"),
    Row("mlp", "approximate", lambda: mlp.gelu(r(3), "fast"), ValueError, "'none' or 'tanh'"),
    Row("mlp", "d_model", lambda: mlp.swiglu(r(2, 8), r(16, 6), r(8, 16), r(16, 6)), ValueError, "w1 has d_model=6"),
    Row("mlp", "w3", lambda: mlp.swiglu(r(2, 8), r(16, 8), r(8, 16), r(12, 8)), ValueError, r"\(12, 8\)"),
    Row("mlp", "w2", lambda: mlp.swiglu(r(2, 8), r(16, 8), r(6, 16), r(16, 8)), ValueError, "w2 has d_model=6 but x has d_model=8"),
    Row("mlp", "w1", lambda: mlp.swiglu(r(2, 8), r(8), r(8, 16), r(16, 8)), ValueError, r"\(d_ff, d_model\)"),
    Row("mlp", "x", lambda: mlp.MLP(16, 32)(r(2, 12)), ValueError, "x has d_model=12 but the layer has d_model=16"),
    Row("mlp", "x", lambda: mlp.SwiGLU(16, 32)(r(2, 12)), ValueError, "x has d_model=12"),
    Row("mlp", "x", lambda: mlp.MLP(16, 32)(ones(2, 16, dtype=torch.long)), TypeError, "floating-point"),
    # ------------------------------------------------------------------------------------- norms
    Row("norms", "eps", lambda: norms.layer_norm(r(2, 8), None, None, eps=-1e-5), ValueError, r"\[0, inf\)"),
    Row("norms", "eps", lambda: norms.rms_norm(r(2, 8), None, eps=NAN), ValueError, "finite"),
    Row("norms", "eps", lambda: norms.LayerNorm(8, eps=-1e-5), ValueError, r"\[0, inf\)"),
    Row("norms", "eps", lambda: norms.RMSNorm(8, eps=-1.0), ValueError, r"\[0, inf\)"),
    Row("norms", "d_model", lambda: norms.LayerNorm(0), ValueError, "positive integer"),
    Row("norms", "d_model", lambda: norms.RMSNorm(-1), ValueError, "positive integer"),
    Row("norms", "d_model", lambda: norms.make_norm("layer", 0), ValueError, "positive integer"),
    Row("norms", "norm", lambda: norms.make_norm("batch", 8), ValueError, "'layer' or 'rms'"),
    Row("norms", "weight", lambda: norms.layer_norm(r(3, 8), r(2, 8), None), ValueError, r"\(d_model,\) = \(8,\).*\(2, 8\)"),
    Row("norms", "weight", lambda: norms.layer_norm(r(3, 8), r(1, 8), None), ValueError, r"got \(1, 8\)"),
    Row("norms", "bias", lambda: norms.layer_norm(r(3, 8), None, r(3, 8)), ValueError, r"got \(3, 8\)"),
    Row("norms", "weight", lambda: norms.layer_norm(r(3, 8), r(6), None), ValueError, "weight has d_model=6 but x has d_model=8"),
    Row("norms", "weight", lambda: norms.layer_norm(r(3, 8), torch.tensor(2.0), None), ValueError, r"got \(\)"),
    Row("norms", "weight", lambda: norms.rms_norm(r(3, 8), [1.0] * 8), TypeError, "torch.Tensor"),
    Row("norms", "x", lambda: norms.layer_norm(ones(3, 8, dtype=torch.long), None, None), TypeError, "floating-point"),
    Row("norms", "x", lambda: norms.LayerNorm(8)(r(2, 6)), ValueError, "x has d_model=6 but the layer has d_model=8"),
    Row("norms", "x", lambda: norms.RMSNorm(8)(r(2, 6)), ValueError, "x has d_model=6"),
    # ------------------------------------------------------------------------------------- positions
    Row("positions", "t", lambda: pos.sinusoidal(0, 8), ValueError, "positive integer"),
    Row("positions", "d", lambda: pos.sinusoidal(4, 7), ValueError, "even"),
    Row("positions", "base", lambda: pos.sinusoidal(4, 8, base=0.0), ValueError, r"\(0, inf\)"),
    Row("positions", "base", lambda: pos.sinusoidal(4, 8, base=-10.0), ValueError, r"\(0, inf\)"),
    Row("positions", "base", lambda: pos.rope(r(3, 8), torch.arange(3), base=NAN), ValueError, "finite"),
    Row("positions", "base", lambda: pos.rope(r(3, 8), torch.arange(3), base=0.0), ValueError, r"\(0, inf\)"),
    Row("positions", "base", lambda: pos.rope_angles(torch.arange(3), 8, base=INF), ValueError, "finite"),
    Row("positions", "d", lambda: pos.rope_angles(torch.arange(3), 0), ValueError, "positive integer"),
    Row("positions", "d_head", lambda: pos.rope(r(3, 7), torch.arange(3)), ValueError, "even"),
    Row("positions", "positions", lambda: pos.rope(r(3, 8), torch.arange(4)), ValueError, "positions has T=4 but x has T=3"),
    Row("positions", "layout", lambda: pos.rope(r(3, 8), torch.arange(3), layout="rot"), ValueError, "one of"),
    Row("positions", "x", lambda: pos.rope(ones(3, 8, dtype=torch.long), torch.arange(3)), TypeError, "floating-point"),
    Row("positions", "max_len", lambda: pos.LearnedPositions(0, 8), ValueError, "positive integer"),
    Row("positions", "d_model", lambda: pos.LearnedPositions(4, -8), ValueError, "positive integer"),
    Row("positions", "max_len", lambda: pos.LearnedPositions(4, 8)(torch.arange(6)), ValueError, "position 5"),
    Row("positions", "positions", lambda: pos.LearnedPositions(4, 8)(torch.tensor([-1, 0])), ValueError, ">= 0"),
    Row("positions", "positions", lambda: pos.LearnedPositions(4, 8)(torch.tensor([0.0, 1.0])), TypeError, "integer"),
    Row("positions", "positions", lambda: pos.LearnedPositions(4, 8)(torch.zeros(0, dtype=torch.long)), ValueError, "empty"),
    Row("positions", "n_heads", lambda: pos.alibi_slopes(0), ValueError, "positive integer"),
    Row("positions", "t_q", lambda: pos.alibi_bias(4, 0), ValueError, "positive integer"),
    Row("positions", "t_k", lambda: pos.alibi_bias(4, 5, 3), ValueError, "t_q=5, t_k=3"),
    Row("positions", "relative", lambda: pos.t5_bucket(torch.tensor([0.5, -1.0])), TypeError, "integer"),
    Row("positions", "n_buckets", lambda: pos.t5_bucket(torch.arange(-3, 3), n_buckets=1), ValueError, ">= 4"),
    Row("positions", "n_buckets", lambda: pos.t5_bucket(torch.arange(-3, 3), n_buckets=1, bidirectional=False), ValueError,
        ">= 2"),
    Row("positions", "max_distance", lambda: pos.t5_bucket(torch.arange(-30, 30), max_distance=4), ValueError,
        "larger than the 8 offsets"),
    Row("positions", "n_heads", lambda: pos.T5RelativeBias(0), ValueError, "positive integer"),
    Row("positions", "n_buckets", lambda: pos.T5RelativeBias(4, n_buckets=2), ValueError, ">= 4"),
    Row("positions", "t_q", lambda: pos.T5RelativeBias(4)(0), ValueError, "positive integer"),
    Row("positions", "t_k", lambda: pos.T5RelativeBias(4)(5, 3), ValueError, "t_k must be >= t_q"),
    # ------------------------------------------------------------------------------------- blocks
    Row("blocks", "d_ff", lambda: blocks.Block(16, 4, 0), ValueError, "positive integer"),
    Row("blocks", "n_heads", lambda: blocks.Block(16, 0, 32), ValueError, "positive integer"),
    Row("blocks", "placement", lambda: blocks.Block(16, 4, 32, placement="middle"), ValueError, "one of"),
    Row("blocks", "norm", lambda: blocks.Block(16, 4, 32, norm="batch"), ValueError, "'layer' or 'rms'"),
    Row("blocks", "mlp", lambda: blocks.Block(16, 4, 32, mlp="tanh"), ValueError, "one of"),
    Row("blocks", "placement", lambda: blocks.Block(16, 4, 32, placement="parallel", cross_attention=True), ValueError,
        "cross-attention"),
    Row("blocks", "scale", lambda: blocks.Block(16, 4, 32, scale=0.0), ValueError, r"\(0, inf\)"),
    Row("blocks", "rope_base", lambda: blocks.Block(16, 4, 32, rope_base=-1.0), ValueError, r"\(0, inf\)"),
    Row("blocks", "source", lambda: BLOCK(r(2, 3, 16), source=r(2, 4, 16)), ValueError, "without cross-attention"),
    Row("blocks", "source_mask", lambda: BLOCK(r(2, 3, 16), source_mask=ones(2, 1, 1, 3)), ValueError,
        "without cross-attention"),
    Row("blocks", "source", lambda: DEC_BLOCK(r(2, 3, 16), is_causal=True), ValueError, "has cross-attention"),
    Row("blocks", "source", lambda: DEC_BLOCK(r(2, 3, 16), is_causal=True, source=r(2, 4, 8)), ValueError,
        "source has d_model=8"),
    Row("blocks", "source", lambda: DEC_BLOCK(r(2, 3, 16), is_causal=True, source=r(1, 4, 16)), ValueError,
        "source has B=1 but x has B=2"),
    Row("blocks", "mask", lambda: DEC_BLOCK(r(2, 3, 16), is_causal=True, source=r(2, 4, 16), source_mask=ones(2, 4)),
        ValueError, r"\(B, 1, 1, T_k\)"),
    Row("blocks", "mask", lambda: BLOCK(r(2, 3, 16), mask=ones(2, 1, 3)), ValueError, "head axis"),
    Row("blocks", "x", lambda: BLOCK(r(3, 16)), ValueError, r"\(B, T, d_model\)"),
    # ------------------------------------------------------------------------------------- model
    *[Row("model", name, lambda name=name, v=v: model.TransformerConfig(**{name: v}), ValueError, "positive integer")
      for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "max_seq_len", "n_encoder_layers")
      for v in (0, -1, 2.5, True)],
    Row("model", "rope_base", lambda: model.TransformerConfig(positions="rope", rope_base=0.0), ValueError, r"\(0, inf\)"),
    Row("model", "rope_base", lambda: model.TransformerConfig(rope_base=NAN), ValueError, "finite"),
    Row("model", "attention_scale", lambda: model.TransformerConfig(attention_scale=0.0), ValueError, r"\(0, inf\)"),
    Row("model", "attention_scale", lambda: model.TransformerConfig(attention_scale=-0.5), ValueError, r"\(0, inf\)"),
    Row("model", "dropout", lambda: model.TransformerConfig(dropout=1.0), ValueError, r"\[0, 1\)"),
    Row("model", "dropout", lambda: model.TransformerConfig(dropout=-0.1), ValueError, r"\[0, 1\)"),
    Row("model", "bias", lambda: model.TransformerConfig(bias="yes"), ValueError, "True or False"),
    Row("model", "tie_weights", lambda: model.TransformerConfig(tie_weights=1), ValueError, "True or False"),
    Row("model", "architecture", lambda: model.TransformerConfig(architecture="gpt"), ValueError, "one of"),
    Row("model", "backend", lambda: model.TransformerConfig(backend="fast"), ValueError, "one of"),
    Row("model", "n_heads", lambda: model.TransformerConfig(d_model=30, n_heads=4), ValueError, "d_model=30"),
    Row("model", "n_kv_heads", lambda: model.TransformerConfig(n_heads=4, n_kv_heads=8), ValueError, "exceeds n_heads=4"),
    Row("model", "n_kv_heads", lambda: model.TransformerConfig(n_heads=4, n_kv_heads=3), ValueError, "multiple"),
    Row("model", "config", lambda: model.Transformer({"d_model": 16}), TypeError, "TransformerConfig"),
    Row("model", "tokens", lambda: DEC(TOK.float()), TypeError, "integer ids"),
    Row("model", "tokens", lambda: DEC(TOK > 3), TypeError, r"torch\.long or torch\.int.*torch\.bool"),
    Row("model", "tokens", lambda: DEC(TOK.to(torch.uint8)), TypeError, "torch.uint8"),
    Row("model", "tokens", lambda: DEC(TOK[:, :0]), ValueError, r"\(B, T\) = \(2, 0\)"),
    Row("model", "tokens", lambda: DEC(TOK[:0]), ValueError, r"\(0, 6\)"),
    Row("model", "tokens", lambda: DEC(TOK[0]), ValueError, r"\(B, T\)"),
    Row("model", "tokens", lambda: DEC([[1, 2]]), TypeError, "torch.Tensor"),
    Row("model", "vocab_size", lambda: DEC(torch.full((1, 3), 11)), ValueError, r"\[0, vocab_size=11\)"),
    Row("model", "max_seq_len", lambda: DEC(torch.zeros(1, 17, dtype=torch.long)), ValueError, "length 17"),
    Row("model", "lengths", lambda: DEC(TOK, lengths=torch.tensor([4])), ValueError, "lengths has B=1 but tokens has B=2"),
    Row("model", "lengths", lambda: DEC(TOK, lengths=torch.tensor([6, 5, 4])), ValueError, "B=3"),
    Row("model", "lengths", lambda: DEC(TOK, lengths=torch.tensor([[6, 5]])), ValueError, r"\(B,\)"),
    Row("model", "lengths", lambda: DEC(TOK, lengths=torch.tensor([7, 5])), ValueError, r"\[0, T=6\]"),
    Row("model", "lengths", lambda: ENC(TOK, lengths=torch.tensor([4])), ValueError, "B=1"),
    Row("model", "source", lambda: DEC(TOK, source=TOK), ValueError, "architecture='decoder'"),
    Row("model", "source_lengths", lambda: DEC(TOK, source_lengths=torch.tensor([6, 6])), ValueError, "only 'encoder-decoder'"),
    Row("model", "memory", lambda: DEC(TOK, memory=r(2, 6, 16)), ValueError, "no cross-attention"),
    Row("model", "source", lambda: ENC(TOK, source=TOK), ValueError, "architecture='encoder'"),
    Row("model", "source", lambda: SEQ2SEQ(TOK), ValueError, "needs source="),
    Row("model", "source", lambda: SEQ2SEQ(TOK, source=ids(1, 4)), ValueError, "source has B=1 but tokens has B=2"),
    Row("model", "source", lambda: SEQ2SEQ(TOK, source=torch.zeros(2, 4)), TypeError, "integer ids"),
    Row("model", "source", lambda: SEQ2SEQ(TOK, source=ids(2, 4), memory=r(2, 4, 16)), ValueError, "not both"),
    Row("model", "source_lengths", lambda: SEQ2SEQ(TOK, source=ids(2, 4), source_lengths=torch.tensor([3])), ValueError,
        "source_lengths has B=1 but source has B=2"),
    Row("model", "source_lengths", lambda: SEQ2SEQ(TOK, source=ids(2, 4), source_lengths=torch.tensor([5, 3])), ValueError,
        r"\[0, T=4\]"),
    Row("model", "memory", lambda: SEQ2SEQ(TOK, memory=r(2, 4, 8)), ValueError, "memory has d_model=8"),
    Row("model", "memory", lambda: SEQ2SEQ(TOK, memory=r(1, 4, 16)), ValueError, "memory has B=1"),
    Row("model", "mask", lambda: DEC(TOK, mask=ones(2, 6)), ValueError, "does not broadcast"),
    Row("model", "mask", lambda: DEC(TOK, mask=ones(2, 1, 6)), ValueError, "head axis"),
    Row("model", "mask", lambda: DEC(TOK, mask=ones(2, 1, 1, 5)), ValueError, r"\(2, 1, 1, 5\) does not broadcast"),
    Row("model", "mask", lambda: DEC(TOK, mask=ones(4, 1, 6)), ValueError, "head axis"),
    Row("model", "mask", lambda: DEC(TOK, mask=ones(6, 6, dtype=torch.long)), TypeError, "ambiguous"),
    Row("model", "mask", lambda: DEC(TOK, mask=torch.zeros(6, 6)), TypeError, "must be bool"),
    Row("model", "mask", lambda: ENC(TOK, mask=ones(5, 5)), ValueError, "does not broadcast"),
    Row("model", "cache", lambda: DEC(TOK, cache="cache"), TypeError, "ModelCache"),
    Row("model", "cache", lambda: ENC(TOK, cache=heads.ModelCache.empty(1)), ValueError, "no KV cache"),
    Row("model", "source", lambda: SEQ2SEQ.encode(TOK.float()), TypeError, "integer ids"),
    Row("model", "start", lambda: DEC.embed_tokens(TOK, start=-1), ValueError, ">= 0"),
    Row("model", "max_new_tokens", lambda: DEC.generate(TOK, -1), ValueError, ">= 0"),
    Row("model", "max_new_tokens", lambda: DEC.generate(TOK, 2.5), ValueError, "integer"),
    Row("model", "temperature", lambda: DEC.generate(TOK, 2, temperature=-1.0), ValueError, r"\[0, inf\)"),
    Row("model", "temperature", lambda: DEC.generate(TOK, 2, temperature=NAN), ValueError, "finite"),
    Row("model", "top_k", lambda: DEC.generate(TOK, 2, top_k=0), ValueError, r"\[1, vocab_size=11\]"),
    Row("model", "top_k", lambda: DEC.generate(TOK, 2, top_k=12), ValueError, r"\[1, vocab_size=11\]"),
    Row("model", "top_p", lambda: DEC.generate(TOK, 2, top_p=0.0), ValueError, r"\(0, 1\]"),
    Row("model", "top_p", lambda: DEC.generate(TOK, 2, top_p=1.5), ValueError, r"\(0, 1\]"),
    Row("model", "prompt", lambda: DEC.generate(TOK.float(), 2), TypeError, "integer ids"),
    Row("model", "prompt", lambda: DEC.generate(TOK > 2, 2), TypeError, "torch.bool"),
    Row("model", "prompt", lambda: DEC.generate(TOK[:, :0], 2), ValueError, r"\(2, 0\)"),
    Row("model", "prompt", lambda: DEC.generate(TOK[None], 2), ValueError, r"\(B, T\) or \(T,\)"),
    Row("model", "prompt", lambda: DEC.generate(torch.zeros(1, 17, dtype=torch.long), 2), ValueError, "max_seq_len=16"),
    Row("model", "source", lambda: DEC.generate(TOK, 2, source=TOK), ValueError, "decoder-only"),
    Row("model", "source", lambda: SEQ2SEQ.generate(TOK, 2), ValueError, "generates from a source"),
    Row("model", "source", lambda: SEQ2SEQ.generate(TOK, 2, source=ids(3, 4)), ValueError, "source has B=3 but prompt has B=2"),
    Row("model", "architecture", lambda: ENC.generate(TOK, 2), ValueError, "encoder-only"),
    Row("model", "logits", lambda: model.sample(r(11)), ValueError, r"\(B, V\)"),
    Row("model", "logits", lambda: model.sample(ones(2, 11, dtype=torch.long)), TypeError, "floating-point"),
    Row("model", "temperature", lambda: model.sample(r(2, 11), temperature=-1.0), ValueError, r"\[0, inf\)"),
    Row("model", "top_k", lambda: model.sample(r(2, 11), top_k=0), ValueError, r"\[1, vocab_size=11\]"),
    Row("model", "top_k", lambda: model.sample(r(2, 11), top_k=2.5), ValueError, "integer"),
    Row("model", "top_p", lambda: model.sample(r(2, 11), top_p=-0.1), ValueError, r"\(0, 1\]"),
    Row("model", "top_p", lambda: model.sample(r(2, 11), top_p=NAN), ValueError, "finite"),
    Row("model", "temperature", lambda: model.sampling_probs(r(2, 11), temperature=0.0), ValueError, "greedy"),
    Row("model", "model", lambda: model.capture_attention(nn.Linear(2, 2)).__enter__(), TypeError, "Transformer"),
    # ------------------------------------------------------------------------------------- complexity
    Row("complexity", "model", lambda: complexity.count_parameters("model"), TypeError, "nn.Module"),
    Row("complexity", "config", lambda: complexity.parameter_count("config"), TypeError, "TransformerConfig"),
    *[Row("complexity", arg, call, ValueError, "positive integer") for arg, call in (
        ("d_model", lambda: complexity.attention_params(0, 4)),
        ("n_heads", lambda: complexity.attention_params(16, 0)),
        ("n_kv_heads", lambda: complexity.attention_params(16, 4, 0)),
        ("d_ff", lambda: complexity.mlp_params(16, -1)),
        ("d_model", lambda: complexity.norm_params(2.5)),
        ("batch", lambda: complexity.projection_flops(0, 8, 16, 4)),
        ("seq_len", lambda: complexity.mlp_flops(1, -1, 16, 64)),
        ("batch", lambda: complexity.block_flops(2.5, 8, 16, 4, 64)),
        ("d_model", lambda: complexity.attention_overtakes_linear(0)),
        ("d_ff", lambda: complexity.attention_overtakes_linear(16, 0)),
        ("seq_len", lambda: complexity.score_memory_bytes(1, 4, 0)),
        ("bytes_per_value", lambda: complexity.score_memory_bytes(1, 4, 8, 0)),
        ("seq_len", lambda: complexity.attention_flops(1, 4, -1, 8)),
        ("batch", lambda: complexity.kv_cache_bytes(1, 0, 8, 4, 8, 2)),
        ("seq_len", lambda: complexity.training_flops_per_token(CFG, 0)),
        ("repeats", lambda: complexity.best_time(lambda: None, 0)),
    )],
    Row("complexity", "n_heads", lambda: complexity.attention_params(16, 5), ValueError, "does not divide d_model=16"),
    Row("complexity", "n_kv_heads", lambda: complexity.attention_params(16, 4, 3), ValueError, "does not divide n_heads=4"),
    Row("complexity", "n_kv_heads", lambda: complexity.attention_params(16, 4, 8), ValueError, "does not divide n_heads=4"),
    Row("complexity", "n_heads", lambda: complexity.projection_flops(1, 8, 16, 5), ValueError, "does not divide"),
    Row("complexity", "n_heads", lambda: complexity.block_flops(1, 8, 16, 5, 64), ValueError, "does not divide"),
    Row("complexity", "kind", lambda: complexity.mlp_params(16, 64, "tanh"), ValueError, "one of"),
    Row("complexity", "kind", lambda: complexity.mlp_flops(1, 8, 16, 64, "tanh"), ValueError, "one of"),
    Row("complexity", "kind", lambda: complexity.norm_params(16, "batch"), ValueError, "one of"),
    Row("complexity", "f", lambda: complexity.best_time(3), TypeError, "function"),
    # ------------------------------------------------------------------------------------- data
    Row("data", "ids", lambda: CHARS.decode([3]), ValueError, r"\[0, vocab_size=3\), got 3 at position 0"),
    Row("data", "ids", lambda: CHARS.decode([-1]), ValueError, "got -1"),
    Row("data", "ids", lambda: CHARS.decode(torch.tensor([0, 5])), ValueError, "got 5 at position 1"),
    Row("data", "ids", lambda: CHARS.decode(torch.tensor([0.5])), TypeError, "integer"),
    Row("data", "ids", lambda: CHARS.decode("ab"), TypeError, "encode text, decode ids"),
    Row("data", "ids", lambda: CHARS.decode(torch.zeros(2, 2, dtype=torch.long)), ValueError, r"\(T,\)"),
    Row("data", "text", lambda: CHARS.encode(123), TypeError, "str"),
    Row("data", "text", lambda: CHARS.encode("abz"), ValueError, "outside the vocabulary"),
    Row("data", "chars", lambda: data.CharTokenizer(list("aab")), ValueError, r"\['a'\]"),
    Row("data", "chars", lambda: data.CharTokenizer(["ab", "c"]), ValueError, "single characters"),
    Row("data", "text", lambda: data.CharTokenizer.from_text(""), ValueError, "non-empty"),
    Row("data", "val_fraction", lambda: data.shakespeare_splits(1.5), ValueError, r"\(0, 1\)"),
    Row("data", "val_fraction", lambda: data.shakespeare_splits(0.0), ValueError, r"\(0, 1\)"),
    Row("data", "data", lambda: data.random_batch(torch.rand(100), 2, 8), TypeError, "token ids"),
    Row("data", "data", lambda: data.random_batch(torch.zeros(2, 100, dtype=torch.long), 2, 8), ValueError, r"\(N,\)"),
    Row("data", "block_size", lambda: data.random_batch(torch.zeros(9, dtype=torch.long), 2, 8), ValueError, "too few"),
    Row("data", "batch_size", lambda: data.random_batch(torch.zeros(100, dtype=torch.long), 0, 8), ValueError,
        "positive integer"),
    Row("data", "batch_size", lambda: data.induction_batch(-1, 4, 10), ValueError, "positive integer"),
    Row("data", "half_len", lambda: data.induction_batch(2, 0, 10), ValueError, "positive integer"),
    Row("data", "vocab_size", lambda: data.induction_batch(2, 4, 0), ValueError, "positive integer"),
    Row("data", "min_half_len", lambda: data.induction_batch(2, 4, 10, min_half_len=5), ValueError, r"\[1, half_len=4\]"),
    Row("data", "length", lambda: data.copy_batch(2, 0, 10), ValueError, "positive integer"),
    Row("data", "vocab_size", lambda: data.copy_batch(2, 3, 2.5), ValueError, "positive integer"),
    Row("data", "length", lambda: data.digit_task_batch("reverse", 2, 0), ValueError, "positive integer"),
    Row("data", "batch_size", lambda: data.digit_task_batch("sort", 0, 4), ValueError, "positive integer"),
    Row("data", "task", lambda: data.digit_task_batch("add", 2, 4), ValueError, "'reverse', 'sort' or 'copy'"),
    # ------------------------------------------------------------------------------------- losses
    Row("losses", "tokens", lambda: losses.lm_loss(LOGITS, torch.full((2, 5), 7)), ValueError, r"\[0, V=7\).*from 7 to 7"),
    Row("losses", "tokens", lambda: losses.lm_loss(LOGITS, torch.full((2, 5), -5)), ValueError, "ignore_index=-100"),
    Row("losses", "tokens", lambda: losses.lm_loss(LOGITS, TARGETS.float()), TypeError, "integer token ids"),
    Row("losses", "tokens", lambda: losses.lm_loss(LOGITS, TARGETS > 2), TypeError, "torch.bool"),
    Row("losses", "logits", lambda: losses.lm_loss(LOGITS.long(), TARGETS), TypeError, "floating-point"),
    Row("losses", "logits", lambda: losses.lm_loss(LOGITS[0], TARGETS), ValueError, r"\(B, T, V\)"),
    Row("losses", "B", lambda: losses.lm_loss(LOGITS, TARGETS[:1]), ValueError, "tokens has B=1 but logits has B=2"),
    Row("losses", "T", lambda: losses.lm_loss(LOGITS, TARGETS[:, :4]), ValueError, "tokens has T=4 but logits has T=5"),
    Row("losses", "T", lambda: losses.lm_loss(LOGITS[:, :1], TARGETS[:, :1]), ValueError, "T >= 2"),
    Row("losses", "targets", lambda: losses.mlm_loss(LOGITS, torch.full((2, 5), 7)), ValueError, r"\[0, V=7\)"),
    Row("losses", "targets", lambda: losses.mlm_loss(LOGITS, TARGETS.float()), TypeError, "integer"),
    Row("losses", "T", lambda: losses.mlm_loss(LOGITS, TARGETS[:, :4]), ValueError, "targets has T=4"),
    Row("losses", "B", lambda: losses.mlm_loss(LOGITS, TARGETS[:1]), ValueError, "targets has B=1"),
    Row("losses", "logits", lambda: losses.mlm_loss(LOGITS.long(), TARGETS), TypeError, "floating-point"),
    Row("losses", "p", lambda: losses.mlm_mask(TARGETS, 7, 7, p=-0.1), ValueError, r"\[0, 1\]"),
    Row("losses", "p", lambda: losses.mlm_mask(TARGETS, 7, 7, p=1.5), ValueError, r"\[0, 1\]"),
    Row("losses", "p", lambda: losses.mlm_mask(TARGETS, 7, 7, p=NAN), ValueError, "finite"),
    Row("losses", "mask_id", lambda: losses.mlm_mask(TARGETS, -1, 7), ValueError, ">= vocab_size=7"),
    Row("losses", "mask_id", lambda: losses.mlm_mask(TARGETS, 3, 7), ValueError, "id of its own"),
    Row("losses", "mask_id", lambda: losses.mlm_mask(TARGETS, 7.5, 7), ValueError, "integer"),
    Row("losses", "vocab_size", lambda: losses.mlm_mask(TARGETS, 7, 0), ValueError, ">= 1"),
    Row("losses", "tokens", lambda: losses.mlm_mask(TARGETS.float(), 7, 7), TypeError, "integer"),
    Row("losses", "tokens", lambda: losses.mlm_mask(TARGETS[0], 7, 7), ValueError, r"\(B, T\)"),
    Row("losses", "loss", lambda: losses.perplexity(-0.5), ValueError, ">= 0"),
    Row("losses", "loss", lambda: losses.perplexity(NAN), ValueError, ">= 0"),
    Row("losses", "loss", lambda: losses.perplexity("1.0"), ValueError, "number"),
    Row("losses", "loss", lambda: losses.perplexity(torch.ones(2)), ValueError, "one number"),
    # ------------------------------------------------------------------------------------- diagnostics
    Row("diagnostics", "weights", lambda: diagnostics.attention_entropy(r(4)), ValueError, r"\(\.\.\., T_q, T_k\)"),
    Row("diagnostics", "window", lambda: diagnostics.moving_average([1.0, 2.0], 0), ValueError, r"\[1, 2\]"),
    Row("diagnostics", "position", lambda: diagnostics.leakage_by_perturbation(lambda t: t[..., None].float(), TOK, 11, 9),
        ValueError, r"\[0, T=6\)"),
    Row("diagnostics", "x", lambda: diagnostics.leakage_by_jacobian(lambda x: x, r(3, 4)), ValueError, r"\(1, T, d_in\)"),
    Row("diagnostics", "lengths", lambda: diagnostics.padding_leakage(DEC, TOK, torch.tensor([3]), 11), ValueError, "B=1"),
    Row("diagnostics", "mode", lambda: diagnostics.ablate_heads(DEC, {"decoder.0.attn": [0]}, mode="x").__enter__(),
        ValueError, "'zero' or 'mean'"),
    Row("diagnostics", "n_heads", lambda: diagnostics.ablate_heads(DEC, {"decoder.0.attn": [9]}).__enter__(), ValueError,
        "head index 9"),
    Row("diagnostics", "parameter", lambda: diagnostics.layer_gradient_norms(DEC, DEC(TOK).sum(), "mlp.w2.weight"),
        ValueError, "not in decoder.0"),
    Row("diagnostics", "loss", lambda: diagnostics.layer_gradient_norms(DEC, DEC(TOK)), ValueError, "one-element"),
    # ------------------------------------------------------------------------------------- neurons
    Row("neurons", "layer", lambda: neurons.unit_activations(DEC, TOK, 1), ValueError, r"\[0, n_layers=1\)"),
    Row("neurons", "layer", lambda: neurons.unit_logit_effect(DEC, -1), ValueError, r"\[0, n_layers=1\)"),
    Row("neurons", "layer", lambda: neurons.down_projection(DEC, 0.0), ValueError, "integer"),
    Row("neurons", "tokens", lambda: neurons.unit_activations(DEC, TOK.float(), 0), TypeError, "token ids"),
    Row("neurons", "tokens", lambda: neurons.top_activations(DEC, TOK[0], 0), ValueError, r"\(B, T\)"),
    Row("neurons", "tokens", lambda: neurons.unit_activations(DEC, TOK[:, :0], 0), ValueError, "at least one"),
    Row("neurons", "k", lambda: neurons.top_activations(DEC, TOK, 0, k=13), ValueError, r"N \* T = 12"),
    Row("neurons", "batch_size", lambda: neurons.top_activations(DEC, TOK, 0, batch_size=0), ValueError, "positive"),
    Row("neurons", "units", lambda: neurons.ablate_units(DEC, 0, [64]).__enter__(), ValueError, r"\[0, d_ff=64\)"),
    Row("neurons", "units", lambda: neurons.ablate_units(DEC, 0, ["a"]).__enter__(), ValueError, "integer"),
    Row("neurons", "model", lambda: neurons.unit_logit_effect(SEQ2SEQ, 0), ValueError, "encoder-decoder"),
    Row("diagnostics", "weights", lambda: diagnostics.attention_entropy(ones(3, 3, dtype=torch.long)), TypeError,
        "floating-point"),
    Row("diagnostics", "weights", lambda: diagnostics.normalised_entropy(r(4)), ValueError, r"\(\.\.\., T_q, T_k\)"),
    Row("diagnostics", "error", lambda: diagnostics.bounded("x"), TypeError, "number"),
    Row("diagnostics", "error", lambda: diagnostics.bounded(r(3)), ValueError, r"one real number.*\(3,\)"),
    Row("diagnostics", "tol", lambda: diagnostics.bounded(0.1, tol=0), ValueError, r"\(0, inf\)"),
    Row("diagnostics", "b", lambda: diagnostics.max_diff("x", r(3), r(4)), ValueError, r"b has shape \(4,\) but a has shape \(3,\)"),
    Row("diagnostics", "b", lambda: diagnostics.max_diff("x", r(3, 1), r(3)), ValueError, r"\(3,\) but a has shape \(3, 1\)"),
    Row("diagnostics", "vocab_size", lambda: diagnostics.leakage_by_perturbation(lambda t: t[..., None].float(), TOK, 0, 1),
        ValueError, ">= 2"),
    Row("diagnostics", "vocab_size", lambda: diagnostics.leakage_test(DEC, TOK, 1), ValueError, ">= 2"),
    Row("diagnostics", "vocab_size", lambda: diagnostics.influence_matrix(DEC, TOK, 0), ValueError, ">= 2"),
    Row("diagnostics", "steps", lambda: diagnostics.overfit_batch(DEC, lambda m: m(TOK).sum(), steps=0), ValueError,
        "positive integer"),
    Row("diagnostics", "lr", lambda: diagnostics.overfit_batch(DEC, lambda m: m(TOK).sum(), lr=-1.0), ValueError,
        r"\(0, inf\)"),
    Row("diagnostics", "collapsed", lambda: diagnostics.classify_heads({"a": torch.tensor([0.5])}, 0.9, 0.2), ValueError,
        "diffuse=0.2"),
    # ------------------------------------------------------------------------------------- flash
    Row("flash", "q", lambda: flash.flash_attention(r(H, T, D), r(H, T, D), r(H, T, D)), ValueError, "4 axes"),
    Row("flash", "B", lambda: flash.flash_attention(Q, r(3, H, T, D), r(3, H, T, D)), ValueError, "k has B=3 but q has B=2"),
    Row("flash", "h_kv", lambda: flash.flash_attention(r(B, 6, T, D), K, V), ValueError, "not a multiple"),
    Row("flash", "T_k", lambda: flash.flash_attention(Q, r(B, H, 0, D), r(B, H, 0, D)), ValueError, "T_k=0"),
    Row("flash", "key_padding_mask", lambda: flash.flash_attention(Q, K, V, key_padding_mask=ones(B, T, dtype=torch.long)),
        TypeError, "must be bool"),
    Row("flash", "key_padding_mask", lambda: flash.flash_attention(Q, K, V, key_padding_mask=ones(B, 1, 1, T)), ValueError,
        r"\(B, T_k\) = \(2, 5\)"),
    Row("flash", "scale", lambda: flash.flash_attention(Q, K, V, scale=NAN), ValueError, "positive number"),
    Row("flash", "scale", lambda: flash.flash_attention(Q, K, V, scale=INF), ValueError, "positive number"),
    Row("flash", "block_q", lambda: flash.flash_attention(Q, K, V, block_q=0), ValueError, "positive integer"),
    Row("flash", "block_k", lambda: flash.flash_attention_steps(r(T, D), r(T, D), r(T, D), block_k=0), ValueError,
        "positive integer"),
    Row("flash", "T_k", lambda: flash.flash_attention_steps(r(T, D), r(0, D), r(0, D)), ValueError, "T_k=0"),
    Row("flash", "q", lambda: flash.flash_attention_steps(Q, K, V), ValueError, r"\(T, d_head\)"),
    # ------------------------------------------------------------------------------------- viz
    Row("viz", "weights", lambda: plots.attention_heatmap(r(2, 3, 3)), ValueError, "pick one head"),
    Row("viz", "weights", lambda: plots.attention_heatmap(ones(3, 3)), TypeError, "numbers"),
    Row("viz", "query_tokens", lambda: plots.attention_heatmap(r(3, 3), "ab"), ValueError, "2 tokens"),
    Row("viz", "mask", lambda: plots.attention_heatmap(r(3, 3), mask="future"), ValueError, "'causal'"),
    Row("viz", "mask", lambda: plots.attention_heatmap(r(3, 3), mask=ones(3, 3, dtype=torch.long)), TypeError, "bool"),
    Row("viz", "mask", lambda: plots.attention_heatmap(r(3, 3), mask=ones(4, 4)), ValueError, "does not broadcast"),
    Row("viz", "highlight_row", lambda: plots.attention_heatmap(r(3, 3), highlight_row=5), ValueError, r"\[0, T_q=3\)"),
    # ------------------------------------------------------------------------------------- sampling (and generate)
    Row("sampling", "logits", lambda: sampling.sample(r(2, 0)), ValueError, "V=0"),
    Row("sampling", "logits", lambda: sampling.sample(r(0, 7)), ValueError, "B=0"),
    Row("sampling", "logits", lambda: sampling.sampling_probs(r(2, 0)), ValueError, "V=0"),
    Row("sampling", "logits", lambda: sampling.sample(r(2, 3, 7)), ValueError, r"\(B, V\)"),
    Row("sampling", "logits", lambda: sampling.sample(ids(2, 7)), TypeError, "floating-point"),
    Row("sampling", "logits", lambda: sampling.sample([[1.0, 2.0]]), TypeError, "torch.Tensor"),
    Row("sampling", "top_p", lambda: sampling.sample(r(2, 7), top_p=0.0), ValueError, r"\(0, 1\]"),
    Row("sampling", "top_p", lambda: sampling.sample(r(2, 7), top_p=1.5), ValueError, r"\(0, 1\]"),
    Row("sampling", "top_p", lambda: sampling.sampling_probs(r(2, 7), top_p=NAN), ValueError, "finite"),
    Row("sampling", "top_k", lambda: sampling.sample(r(2, 7), top_k=8), ValueError, "vocab_size=7"),
    Row("sampling", "top_k", lambda: sampling.sampling_probs(r(2, 7), top_k=2.5), ValueError, "integer"),
    Row("sampling", "temperature", lambda: sampling.sampling_probs(r(2, 7), temperature=0), ValueError, "greedy"),
    Row("sampling", "temperature", lambda: sampling.sample(r(2, 7), temperature=INF), ValueError, "finite"),
    Row("sampling", "prompt", lambda: DEC.generate(torch.tensor([[11]]), 2), ValueError,
        r"ids from 11 to 11.*vocab_size=11"),
    Row("sampling", "prompt", lambda: DEC.generate(torch.tensor([[-1, 2]]), 2), ValueError, "ids from -1"),
    Row("sampling", "use_cache", lambda: DEC.generate(TOK, 2, use_cache="no"), TypeError, "True or False"),
    Row("sampling", "top_p", lambda: DEC.generate(TOK, 2, top_p=0.0), ValueError, r"\(0, 1\]"),
    Row("sampling", "top_k", lambda: DEC.generate(TOK, 2, top_k=12), ValueError, "vocab_size=11"),
    # ------------------------------------------------------------------------------------- model (forward's checks)
    Row("model", "source", lambda: SEQ2SEQ(TOK, source=torch.full((2, 3), 11)), ValueError, "source holds ids from 11"),
    Row("model", "memory", lambda: SEQ2SEQ(TOK, memory=ids(2, 3, 16)), TypeError, "floating-point"),
    Row("model", "memory", lambda: SEQ2SEQ(TOK, memory=r(2, 0, 16)), ValueError, "T_src=0"),
    Row("model", "lengths", lambda: DEC(TOK, lengths="ab"), TypeError, "list of integers"),
    # ------------------------------------------------------------------------------------- neurons
    Row("neurons", "tokens", lambda: neurons.unit_activations(DEC, ids(1, 17), 0), ValueError, "T=17.*max_seq_len=16"),
    Row("neurons", "tokens", lambda: neurons.unit_activations(DEC, torch.tensor([[11]]), 0), ValueError,
        "ids from 11 to 11"),
    Row("neurons", "units", lambda: neurons.ablate_units(DEC, 0, True).__enter__(), ValueError, "integer"),
    Row("neurons", "model", lambda: neurons.top_activations(nn.Linear(2, 2), TOK, 0), TypeError, "Transformer"),
    # ------------------------------------------------------------------------------------- extrapolation
    Row("extrapolation", "n_heads", lambda: extrapolation.LengthExperiment(d_model=48, n_heads=5), ValueError,
        "must divide d_model=48"),
    Row("extrapolation", "exp", lambda: extrapolation.held_out_windows(ids(100), {"eval_len": 8}), TypeError,
        "LengthExperiment"),
    Row("extrapolation", "windows", lambda: extrapolation.loss_by_position(DEC, ids(3, 1)), ValueError, "at least 2"),
    Row("extrapolation", "windows", lambda: extrapolation.loss_by_position(DEC, ids(3, 9, high=20)), ValueError,
        "vocab_size=11"),
    Row("extrapolation", "length", lambda: extrapolation.loss_by_position(DEC, ids(3, 20)), ValueError,
        "max_seq_len=16"),
    Row("extrapolation", "model", lambda: extrapolation.loss_by_position(ENC, ids(3, 9)), ValueError,
        "architecture='encoder'"),
    Row("extrapolation", "model", lambda: extrapolation.loss_by_position(nn.Linear(2, 2), ids(3, 9)), ValueError,
        "got Linear"),
    Row("extrapolation", "base", lambda: extrapolation.ntk_base(0.0, 2.0, 8), ValueError, r"\(0, inf\)"),
    Row("extrapolation", "base", lambda: extrapolation.ntk_base(NAN, 2.0, 8), ValueError, "finite"),
    Row("extrapolation", "base", lambda: extrapolation.ntk_base("1e4", 2.0, 8), ValueError, "finite number"),
    Row("extrapolation", "factor", lambda: extrapolation.ntk_base(1e4, -2.0, 8), ValueError, r"\(0, inf\)"),
    Row("extrapolation", "factor", lambda: extrapolation.ntk_base(1e4, INF, 8), ValueError, "finite"),
    Row("extrapolation", "bases", lambda: extrapolation.rope_base_curves(ROPE, ids(3, 9), [100.0, 0.0]), ValueError,
        r"bases\[1\] must lie in \(0, inf\)"),
    Row("extrapolation", "bases", lambda: extrapolation.rope_base_curves(ROPE, ids(3, 9), 100.0), TypeError,
        "sequence of numbers"),
    Row("extrapolation", "seeds", lambda: extrapolation.length_sweep(ids(99), ids(99), 11, ["rope"], []), ValueError,
        "empty"),
    Row("extrapolation", "schemes", lambda: extrapolation.length_sweep(ids(99), ids(99), 11, [], [0]), ValueError,
        "empty"),
    Row("extrapolation", "schemes", lambda: extrapolation.length_sweep(ids(99), ids(99), 11, "rope", [0]), TypeError,
        "list of names"),
    Row("extrapolation", "schemes", lambda: extrapolation.length_sweep(ids(99), ids(99), 11, ["rope", "rotary"], [0]),
        ValueError, "'rotary'"),
    Row("extrapolation", "rope_bases",
        lambda: extrapolation.length_sweep(ids(99), ids(99), 11, ["rope"], [0], rope_bases=[-1.0]), ValueError,
        r"\(0, inf\)"),
    # ------------------------------------------------------------------------------------- threads
    Row("threads", "work", lambda: threads.threads_for(-1), ValueError, ">= 0"),
    Row("threads", "work", lambda: threads.threads_for(2.5), ValueError, "integer"),
    Row("threads", "work", lambda: threads.threads_for("10"), ValueError, "integer"),
    Row("threads", "available", lambda: threads.threads_for(10, 0), ValueError, "positive integer"),
    Row("threads", "n", lambda: threads.set_threads(0), ValueError, "positive integer"),
    Row("threads", "n", lambda: threads.intra_op_threads(1.5).__enter__(), ValueError, "positive integer"),
    Row("threads", "model", lambda: threads.widest_linear(nn.ReLU()), ValueError, "no nn.Linear"),
    Row("threads", "model", lambda: threads.widest_linear(3), TypeError, "nn.Module"),
    Row("threads", "new_tokens", lambda: threads.largest_operation(CFG, 10, -1, 4), ValueError, "positive integer"),
    Row("threads", "t_k", lambda: threads.largest_operation(CFG, 10, 1, 0), ValueError, "positive integer"),
    Row("threads", "widest", lambda: threads.largest_operation(CFG, 0, 1, 1), ValueError, "positive integer"),
    Row("threads", "config", lambda: threads.largest_operation(None, 10, 1, 1), TypeError, "TransformerConfig"),
    # ------------------------------------------------------------------------------------- capstone
    *[Row("capstone", name, lambda name=name, v=v: capstone.parameter_table(**{**GPT_ARGS, name: v}), ValueError,
          "positive integer")
      for name, v in (("vocab_size", 0), ("d_model", -1), ("n_layers", 0), ("max_seq_len", 2.5), ("n_heads", True))],
    Row("capstone", "n_heads", lambda: capstone.parameter_table(**{**GPT_ARGS, "n_heads": 5}), ValueError,
        "must divide d_model=16"),
    Row("capstone", "config", lambda: capstone.require_gpt_shaped(DEC), TypeError, "TransformerConfig"),
    Row("capstone", "model", lambda: capstone.to_gpt(nn.Linear(2, 2)), TypeError, "Transformer"),
    Row("capstone", "state", lambda: capstone.from_gpt(DEC, 4), TypeError, "state_dict"),
    Row("capstone", "tok_emb.weight", lambda: capstone.from_gpt(gpt_state(**{"tok_emb.weight": r(11)}), 4), ValueError,
        r"\(rows, d_model\)"),
    Row("capstone", "tok_emb.weight", lambda: capstone.from_gpt(gpt_state(**{"tok_emb.weight": ids(11, 16)}), 4),
        TypeError, "floating-point"),
    Row("capstone", "ln_f.weight", lambda: capstone.from_gpt(gpt_state(**{"ln_f.weight": [1.0] * 16}), 4), TypeError,
        "torch.Tensor"),
    Row("capstone", "head.weight", lambda: capstone.from_gpt(gpt_state(**{"head.weight": r(11, 16)}), 4), ValueError,
        "would be dropped"),
    Row("capstone", "blocks.0.attn.extra.bias",
        lambda: capstone.from_gpt(gpt_state(**{"blocks.0.attn.extra.bias": r(16)}), 4), ValueError, "does not have"),
    Row("capstone", "blocks.0.ln1.weight", lambda: capstone.from_gpt(gpt_state_without("blocks.0.ln1.weight"), 4),
        KeyError, r"expected shape \(16,\)"),
    # ------------------------------------------------------------------------------------- hf
    Row("hf", "transformer.h.0.ln_1.weight", lambda: from_hf_with(drop="transformer.h.0.ln_1.weight"), ValueError,
        "missing"),
    Row("hf", "transformer.h.0.extra", lambda: from_hf_with(**{"transformer.h.0.extra": r(3)}), ValueError, "unused"),
    Row("hf", "transformer.h.0.mlp.c_fc.weight", lambda: from_hf_with(**{"transformer.h.0.mlp.c_fc.weight": r(32, 8)}),
        ValueError, r"shape \(32, 8\).*need \(8, 32\)"),
    Row("hf", "transformer.wte.weight", lambda: from_hf_with(**{"transformer.wte.weight": ids(11, 8)}), TypeError,
        "floating-point"),
    Row("hf", "transformer.h.0.ln_1.weight", lambda: from_hf_with(**{"transformer.h.0.ln_1.weight": [1.0] * 8}),
        TypeError, "torch.Tensor"),
    Row("hf", "model_type", lambda: hf("from_hf")({}, type("OtherConfig", (), {"model_type": "gpt_neo"})()), ValueError,
        "supported: gpt2"),
    Row("hf", "hf_config", lambda: hf("from_hf")(hf_model().state_dict()), ValueError, "a state dict needs hf_config"),
    Row("hf", "hf_config", lambda: from_hf_config(n_head=3), ValueError, r"n_heads is n_head"),
    Row("hf", "hf_config", lambda: from_hf_config(layer_norm_epsilon=-1e-5), ValueError,
        "norm_eps is layer_norm_epsilon"),
    Row("hf", "hf_config", lambda: from_hf_config("llama", num_key_value_heads=3), ValueError,
        "n_kv_heads is num_key_value_heads"),
    Row("hf", "transformer.h.1.ln_1.weight", lambda: from_hf_config(n_layer=2), ValueError, "missing"),
    Row("hf", "transformer.wte.weight", lambda: from_hf_config(vocab_size=12), ValueError, r"need \(12, 8\)"),
    Row("hf", "model", lambda: hf("to_hf")(nn.Linear(2, 2)), TypeError, "Transformer"),
    Row("hf", "n_layers", lambda: hf("gpt2_small_random")(n_layers=2), ValueError, "not GPT2Config fields"),
    Row("hf", "n_head", lambda: hf("gpt2_small_random")(n_embd=10, n_head=3), ValueError, "must divide n_embd=10"),
    # ------------------------------------------------------------------------------------- train (any nn.Module)
    Row("train", "train_data", lambda: fit(Bigram(vocab_size=5)), ValueError, "vocabulary must cover"),
    Row("train", "train_data", lambda: fit(data=CORPUS.float()), TypeError, "token ids"),
    Row("train", "train_data", lambda: fit(data=CORPUS.bool()), TypeError, "token ids"),
    Row("train", "train_data", lambda: fit(data=CORPUS.view(10, 30)), ValueError, r"1-D tensor of ids \(N,\)"),
    Row("train", "train_data", lambda: fit(data=CORPUS[:5]), ValueError, "too few for block_size=8"),
    Row("train", "train_data", lambda: fit(data=CORPUS - 5), ValueError, "negative token ids"),
    Row("train", "train_data", lambda: fit(model.Transformer(CFG), data=ids(300, high=12)), ValueError,
        "ids from 0 to 11.*vocab_size=11"),
    Row("train", "val_data", lambda: fit(val=ids(4)), ValueError, "too few"),
    Row("train", "train_data", lambda: fit(data=lambda b, g: ids(b, 8)), ValueError, r"\(inputs, targets\)"),
    Row("train", "dtype", lambda: fit(Bigram(out=lambda y: y.argmax(-1, keepdim=True).expand_as(y).clone())), TypeError,
        "floating-point logits"),
    Row("train", "model", lambda: fit(nn.Sequential(nn.Embedding(11, 11).requires_grad_(False))), ValueError,
        "no trainable parameters"),
    Row("train", "callbacks", lambda: __import__("tfcore.train", fromlist=["train"]).train(
        Bigram(), train_cfg(), CORPUS, callbacks=[3], progress=False), TypeError, "list of functions"),
    Row("train", "mask_id", lambda: fit(ENC, objective="mlm", mask_id=11), ValueError, r"\[0, vocab_size=11\)"),
    *[Row("train", f"TrainConfig.{name}", lambda name=name, v=v: train_cfg(**{name: v}), ValueError, expected)
      for name, v, expected in (("device", "gpu", "torch device"), ("backend", "fast", "'sdpa'"),
                                ("compile", "yes", "True or False"), ("fused_adamw", "yes", "True, False or None"),
                                ("sample_prompt", 3, "a string"), ("out_dir", 3, "folder path"),
                                ("time_budget", 0, "> 0"), ("time_budget", NAN, "> 0"),
                                ("checkpoint_interval", -1, ">= 0"), ("checkpoint_interval", 2.5, ">= 0"))],
    Row("train", "time-budget", lambda: cli("--time-budget", "0", "--steps", "1"), ValueError, "time_budget"),
    Row("train", "time-budget", lambda: cli("--time-budget", "-5", "--steps", "1"), ValueError, "> 0"),
    Row("train", "checkpoint-interval", lambda: cli("--checkpoint-interval", "-1", "--steps", "1"), ValueError, ">= 0"),
    Row("train", "steps", lambda: cli("--steps", "0"), ValueError, "positive integer"),
    # ------------------------------------------------------------------------------------- checkpoints
    Row("checkpoints", "file.pt", lambda: checkpoints.load_checkpoint(file_with(b"hello")), checkpoints.CheckpointError,
        "truncated or corrupt"),
    Row("checkpoints", "file.pt", lambda: checkpoints.read_checkpoint(file_with({"a": 1})), checkpoints.CheckpointError,
        "not a training checkpoint"),
    Row("checkpoints", "file.pt", lambda: checkpoints.model_from_checkpoint(file_with(b"hello")),
        checkpoints.CheckpointError, "truncated or corrupt"),
    Row("checkpoints", "file.pt", lambda: checkpoints.model_from_checkpoint(file_with(DEC.state_dict())),
        checkpoints.CheckpointError, "bare state_dict"),
    Row("checkpoints", "file.pt", lambda: checkpoints.pretrained(file_with(b"hello")), checkpoints.CheckpointError,
        "truncated or corrupt"),
    Row("checkpoints", "file.pt", lambda: checkpoints.pretrained(file_with({"model_config": None, "model": {}})),
        checkpoints.CheckpointError, "not a tfcore Transformer"),
    Row("checkpoints", "model", lambda: checkpoints.save_weights(file_with(b""), nn.Linear(2, 2), "x", None), TypeError,
        "Transformer"),
    Row("checkpoints", "model", lambda: resume_with(Bigram(), Bigram(vocab_size=12)), checkpoints.CheckpointError,
        "does not fit this model"),
    Row("checkpoints", "model", lambda: resume_with(Bigram(), model.Transformer(CFG)), checkpoints.CheckpointError,
        "another nn.Module -> a tfcore Transformer"),
    # ------------------------------------------------------------------------------------- viz (the lesson widgets)
    Row("viz", "along", lambda: viz.NeuronExplorer(along=NAN), ValueError, "finite"),
    Row("viz", "across", lambda: viz.NeuronExplorer(across="1"), ValueError, "finite number"),
    Row("viz", "d_model", lambda: viz.NeuronExplorer(d_model=2.5), ValueError, "at least 2, an integer"),
    Row("viz", "dpi", lambda: viz.NeuronExplorer(dpi=0), ValueError, r"\(0, inf\)"),
    Row("viz", "values", lambda: viz.NormExplorer([NAN, 1.0]), ValueError, r"values\[0\] must be a finite number"),
    Row("viz", "values", lambda: viz.NormExplorer(["a", 1.0]), ValueError, "finite number"),
    Row("viz", "values", lambda: viz.NormExplorer(3.0), TypeError, "sequence of 2 to 12"),
    Row("viz", "values", lambda: viz.NormExplorer(torch.ones(2, 3)), TypeError, "sequence of 2 to 12"),
    Row("viz", "scale", lambda: viz.NormExplorer(scale=NAN), ValueError, "finite"),
    Row("viz", "d_head", lambda: viz.RopeExplorer(d_head=4.0), ValueError, "even and at least 2, an integer"),
    Row("viz", "query_pos", lambda: viz.RopeExplorer(query_pos=2.5), ValueError, r"\[0, max_pos=48\], an integer"),
    Row("viz", "max_pos", lambda: viz.RopeExplorer(0, 0, max_pos=0), ValueError, ">= 1"),
    Row("viz", "base", lambda: viz.RopeExplorer(base=-1.0), ValueError, r"\(0, inf\)"),
    Row("viz", "dpi", lambda: viz.RopeExplorer(dpi=0), ValueError, r"\(0, inf\)"),
    Row("viz", "batch", lambda: viz.CostCalculator(batch=0), ValueError, r"\[1, 65536\]"),
    Row("viz", "batch", lambda: viz.CostCalculator(batch=10**6), ValueError, r"\[1, 65536\]"),
    Row("viz", "batch", lambda: viz.CostCalculator(batch=2.5), ValueError, "integer"),
    Row("viz", "columns", lambda: viz.Table([], []), ValueError, "non-empty"),
    Row("viz", "columns", lambda: viz.Table("ab", [[1, 2]]), ValueError, "one string per column"),
    Row("viz", "rows", lambda: viz.Table(["a"], "xy"), TypeError, "list of rows"),
    Row("viz", "rows", lambda: viz.Table(["a", "b"], [1, 2]), TypeError, "list of rows"),
    Row("viz", "rows", lambda: viz.Table(["a", "b"], [[1]]), ValueError, r"rows\[0\] has 1 values"),
]

PUBLIC_MODULES = {"attention", "masks", "heads", "mlp", "norms", "positions", "blocks", "model", "complexity", "data",
                  "losses", "diagnostics", "flash", "viz", "neurons", "sampling", "extrapolation", "threads",
                  "capstone", "hf", "train", "checkpoints"}


@pytest.mark.parametrize("row", ROWS, ids=[f"{n:03d}-{row.module}-{row.arg}" for n, row in enumerate(ROWS)])
def test_bad_call_is_refused_with_a_message_naming_the_argument(row: Row):
    with pytest.raises(Exception) as info:
        row.call()
    message = str(info.value)
    assert type(info.value) is row.error, f"{type(info.value).__name__}: {message}"
    assert re.search(rf"(?<![A-Za-z0-9_]){re.escape(row.arg)}(?![A-Za-z0-9_])", message), \
        f"the message does not name {row.arg!r}: {message}"
    assert re.search(row.match, message), f"{row.match!r} not in: {message}"


def test_the_table_covers_every_public_module():
    assert len(ROWS) >= 150
    assert {row.module for row in ROWS} == PUBLIC_MODULES
    assert all(sum(row.module == m for row in ROWS) >= 7 for m in PUBLIC_MODULES)


def test_no_refused_call_left_a_cache_half_written():
    """A mask refused by MultiHeadAttention is checked before the keys are appended to the cache."""
    cache = heads.KVCache()
    MHA(r(2, 3, 16), cache=cache)
    with pytest.raises(ValueError, match="does not broadcast"):
        MHA(r(2, 1, 16), mask=ones(2, 1, 1, 9), cache=cache)
    assert cache.length == 3


# ------------------------------------------------------------------ valid edge cases next to the checks added above
# Each checks the call against something computed another way, so a check that refuses too much, or a
# fix that changed the result, fails here.


def test_sampling_edges_keep_their_meaning():
    logits = r(1, 7)  # batch 1
    reference = torch.softmax(logits, dim=-1)
    torch.testing.assert_close(sampling.sampling_probs(logits, top_p=1.0), reference)  # p = 1: no truncation
    torch.testing.assert_close(sampling.sampling_probs(logits, top_k=7), reference)  # k = V: no truncation
    assert torch.equal(sampling.sample(logits, temperature=0), logits.argmax(-1, keepdim=True))
    assert sampling.sample(r(3, 1)).tolist() == [[0], [0], [0]]  # V = 1: the only token


def test_generate_edges():
    prompt = ids(1, 1)  # batch 1, T = 1
    assert torch.equal(DEC.generate(prompt, 0), prompt)
    cached = DEC.generate(prompt, 5, temperature=0)
    assert torch.equal(cached, DEC.generate(prompt, 5, temperature=0, use_cache=False))
    assert cached.shape == (1, 6) and torch.equal(DEC.generate(prompt[0], 5, temperature=0), cached)


def test_forward_edges_memory_and_list_lengths():
    source = ids(2, 3)
    with torch.no_grad():
        torch.testing.assert_close(SEQ2SEQ(TOK, memory=SEQ2SEQ.encode(source)), SEQ2SEQ(TOK, source=source))
        torch.testing.assert_close(DEC(TOK, lengths=[6, 3]), DEC(TOK, lengths=torch.tensor([6, 3])))


def test_neurons_edges():
    full = ids(1, 16)  # T = max_seq_len
    assert neurons.unit_activations(DEC, full, 0).shape == (1, 16, 64)
    with torch.no_grad():
        before = DEC(TOK)
        with neurons.ablate_units(DEC, 0, []):  # nothing ablated: the same logits
            assert torch.equal(DEC(TOK), before)


def test_extrapolation_edges():
    windows = ids(3, 2)  # T + 1 = 2: one input and its target
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(DEC(windows[:, :1])[:, 0], windows[:, 1])
    torch.testing.assert_close(extrapolation.loss_by_position(DEC, windows), expected.reshape(1))
    assert extrapolation.ntk_base(500.0, 1.0, 8) == 500.0  # factor 1: the base unchanged


def test_threads_edges():
    assert threads.threads_for(0) == 1
    assert threads.largest_operation(CFG, 7, 1, 1) == max(7, 2 * CFG.n_heads * CFG.d_head)
    assert threads.widest_linear(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5))) == 20


def test_from_gpt_ignores_buffers_and_a_tied_head():
    """A learner's GPT may hold a causal-mask buffer (even one named attn.bias, as nanoGPT does) and a
    head tied to tok_emb: neither is a parameter to drop."""
    tf = model.Transformer(GPT_CFG).eval()
    state = capstone.to_gpt(tf)
    state = {**state, "blocks.0.attn.bias": torch.ones(1, 1, 16, 16).tril(),
             "blocks.0.attn.mask": torch.ones(16, 16, dtype=torch.bool), "head.weight": state["tok_emb.weight"].clone()}
    with torch.no_grad():
        torch.testing.assert_close(capstone.from_gpt(state, 4)(TOK), tf(TOK))
    assert len(capstone.parameter_table(**{**GPT_ARGS, "n_layers": 2})) == 4 + 2 * 16


def test_gpt2_small_random_takes_gpt2config_fields():
    pytest.importorskip("transformers")
    from tfcore.hf import gpt2_small_random
    m = gpt2_small_random(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_positions=8)
    assert (m.config.n_layer, m.config.n_embd, len(m.transformer.h)) == (1, 8, 1)


def test_train_edges():
    short = ids(8 + 2)  # block_size + 2 tokens: the shortest corpus with a window to draw
    result = fit(data=short, val=short)
    assert result.steps == 2 and all(math.isfinite(v) for v in result.losses)

    def as_lists(batch_size, generator):  # a sampler returning a list is a batch too
        x = torch.randint(11, (batch_size, 9), generator=generator)
        return [x[:, :-1], x[:, 1:]]

    assert fit(data=as_lists).steps == 2


def test_checkpoint_edges(tmp_path):
    tf = model.Transformer(CFG)
    from tfcore.train import train
    train(tf, train_cfg(out_dir=str(tmp_path)), CORPUS, progress=False)
    back = checkpoints.model_from_checkpoint(tmp_path / "ckpt.pt")
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), tf.state_dict().values()))
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        checkpoints.load_checkpoint(tmp_path / "none.pt")


def test_widget_edges():
    import numpy as np
    values = [1.0, -2.0, 0.5]
    a, b = viz.NormExplorer(np.array(values)), viz.NormExplorer(torch.tensor(values))
    np.testing.assert_allclose(a.x, values)
    np.testing.assert_allclose(b.x, values)
    rope = viz.RopeExplorer(0, 1, max_pos=1)
    assert rope.scores.shape == (2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the largest batch once overflowed int64 in the plot limits
        assert viz.CostCalculator(batch=65536).batch.value == 65536
    assert viz.Table(["a", "b"], [("x", 1)]).rows == [["x", 1]]
    assert viz.Table(["a"], []).rows == []
