"""tfcore: the building blocks of the transformer-internals course.

One module per idea of the syllabus: ``attention``, ``masks``, ``heads``, ``mlp``,
``norms``, ``positions``, ``blocks``, ``model``, ``complexity``, ``data``, ``losses``,
``diagnostics``, ``flash`` (tiled attention), ``viz`` (heatmaps and widgets),
``train`` (the training loop) and ``grading`` (exercise checks).
"""

__version__ = "0.1.0"


def doctor(verbose: bool = True) -> list[str]:
    """Print versions, the device, and anything wrong with the environment; return the problems."""
    from tfcore import doctor as _doctor_module  # the module of the same name

    return _doctor_module.doctor(verbose)
