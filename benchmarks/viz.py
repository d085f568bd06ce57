"""How long the widgets take to redraw when a control moves (target: under 200 ms).

    python benchmarks/viz.py            # writes benchmarks/results/viz_cpu.json
    python benchmarks/viz.py --repeats 5 --out /tmp/viz.json

AttentionExplorer: 6 decoder layers, 8 heads, d_model 128, on 64 characters of Shakespeare
(CPU). Then every control of MaskExplorer and of the lesson widgets (NeuronExplorer,
NormExplorer, RopeExplorer, CostCalculator) at their default sizes. For each control the
widget's observer runs synchronously when ``.value`` is set, so the time of the assignment
is the time of the redraw (figures to PNG bytes included).
Both wall-clock and process CPU time are reported: on a shared machine the wall time
also counts waiting for a core, the CPU time does not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(widget, values: list, repeats: int) -> dict:
    """Median wall and CPU milliseconds of setting ``widget.value`` to each value in turn (after one warm-up pass)."""
    for v in values:  # warm-up: builds the figures this control needs
        widget.value = v
    wall, cpu = [], []
    for _ in range(repeats):
        for v in values:
            w0, c0 = time.perf_counter(), time.process_time()
            widget.value = v
            wall.append(1000 * (time.perf_counter() - w0))
            cpu.append(1000 * (time.process_time() - c0))
    return {"median_wall_ms": round(statistics.median(wall), 1), "median_cpu_ms": round(statistics.median(cpu), 1),
            "max_wall_ms": round(max(wall), 1), "n": len(wall)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "viz_cpu.json")
    args = parser.parse_args(argv)

    import matplotlib
    import torch

    from tfcore.data import CharTokenizer, load_shakespeare
    from tfcore.model import Transformer, TransformerConfig
    from tfcore.viz import AttentionExplorer, CostCalculator, MaskExplorer, NeuronExplorer, NormExplorer, RopeExplorer

    torch.manual_seed(0)
    corpus = load_shakespeare()
    tok = CharTokenizer.from_text(corpus)
    config = TransformerConfig(vocab_size=tok.vocab_size, d_model=128, n_layers=6, n_heads=8, max_seq_len=256)
    model = Transformer(config)
    text = corpus[: args.tokens]

    w0, c0 = time.perf_counter(), time.process_time()
    ex = AttentionExplorer(model, tok, text)
    build = {"wall_ms": round(1000 * (time.perf_counter() - w0), 1),
             "cpu_ms": round(1000 * (time.process_time() - c0), 1)}
    t = args.tokens
    heads = list(range(1, config.n_heads)) + [0]
    results = {}
    results["head"] = measure(ex.head, heads, args.repeats)
    results["query"] = measure(ex.query, [t // 4, t // 2, 3 * t // 4, t - 1], args.repeats)
    results["layer"] = measure(ex.layer, [f"decoder.{i}.attn" for i in (1, 2, 3, 4, 5, 0)], args.repeats)
    results["view"] = measure(ex.view, ["all heads", "compare", "head"], args.repeats)
    ex.view.value = "all heads"
    results["head (all heads view)"] = measure(ex.head, heads, args.repeats)
    ex.view.value = "compare"
    results["compare_head"] = measure(ex.compare_head, heads, args.repeats)
    results["query (compare view)"] = measure(ex.query, [t // 4, t // 2, 3 * t // 4, t - 1], args.repeats)
    ex.view.value = "head"
    w0, c0 = time.perf_counter(), time.process_time()
    ex.run(corpus[1000 : 1000 + t])
    rerun = {"wall_ms": round(1000 * (time.perf_counter() - w0), 1),
             "cpu_ms": round(1000 * (time.process_time() - c0), 1)}

    widgets = {}  # the other widgets: every control, at the defaults the lessons use
    mask = MaskExplorer()
    widgets["MaskExplorer"] = {"kind": measure(mask.kind, ["padding", "sliding window", "prefix-LM", "causal"],
                                                args.repeats),
                               "t": measure(mask.t, [16, 24, 12], args.repeats)}
    neuron = NeuronExplorer()
    widgets["NeuronExplorer"] = {"along": measure(neuron.along, [0.5, 1.5, 2.5, 1.0], args.repeats),
                                 "across": measure(neuron.across, [-1.0, 1.5, 0.5], args.repeats),
                                 "activation": measure(neuron.activation, ["relu", "gelu_tanh", "swiglu", "gelu"],
                                                       args.repeats)}
    norms = NormExplorer()
    widgets["NormExplorer"] = {"component": measure(norms.components[0], [0.5, -1.0, 2.5, 1.2], args.repeats),
                               "shift": measure(norms.shift, [1.0, -2.0, 0.0], args.repeats),
                               "scale": measure(norms.scale, [2.0, 0.5, 1.0], args.repeats)}
    rope = RopeExplorer()
    widgets["RopeExplorer"] = {"query_pos": measure(rope.query_pos, [10, 20, 30, 5], args.repeats),
                               "key_pos": measure(rope.key_pos, [8, 16, 2], args.repeats),
                               "pair": measure(rope.pair, [1, 2, 3, 0], args.repeats)}
    cost = CostCalculator()
    widgets["CostCalculator"] = {"seq_len": measure(cost.seq_len, [2048, 8192, 512, 1024], args.repeats),
                                 "dtype": measure(cost.dtype, ["float32", "float8", "bfloat16"], args.repeats),
                                 "model": measure(cost.model, ["Llama-2 7B", "Llama-2 70B", "GPT-2 small"],
                                                  args.repeats)}

    worst = max(r["median_cpu_ms"] for r in results.values())
    report = {
        "what": "AttentionExplorer redraw time per control (setting .value -> new PNG bytes)",
        "model": {"n_layers": config.n_layers, "n_heads": config.n_heads, "d_model": config.d_model, "tokens": t},
        "controls": results,
        "construct": build,
        "rerun_new_text": rerun,
        "widgets": widgets,
        "target_ms": 200,
        "note": ("wall time includes waiting for a core when the machine is shared (see machine.load_average_1min "
                 "on its cpus); CPU time is the process's own work and is what an idle machine's wall time "
                 "comes close to"),
        "worst_median_cpu_ms": worst,
        "machine": {"cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "matplotlib": matplotlib.__version__, "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    rows = list(results.items()) + [(f"{w} {c}", r) for w, controls in widgets.items() for c, r in controls.items()]
    for name, r in rows:
        print(f"{name:28s} median {r['median_wall_ms']:7.1f} ms wall, {r['median_cpu_ms']:7.1f} ms CPU "
              f"(max {r['max_wall_ms']:.1f} ms wall, n={r['n']})")
    print(f"construct {build}, rerun {rerun}, load average {report['machine']['load_average_1min']}")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
