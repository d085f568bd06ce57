"""tfcore.model: causality, generation with and without the KV cache, parameter counts, configs, padding."""

from __future__ import annotations

import random

import pytest
import torch
from helpers import random_tokens, tiny_config, tiny_model, single_thread  # noqa: F401 (autouse fixture)

from tfcore.complexity import count_parameters, parameter_count
from tfcore.masks import block_diagonal_mask, prefix_lm_mask
from tfcore.model import (
    ARCHITECTURES,
    MLPS,
    POSITIONS,
    Transformer,
    TransformerConfig,
    capture_attention,
    gpt2_config,
    llama_config,
    sample,
    sampling_probs,
)

V = 19  # tiny_config's vocab_size
DECODER_POSITIONS = [p for p in POSITIONS]


def changed_at(tokens: torch.Tensor, position: int) -> torch.Tensor:
    out = tokens.clone()
    out[:, position:] = (out[:, position:] + 1 + torch.arange(out.shape[1] - position)) % V
    return out


# ---------------------------------------------------------------------------------------------
# causality and bidirectionality


@pytest.mark.parametrize("backend", ["naive", "sdpa"])
@pytest.mark.parametrize("positions", DECODER_POSITIONS)
def test_decoder_earlier_logits_ignore_later_tokens(positions, backend):
    model = tiny_model(positions=positions, backend=backend)
    tokens = random_tokens(2, 10, V, seed=1)
    with torch.no_grad():
        base = model(tokens)
        for p in (1, 4, 9):
            after = model(changed_at(tokens, p))
            torch.testing.assert_close(after[:, :p], base[:, :p], atol=0, rtol=0)
            assert not torch.allclose(after[:, p:], base[:, p:]), "later logits must see the change"


@pytest.mark.parametrize("positions", ["learned", "rope", "none", "t5"])
def test_encoder_is_bidirectional(positions):
    model = tiny_model(architecture="encoder", positions=positions)
    tokens = random_tokens(2, 8, V, seed=2)
    with torch.no_grad():
        base, after = model(tokens), model(changed_at(tokens, 6))
    assert (after[:, 0] - base[:, 0]).abs().max() > 1e-6, "position 0 of an encoder must see token 6"


@pytest.mark.parametrize("architecture", ["encoder", "decoder"])
def test_permutation_equivariance_without_positions(architecture):
    model = tiny_model(architecture=architecture, positions="none")
    tokens = random_tokens(2, 9, V, seed=3)
    perm = torch.tensor([5, 2, 8, 0, 7, 1, 3, 6, 4])
    with torch.no_grad():
        out, out_perm = model(tokens), model(tokens[:, perm])
    if architecture == "encoder":
        torch.testing.assert_close(out_perm, out[:, perm])
    else:  # the causal mask alone tells order apart
        assert not torch.allclose(out_perm, out[:, perm])


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rope", "alibi", "t5"])
def test_positions_break_permutation_equivariance(positions):
    model = tiny_model(architecture="encoder", positions=positions)
    tokens = random_tokens(1, 9, V, seed=3)
    perm = torch.tensor([5, 2, 8, 0, 7, 1, 3, 6, 4])
    with torch.no_grad():
        assert not torch.allclose(model(tokens[:, perm]), model(tokens)[:, perm], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# generation: KV cache vs recomputation


GENERATION_CASES = [
    dict(positions="learned"),
    dict(positions="sinusoidal"),
    dict(positions="rope"),
    dict(positions="rope", rope_layout="split_half", n_kv_heads=2, norm="rms", mlp="swiglu", bias=False),
    dict(positions="alibi"),
    dict(positions="t5"),
    dict(positions="none", n_kv_heads=1),
    dict(positions="learned", placement="post"),
    dict(positions="rope", placement="parallel"),
    dict(positions="learned", architecture="encoder-decoder"),
    dict(positions="t5", architecture="encoder-decoder", n_kv_heads=2),
    dict(positions="rope", architecture="encoder-decoder", backend="sdpa"),
]


def case_id(case):
    return "-".join(f"{v}" for v in case.values())


@pytest.mark.parametrize("case", GENERATION_CASES, ids=case_id)
@pytest.mark.parametrize("temperature", [0.0, 1.0], ids=["greedy", "sampled"])
def test_generation_with_cache_equals_recomputation(case, temperature):
    model = tiny_model(seed=4, **case)
    prompt = random_tokens(2, 3, V, seed=5)
    source = random_tokens(2, 6, V, seed=6) if case.get("architecture") == "encoder-decoder" else None
    outs = []
    for use_cache in (True, False):
        g = torch.Generator().manual_seed(7)
        outs.append(model.generate(prompt, 12, temperature=temperature, use_cache=use_cache, source=source,
                                   generator=g))
    assert outs[0].shape == (2, 15) and torch.equal(outs[0][:, :3], prompt)
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("case", GENERATION_CASES, ids=case_id)
def test_cached_logits_equal_full_forward_logits(case):
    """Stronger than equal tokens: each step's logits with the cache equal the full forward's logits."""
    from tfcore.heads import ModelCache

    model = tiny_model(seed=8, **case)
    tokens = random_tokens(2, 9, V, seed=9)
    kw = {"source": random_tokens(2, 5, V, seed=10)} if case.get("architecture") == "encoder-decoder" else {}
    with torch.no_grad():
        full = model(tokens, **kw)
        cache = ModelCache.empty(model.config.n_layers)
        steps = [model(tokens[:, :4], cache=cache, **kw)] + \
                [model(tokens[:, t:t + 1], cache=cache, **kw) for t in range(4, 9)]
    assert cache.length == 9
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", GENERATION_CASES, ids=case_id)
def test_decoding_steps_read_nothing_back_from_the_device(case):
    """Only the prompt's id check reads values back (two, and two more for an encoder's source):
    a read-back in every step would, on a GPU, stall each step until the previous one is done."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountReads(TorchDispatchMode):
        reads = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in (torch.ops.aten._local_scalar_dense, torch.ops.aten.item):
                CountReads.reads += 1
            return func(*args, **(kwargs or {}))

    model = tiny_model(seed=4, **case)
    prompt = random_tokens(2, 3, V, seed=5)
    source = random_tokens(2, 6, V, seed=6) if case.get("architecture") == "encoder-decoder" else None
    for kw in (dict(temperature=0.0), dict(temperature=1.0, top_k=5), dict(temperature=0.0, use_cache=False),
               dict(temperature=0.8, top_p=0.9)):
        for new_tokens in (2, 30):  # 30 also crops the context (max_seq_len 24) and refills the cache
            CountReads.reads = 0
            with CountReads():
                model.generate(prompt, new_tokens, source=source, **kw)
            assert CountReads.reads == (2 if source is None else 4), (kw, new_tokens)


def test_generation_past_the_context_keeps_working():
    model = tiny_model(seed=1, positions="learned")  # max_seq_len 24
    out = model.generate(random_tokens(1, 20, V), 15, temperature=0.0)
    assert out.shape == (1, 35) and int(out.max()) < V
    out_nc = model.generate(random_tokens(1, 20, V), 3, temperature=0.0, use_cache=False)
    assert torch.equal(out[:, :23], out_nc)  # identical while the context fits


def test_generate_accepts_a_1d_prompt_and_top_k():
    model = tiny_model(seed=1)
    out = model.generate(torch.tensor([1, 2, 3]), 4, temperature=0.0)
    assert out.shape == (1, 7)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    # top_k = 1 is greedy whatever the temperature
    assert torch.equal(model.generate(torch.tensor([1, 2, 3]), 4, temperature=2.0, top_k=1, generator=g1), out)
    assert model.generate(torch.tensor([1, 2, 3]), 4, top_k=3, generator=g2).shape == (1, 7)


def test_sample_greedy_and_top_k():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0], [5.0, 0.0, 0.0, 4.9]])
    assert sample(logits, temperature=0).tolist() == [[1], [0]]
    g = torch.Generator().manual_seed(0)
    draws = torch.cat([sample(logits, 1.0, top_k=2, generator=g) for _ in range(200)], dim=1)
    assert set(draws[0].tolist()) == {1, 3} and set(draws[1].tolist()) == {0, 3}


def nucleus_reference(logits: list[float], temperature: float, top_k: int | None, top_p: float) -> list[float]:
    """Top-k then top-p in float64 Python, by the definition: the smallest set of the most likely
    tokens whose probabilities sum to at least p, renormalised (ties: the lower id first)."""
    import math

    z = [x / temperature for x in logits]
    order = sorted(range(len(z)), key=lambda i: (-z[i], i))
    if top_k is not None:
        order = order[:top_k]
    top = max(z[i] for i in order)
    weights = {i: math.exp(z[i] - top) for i in order}
    total = sum(weights.values())
    probs = {i: w / total for i, w in weights.items()}
    # (when rounding leaves the total just under p = 1, every token is kept)
    size = next((m for m in range(1, len(order) + 1) if sum(probs[i] for i in order[:m]) >= top_p), len(order))
    kept = order[:size]
    mass = sum(probs[i] for i in kept)
    return [probs[i] / mass if i in kept else 0.0 for i in range(len(z))]


def far_from_boundaries(row: list[float], temperature: float, top_k: int | None, top_p: float) -> bool:
    """True when no cumulative sum of the sorted probabilities lies within 1e-4 of p (float32 cannot
    decide such a boundary the way float64 does)."""
    probs = sorted(nucleus_reference(row, temperature, top_k, 1.0), reverse=True)
    total = 0.0
    for q in probs:
        total += q
        if abs(total - top_p) < 1e-4:
            return False
    return True


@pytest.mark.parametrize("temperature", [1.0, 0.7, 2.0])
@pytest.mark.parametrize("top_k", [None, 6])
@pytest.mark.parametrize("top_p", [0.05, 0.3, 0.5, 0.8, 0.95, 0.999])
def test_top_p_matches_a_float64_reference(temperature, top_k, top_p):
    logits = torch.randn(16, 13, generator=torch.Generator().manual_seed(int(top_p * 1000)), dtype=torch.float64) * 2
    rows = [row for row in logits.tolist() if far_from_boundaries(row, temperature, top_k, top_p)]
    assert len(rows) >= 8, "too many rows near a boundary for the test to mean anything"
    got = sampling_probs(torch.tensor(rows, dtype=torch.float32), temperature, top_k, top_p)
    expected = torch.tensor([nucleus_reference(row, temperature, top_k, top_p) for row in rows], dtype=torch.float32)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert torch.equal(got > 0, expected > 0)  # exactly the same tokens kept


def test_top_p_one_keeps_every_token_even_the_tiny_ones():
    """p = 1 is plain sampling: a float32 running sum reaches 1.0 before the last tokens, which
    must still be kept (probabilities ~1e-13 here)."""
    logits = torch.tensor([[10.0, 9.0, 8.0, -20.0, -21.0], [0.0, 0.0, 0.0, 0.0, -25.0]])
    probs = sampling_probs(logits, top_p=1.0)
    assert (probs > 0).all()
    torch.testing.assert_close(probs, torch.softmax(logits.double(), dim=-1).float(), atol=1e-7, rtol=1e-5)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    many = logits.repeat(500, 1)
    assert torch.equal(sample(many, top_p=1.0, generator=g1), sample(many, generator=g2))


def test_tiny_top_p_is_greedy():
    logits = torch.randn(64, 17, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    for temperature in (0.5, 1.0, 3.0):
        assert torch.equal(sample(logits, temperature, top_p=1e-6, generator=g), logits.argmax(dim=-1, keepdim=True))
    model = tiny_model(seed=2)
    prompt = random_tokens(3, 4, V, seed=1)
    assert torch.equal(model.generate(prompt, 6, temperature=1.3, top_p=1e-6, generator=g),
                       model.generate(prompt, 6, temperature=0.0))


def test_top_p_draws_follow_the_nucleus_distribution():
    """20,000 draws of one row: every frequency within 5 standard deviations of the reference
    probability, and no token outside the nucleus ever drawn."""
    row = [2.0, 1.5, 1.0, 0.4, 0.0, -0.5, -3.0]
    expected = torch.tensor(nucleus_reference(row, 1.0, None, 0.8), dtype=torch.float64)
    n = 20_000
    draws = sample(torch.tensor([row]).repeat(n, 1), top_p=0.8, generator=torch.Generator().manual_seed(1))
    freq = torch.bincount(draws.flatten(), minlength=len(row)).double() / n
    assert (freq[expected == 0] == 0).all() and (expected == 0).sum() >= 2
    sd = (expected * (1 - expected) / n).sqrt()
    assert ((freq - expected).abs() <= 5 * sd + 1e-12).all(), (freq, expected)


def test_generate_passes_top_p_through():
    """generate(top_p=p) draws each token from sampling_probs(..., top_p=p) of the model's logits."""
    model = tiny_model(seed=3)
    prompt = random_tokens(1, 5, V, seed=2)
    out = model.generate(prompt, 1, temperature=0.9, top_p=0.6, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        probs = sampling_probs(model(prompt)[:, -1], 0.9, top_p=0.6)
    expected = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(4))
    assert torch.equal(out[:, -1:], expected) and probs[0, out[0, -1]] > 0


# ---------------------------------------------------------------------------------------------
# parameter counts


def independent_count(model: torch.nn.Module) -> int:
    """Sum numel over distinct storages: a tied matrix counted once, whatever parameters() does."""
    seen = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        seen[p.untyped_storage().data_ptr()] = p.numel()
    return sum(seen.values())


def all_configs(n_random: int = 60):
    """Every value of every choice at least once, plus random combinations."""
    options = dict(architecture=ARCHITECTURES, norm=("layer", "rms"), placement=("pre", "post", "parallel"),
                   mlp=MLPS, positions=POSITIONS, tie_weights=(True, False), n_kv_heads=(4, 2, 1),
                   bias=(True, False))
    rng = random.Random(0)
    configs = []
    for i in range(max(n_random, max(len(v) for v in options.values()))):
        choice = {k: v[i % len(v)] if i < len(v) else rng.choice(v) for k, v in options.items()}
        if choice["placement"] == "parallel" and choice["architecture"] == "encoder-decoder":
            choice["placement"] = "pre"
        choice["n_encoder_layers"] = 1 + i % 3
        configs.append(choice)
    return configs


@pytest.mark.parametrize("overrides", all_configs(), ids=lambda c: "-".join(str(v) for v in c.values()))
def test_count_parameters_equals_numel_and_formula(overrides):
    config = tiny_config(**overrides)
    torch.manual_seed(0)
    model = Transformer(config)
    n = count_parameters(model)
    assert n == independent_count(model)
    assert n == parameter_count(config)["total"], parameter_count(config)
    assert count_parameters(model, trainable_only=True) == n


def test_every_parameter_is_used():
    """A parameter that never receives a gradient inflates the count and the optimizer state."""
    for overrides in all_configs(12):
        model = tiny_model(**overrides)
        tokens = random_tokens(2, 6, V)
        kw = {"source": random_tokens(2, 5, V, seed=1)} if overrides["architecture"] == "encoder-decoder" else {}
        model(tokens, **kw).square().sum().backward()
        unused = [name for name, p in model.named_parameters() if p.grad is None]
        assert not unused, f"{overrides}: parameters without gradient: {unused}"


def test_trainable_only_skips_frozen_parameters():
    model = Transformer(tiny_config())
    model.embed.weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - V * 16


def test_tied_weights_share_storage():
    tied, untied = Transformer(tiny_config(tie_weights=True)), Transformer(tiny_config(tie_weights=False))
    assert tied.unembed.weight is tied.embed.weight
    assert tied.unembed.weight.data_ptr() == tied.embed.weight.data_ptr()
    with torch.no_grad():
        tied.embed.weight[3, 5] = 42.0
    assert tied.unembed.weight[3, 5].item() == 42.0
    assert untied.unembed.weight.data_ptr() != untied.embed.weight.data_ptr()
    assert count_parameters(untied) - count_parameters(tied) == V * 16


def test_gpt2_config_has_gpt2_small_parameter_count():
    """GPT-2 small has 124,439,808 parameters at vocab 50257; the config pads the vocab to 50304."""
    c = gpt2_config()
    assert (c.d_model, c.n_layers, c.n_heads, c.d_ff, c.max_seq_len) == (768, 12, 12, 3072, 1024)
    assert parameter_count(c)["total"] == 124_439_808 + (50304 - 50257) * 768
    assert parameter_count(gpt2_config(vocab_size=50257))["total"] == 124_439_808


def test_llama_config_with_llama2_7b_shapes():
    """Llama 2 7B (MHA, d_ff 11008, untied) has 6,738,415,616 parameters."""
    c = llama_config(n_kv_heads=32, d_ff=11008)
    assert parameter_count(c)["total"] == 6_738_415_616


def test_swiglu_default_width_keeps_the_mlp_budget():
    c = tiny_config(d_model=96, mlp="swiglu")
    assert c.d_ff % 64 == 0 and abs(3 * c.d_ff - 8 * 96) <= 3 * 64


# ---------------------------------------------------------------------------------------------
# invalid configurations and inputs


@pytest.mark.parametrize("overrides,match", [
    (dict(d_model=30, n_heads=4), "d_model=30 must be divisible by n_heads=4"),
    (dict(n_heads=4, n_kv_heads=3), "n_heads=4 must be a multiple of n_kv_heads=3"),
    (dict(d_model=12, n_heads=4, positions="rope"), "d_head=3 must be even"),
    (dict(d_model=15, n_heads=5, positions="sinusoidal"), "even d_model"),
    (dict(architecture="gpt"), "architecture must be one of"),
    (dict(positions="xpos"), "positions must be one of"),
    (dict(norm="batch"), "norm must be one of"),
    (dict(n_layers=0), "n_layers must be a positive integer"),
    (dict(vocab_size=2.5), "vocab_size must be a positive integer"),
    (dict(placement="parallel", architecture="encoder-decoder"), "placement='parallel' cannot hold cross-attention"),
])
def test_invalid_configs_name_the_field(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**overrides)


def test_prompt_longer_than_the_context_is_refused():
    model = tiny_model()
    with pytest.raises(ValueError, match="prompt has 30 tokens but max_seq_len=24"):
        model.generate(random_tokens(1, 30, V), 2)


def test_sequence_longer_than_learned_positions_is_refused():
    with pytest.raises(ValueError, match="longer than max_seq_len=24"):
        tiny_model()(random_tokens(1, 25, V))


@pytest.mark.parametrize("bad", [V, -1])
def test_token_ids_out_of_range(bad):
    tokens = random_tokens(1, 5, V)
    tokens[0, 2] = bad
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, vocab_size=19\)"):
        tiny_model()(tokens)
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, vocab_size=19\)"):
        tiny_model().generate(tokens, 3)  # generate checks its prompt once, up front


def test_token_shape_and_dtype_are_checked():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"tokens must have shape \(B, T\)"):
        model(torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="tokens must be integer ids"):
        model(torch.zeros(1, 3))


def test_architecture_specific_errors():
    with pytest.raises(ValueError, match="needs source="):
        tiny_model(architecture="encoder-decoder")(random_tokens(1, 4, V))
    with pytest.raises(ValueError, match="encoder-only model does not generate"):
        tiny_model(architecture="encoder").generate(random_tokens(1, 4, V), 2)
    with pytest.raises(ValueError, match="top_k must lie in"):
        tiny_model().generate(random_tokens(1, 4, V), 2, top_k=V + 1)


def test_arguments_an_architecture_would_ignore_are_refused():
    """source= given to a decoder-only or encoder-only model used to be silently ignored."""
    tokens = random_tokens(2, 4, V)
    for architecture in ("decoder", "encoder"):
        model = tiny_model(architecture=architecture)
        for kw in (dict(source=tokens), dict(source_lengths=torch.tensor([4, 4])), dict(memory=torch.randn(2, 4, 16))):
            with pytest.raises(ValueError, match=f"given to a model with architecture='{architecture}'"):
                model(tokens, **kw)
    with pytest.raises(ValueError, match="source given to a decoder-only model"):
        tiny_model().generate(tokens, 2, source=tokens)
    with pytest.raises(ValueError, match="generates from a source"):
        tiny_model(architecture="encoder-decoder").generate(tokens, 2)


def test_lengths_and_masks_of_the_wrong_shape_are_refused_not_broadcast():
    model = tiny_model()
    tokens = random_tokens(2, 6, V)
    with pytest.raises(ValueError, match="lengths has B=1 but tokens has B=2"):
        model(tokens, lengths=torch.tensor([3]))  # a (1,) padding mask would broadcast over both rows
    with pytest.raises(ValueError, match="head axis"):
        model(tokens, mask=torch.ones(2, 1, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="source has B=1 but tokens has B=2"):
        tiny_model(architecture="encoder-decoder")(tokens, source=random_tokens(1, 5, V))


def test_generate_refuses_negative_counts_and_temperatures_and_allows_zero():
    model, prompt = tiny_model(), random_tokens(2, 3, V)
    assert torch.equal(model.generate(prompt, 0), prompt)
    with pytest.raises(ValueError, match="max_new_tokens must be an integer >= 0, got -1"):
        model.generate(prompt, -1)  # used to return the prompt as if nothing were asked
    with pytest.raises(ValueError, match=r"temperature must lie in \[0, inf\), got -1.0"):
        model.generate(prompt, 2, temperature=-1.0)  # used to sample from the inverted distribution


def test_config_refuses_values_that_give_nan_or_nonsense():
    for overrides, match in ((dict(n_encoder_layers=-1), "n_encoder_layers must be a positive integer"),
                             (dict(positions="rope", rope_base=0.0), r"rope_base must lie in \(0, inf\)"),
                             (dict(attention_scale=float("nan")), "attention_scale must be a finite number"),
                             (dict(dropout=1.0), r"dropout must lie in \[0, 1\)"),
                             (dict(n_heads=4, n_kv_heads=8), "n_kv_heads=8 exceeds n_heads=4"),
                             (dict(n_layers=True), "n_layers must be a positive integer")):
        with pytest.raises(ValueError, match=match):
            tiny_config(**overrides)


# ---------------------------------------------------------------------------------------------
# padding and masks


@pytest.mark.parametrize("backend", ["naive", "sdpa"])
@pytest.mark.parametrize("positions", ["learned", "rope", "alibi", "t5"])
@pytest.mark.parametrize("architecture", ["decoder", "encoder"])
def test_right_padding_leaves_real_positions_unchanged(architecture, positions, backend):
    model = tiny_model(architecture=architecture, positions=positions, backend=backend)
    lengths = [7, 4, 2]
    tokens = random_tokens(3, 7, V, seed=11)
    padded = tokens.clone()
    for b, n in enumerate(lengths):
        padded[b, n:] = (b + 5) % V  # arbitrary pad ids: they must not matter
    with torch.no_grad():
        out = model(padded, lengths=torch.tensor(lengths))
        for b, n in enumerate(lengths):
            alone = model(tokens[b:b + 1, :n])
            torch.testing.assert_close(out[b:b + 1, :n], alone, atol=1e-5, rtol=1e-5)


def test_encoder_without_lengths_does_see_the_padding():
    """The check above is not vacuous: an encoder that is not told the lengths attends to the pads."""
    model = tiny_model(architecture="encoder")
    tokens = random_tokens(1, 7, V, seed=11)
    with torch.no_grad():
        assert not torch.allclose(model(tokens)[:, :4], model(tokens[:, :4]), atol=1e-5)


@pytest.mark.parametrize("backend", ["naive", "sdpa"])
def test_source_padding_in_encoder_decoder(backend):
    model = tiny_model(architecture="encoder-decoder", backend=backend)
    source = random_tokens(2, 6, V, seed=12)
    target = random_tokens(2, 5, V, seed=13)
    with torch.no_grad():
        out = model(target, source=source, source_lengths=torch.tensor([6, 3]))
        torch.testing.assert_close(out[1:], model(target[1:], source=source[1:, :3]), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[:1], model(target[:1], source=source[:1]), atol=1e-5, rtol=1e-5)


def test_packed_sequences_with_a_block_diagonal_mask():
    """An extra mask combines with the causal one: two packed sequences equal two separate ones."""
    model = tiny_model(positions="alibi")  # relative positions: each packed piece is shift-invariant
    a, b = random_tokens(1, 4, V, seed=14), random_tokens(1, 5, V, seed=15)
    packed = torch.cat((a, b), dim=1)
    segments = torch.tensor([[0] * 4 + [1] * 5])
    with torch.no_grad():
        out = model(packed, mask=block_diagonal_mask(segments))
        torch.testing.assert_close(out[:, :4], model(a), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[:, 4:], model(b), atol=1e-5, rtol=1e-5)


def test_prefix_lm_encoder_is_bidirectional_in_the_prefix_and_causal_after_it():
    model = tiny_model(architecture="encoder", positions="rope")
    tokens = random_tokens(1, 8, V, seed=16)
    mask = prefix_lm_mask(8, 3)
    in_prefix = tokens.clone()
    in_prefix[0, 2] = (in_prefix[0, 2] + 1) % V
    with torch.no_grad():
        base = model(tokens, mask=mask)
        inside = model(in_prefix, mask=mask)
        later = model(changed_at(tokens, 5), mask=mask)
    assert (inside[:, 0] - base[:, 0]).abs().max() > 1e-6, "prefix position 0 must see prefix token 2"
    torch.testing.assert_close(later[:, :5], base[:, :5], atol=0, rtol=0)  # nothing sees the future suffix


@pytest.mark.parametrize("positions", ["learned", "alibi", "t5"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_backends_give_the_same_logits(positions, architecture):
    kw = {"source": random_tokens(2, 6, V, seed=1), "source_lengths": torch.tensor([6, 4])} \
        if architecture == "encoder-decoder" else {}
    model = tiny_model(architecture=architecture, positions=positions)
    tokens = random_tokens(2, 8, V, seed=2)
    lengths = torch.tensor([8, 5])
    with torch.no_grad():
        naive = model(tokens, lengths=lengths, **kw)
        model.set_backend("sdpa")
        assert {m.backend for m in model.attention_layers().values()} == {"sdpa"}
        torch.testing.assert_close(model(tokens, lengths=lengths, **kw), naive, atol=1e-5, rtol=1e-5)


def test_capture_attention_records_causal_weights_and_restores_the_backend():
    model = tiny_model(backend="sdpa")
    tokens = random_tokens(2, 6, V)
    with capture_attention(model) as weights, torch.no_grad():
        model(tokens)
    assert set(weights) == {"decoder.0.attn", "decoder.1.attn"}
    for w in weights.values():
        assert w.shape == (2, 4, 6, 6)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 6))
        assert (w.triu(diagonal=1) == 0).all()
    assert all(m.backend == "sdpa" and not m.capture_weights for m in model.attention_layers().values())


def test_initial_loss_is_near_log_vocab():
    import math

    import torch.nn.functional as F

    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=65, d_model=32, n_layers=2, n_heads=4, max_seq_len=64)).eval()
    tokens = torch.randint(65, (4, 64))
    with torch.no_grad():
        logits = model(tokens)
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, 65), tokens[:, 1:].reshape(-1)).item()
    assert abs(loss - math.log(65)) < 0.05
