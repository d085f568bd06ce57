"""tfcore: the building blocks of the transformer-internals course.

One module per idea of the syllabus: ``attention``, ``masks``, ``heads``, ``mlp``,
``norms``, ``positions``, ``blocks``, ``model``, ``complexity``, ``data``, ``losses``,
``diagnostics``, ``flash`` (tiled attention), ``viz`` (heatmaps and widgets),
``samplers``, ``optim``, ``train`` (the training loop), ``checkpoints``, ``presets``
and ``grading`` (exercise checks).
"""

__version__ = "0.1.0"


from tfcore.doctor import doctor  # noqa: E402  (the function; the module stays importable as tfcore.doctor)
