"""Every check gives the same verdict whatever the grader's secret seed.

Inline, a check's generator is seeded with 0; the grader seeds it with a secret seed
(``tfcore/grade.py``). A check whose verdict hangs on the draw (a random case where a correct
answer lands near a threshold, a statistic a correct answer misses by chance) would fail honest
learners at random, and one whose wrong answers pass on some draws would let them through. So each
exercise's solution and other styles must pass, and each wrong answer must fail with its message,
under secret-like seeds too (the tests-for-tests tables of ``tests/test_grading_lesson*.py``).

CI runs ``SEEDS`` seeds per exercise (fewer for the checks that take seconds); for a wide sweep:

    PYTHONPATH=. python tests/test_grading_seeds.py 500 [ID_PREFIX ...]
"""
from __future__ import annotations

import hashlib
import sys

import pytest

from test_grading import all_cases
from tfcore.grading import run_check

SEEDS = 20  # per exercise, for the solution and every other correct style
WRONG_SEEDS = 2  # per wrong answer
SLOW = {"capstone.forward": 5, "capstone.generate": 3, "capstone.train": 5, "architectures.param_count": 5}
SLOW_WRONG = {"capstone.forward": 1, "capstone.generate": 1, "capstone.train": 1, "architectures.param_count": 1}
CASES = all_cases()


def secret_seed(i: int) -> int:
    """A seed as the grader draws them (63 bits from a hash), reproducible here."""
    return int.from_bytes(hashlib.sha256(f"tfcore-seed-{i}".encode()).digest()[:8], "big") >> 1


def verdicts(exercise_id: str, seeds: range, wrong: bool) -> list[str]:
    """The (seed, answer, result) of every case that does not behave, as lines."""
    entry = CASES[exercise_id]
    if wrong:
        answers = [(name, answer, hint) for name, (answer, hint) in entry.wrong.items()]
    else:
        answers = [("solution", entry.solution, None), *((name, a, None) for name, a in entry.styles.items())]
    bad = []
    for i in seeds:
        seed = secret_seed(i)
        for name, answer, hint in answers:
            result = run_check(exercise_id, answer, seed=seed)
            ok = result.passed if hint is None else (result.status == "failed" and hint in result.message)
            if not ok:
                bad.append(f"seed {seed} (secret_seed({i})) [{name}]: {result}")
    return bad


@pytest.mark.slow
@pytest.mark.parametrize("exercise_id", sorted(CASES))
def test_correct_answers_pass_whatever_the_seed(exercise_id):
    bad = verdicts(exercise_id, range(SLOW.get(exercise_id, SEEDS)), wrong=False)
    assert not bad, "\n".join(bad)


@pytest.mark.slow
@pytest.mark.parametrize("exercise_id", sorted(CASES))
def test_wrong_answers_fail_with_their_message_whatever_the_seed(exercise_id):
    bad = verdicts(exercise_id, range(100, 100 + SLOW_WRONG.get(exercise_id, WRONG_SEEDS)), wrong=True)
    assert not bad, "\n".join(bad)


if __name__ == "__main__":  # a wide sweep: python tests/test_grading_seeds.py 500 [ID_PREFIX ...]
    count, prefixes = int(sys.argv[1]), tuple(sys.argv[2:]) or ("",)
    failures = 0
    for exercise_id in sorted(CASES):
        if exercise_id.startswith(prefixes):
            bad = verdicts(exercise_id, range(count), wrong=False) + verdicts(exercise_id, range(count), wrong=True)
            failures += len(bad)
            print(f"{exercise_id}: {len(bad)} of {count} seeds x answers misbehave", *bad[:5], sep="\n  ", flush=True)
    sys.exit(1 if failures else 0)
