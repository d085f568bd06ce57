"""tfcore.blocks against torch.nn.TransformerEncoderLayer / TransformerDecoderLayer with copied weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import randomise_, torch_mha_from, single_thread  # noqa: F401 (autouse fixture)
from torch import nn

from tfcore.blocks import Block, decoder_block, encoder_block
from tfcore.masks import causal_mask, padding_mask

D, H, FF = 16, 4, 24


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def copy_mha(ref: nn.MultiheadAttention, ours) -> None:
    ref.load_state_dict(torch_mha_from(ours, D, H, True).state_dict())


def copy_norm(ref: nn.LayerNorm, ours) -> None:
    ref.load_state_dict({"weight": ours.weight, "bias": ours.bias})


def copy_mlp(ref, ours) -> None:
    ref.linear1.load_state_dict(ours.mlp.fc_in.state_dict())
    ref.linear2.load_state_dict(ours.mlp.fc_out.state_dict())


def encoder_pair(norm_first: bool, activation: str):
    ours = randomise_(Block(D, H, FF, placement="pre" if norm_first else "post", mlp=activation, norm="layer"), 1)
    ref = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, activation=activation, batch_first=True,
                                     norm_first=norm_first)
    with torch.no_grad():
        copy_mha(ref.self_attn, ours.attn)
        copy_mlp(ref, ours)
        copy_norm(ref.norm1, ours.norm_attn)
        copy_norm(ref.norm2, ours.norm_mlp)
    return ours.double(), ref.double()


@pytest.mark.parametrize("norm_first", [False, True], ids=["post", "pre"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_block_matches_torch(norm_first, activation):
    ours, ref = encoder_pair(norm_first, activation)
    x = rand(3, 7, D, seed=2)
    torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize("norm_first", [False, True], ids=["post", "pre"])
def test_encoder_block_with_masks_matches_torch(norm_first):
    ours, ref = encoder_pair(norm_first, "relu")
    x = rand(3, 7, D, seed=2)
    lengths = [7, 4, 2]
    expected = ref(x, src_mask=~causal_mask(7), src_key_padding_mask=~padding_mask(lengths, 7)[:, 0, 0],
                   is_causal=False)
    out = ours(x, mask=padding_mask(lengths, 7), is_causal=True)
    # (the PyTorch layers are left in training mode, dropout 0: its slow, exact path, not the fused fast path)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post", "pre"])
def test_decoder_block_matches_torch(norm_first):
    ours = randomise_(decoder_block(D, H, FF, placement="pre" if norm_first else "post", mlp="relu"), 3)
    ref = nn.TransformerDecoderLayer(D, H, FF, dropout=0.0, activation="relu", batch_first=True,
                                     norm_first=norm_first)
    with torch.no_grad():
        copy_mha(ref.self_attn, ours.attn)
        copy_mha(ref.multihead_attn, ours.cross_attn)
        copy_mlp(ref, ours)
        copy_norm(ref.norm1, ours.norm_attn)
        copy_norm(ref.norm2, ours.norm_cross)
        copy_norm(ref.norm3, ours.norm_mlp)
    ours, ref = ours.double(), ref.double()
    x, memory = rand(2, 5, D, seed=4), rand(2, 8, D, seed=5)
    source_lengths = [8, 3]
    expected = ref(x, memory, tgt_mask=~causal_mask(5),
                   memory_key_padding_mask=~padding_mask(source_lengths, 8)[:, 0, 0])
    out = ours(x, is_causal=True, source=memory, source_mask=padding_mask(source_lengths, 8))
    torch.testing.assert_close(out, expected)
    # without the source padding mask the answer changes (the mask is really applied)
    assert not torch.allclose(ours(x, is_causal=True, source=memory), expected)


def test_parallel_block_formula():
    """x + Attn(LN(x)) + MLP(LN(x)) with one shared norm, built from PyTorch parts."""
    ours = randomise_(Block(D, H, FF, placement="parallel", mlp="gelu", norm="layer"), 6).double()
    assert ours.norm_mlp is None
    attn = torch_mha_from(ours.attn, D, H, True).double()
    x = rand(2, 6, D, seed=7)
    h = F.layer_norm(x, (D,), ours.norm_attn.weight, ours.norm_attn.bias, 1e-5)
    mlp = F.linear(F.gelu(F.linear(h, ours.mlp.fc_in.weight, ours.mlp.fc_in.bias)), ours.mlp.fc_out.weight,
                   ours.mlp.fc_out.bias)
    expected = x + attn(h, h, h, attn_mask=~causal_mask(6), need_weights=False)[0] + mlp
    torch.testing.assert_close(ours(x, is_causal=True), expected)


def test_pre_ln_rms_swiglu_block_formula():
    """Llama-style block: x + Attn(RMS(x)); x + SwiGLU(RMS(x)), against torch.nn.RMSNorm and F.silu."""
    ours = randomise_(Block(D, H, FF, norm="rms", placement="pre", mlp="swiglu", bias=False, n_kv_heads=2), 8).double()
    attn = torch_mha_from(ours.attn, D, H, False).double()
    rms1, rms2 = nn.RMSNorm(D, eps=1e-6).double(), nn.RMSNorm(D, eps=1e-6).double()
    rms1.load_state_dict(ours.norm_attn.state_dict())
    rms2.load_state_dict(ours.norm_mlp.state_dict())
    x = rand(2, 6, D, seed=9)
    h = rms1(x)
    x = x + attn(h, h, h, attn_mask=~causal_mask(6), need_weights=False)[0]
    h = rms2(x)
    w1, w2, w3 = ours.mlp.w1.weight, ours.mlp.w2.weight, ours.mlp.w3.weight
    expected = x + F.linear(F.silu(F.linear(h, w1)) * F.linear(h, w3), w2)
    torch.testing.assert_close(ours(rand(2, 6, D, seed=9), is_causal=True), expected)


def test_block_errors():
    with pytest.raises(ValueError, match="placement must be one of"):
        Block(D, H, FF, placement="sandwich")
    with pytest.raises(ValueError, match="placement='parallel' has no place for cross-attention"):
        Block(D, H, FF, placement="parallel", cross_attention=True)
    with pytest.raises(ValueError, match="pass source=encoder output"):
        decoder_block(D, H, FF)(torch.zeros(1, 3, D))


def test_encoder_and_decoder_block_factories():
    assert encoder_block(D, H, FF).cross_attn is None
    assert decoder_block(D, H, FF).cross_attn is not None
