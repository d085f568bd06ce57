"""Checks for lesson 06 (architectures): none of the contract IDs yet.

Add checks here with ``@exercise(ID, description, lesson=LESSON)`` and an entry in
``tests/test_grading_lesson06.py``.
"""

from __future__ import annotations

LESSON = "06_architectures"
