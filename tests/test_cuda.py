"""The reference model on a CUDA GPU: the same numbers as a float64 CPU reference, bf16
autocast within bf16's precision, the KV cache on the GPU, and a short bf16 training run.

Every test here skips without CUDA; `benchmarks/run_gpu.sh` runs them on a GPU machine.
"""

import pytest
import torch

from tfcore.model import Transformer, TransformerConfig
from tfcore.train import TrainConfig, build, train

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(autouse=True)
def exact_fp32():
    """fp32 matmuls in full fp32 (PyTorch may otherwise use TF32, about 1e-3 relative)."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def small_model(backend: str, positions: str = "learned") -> Transformer:
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=97, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64,
                               positions=positions, backend=backend)
    return Transformer(config)


@pytest.mark.parametrize("backend, positions", [
    ("naive", "learned"), ("naive", "rope"), ("naive", "alibi"), ("sdpa", "learned"), ("sdpa", "rope"),
    ("sdpa", "alibi"), ("tiled", "learned"), ("tiled", "rope"),  # tiled takes no additive bias (ALiBi)
])
def test_gpu_forward_matches_float64_cpu(backend, positions):
    model = small_model(backend, positions).eval()
    tokens = torch.randint(97, (3, 50), generator=torch.Generator().manual_seed(1))
    reference = small_model("naive", positions).double().eval()(tokens)
    with torch.no_grad():
        got = model.cuda()(tokens.cuda()).cpu().double()
    torch.testing.assert_close(got, reference, atol=2e-5, rtol=2e-5)


def test_bf16_autocast_within_bf16_precision():
    model = small_model("sdpa").cuda().eval()
    tokens = torch.randint(97, (4, 64), device="cuda", generator=torch.Generator("cuda").manual_seed(2))
    with torch.no_grad():
        fp32 = model(tokens)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = model(tokens)
    assert bf16.dtype == torch.bfloat16
    # bf16 keeps 8 significant bits (relative step 2^-8 = 0.0039); two layers add a few steps
    err = (bf16.float() - fp32).abs().max().item()
    assert err < 0.05 * fp32.abs().max().item(), f"bf16 logits differ from fp32 by {err}"
    assert (bf16.float().argmax(-1) == fp32.argmax(-1)).float().mean() > 0.95


def test_gpu_cache_generates_the_same_tokens_as_recompute():
    model = small_model("sdpa", "rope").cuda().eval()
    prompt = torch.randint(97, (2, 5), device="cuda", generator=torch.Generator("cuda").manual_seed(3))
    cached = model.generate(prompt, 40, temperature=0.0, use_cache=True)
    recomputed = model.generate(prompt, 40, temperature=0.0, use_cache=False)
    assert cached.device.type == "cuda"
    assert torch.equal(cached, recomputed)


def test_bf16_training_on_gpu_learns():
    model, cfg, train_data, val_data, _ = build("shakespeare-char-tiny", steps=60, device="cuda", dtype="bfloat16",
                                                eval_interval=60, eval_batches=4)
    result = train(model, cfg, train_data, val_data, progress=False)
    assert next(model.parameters()).device.type == "cuda"
    first, last = result.evals[0]["val_loss"], result.evals[-1]["val_loss"]
    assert last < first - 0.5, f"val loss went from {first:.3f} to {last:.3f} in 60 bf16 steps"
