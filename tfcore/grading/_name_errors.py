"""A friendly answer for a check cell run before the cell that defines its function.

In a notebook, running ``check("attention.by_hand", attention_numpy)`` before the cell that
defines ``attention_numpy`` raises ``NameError: name 'attention_numpy' is not defined`` with a
traceback. When ``tfcore.grading`` is imported inside IPython, ``install()`` registers a handler
for ``NameError`` (``set_custom_exc``) that recognises this case (the missing name is an argument
of a ``check("ID", ...)`` call in the failing cell) and shows one line instead:

    `attention_numpy` is not defined yet: run the cell that defines `attention_numpy` first, then this check again.

Any other ``NameError`` gets IPython's usual traceback. Outside IPython, or when another custom
exception handler is already registered, nothing is installed.
"""

from __future__ import annotations

import difflib
import linecache
import re
from types import TracebackType
from typing import Any

_CHECK_ARGUMENT = re.compile(r"""\bcheck\(\s*["'](?P<id>[\w.\-]+)["']\s*,\s*(?P<name>[A-Za-z_]\w*)""")


def friendly_message(cell_source: str, missing: str, defined: list[str]) -> str | None:
    """The message for a NameError of ``missing`` in a cell, or None if the cell checks no such name.

    defined: the names the kernel does know (for a "did you mean" on a typo).
    """
    calls = [m for m in _CHECK_ARGUMENT.finditer(cell_source) if m.group("name") == missing]
    if not calls:
        return None
    exercise_id = calls[0].group("id")
    close = difflib.get_close_matches(missing, [n for n in defined if not n.startswith("_")], n=1, cutoff=0.8)
    typo = f" (or did you mean `{close[0]}`?)" if close else ""
    return (f"`{missing}` is not defined yet: run the cell that defines `{missing}` first, then this check again"
            f"{typo}. check(\"{exercise_id}\", {missing}) needs the function itself.")


def _cell_source(tb: TracebackType | None) -> str:
    """The source of the file (for IPython: the cell) where the exception was raised: the last frame's."""
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    if last is None:
        return ""
    return "".join(linecache.getlines(last.tb_frame.f_code.co_filename))


def _handler(shell: Any, etype: type, value: BaseException, tb: TracebackType | None,
             tb_offset: int | None = None) -> list[str]:
    missing = getattr(value, "name", None)
    message = friendly_message(_cell_source(tb), missing, list(shell.user_ns)) if missing else None
    if message is None:
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        return []
    shell._showtraceback(etype, value, [f"NameError: {message}"])
    return []


def install() -> bool:
    """Register the handler in the running IPython shell; True if it is (now) registered."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    current = getattr(shell, "custom_exceptions", ())
    if current == (NameError,) and getattr(shell, "_tfcore_name_error_help", False):
        return True
    if current:  # someone else's handler: leave it alone
        return False
    shell.set_custom_exc((NameError,), _handler)
    shell._tfcore_name_error_help = True
    return True


install()
