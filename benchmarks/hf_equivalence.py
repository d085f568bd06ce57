"""tfcore.hf against transformers, per architecture: logit errors, greedy tokens, lines of mapping code.

    python benchmarks/hf_equivalence.py      # needs the hf extra; CPU, a few seconds

Uses the tiny random models of tests/test_hf.py (every weight, gain and bias random). Columns:
- float64: max |tfcore - transformers| over the logits, transformers given the float64 formula
  where it computes in float32 (``exact_float64`` in the test file);
- float64 as-is: the same against transformers without that help (its float32 norms, RoPE
  angles and softmax show here);
- float32: both in float32, and max |logit| for scale;
- greedy: tfcore's cached greedy decoding equals ``generate(do_sample=False)`` (9 tokens, batch 2);
- lines: lines of the architecture's map function in tfcore/hf.py.
Results go to benchmarks/results/hf_equivalence.json.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import test_hf as t  # noqa: E402  (the tiny models and the float64 reference)

from tfcore import hf  # noqa: E402

MAPS = {"gpt2": hf._gpt2, "llama": hf._llama, "bert": hf._bert, "t5": hf._t5, "bart": hf._bart}


def greedy_matches(name: str) -> bool:
    reference = t.exact_float64(t.make_hf(name))
    model = hf.from_hf(reference)
    x = t.inputs(name, batch=2, t=5, seed=2)
    settings = t.transformers.GenerationConfig(do_sample=False, max_new_tokens=9, eos_token_id=None, pad_token_id=0,
                                               forced_bos_token_id=None, forced_eos_token_id=None)
    with torch.no_grad():
        if "source" in x:
            start = reference.config.decoder_start_token_id
            cache = t.transformers.EncoderDecoderCache(t.transformers.DynamicCache(), t.transformers.DynamicCache())
            ref = reference.generate(input_ids=x["source"], generation_config=settings, decoder_start_token_id=start,
                                     cache=cache)
            out = model.generate(torch.full((2, 1), start), 9, temperature=0, source=x["source"])
        else:
            ref = reference.generate(input_ids=x["tokens"], attention_mask=torch.ones_like(x["tokens"]),
                                     generation_config=settings)
            out = model.generate(x["tokens"], 9, temperature=0)
    return out.tolist() == ref.tolist()


def main() -> None:
    rows = {}
    for name in t.CASES:
        x = t.inputs(name)
        exact = t.exact_float64(t.make_hf(name))
        as_is = t.make_hf(name).double()
        single = t.make_hf(name)
        ref64, ref32 = t.hf_logits(exact, name, x), t.hf_logits(single, name, x)
        rows[name] = {
            "float64": (t.tf_logits(hf.from_hf(exact), x) - ref64).abs().max().item(),
            "float64_as_is": (t.tf_logits(hf.from_hf(as_is), x) - t.hf_logits(as_is, name, x)).abs().max().item(),
            "float32": (t.tf_logits(hf.from_hf(single), x) - ref32).abs().max().item(),
            "max_abs_logit": ref32.abs().max().item(),
            "greedy_equal": None if name == "bert" else greedy_matches(name),
        }
        r = rows[name]
        print(f"{name:12s} float64 {r['float64']:.1e}  as-is {r['float64_as_is']:.1e}  float32 {r['float32']:.1e} "
              f"(max |logit| {r['max_abs_logit']:.2f})  greedy {r['greedy_equal']}")
    lines = {arch: len(inspect.getsourcelines(fn)[0]) for arch, fn in MAPS.items()}
    print("lines of mapping code:", lines)
    out = ROOT / "benchmarks" / "results" / "hf_equivalence.json"
    out.write_text(json.dumps({"cases": rows, "mapping_lines": lines, "transformers": t.transformers.__version__,
                               "torch": torch.__version__}, indent=2) + "\n")
    print("wrote", out.relative_to(ROOT))


if __name__ == "__main__":
    main()
