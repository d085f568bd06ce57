"""tfcore.hf: Hugging Face checkpoints -> tfcore, with the logits and greedy tokens of transformers' own model.

For each architecture a tiny randomly initialised ``transformers`` model, every weight, norm gain
and bias drawn at random (so that a missing or misplaced tensor shows), is converted with
``from_hf`` and compared with the source:
- float64 logits equal to 1e-9. transformers computes some parts in float32 even in a float64
  model: the Llama family's RMSNorm and RoPE angles, T5's RMSNorm (its variance), and the
  Llama family's eager softmax. Those modules get the float64 formula (``exact_float64``) and
  the Llama family runs transformers' SDPA attention, which keeps float64;
- float32 logits within a tolerance scaled by the size of the logits;
- greedy generation with tfcore's KV cache equal token for token to ``generate(do_sample=False)``;
- ``to_hf(from_hf(m))`` gives m's tensors back (GPT-2 and the Llama family).
No network: every model is built from a config object, never with ``from_pretrained``.
"""

from __future__ import annotations

import math
import warnings
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from tfcore.complexity import count_parameters, parameter_count
from tfcore.mlp import SwiGLU, make_mlp
from tfcore.model import Transformer, TransformerConfig
from tfcore.positions import check_rope_scaling, llama3_frequencies

try:
    import transformers
except ImportError:
    transformers = None
else:
    transformers.logging.set_verbosity_error()
    from tfcore.hf import from_hf, gpt2_small_random, to_hf

needs_hf = pytest.mark.skipif(transformers is None, reason="transformers is not installed (pip install -e '.[hf]')")
VOCAB = 53

# ----------------------------------------------------------------------------- tiny transformers models


def _gpt2(**kw):
    c = transformers.GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=24, n_layer=2, n_head=3, n_inner=40,
                                bos_token_id=None, eos_token_id=None, **kw)
    return transformers.GPT2LMHeadModel, c


def _llama(cls="Llama", **kw):
    base = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, bos_token_id=None,
                eos_token_id=None, pad_token_id=None)
    return getattr(transformers, f"{cls}ForCausalLM"), getattr(transformers, f"{cls}Config")(**{**base, **kw})


LLAMA31_ROPE = dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                    original_max_position_embeddings=16)  # short original context: every regime of the rule occurs


def _bert():
    c = transformers.BertConfig(vocab_size=VOCAB, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                                intermediate_size=40, max_position_embeddings=32, type_vocab_size=2, pad_token_id=0)
    return transformers.BertForMaskedLM, c


def _t5(**kw):
    base = dict(vocab_size=VOCAB, d_model=24, d_kv=8, d_ff=40, num_layers=2, num_decoder_layers=3, num_heads=3,
                decoder_start_token_id=0, pad_token_id=0, eos_token_id=None)
    return transformers.T5ForConditionalGeneration, transformers.T5Config(**{**base, **kw})


def _bart(**kw):
    c = transformers.BartConfig(vocab_size=VOCAB, d_model=24, encoder_layers=2, decoder_layers=3, encoder_attention_heads=3,
                                decoder_attention_heads=3, encoder_ffn_dim=40, decoder_ffn_dim=40, max_position_embeddings=32,
                                pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
                                forced_eos_token_id=None, **kw)
    return transformers.BartForConditionalGeneration, c


CASES = {  # name -> (model class, config), built lazily (transformers may be missing)
    "gpt2": lambda: _gpt2(),
    "gpt2-untied": lambda: _gpt2(tie_word_embeddings=False, activation_function="gelu"),
    "llama": lambda: _llama(),  # GQA, eps 1e-5, untied
    "llama-3.1": lambda: _llama(rope_parameters=LLAMA31_ROPE, head_dim=12, attention_bias=True, mlp_bias=True,
                                tie_word_embeddings=True, max_position_embeddings=128),
    "mistral": lambda: _llama("Mistral", sliding_window=None, num_key_value_heads=1),
    "qwen2": lambda: _llama("Qwen2", tie_word_embeddings=True, rms_norm_eps=1e-6),  # biases on q, k, v only
    "bert": _bert,
    "t5": lambda: _t5(),  # v1.0: ReLU, tied, output scaled by d_model^-0.5
    "t5-v1.1": lambda: _t5(feed_forward_proj="gated-gelu", tie_word_embeddings=False, d_kv=6),  # GEGLU, untied, d_kv != d/h
    "bart": lambda: _bart(),
    "bart-scaled": lambda: _bart(scale_embedding=True, activation_function="relu"),  # token embeddings times sqrt(d)
}
ENCODER_DECODER = {"t5", "t5-v1.1", "bart", "bart-scaled"}
ROUND_TRIP = ["gpt2", "gpt2-untied", "llama", "llama-3.1", "mistral", "qwen2"]


def make_hf(name: str, seed: int = 0):
    """The tiny transformers model of case ``name``, float32, eval mode, every tensor random."""
    cls, config = CASES[name]()
    # the Llama family's eager attention takes its softmax in float32; SDPA keeps the input's dtype
    config._attn_implementation = "sdpa" if cls.__name__.startswith(("Llama", "Mistral", "Qwen2")) else "eager"
    torch.manual_seed(seed)
    model = cls(config).eval()
    if name == "t5-v1.1" and model.lm_head.weight is model.shared.weight:  # transformers 5 ties T5's head always
        model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.dim() == 1:  # norm gains around 1, biases around 0
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if pname.endswith("weight") else 0.0))
            elif "relative_attention_bias" in pname:
                p.normal_(0.0, 1.0)
            else:  # unit-gain matrices: activations of order 1 in every layer
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[-1]))
        for bname, b in model.named_buffers():
            if bname == "final_logits_bias":
                b.normal_(0.0, 0.3)
    return model


def _rms_norm64(module, x):
    return module.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + module.variance_epsilon))


def _inv_freq64(config) -> torch.Tensor:
    """RoPE frequencies in float64, written out from the Llama 3.1 reference (one frequency at a time)."""
    params = config.rope_parameters
    d = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    freqs = [1.0 / params["rope_theta"] ** (i / d) for i in range(0, d, 2)]
    if params["rope_type"] == "llama3":
        old, low, high, factor = (params[k] for k in ("original_max_position_embeddings", "low_freq_factor",
                                                      "high_freq_factor", "factor"))
        scaled = []
        for f in freqs:
            wavelength = 2 * math.pi / f
            if wavelength < old / high:
                scaled.append(f)
            elif wavelength > old / low:
                scaled.append(f / factor)
            else:
                smooth = (old / wavelength - low) / (high - low)
                scaled.append((1 - smooth) * f / factor + smooth * f)
        freqs = scaled
    return torch.tensor(freqs, dtype=torch.float64)


def _rotary64(inv_freq, x, position_ids):
    angles = position_ids[..., None].double() * inv_freq  # (B, T, d/2)
    emb = torch.cat((angles, angles), dim=-1)
    return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def exact_float64(model):
    """``model`` in float64 with the float64 formula where transformers computes in float32 (see the top)."""
    model = model.double()
    for module in model.modules():
        name = type(module).__name__
        if name.endswith("RMSNorm") or name == "T5LayerNorm":
            module.forward = partial(_rms_norm64, module)
        if name.endswith("RotaryEmbedding"):
            module.forward = partial(_rotary64, _inv_freq64(model.config))
    return model


def inputs(name: str, batch: int = 2, t: int = 11, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, VOCAB, (batch, t), generator=g)
    if name in ENCODER_DECODER:
        return dict(source=torch.randint(3, VOCAB, (batch, t + 2), generator=g), tokens=tokens)
    return dict(tokens=tokens)


@torch.no_grad()
def hf_logits(model, name: str, x: dict) -> torch.Tensor:
    if "source" in x:
        return model(input_ids=x["source"], decoder_input_ids=x["tokens"]).logits
    return model(input_ids=x["tokens"]).logits


@torch.no_grad()
def tf_logits(model, x: dict) -> torch.Tensor:
    return model(x["tokens"], source=x.get("source"))


# ----------------------------------------------------------------------------- logits


@needs_hf
@pytest.mark.parametrize("name", list(CASES))
def test_float64_logits_equal(name):
    hf = exact_float64(make_hf(name))
    model = from_hf(hf)
    assert model.embed.weight.dtype == torch.float64
    x = inputs(name)
    ref, out = hf_logits(hf, name, x), tf_logits(model, x)
    assert out.shape == ref.shape
    assert ref.abs().max() > 0.5  # logits far from 0 (T5 v1.0's are scaled down by d_model^-0.5 = 0.2)
    assert (out - ref).abs().max().item() < 1e-9


@needs_hf
@pytest.mark.parametrize("name", list(CASES))
def test_float32_logits_close(name):
    """transformers as it is (float32 norms, angles and softmax), against tfcore in float32."""
    hf = make_hf(name)
    model = from_hf(hf)
    x = inputs(name)
    ref, out = hf_logits(hf, name, x), tf_logits(model, x)
    scale = ref.abs().max().item()
    # float32 rounds each operation by 6e-8 relative: a few hundred of them through the layers stay below 1e-5
    assert (out - ref).abs().max().item() < 1e-5 * scale


@needs_hf
@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in CASES if n != "bert"])
def test_greedy_generation_with_kv_cache_matches(name):
    hf = exact_float64(make_hf(name))
    model = from_hf(hf)
    x = inputs(name, batch=2, t=5, seed=2)
    n_new = 9
    settings = transformers.GenerationConfig(do_sample=False, max_new_tokens=n_new, min_new_tokens=0, eos_token_id=None,
                                             pad_token_id=0, forced_bos_token_id=None, forced_eos_token_id=None)
    with torch.no_grad():
        if "source" in x:
            start = hf.config.decoder_start_token_id
            # transformers sizes T5's default cache by num_layers, the encoder's depth, which is too few for
            # num_decoder_layers=3: give it a cache that grows as it goes
            cache = transformers.EncoderDecoderCache(transformers.DynamicCache(), transformers.DynamicCache())
            ref = hf.generate(input_ids=x["source"], generation_config=settings, decoder_start_token_id=start, cache=cache)
            out = model.generate(torch.full((2, 1), start), n_new, temperature=0, source=x["source"])
        else:
            ref = hf.generate(input_ids=x["tokens"], attention_mask=torch.ones_like(x["tokens"]), generation_config=settings)
            out = model.generate(x["tokens"], n_new, temperature=0)
    assert out.tolist() == ref.tolist()


@needs_hf
def test_bert_token_types_and_padding():
    """Segment ids and a key padding mask reach the same numbers as BERT's token_type_ids and attention_mask."""
    hf = exact_float64(make_hf("bert"))
    model = from_hf(hf)
    tokens = inputs("bert")["tokens"]
    types = (torch.arange(tokens.shape[1]) >= 4).long().expand_as(tokens)
    lengths = torch.tensor([tokens.shape[1], 7])
    attention_mask = (torch.arange(tokens.shape[1]) < lengths[:, None]).long()
    with torch.no_grad():
        ref = hf(input_ids=tokens, token_type_ids=types, attention_mask=attention_mask).logits
        out = model(tokens, lengths=lengths, token_types=types)
    assert (out[0] - ref[0]).abs().max() < 1e-9
    assert (out[1, :7] - ref[1, :7]).abs().max() < 1e-9  # the padded positions' own outputs are not used


@needs_hf
@pytest.mark.parametrize("name", list(CASES))
def test_parameter_count_formula_matches_converted_model(name):
    model = from_hf(make_hf(name))
    assert count_parameters(model) == parameter_count(model.config)["total"]


# ----------------------------------------------------------------------------- back to transformers


@needs_hf
@pytest.mark.parametrize("name", ROUND_TRIP)
def test_to_hf_round_trip(name):
    hf = make_hf(name)
    back = to_hf(from_hf(hf))
    source, returned = hf.state_dict(), back.state_dict()
    assert source.keys() == returned.keys()
    for key in source:
        assert torch.equal(source[key], returned[key]), key
    x = inputs(name)
    assert torch.allclose(hf_logits(back, name, x), hf_logits(hf, name, x), rtol=0, atol=1e-5)


@needs_hf
def test_to_hf_of_a_course_model():
    """A model built in the course (gpt2_config) opens in transformers with the same logits."""
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=VOCAB, d_model=24, n_layers=2, n_heads=3, max_seq_len=16,
                                          mlp="gelu_tanh")).eval().double()
    hf = to_hf(model)
    assert type(hf).__name__ == "GPT2LMHeadModel"
    tokens = torch.randint(VOCAB, (2, 9))
    with torch.no_grad():
        assert (hf(tokens).logits - model(tokens)).abs().max() < 1e-9


# ----------------------------------------------------------------------------- refusals


@needs_hf
def test_refuses_an_unknown_architecture():
    with pytest.raises(ValueError, match=r"model_type='opt'.*supported: gpt2 \(GPT2LMHeadModel\), llama"):
        from_hf({}, transformers.OPTConfig())


@needs_hf
def test_refuses_a_missing_extra_or_misshaped_tensor():
    hf = make_hf("gpt2")
    state = dict(hf.state_dict())
    missing = {k: v for k, v in state.items() if k != "transformer.h.1.ln_2.bias"}
    with pytest.raises(ValueError, match=r"transformer\.h\.1\.ln_2\.bias is missing .* decoder\.1\.norm_mlp\.bias"):
        from_hf(missing, hf.config)
    with pytest.raises(ValueError, match=r"source tensors left unused: transformer\.h\.0\.attn\.rotary\.weight"):
        from_hf({**state, "transformer.h.0.attn.rotary.weight": torch.zeros(3)}, hf.config)
    bad = {**state, "transformer.h.0.mlp.c_fc.weight": state["transformer.h.0.mlp.c_fc.weight"].T}
    with pytest.raises(ValueError, match=r"transformer\.h\.0\.mlp\.c_fc\.weight has shape \(40, 24\) but "
                                         r"tfcore's decoder\.0\.mlp\.fc_in\.weight need \(24, 40\)"):
        from_hf(bad, hf.config)
    fused = {**state, "transformer.h.1.attn.c_attn.weight": state["transformer.h.1.attn.c_attn.weight"][:, :48]}
    with pytest.raises(ValueError, match=r"c_attn\.weight has shape \(24, 48\) .* need \(24, 72\)"):
        from_hf(fused, hf.config)


@needs_hf
def test_refuses_an_unassigned_tfcore_parameter():
    from tfcore.hf import ARCHITECTURES, _load

    hf = make_hf("llama")
    config, links = ARCHITECTURES["llama"].build(hf.config, False)
    state = dict(hf.state_dict())
    dropped = [link for link in links if link.hf == "model.layers.1.mlp.up_proj.weight"]
    state.pop(dropped[0].hf)
    with pytest.raises(ValueError, match=r"tfcore parameters left unassigned: decoder\.1\.mlp\.w3\.weight"):
        _load(Transformer(config), state, [link for link in links if link not in dropped], r"^$")


@needs_hf
def test_refuses_tied_copies_that_differ_and_unsupported_options():
    hf = make_hf("bart")
    state = dict(hf.state_dict())
    state["model.decoder.embed_tokens.weight"] = state["model.decoder.embed_tokens.weight"] + 1
    with pytest.raises(ValueError, match=r"model\.decoder\.embed_tokens\.weight differs from model\.shared\.weight"):
        from_hf(state, hf.config)
    with pytest.raises(ValueError, match="needs hf_config"):
        from_hf(state)
    cls, config = _gpt2(scale_attn_by_inverse_layer_idx=True)
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx=True is not supported"):
        from_hf(cls(config))
    cls, config = _llama(rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=2.0,
                                              original_max_position_embeddings=32))
    with pytest.raises(ValueError, match="RoPE scaling 'yarn' is not supported"):
        from_hf(cls(config))


@needs_hf
def test_to_hf_refuses_what_transformers_cannot_express():
    model = Transformer(TransformerConfig(vocab_size=VOCAB, d_model=24, n_layers=1, n_heads=3, norm="rms"))
    with pytest.raises(ValueError, match=r"GPT2LMHeadModel cannot express norm='rms'"):
        to_hf(model)
    model = Transformer(TransformerConfig(vocab_size=VOCAB, d_model=24, n_layers=1, n_heads=3, architecture="encoder"))
    with pytest.raises(ValueError, match="to_hf converts GPT-2-style"):
        to_hf(model)


@needs_hf
def test_mistral_sliding_window_sets_max_seq_len_with_a_warning():
    cls, config = _llama("Mistral", sliding_window=24)
    with pytest.warns(UserWarning, match="sliding window of 24 tokens"):
        model = from_hf(cls(config))
    assert model.config.max_seq_len == 24


@needs_hf
@pytest.mark.slow
def test_gpt2_small_random_is_gpt2_small_and_leaves_the_rng_alone():
    state = torch.random.get_rng_state()
    hf = gpt2_small_random(n_layer=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    model = from_hf(hf)
    assert (model.config.d_model, model.config.n_heads, model.config.vocab_size) == (768, 12, 50257)
    assert torch.equal(gpt2_small_random(n_layer=1).transformer.wte.weight, hf.transformer.wte.weight)


# ----------------------------------------------------------------------------- the new config fields (no transformers)


@needs_hf
def test_llama3_frequencies_match_transformers():
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    cls, config = _llama(rope_parameters=LLAMA31_ROPE)
    hf_freq, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")  # float32
    d = config.head_dim
    ours = llama3_frequencies(500000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d),
                              **{k: v for k, v in LLAMA31_ROPE.items() if k not in ("rope_type", "rope_theta")})
    assert torch.allclose(ours, hf_freq.double(), rtol=1e-6, atol=0)
    assert torch.allclose(ours, _inv_freq64(config), rtol=1e-14, atol=0)


def test_llama3_frequencies_regimes():
    """Short wavelengths keep their frequency, long ones are divided by the factor, the middle is blended."""
    old, factor = 16, 8.0
    f = torch.tensor([2 * math.pi / 2.0, 2 * math.pi / 8.0, 2 * math.pi / 100.0], dtype=torch.float64)  # wavelengths 2, 8, 100
    out = llama3_frequencies(f, factor, 1.0, 4.0, old)
    smooth = (old / 8.0 - 1.0) / 3.0
    assert torch.allclose(out, torch.stack([f[0], (1 - smooth) * f[1] / factor + smooth * f[1], f[2] / factor]))
    with pytest.raises(ValueError, match="rope_scaling must be a dict with the keys"):
        check_rope_scaling({"factor": 8.0})
    with pytest.raises(ValueError, match="low_freq_factor < high_freq_factor"):
        check_rope_scaling(dict(factor=8.0, low_freq_factor=4.0, high_freq_factor=1.0, original_max_position_embeddings=16))


def test_sinusoidal_positions_scale_the_tokens_by_sqrt_d_model():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=VOCAB, d_model=16, n_layers=1, n_heads=2, positions="sinusoidal"))
    tokens = torch.randint(VOCAB, (2, 5))
    expected = model.embed.weight[tokens] * 4.0 + model.sin_table[:5]
    assert torch.equal(model.embed_tokens(tokens), expected)
    plain = Transformer(TransformerConfig(vocab_size=VOCAB, d_model=16, n_layers=1, n_heads=2, positions="sinusoidal",
                                          embed_scale=1.0))
    assert torch.equal(plain.embed_tokens(tokens), plain.embed.weight[tokens] + plain.sin_table[:5])


def test_per_part_biases_head_dim_and_norm_eps():
    config = TransformerConfig(vocab_size=VOCAB, d_model=20, n_layers=1, n_heads=4, head_dim=6, bias=False, qkv_bias=True,
                               norm_eps=1e-3, architecture="encoder-decoder", embed_norm=True)
    model = Transformer(config)
    with_bias = sorted(n for n, p in model.named_parameters() if n.endswith(".bias"))
    assert with_bias == [f"{s}.0.{a}.{p}_proj.bias" for s, a in (("decoder", "attn"), ("decoder", "cross_attn"),
                                                                  ("encoder", "attn")) for p in "kqv"]
    assert model.decoder[0].attn.q_proj.out_features == 24 and model.decoder[0].attn.out_proj.in_features == 24
    norms = [m for m in model.modules() if type(m).__name__ == "LayerNorm"]
    assert len(norms) == 2 + 3 + 2 + 2 and all(m.eps == 1e-3 for m in norms)  # encoder, decoder, final, embedding
    x = torch.randint(VOCAB, (2, 5))
    assert model(x, source=x).shape == (2, 5, VOCAB)
    assert count_parameters(model) == parameter_count(config)["total"]


def test_geglu_is_the_gelu_gated_unit():
    torch.manual_seed(0)
    x = torch.randn(3, 7, 12, dtype=torch.float64)
    for kind, approximate in (("geglu", "none"), ("geglu_tanh", "tanh")):
        mlp = make_mlp(kind, 12, 20, bias=False).double()
        assert isinstance(mlp, SwiGLU)
        expected = (F.gelu(x @ mlp.w1.weight.T, approximate=approximate) * (x @ mlp.w3.weight.T)) @ mlp.w2.weight.T
        assert torch.allclose(mlp(x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("change, message", [
    (dict(norm_eps=0.0), "norm_eps must be a positive number"),
    (dict(embed_scale=-1.0), "embed_scale must be a positive number"),
    (dict(output_scale="1"), "output_scale must be a positive number"),
    (dict(head_dim=0), "head_dim must be a positive integer or None"),
    (dict(n_token_types=-1), "n_token_types must be a non-negative integer"),
    (dict(position_offset=1.5), "position_offset must be a non-negative integer"),
    (dict(qkv_bias="yes"), "qkv_bias must be True, False or None"),
    (dict(rope_scaling=dict(factor=8.0)), "rope_scaling needs positions='rope'"),
    (dict(positions="rope", rope_scaling=dict(factor=8.0)), "rope_scaling must be a dict with the keys"),
])
def test_new_fields_are_validated(change, message):
    with pytest.raises(ValueError, match=message):
        TransformerConfig(vocab_size=VOCAB, d_model=16, n_layers=1, n_heads=2, **change)


def test_token_types_are_checked():
    model = Transformer(TransformerConfig(vocab_size=VOCAB, d_model=16, n_layers=1, n_heads=2, architecture="encoder",
                                          n_token_types=2))
    tokens = torch.randint(VOCAB, (2, 5))
    with pytest.raises(ValueError, match=r"token_types must be \(B, T\) = \(2, 5\)"):
        model(tokens, token_types=torch.zeros(2, 4, dtype=torch.long))
    plain = Transformer(TransformerConfig(vocab_size=VOCAB, d_model=16, n_layers=1, n_heads=2))
    with pytest.raises(ValueError, match="n_token_types=0"):
        plain(tokens, token_types=torch.zeros(2, 5, dtype=torch.long))
