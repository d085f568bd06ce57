"""tfcore.masks: every pattern checked entry by entry against its definition, written as a loop over (i, j)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tfcore.masks import (
    block_diagonal_mask,
    causal_mask,
    check_mask,
    combine_masks,
    cross_attention_mask,
    padding_mask,
    prefix_lm_mask,
    sliding_window_mask,
    to_additive,
)

from helpers import single_thread  # noqa: F401 (autouse fixture: one thread for tiny tensors)

SETTINGS = settings(max_examples=25, deadline=None)


def from_loop(t_q, t_k, rule):
    return torch.tensor([[bool(rule(i, j)) for j in range(t_k)] for i in range(t_q)])


@pytest.mark.parametrize("t_q,t_k", [(1, 1), (5, 5), (2, 6), (1, 4), (4, 9)])
def test_causal_mask_definition(t_q, t_k):
    """Query i sits at absolute position i + (T_k - T_q) and sees keys j <= that position."""
    m = causal_mask(t_q, t_k)
    assert m.dtype == torch.bool and m.shape == (t_q, t_k)
    assert torch.equal(m, from_loop(t_q, t_k, lambda i, j: j <= i + t_k - t_q))


def test_causal_mask_square_default_is_lower_triangular():
    assert torch.equal(causal_mask(4), from_loop(4, 4, lambda i, j: j <= i))
    assert causal_mask(4).sum() == 4 * 5 // 2


@pytest.mark.parametrize("bad", [(0, None), (-1, None), (3, 0), (2.5, None), (True, None)])
def test_causal_mask_rejects_bad_lengths(bad):
    with pytest.raises(ValueError, match="t_q|t_k"):
        causal_mask(*bad)


def test_causal_mask_rejects_more_queries_than_keys():
    with pytest.raises(ValueError, match="t_k >= t_q"):
        causal_mask(5, 3)


@SETTINGS
@given(lengths=st.lists(st.integers(0, 6), min_size=1, max_size=4), extra=st.integers(0, 3))
def test_padding_mask_definition(lengths, extra):
    t = max(lengths) + extra
    m = padding_mask(lengths, t)
    assert m.shape == (len(lengths), 1, 1, t) and m.dtype == torch.bool
    for b, n in enumerate(lengths):
        assert m[b, 0, 0].tolist() == [j < n for j in range(t)]


def test_padding_mask_defaults_to_the_longest_length():
    assert padding_mask(torch.tensor([2, 5, 3])).shape == (3, 1, 1, 5)


@pytest.mark.parametrize("lengths,t,err,msg", [
    ([2, 7], 5, ValueError, r"lengths must lie in \[0, T=5\]"),
    ([-1, 2], 4, ValueError, r"lengths must lie in \[0, T=4\]"),
    ([[1, 2]], 4, ValueError, r"lengths must have shape \(B,\)"),
    ([1.0, 2.0], 4, TypeError, "lengths must hold integers"),
])
def test_padding_mask_rejects_bad_lengths(lengths, t, err, msg):
    with pytest.raises(err, match=msg):
        padding_mask(lengths, t)


def test_causal_and_padding_broadcast_to_batch_of_square_masks():
    lengths = [3, 5, 1]
    t = 5
    m = combine_masks(causal_mask(t), padding_mask(lengths, t))
    assert m.shape == (3, 1, t, t)
    for b, n in enumerate(lengths):
        assert torch.equal(m[b, 0], from_loop(t, t, lambda i, j: j <= i and j < n))
    # and the combined mask broadcasts against scores (B, h, T, T)
    scores = torch.zeros(3, 4, t, t)
    assert torch.broadcast_shapes(m.shape, scores.shape) == scores.shape


def test_combine_masks_skips_none_and_checks_dtypes():
    m = causal_mask(3)
    assert torch.equal(combine_masks(None, m, None), m)
    assert combine_masks(None, None) is None
    with pytest.raises(TypeError, match="mask 1 must be bool"):
        combine_masks(m, to_additive(m))


@pytest.mark.parametrize("t,window", [(6, 1), (6, 2), (7, 3), (4, 10)])
@pytest.mark.parametrize("causal", [True, False])
def test_sliding_window_definition(t, window, causal):
    m = sliding_window_mask(t, window, causal=causal)
    rule = (lambda i, j: abs(i - j) < window and j <= i) if causal else (lambda i, j: abs(i - j) < window)
    assert torch.equal(m, from_loop(t, t, rule))


def test_sliding_window_wider_than_the_sequence_is_causal():
    assert torch.equal(sliding_window_mask(5, 5), causal_mask(5))


@pytest.mark.parametrize("bad", [dict(t=4, window=0), dict(t=0, window=2)])
def test_sliding_window_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match="must be a positive integer"):
        sliding_window_mask(**bad)


@pytest.mark.parametrize("t,prefix", [(6, 0), (6, 1), (6, 3), (6, 6)])
def test_prefix_lm_definition(t, prefix):
    m = prefix_lm_mask(t, prefix)
    assert torch.equal(m, from_loop(t, t, lambda i, j: j <= i or (i < prefix and j < prefix) or j < prefix))
    # the prefix block is fully bidirectional; beyond it the mask is causal
    assert m[:prefix, :prefix].all()
    assert torch.equal(m[prefix:, prefix:], causal_mask(t - prefix)) if prefix < t else True


def test_prefix_lm_edge_cases():
    assert torch.equal(prefix_lm_mask(5, 0), causal_mask(5))
    assert prefix_lm_mask(5, 5).all()


@pytest.mark.parametrize("prefix", [-1, 7])
def test_prefix_lm_rejects_bad_prefix(prefix):
    with pytest.raises(ValueError, match=r"prefix_len must lie in \[0, T=6\]"):
        prefix_lm_mask(6, prefix)


@pytest.mark.parametrize("causal", [True, False])
def test_block_diagonal_definition(causal):
    segments = torch.tensor([[0, 0, 0, 1, 1, 2], [5, 5, 5, 5, 7, 7]])
    m = block_diagonal_mask(segments, causal=causal)
    assert m.shape == (2, 1, 6, 6)
    for b in range(2):
        s = segments[b].tolist()
        expected = from_loop(6, 6, lambda i, j: s[i] == s[j] and (j <= i or not causal))
        assert torch.equal(m[b, 0], expected)


def test_block_diagonal_of_one_sequence():
    m = block_diagonal_mask(torch.tensor([0, 0, 1, 1]), causal=False)
    assert m.shape == (1, 1, 4, 4)
    expected = torch.block_diag(torch.ones(2, 2), torch.ones(2, 2)).bool()
    assert torch.equal(m[0, 0], expected)


def test_packed_attention_equals_separate_attention():
    """A block-diagonal causal mask makes packed sequences behave exactly like separate ones."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 7, 4, dtype=torch.float64) for _ in range(3))
    segments = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    packed = F.scaled_dot_product_attention(q, k, v, attn_mask=block_diagonal_mask(segments))
    first = F.scaled_dot_product_attention(q[:, :, :3], k[:, :, :3], v[:, :, :3], is_causal=True)
    second = F.scaled_dot_product_attention(q[:, :, 3:], k[:, :, 3:], v[:, :, 3:], is_causal=True)
    torch.testing.assert_close(packed, torch.cat((first, second), dim=2))


def test_cross_attention_mask_hides_source_padding_only():
    m = cross_attention_mask([2, 4], 5)
    assert m.shape == (2, 1, 1, 5)
    assert m[0, 0, 0].tolist() == [True, True, False, False, False]
    scores = torch.zeros(2, 3, 6, 5)  # (B, h, T_target, T_source)
    assert torch.broadcast_shapes(m.shape, scores.shape) == scores.shape


@pytest.mark.parametrize("fill", [float("-inf"), -1e9])
def test_to_additive_definition(fill):
    m = sliding_window_mask(5, 2, causal=False)
    a = to_additive(m, torch.float64, fill=fill)
    assert a.dtype == torch.float64 and a.shape == m.shape
    for i in range(5):
        for j in range(5):
            assert a[i, j].item() == (0.0 if abs(i - j) < 2 else fill)


def test_additive_and_boolean_masks_give_the_same_attention():
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 2, 5, 4, dtype=torch.float64) for _ in range(3))
    m = combine_masks(causal_mask(5), padding_mask([5, 3], 5))
    with_bool = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
    with_add = F.scaled_dot_product_attention(q, k, v, attn_mask=to_additive(m, torch.float64))
    torch.testing.assert_close(with_add, with_bool)
    assert not math.isnan(with_add.sum().item())


def test_to_additive_rejects_float_masks():
    with pytest.raises(TypeError, match="mask must be bool"):
        to_additive(torch.zeros(3, 3))


# ---------------------------------------------------------------------------------------------
# the mask rule (check_mask): (T_q, T_k) or full rank, bool or float, never int


SCORES = (2, 4, 5, 7)  # (B, h, T_q, T_k)


@pytest.mark.parametrize("shape", [(5, 7), (1, 7), (5, 1), (2, 1, 1, 7), (2, 1, 5, 7), (1, 4, 5, 7), (2, 4, 5, 7),
                                   (1, 1, 1, 1)])
@pytest.mark.parametrize("dtype", [torch.bool, torch.float32, torch.float64, torch.float16])
def test_check_mask_accepts_every_documented_shape_and_dtype(shape, dtype):
    check_mask(torch.zeros(shape, dtype=dtype), SCORES)  # no error
    # and each of them does broadcast against the scores without changing their shape
    assert torch.broadcast_shapes(shape, SCORES) == SCORES


@pytest.mark.parametrize("shape,why", [
    ((7,), "has 1 axis"),  # broadcasts, but a (T_k,) vector is refused: say (B, 1, 1, T_k) or (T_q, T_k)
    ((2, 1, 7), "head axis h=4"),  # broadcasts when B == h or B == 1: would hide keys per head, not per sequence
    ((4, 5, 7), "head axis h=4"),
    ((2, 7), r"\(B, 1, 1, T_k\)"),  # a key padding mask given as (B, T_k)
    ((1, 2, 4, 5, 7), "does not broadcast"),
    ((5, 6), "does not broadcast"),
])
def test_check_mask_refuses_shapes_that_broadcast_but_mean_something_else(shape, why):
    with pytest.raises(ValueError, match=why):
        check_mask(torch.ones(shape, dtype=torch.bool), SCORES)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.int8])
def test_check_mask_refuses_integer_masks_instead_of_guessing(dtype):
    """1 means "attend" in some libraries and "hide" in others: refused, with both fixes named."""
    with pytest.raises(TypeError, match=r"mask\.bool\(\) if 1 means attend, mask == 0 if 1 means hide"):
        check_mask(torch.ones(5, 7, dtype=dtype), SCORES)


def test_check_mask_reads_no_values():
    """Shapes, dtype and device only: a mask on the meta device (no data at all) passes."""
    check_mask(torch.ones(2, 1, 1, 7, dtype=torch.bool, device="meta"), SCORES, torch.device("meta"))
    with pytest.raises(ValueError, match="mask is on meta but the scores are on cpu"):
        check_mask(torch.ones(5, 7, dtype=torch.bool, device="meta"), SCORES, torch.device("cpu"))


def test_combine_masks_refuses_ranks_that_would_land_on_the_wrong_axis():
    """(B, 1, T) & (B, 1, 1, T) broadcasts to (B, B, 1, T): the batch axis on the head axis."""
    with pytest.raises(ValueError, match="mask 0 of shape \\(2, 1, 5\\) has 3 axes but another mask has 4"):
        combine_masks(torch.ones(2, 1, 5, dtype=torch.bool), padding_mask([5, 3], 5))
    with pytest.raises(ValueError, match="do not broadcast together"):
        combine_masks(causal_mask(4), padding_mask([5, 3], 5))
    # (T, T) with any 4-axis mask stays allowed
    assert combine_masks(causal_mask(5), padding_mask([5, 3], 5)).shape == (2, 1, 5, 5)


def test_padding_mask_names_the_argument_it_was_given_as():
    with pytest.raises(ValueError, match=r"source_lengths must lie in \[0, T=4\]"):
        cross_attention_mask([7], 4)
    with pytest.raises(ValueError, match=r"lengths has B=0 entries"):
        padding_mask(torch.zeros(0, dtype=torch.long))


@pytest.mark.parametrize("fill", [float("inf"), float("nan"), 0.0, 5.0])
def test_to_additive_refuses_a_fill_that_does_not_hide(fill):
    with pytest.raises(ValueError, match="fill must be -inf or a negative number"):
        to_additive(causal_mask(3), fill=fill)

