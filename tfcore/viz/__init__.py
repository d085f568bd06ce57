"""Pictures and widgets: attention (lessons 01, 02, 03, 06 and 10) and one interactive view each for 04, 05, 07, 08.

Static plots (end the cell with ``plt.show()``):

- ``attention_heatmap(weights, query_tokens, key_tokens=None, mask=None, ax=None, title=None)``
- ``plot_mask(mask)`` and ``mask_gallery({name: mask})``
- ``head_entropy_grid(weights_by_layer)`` (and ``mean_head_entropy`` for the numbers)
- ``Table(columns, rows)``: a cell's results as an HTML table (and aligned text), not wrapped prints

Widgets (a bare ``explorer`` at the end of a cell displays it):

- ``AttentionExplorer(model, tokenizer, text, source_text=None)``: every layer and head
- ``MaskExplorer()``: mask kinds and their parameters, with the weights of random scores
- ``NeuronExplorer()`` (04): one MLP unit's activation and what it adds, as the input moves
- ``NormExplorer()`` (05): LayerNorm and RMSNorm of a vector whose components you drag
- ``RopeExplorer()`` (07): RoPE turning a query and a key; their score depends on m - n only
- ``CostCalculator()`` (08): FLOPs, score memory and KV cache of named models, against T

Each widget's figures are PNGs in ``ipywidgets.Image`` widgets, and its display data carries a
PNG picture of its first view, which a saved notebook shows where the live widget cannot be drawn.

Conventions: rows are queries, columns keys; a bool mask is True where a query may attend,
and hidden cells are hatched grey; whitespace tokens are drawn as '␣', '⏎', '⇥'.
Importing this module never chooses a matplotlib backend.
"""

from tfcore.viz.cost_calculator import CostCalculator
from tfcore.viz.explorer import AttentionExplorer
from tfcore.viz.mask_explorer import MaskExplorer, build_mask
from tfcore.viz.mlp_explorer import NeuronExplorer
from tfcore.viz.norm_explorer import NormExplorer
from tfcore.viz.rope_explorer import RopeExplorer
from tfcore.viz.table import Table
from tfcore.viz.plots import (
    attention_heatmap,
    head_entropy_grid,
    mask_gallery,
    mean_head_entropy,
    plot_mask,
    token_label,
)

__all__ = ["AttentionExplorer", "MaskExplorer", "NeuronExplorer", "NormExplorer", "RopeExplorer", "CostCalculator",
           "Table", "build_mask", "attention_heatmap", "head_entropy_grid", "mask_gallery", "mean_head_entropy",
           "plot_mask", "token_label"]
