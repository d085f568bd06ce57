"""tfcore.positions: the formulas written as loops, RoPE's relative property, ALiBi and T5 by definition."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tfcore.positions import (
    LearnedPositions,
    T5RelativeBias,
    alibi_bias,
    alibi_slopes,
    rope,
    sinusoidal,
    t5_bucket,
)

from helpers import single_thread  # noqa: F401 (autouse fixture: one thread for tiny tensors)

SETTINGS = settings(max_examples=25, deadline=None)
LAYOUTS = ["interleaved", "split_half"]


def rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------------------------------------
# sinusoidal


@pytest.mark.parametrize("t,d,base", [(7, 8, 10000.0), (50, 16, 10000.0), (5, 6, 100.0)])
def test_sinusoidal_against_the_formula(t, d, base):
    table = sinusoidal(t, d, base)
    assert table.shape == (t, d) and table.dtype == torch.float32
    for pos in range(t):
        for i in range(d // 2):
            angle = pos / base ** (2 * i / d)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_dot_products_depend_on_the_offset_only():
    table = sinusoidal(40, 16).double()
    for k in (1, 3, 7):
        dots = (table[:-k] * table[k:]).sum(-1)  # PE(p) . PE(p + k) = sum_i cos(k w_i), for every p
        torch.testing.assert_close(dots, torch.full_like(dots, dots[0].item()), atol=1e-5, rtol=0)


def test_sinusoidal_rejects_odd_width():
    with pytest.raises(ValueError, match="d must be even"):
        sinusoidal(4, 5)


# ---------------------------------------------------------------------------------------------
# RoPE


def complex_rope(x, positions, base=10000.0):
    """Interleaved RoPE as complex multiplication: (x_2i + i x_2i+1) * exp(i pos theta_i), float64."""
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    rot = torch.polar(torch.ones(len(positions), d // 2, dtype=torch.float64), positions.double()[:, None] * theta)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(z * rot).flatten(-2)


def rotate_half_rope(x, positions, base=10000.0):
    """The split-half layout written the usual way: x cos + rotate_half(x) sin, cos/sin repeated per half."""
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = positions.double()[:, None] * theta
    cos, sin = torch.cat((angles.cos(), angles.cos()), -1), torch.cat((angles.sin(), angles.sin()), -1)
    rotated = torch.cat((-x[..., d // 2:], x[..., : d // 2]), -1)
    return x * cos + rotated * sin


def test_rope_interleaved_matches_complex_multiplication():
    x = rand(2, 3, 9, 8)
    pos = torch.arange(9) * 37  # large positions: the angles must be exact, not float32-rounded
    torch.testing.assert_close(rope(x, pos, layout="interleaved"), complex_rope(x, pos))


def test_rope_split_half_matches_rotate_half():
    x = rand(2, 3, 9, 8)
    pos = torch.arange(9) * 37
    torch.testing.assert_close(rope(x, pos, layout="split_half"), rotate_half_rope(x, pos))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rope_float32(layout):
    x = rand(2, 5, 16, dtype=torch.float32)
    pos = torch.arange(5)
    ref = complex_rope if layout == "interleaved" else rotate_half_rope
    out = rope(x, pos, layout=layout)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref(x.double(), pos), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
@SETTINGS
@given(m=st.integers(0, 2000), n=st.integers(0, 2000), shift=st.integers(-2000, 2000), seed=st.integers(0, 99))
def test_rope_scores_depend_only_on_the_offset(layout, m, n, shift, seed):
    shift = max(shift, -min(m, n))  # keep positions >= 0
    q, k = rand(16, seed=seed), rand(16, seed=seed + 1)

    def score(a, b):
        qa = rope(q[None], torch.tensor([a]), layout=layout)[0]
        kb = rope(k[None], torch.tensor([b]), layout=layout)[0]
        return (qa @ kb).item()

    assert score(m + shift, n + shift) == pytest.approx(score(m, n), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rope_scores_change_with_the_offset(layout):
    """The property above is not trivial: different offsets give different scores."""
    q, k = rand(16, seed=1), rand(16, seed=2)
    rot = lambda x, p: rope(x[None], torch.tensor([p]), layout=layout)[0]
    scores = {rot(q, m) @ rot(k, 0) for m in range(6)}
    assert len({round(s.item(), 9) for s in scores}) == 6


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rope_preserves_norms_of_every_pair(layout):
    x = rand(3, 11, 8)
    out = rope(x, torch.arange(11) * 5, layout=layout)
    pairs = (lambda t: torch.stack((t[..., 0::2], t[..., 1::2]), -1)) if layout == "interleaved" else \
        (lambda t: torch.stack((t[..., :4], t[..., 4:]), -1))
    torch.testing.assert_close(pairs(out).norm(dim=-1), pairs(x).norm(dim=-1))
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))


def test_rope_at_position_zero_is_identity():
    x = rand(2, 1, 8)
    for layout in LAYOUTS:
        torch.testing.assert_close(rope(x, torch.tensor([0]), layout=layout), x)


def test_split_half_equals_interleaved_after_channel_permutation():
    """Split-half pairs (x_i, x_{i+d/2}); interleaved pairs (x_2i, x_2i+1). perm maps one onto the other."""
    d = 12
    perm = torch.cat((torch.arange(0, d, 2), torch.arange(1, d, 2)))  # [0, 2, 4, ..., 1, 3, 5, ...]
    x = rand(2, 7, d)
    pos = torch.arange(7) * 3
    torch.testing.assert_close(rope(x[..., perm], pos, layout="split_half"), rope(x, pos, layout="interleaved")[..., perm])


def test_rope_errors():
    with pytest.raises(ValueError, match="even d_head"):
        rope(torch.zeros(3, 5), torch.arange(3))
    with pytest.raises(ValueError, match="layout must be one of"):
        rope(torch.zeros(3, 4), torch.arange(3), layout="halves")
    with pytest.raises(ValueError, match="positions has T=4 but x has T=3"):
        rope(torch.zeros(3, 4), torch.arange(4))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        rope(torch.zeros(3, 4, dtype=torch.long), torch.arange(3))


# ---------------------------------------------------------------------------------------------
# ALiBi


def test_alibi_slopes_for_8_heads():
    assert alibi_slopes(8).tolist() == [1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256]


def test_alibi_slopes_for_16_heads_are_square_roots():
    expected = [2 ** (-0.5 * h) for h in range(1, 17)]
    torch.testing.assert_close(alibi_slopes(16), torch.tensor(expected))


@pytest.mark.parametrize("n", [3, 6, 12])
def test_alibi_slopes_for_non_powers_of_two(n):
    """As documented: the slopes of the largest power of two p < n, then the odd-indexed slopes of 2p."""
    p = 2 ** int(math.log2(n))
    of_p = [2 ** (-8 * h / p) for h in range(1, p + 1)]
    of_2p_every_other = [2 ** (-8 * h / (2 * p)) for h in range(1, 2 * p + 1, 2)]
    expected = of_p + of_2p_every_other[: n - p]
    slopes = alibi_slopes(n)
    assert slopes.shape == (n,)
    torch.testing.assert_close(slopes, torch.tensor(expected))
    assert len(set(slopes.tolist())) == n and (slopes > 0).all() and (slopes < 1).all()


def test_alibi_slopes_for_12_heads_explicitly():
    expected = [2.0 ** -e for e in (1, 2, 3, 4, 5, 6, 7, 8)] + [2.0 ** -e for e in (0.5, 1.5, 2.5, 3.5)]
    torch.testing.assert_close(alibi_slopes(12), torch.tensor(expected))


@pytest.mark.parametrize("t_q,t_k", [(5, 5), (2, 6)])
def test_alibi_bias_against_a_loop(t_q, t_k):
    bias = alibi_bias(4, t_q, t_k)
    slopes = [2 ** (-2 * h) for h in range(1, 5)]
    assert bias.shape == (4, t_q, t_k)
    for h in range(4):
        for i in range(t_q):
            for j in range(t_k):
                assert bias[h, i, j].item() == pytest.approx(-slopes[h] * abs(i + t_k - t_q - j))


# ---------------------------------------------------------------------------------------------
# T5 buckets


def t5_bucket_scalar(rel, n_buckets=32, max_distance=128, bidirectional=True):
    """T5's bucket of one offset (key - query), written with Python numbers."""
    bucket = 0
    if bidirectional:
        n_buckets //= 2
        if rel > 0:
            bucket += n_buckets
        dist = abs(rel)
    else:
        dist = max(-rel, 0)
    exact = n_buckets // 2
    if dist < exact:
        return bucket + dist
    large = exact + int(math.log(dist / exact) / math.log(max_distance / exact) * (n_buckets - exact))
    return bucket + min(large, n_buckets - 1)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("n_buckets,max_distance", [(32, 128), (8, 20)])
def test_t5_bucket_against_a_scalar_reference(bidirectional, n_buckets, max_distance):
    rel = torch.arange(-300, 301)
    out = t5_bucket(rel, n_buckets, max_distance, bidirectional)
    expected = [t5_bucket_scalar(r, n_buckets, max_distance, bidirectional) for r in rel.tolist()]
    assert out.tolist() == expected


def test_t5_buckets_are_monotone_in_distance():
    dist = torch.arange(0, 500)
    uni = t5_bucket(-dist, bidirectional=False)  # past keys: offset j - i = -dist
    assert (uni[1:] >= uni[:-1]).all() and uni[0] == 0 and uni.max() == 31
    assert torch.equal(uni[:16], dist[:16])  # exact buckets for small distances
    future, past = t5_bucket(dist, bidirectional=True), t5_bucket(-dist, bidirectional=True)
    for half in (future[1:], past):
        assert (half[1:] >= half[:-1]).all()


def test_t5_bidirectional_halves():
    rel = torch.arange(-200, 201)
    b = t5_bucket(rel, 32, 128, bidirectional=True)
    assert ((b[rel <= 0] >= 0) & (b[rel <= 0] < 16)).all(), "keys at or before the query use the lower half"
    assert ((b[rel > 0] >= 16) & (b[rel > 0] < 32)).all(), "later keys use the upper half"
    assert b[rel == 0].item() == 0 and b[rel == 1].item() == 17 and b[rel == -1].item() == 1


def test_t5_unidirectional_ignores_the_future():
    assert (t5_bucket(torch.arange(0, 50), bidirectional=False) == 0).all()


def test_t5_relative_bias_module_looks_up_buckets():
    torch.manual_seed(0)
    m = T5RelativeBias(3, n_buckets=8, max_distance=16, bidirectional=True)
    bias = m(4, 6)
    assert bias.shape == (3, 4, 6)
    for h in range(3):
        for i in range(4):
            for j in range(6):
                bucket = t5_bucket_scalar(j - (i + 2), 8, 16, True)
                assert bias[h, i, j].item() == m.bias.weight[bucket, h].item()


# ---------------------------------------------------------------------------------------------
# learned positions


def test_learned_positions_look_up_the_table_and_refuse_beyond_max_len():
    torch.manual_seed(0)
    lp = LearnedPositions(8, 4)
    torch.testing.assert_close(lp(torch.arange(8)), lp.table.weight)
    with pytest.raises(ValueError, match=r"position 8 is beyond the learned table \(max_len=8\)"):
        lp(torch.arange(9))


@pytest.mark.parametrize("base", [0.0, -10000.0, float("nan"), float("inf")])
def test_position_tables_refuse_a_base_that_is_not_a_positive_number(base):
    for make in (lambda: sinusoidal(4, 8, base), lambda: rope(torch.randn(3, 8), torch.arange(3), base)):
        with pytest.raises(ValueError, match="base must"):
            make()


def test_relative_biases_refuse_fewer_keys_than_queries():
    with pytest.raises(ValueError, match="t_q=5, t_k=3"):
        alibi_bias(4, 5, 3)
    with pytest.raises(ValueError, match="t_k must be >= t_q"):
        T5RelativeBias(4)(5, 3)


def test_t5_buckets_at_the_smallest_valid_sizes():
    """n_buckets=4 bidirectional: two buckets per direction, one exact (offset 0) and one for the rest."""
    offsets = torch.arange(-6, 7)
    b = t5_bucket(offsets, n_buckets=4, max_distance=2)
    assert b.tolist() == [1] * 6 + [0] + [3] * 6
    with pytest.raises(ValueError, match="max_distance must be larger than the 1 offsets"):
        t5_bucket(offsets, n_buckets=4, max_distance=1)

