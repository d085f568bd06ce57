"""Tests-for-tests of lesson 06's checks: see tests/test_grading.py. No exercises registered yet.

With the first entry, add the test function (as in the other lesson files):

    @pytest.mark.parametrize("exercise_id, kind, name", case_params(CASES))
    def test_lesson06_checks(exercise_id, kind, name):
        run_case(CASES, exercise_id, kind, name)
"""
from __future__ import annotations

from test_grading import Entry

CASES: dict[str, Entry] = {}
