"""Pictures and widgets for attention (lessons 01, 02, 03, 06 and 10).

Static plots (end the cell with ``plt.show()``):

- ``attention_heatmap(weights, query_tokens, key_tokens=None, mask=None, ax=None, title=None)``
- ``plot_mask(mask)`` and ``mask_gallery({name: mask})``
- ``head_entropy_grid(weights_by_layer)`` (and ``mean_head_entropy`` for the numbers)

Widgets (a bare ``explorer`` at the end of a cell displays it):

- ``AttentionExplorer(model, tokenizer, text, source_text=None)``: every layer and head
- ``MaskExplorer()``: mask kinds and their parameters, with the weights of random scores

Conventions: rows are queries, columns keys; a bool mask is True where a query may attend,
and hidden cells are hatched grey; whitespace tokens are drawn as '␣', '⏎', '⇥'.
Importing this module never chooses a matplotlib backend.
"""

from tfcore.viz.explorer import AttentionExplorer
from tfcore.viz.mask_explorer import MaskExplorer, build_mask
from tfcore.viz.plots import (
    attention_heatmap,
    head_entropy_grid,
    mask_gallery,
    mean_head_entropy,
    plot_mask,
    token_label,
)

__all__ = ["AttentionExplorer", "MaskExplorer", "build_mask", "attention_heatmap", "head_entropy_grid", "mask_gallery", "mean_head_entropy",
           "plot_mask", "token_label"]
