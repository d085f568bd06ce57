"""A check cell run before the cell that defines its function: a one-line answer, not a NameError traceback.

The handler (tfcore/grading/_name_errors.py) is tested on its own and in a real kernel (nbclient),
on a tiny notebook whose cells run out of order as a learner's would.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tfcore.grading._name_errors import friendly_message

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_the_message_names_the_missing_function_and_what_to_run():
    message = friendly_message('check("attention.by_hand", attention_numpy)\n', "attention_numpy", ["check"])
    assert message.startswith("`attention_numpy` is not defined yet: run the cell that defines `attention_numpy` first")
    assert 'check("attention.by_hand", attention_numpy)' in message
    typo = friendly_message("check('attention.softmax', sofmax)", "sofmax", ["softmax", "check"])
    assert "did you mean `softmax`?" in typo
    assert friendly_message("print(attention_numpy)", "attention_numpy", []) is None  # not a check call
    assert friendly_message('check("attention.sdpa", sdpa)', "math", []) is None  # another name is missing


def _outputs(cell) -> str:
    parts = []
    for out in cell.outputs:
        if out.output_type == "error":
            parts.append(f"ERROR {out.ename}: {out.evalue}\n" + "\n".join(out.traceback))
        elif out.output_type == "stream":
            parts.append(out.text)
        else:
            parts.append(out.get("data", {}).get("text/plain", ""))
    return ANSI.sub("", "\n".join(parts))


def test_in_a_real_kernel():
    pytest.importorskip("nbclient")
    from nbclient import NotebookClient

    cells = [
        "from tfcore.grading import check",
        'check("attention.by_hand", attention_numpy)',  # run before its definition
        "print(never_defined)",  # any other NameError: the usual traceback
        "def softmax(x, dim=-1):\n    raise NotImplementedError",
        'check("attention.softmax",\n      sofmax)',  # a typo, the name on its own line
        "def attention_numpy(Q, K, V):\n    raise NotImplementedError\n\n\n"
        'check("attention.by_hand", attention_numpy)',  # defined now: the check runs
        "def f():\n    return undefined_inside\n\n\nf()",  # raised in a function: the usual traceback
    ]
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=120,
                   resources={"metadata": {"path": str(ROOT)}}).execute(env=env)
    out = [_outputs(c) for c in nb.cells]

    assert out[0] == ""
    assert out[1].startswith("ERROR NameError") and "run the cell that defines `attention_numpy` first" in out[1]
    assert "Traceback" not in out[1] and "Cell In[" not in out[1] and len(nb.cells[1].outputs) == 1
    assert "name 'never_defined' is not defined" in out[2] and "Cell In[" in out[2]
    assert "run the cell" not in out[2]
    assert "`sofmax` is not defined yet" in out[4] and "did you mean `softmax`?" in out[4]
    assert "attention.by_hand: not attempted yet" in out[5]
    assert "name 'undefined_inside' is not defined" in out[6] and "run the cell" not in out[6]
