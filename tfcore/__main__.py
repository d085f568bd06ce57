"""``python -m tfcore COMMAND``: doctor, grade, progress, exercises."""

from __future__ import annotations

import sys

USAGE = """usage: python -m tfcore COMMAND [ARGS]

commands:
  doctor                      versions, device, and anything wrong with the environment
  grade NOTEBOOK|FOLDER...    run learner notebooks in a fresh kernel and score the exercises
  progress [FOLDER]           which exercises of the ten lessons you have passed
  exercises [--check|--force] regenerate exercises/ from solutions/
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "doctor":
        from tfcore.doctor import doctor

        return 1 if doctor() else 0
    if command == "grade":
        from tfcore.grade import main as grade_main

        return grade_main(rest)
    if command == "progress":
        from tfcore.grade import progress_main

        return progress_main(rest)
    if command == "exercises":
        from tfcore.exercises import main as exercises_main

        return exercises_main(rest)
    print(f"unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
