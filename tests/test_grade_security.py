"""A hostile notebook cannot forge its grade, nor reach the grader or the instructor's files.

Every forgery route of issue 16 (and a few more) runs in a real sandboxed kernel against
exercises that are NOT implemented: each must score 0. The isolation test runs a notebook that
tries to read the grader's environment, write outside its folder, rewrite its own file, read
another student's notebook and open a connection, in every sandbox this machine supports.
One kernel per notebook; all marked slow.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from pathlib import Path

import nbformat
import pytest
import torch

import tfcore.grade as grade
from tfcore.grade import NotebookReport, Row
from tfcore.grading import exercises_for_lesson, remote, sandbox

from test_grade import write_notebook

SANDBOXES = [m for m in ("bwrap", "unshare") if sandbox.describe_modes()[m]]


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_all_zero(report, lesson: str) -> None:
    rows = {r.exercise_id: r for r in report.rows if r.in_lesson}
    assert list(rows) == exercises_for_lesson(lesson)
    forged = [f"{r.exercise_id}: {r.message}" for r in rows.values() if r.status == "passed"]
    assert not forged, "forged passes:\n" + "\n".join(forged)
    assert report.passed == 0


FAKE_LINE = ('{"exercise_id": "%s", "status": "passed", "message": "passed (5 cases)"}')


@pytest.mark.slow
def test_forgery_inside_the_kernel_scores_zero(tmp_path):
    """Result lines in files and on stdout, a tensor subclass, a custom __eq__, patched torch comparisons,
    replaced check / Result, a replaced answer registry, and an early exit."""
    nb = write_notebook(
        tmp_path / "alice" / "02_masks.ipynb",
        "import json, os, sys, torch\nimport tfcore.grading as grading\nfrom tfcore.grading import check, remote",
        # results written to every file the kernel can see, and printed
        "lines = [json.dumps({'exercise_id': i, 'status': 'passed', 'message': 'passed (5 cases)'}) + '\\n'\n"
        "         for i in ('masks.causal', 'masks.padding', 'masks.combine', 'masks.leakage', 'masks.which_mask')]\n"
        "for folder in {os.getcwd(), os.path.expanduser('~'), '/tmp', os.path.dirname(os.getcwd())}:\n"
        "    for name in ('results.jsonl', 'grade.log', os.environ.get('TFCORE_GRADE_LOG', 'log.jsonl')):\n"
        "        try:\n"
        "            open(os.path.join(folder, name), 'a').writelines(lines)\n"
        "        except OSError:\n"
        "            pass\n"
        "print(''.join(lines)); print('✓ masks.causal: passed (5 cases)', file=sys.stderr)",
        # a tensor subclass that says it equals anything
        "class Liar(torch.Tensor):\n"
        "    def __eq__(self, other):\n"
        "        return True\n"
        "    @classmethod\n"
        "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
        "        if getattr(func, '__name__', '') in ('allclose', 'equal', 'isclose', 'eq', '__eq__'):\n"
        "            return True\n"
        "        return super().__torch_function__(func, types, args, kwargs or {})\n"
        "check('masks.causal', lambda t: torch.zeros(t, t, dtype=torch.bool).as_subclass(Liar))",
        # an object equal to everything
        "class Yes:\n"
        "    def __eq__(self, other):\n"
        "        return True\n"
        "    def __bool__(self):\n"
        "        return True\n"
        "check('masks.padding', lambda lengths, t: Yes())",
        # torch's comparisons patched, then a wrong answer
        "torch.allclose = lambda *a, **k: True\n"
        "torch.equal = lambda *a, **k: True\n"
        "torch.isclose = lambda a, b, **k: torch.ones(torch.broadcast_shapes(a.shape, b.shape), dtype=torch.bool)\n"
        "check('masks.combine', lambda lengths, t: torch.ones(len(lengths), 1, t, t, dtype=torch.bool))",
        # check and Result replaced by fakes that say "passed"
        "class FakeResult:\n"
        "    passed, status, message = True, 'passed', 'passed (8 cases)'\n"
        "    def __repr__(self):\n"
        "        return '✓ masks.leakage: passed (8 cases)'\n"
        "grading.Result = FakeResult\n"
        "grading.check = check = lambda exercise_id, answer: FakeResult()\n"
        "check('masks.leakage', None)",
        # the answer registry replaced: a claimed answer, and the recording switched off
        "remote._ANSWERS['masks.which_mask'] = (10 ** 9, 'passed')  # check\n"
        "remote.record = lambda *a, **k: None",
        "print(lines[-1]); os._exit(0)",  # and leave before the grader asks anything else
    )
    report = grade.grade_notebook(nb)
    assert_all_zero(report, "02")
    rows = {r.exercise_id: r.message for r in report.rows}
    assert "wrong values" in rows["masks.causal"]
    assert "returned a Yes" in rows["masks.padding"]
    assert "was check redefined?" in rows["masks.leakage"]
    assert "expected a function, got str" in rows["masks.which_mask"]


SERVE = """
import json, threading, time
import numpy as np, torch
import tfcore.grading.remote as remote
from tfcore.grading import check

real_serve = remote.serve
PAYLOAD = {}

def fake_serve(text, ask=None):
    request = json.loads(text)
    if request.get("op") == "call":
        return remote._Reply(PAYLOAD["reply"] if isinstance(PAYLOAD["reply"], str) else json.dumps(PAYLOAD["reply"]))
    return real_serve(text, ask)

remote.serve = fake_serve

def stub(*args, **kwargs):
    raise NotImplementedError
"""


@pytest.mark.slow
def test_a_replaced_kernel_server_cannot_forge_or_reach_the_grader(tmp_path):
    """The kernel's side of the protocol rewritten: verdict-like replies, a pickle that would run code in the
    grader, endless nesting, a forged "tensor" proxy, and a thread that keeps tampering."""
    marker = tmp_path / "PWNED"
    nb = write_notebook(
        tmp_path / "bob" / "03_heads.ipynb",
        SERVE,
        "PAYLOAD['reply'] = {'status': 'passed', 'message': 'passed (6 cases)', 'verdict': 'passed', 'value': True}\n"
        "check('heads.split', stub)",
        "import base64, io, os\n"
        "class Evil:\n"
        "    def __reduce__(self):\n"
        f"        return os.system, ('touch {marker}',)\n"
        "buf = io.BytesIO(); np.save(buf, np.array([Evil()], dtype=object), allow_pickle=True)\n"
        "PAYLOAD['reply'] = {'value': {'ndarray': base64.b64encode(buf.getvalue()).decode()}}\n"
        "check('heads.merge', stub)",
        "PAYLOAD['reply'] = '{\"value\": ' + '{\"list\": [' * 100000 + '1' + ']}' * 100000 + '}'\n"
        "check('heads.repeat_kv', stub)",
        "PAYLOAD['reply'] = {'value': {'proxy': {'ref': 1, 'type': 'Tensor', 'qualname': 'torch.Tensor', "
        "'name': 'count', 'callable': True}}}\n"
        "check('heads.param_count', stub)",
        "def tamper():\n"
        "    while True:\n"
        "        remote._ANSWERS['heads.mha'] = (10 ** 9, 'passed')\n"
        "        remote.serve = fake_serve\n"
        "        time.sleep(0.001)\n"
        "threading.Thread(target=tamper, daemon=True).start()\n"
        "PAYLOAD['reply'] = {'value': {'tensor': {'npy': 'AAAA', 'dtype': 'float32'}}}\n"
        "check('heads.mha', stub)",
    )
    report = grade.grade_notebook(nb)
    assert_all_zero(report, "03")
    assert not marker.exists()  # nothing the kernel sent was unpickled
    rows = {r.exercise_id: r.message for r in report.rows}
    assert "returned a Tensor" in rows["heads.param_count"]
    assert "cannot read" in rows["heads.merge"] and "not JSON" in rows["heads.repeat_kv"]


ISOLATION = """
import glob, json, os, socket
leaks = []
if "hunter2" in json.dumps(dict(os.environ)):
    leaks.append("the grader's environment")
for path in glob.glob("/proc/*/environ"):
    try:
        if b"hunter2" in open(path, "rb").read():
            leaks.append("environment of " + path)
    except OSError:
        pass
for target in (INSTRUCTOR + "/grades.csv", INSTRUCTOR + "/new.txt", NOTEBOOK):
    try:
        with open(target, "a") as f:
            f.write("pwned")
        leaks.append("wrote " + target)
    except OSError:
        pass
for path in glob.glob(os.path.join(os.getcwd(), "*.ipynb")):  # its own copy: allowed, and harmless
    open(path, "w").write("{}")
for path in (OTHER,):  # another student's notebook (the graded folders are hidden)
    try:
        open(path).read()
        leaks.append("read " + path)
    except OSError:
        pass
s = socket.socket()
s.settimeout(3)
if s.connect_ex(("127.0.0.1", PORT)) == 0:
    leaks.append("network")
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", SANDBOXES or [pytest.param("bwrap", marks=pytest.mark.skip("no sandbox works here"))])
def test_a_notebook_cannot_reach_the_grader_or_the_instructors_files(tmp_path, monkeypatch, mode):
    monkeypatch.setenv("TFCORE_TEST_SECRET", "hunter2")  # the grader's environment
    instructor = tmp_path / "instructor"
    instructor.mkdir()
    (instructor / "grades.csv").write_text("alice,0\n")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    connections = []

    def accept():
        while not done.is_set():
            try:
                connections.append(server.accept())
            except OSError:
                pass

    done = threading.Event()
    threading.Thread(target=accept, daemon=True).start()
    root = tmp_path / "class"
    write_notebook(root / "bob" / "02_masks.ipynb", "answer = 'bob keeps this to himself'")
    notebook = root / "alice" / "02_masks.ipynb"
    source = (f"INSTRUCTOR, NOTEBOOK, OTHER, PORT = {str(instructor)!r}, {str(notebook)!r}, "
              f"{str(root / 'bob' / '02_masks.ipynb')!r}, {server.getsockname()[1]}\n" + ISOLATION)
    write_notebook(notebook, source,
                   "import torch\nfrom tfcore.grading import check\n"
                   "def causal(t):\n"
                   "    if leaks:\n"
                   "        raise ValueError('LEAKS: ' + '; '.join(leaks))\n"
                   "    return torch.ones(t, t, dtype=torch.bool).tril()\n"
                   "check('masks.causal', causal)")
    before = hashes(tmp_path)
    report = grade.grade_notebook(notebook, sandbox_mode=mode, hidden=grade.hidden_folders([root]))
    done.set()
    causal = {r.exercise_id: r for r in report.rows}["masks.causal"]
    assert causal.status == "passed", causal.message  # the message lists what leaked
    assert hashes(tmp_path) == before  # every file of the instructor's, both notebooks included
    assert not connections
    assert report.protections["sandbox"] == mode and report.protections["no_network"]
    assert report.protections["read_only_outside"] and report.protections["own_process_namespace"]


def test_the_kernels_environment_holds_nothing_of_the_graders(tmp_path, monkeypatch):
    monkeypatch.setenv("TFCORE_TEST_SECRET", "hunter2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    env = sandbox.kernel_env(tmp_path)
    assert "hunter2" not in "".join(env.values()) and env["HOME"] == str(tmp_path)
    assert env["TFCORE_GRADING"] == "1" and set(env) <= set(sandbox.kernel_env(tmp_path)) | {"LANG"}


def test_the_report_says_which_protections_were_missing():
    none = sandbox.Protections("none").describe()
    assert "NETWORK AVAILABLE" in none and "FILES OUTSIDE ITS FOLDER WRITABLE" in none
    full = sandbox.Protections("bwrap", no_network=True, read_only_outside=True, own_process_namespace=True,
                               limits=sandbox.asdict(sandbox.Limits())).describe()
    assert "no network" in full and "read-only outside its folder" in full and "60 s per cell" in full
    with pytest.raises(ValueError, match="sandbox must be one of"):
        sandbox.choose("docker")


# ----------------------------------------------------------------------------- routes found by a red-team pass
# Each test below failed before its fix (the route scored, crashed the run, or swamped the grader).


def test_a_symbolic_link_in_the_class_folder_is_refused_not_followed(tmp_path, capsys):
    """A link to a copy of the solutions (or to another student's notebook, hidden from kernels) scored 5/5."""
    elsewhere = tmp_path / "instructor"
    elsewhere.mkdir()
    solution = Path(__file__).parents[1] / "solutions" / "02_masks.ipynb"
    (elsewhere / "02_masks.ipynb").write_bytes(solution.read_bytes())
    root = tmp_path / "class"
    (root / "carol").mkdir(parents=True)
    (root / "carol" / "02_masks.ipynb").symlink_to(elsewhere / "02_masks.ipynb")
    (root / "dan").symlink_to(elsewhere, target_is_directory=True)  # a linked folder
    out_json = tmp_path / "out.json"
    assert grade.main([str(root), "--json", str(out_json)]) == 1
    reports = json.loads(out_json.read_text())["notebooks"]
    assert reports and all(r["score"]["passed"] == 0 for r in reports)
    carol = next(r for r in reports if r["student"] == "carol")
    assert "symbolic link" in carol["error"] and carol["score"]["total"] == 5 and carol["protections"] is None
    assert grade.linked_part(root / "dan" / "02_masks.ipynb", root) == root / "dan"
    assert grade.linked_part(root / "carol" / "x.ipynb", root) is None
    capsys.readouterr()


def test_a_notebook_cannot_name_a_lesson_without_exercises(tmp_path):
    """metadata.tfcore.lesson = "99" scored 0/0 and counted as all passed (exit status 0)."""
    nb = write_notebook(tmp_path / "bob" / "02_masks.ipynb", "x = 1", lesson="99")
    report = grade.grade_notebook(nb)
    assert report.error and "no lesson 99" in report.error and not report.all_passed
    assert report.protections is None  # refused before any kernel ran
    assert "no lesson 99" in report.error and "file name" in grade.grade_notebook(
        write_notebook(tmp_path / "x" / "99_extra.ipynb", "x = 1")).error


def test_an_exercise_notebook_that_calls_itself_a_lesson_notebook_cannot_hide_its_exercises(tmp_path, monkeypatch,
                                                                                                capsys):
    """metadata.tfcore.role = "lesson" on an unimplemented exercise notebook: scored on its predictions alone,
    it read 2/2 (all passed) beside honest students' 0/5."""
    nb = write_notebook(tmp_path / "class" / "alice" / "02_masks.ipynb",
                        "from tfcore.grading import check\nprediction = 'B'\n"
                        "check('masks.predict_padding', prediction)",
                        "prediction = 17\ncheck('masks.predict_off_by_one_pairs', prediction)", role="lesson")
    alice = grade.grade_notebook(nb)  # read, not run: the predictions themselves are right
    assert alice.role == "lesson" and (alice.passed, alice.total) == (2, 2)
    bob = NotebookReport(str(tmp_path / "class" / "bob" / "02_masks.ipynb"), "bob", "02",
                         [Row(i, "not attempted", "not attempted yet") for i in exercises_for_lesson("02")])
    summary = grade.format_summary([alice, bob])
    assert summary.splitlines()[2].split() == ["alice", "2/7", "2/7"]
    assert "alice has no exercise notebook for lesson 02" in summary
    reports = iter([alice, bob])
    write_notebook(tmp_path / "class" / "bob" / "02_masks.ipynb", "x = 1")
    monkeypatch.setattr(grade, "grade_notebook", lambda path, **kw: next(reports))
    out_json = tmp_path / "out.json"
    assert grade.main([str(tmp_path / "class"), "--json", str(out_json)]) == 1
    assert json.loads(out_json.read_text())["students"]["alice"] == {"passed": 2, "total": 7}
    # alone (no exercise notebook of lesson 02 in the run, as in `grade notebooks/`): its predictions only
    assert grade.format_summary([alice]).splitlines()[2].split() == ["alice", "2/2", "2/2"]
    capsys.readouterr()


def test_names_ids_and_messages_cannot_draw_lines_of_the_report():
    """A student folder or an unknown ID holding a newline printed a fake "✓ ... passed" line; an ANSI escape in
    an error message could rewrite the line on a terminal."""
    fake = "\n  ✓ masks.causal      passed         passed (5 cases)"
    report = NotebookReport("class/eve" + fake + "/02_masks.ipynb", "eve" + fake, "02",
                            [Row("masks.causal", "failed", "raised ValueError: \x1b[2K\x1b[1G  ✓ passed \u202e"),
                             Row("zz" + fake, "failed", "unknown exercise ID", in_lesson=False)],
                            error="the kernel died\r  ✓ all passed")
    text = grade.format_report(report) + "\n" + grade.format_summary([report])
    assert not any(line.lstrip().startswith("✓") for line in text.splitlines())
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text
    assert len(grade.format_report(report).splitlines()) == 5  # header, error, two rows, score
    assert grade.shown("alice ✓ é") == "alice ✓ é"  # printable text is kept as it is


def test_unknown_exercise_ids_are_capped_per_notebook_not_per_cell():
    """Forty new unknown IDs after each of four check cells gave 120 report rows (MAX_FOREIGN was per cell)."""

    class Kernel:
        def __init__(self):
            self.cells = 0

        def answers(self):
            self.cells += 1
            return {f"zz{c}_{i}": 1 for c in range(self.cells) for i in range(40)}

    g = grade._Grader(Kernel())
    for _ in range(4):
        g.grade_new()
    assert len(g.results) == grade.MAX_FOREIGN


def test_a_reply_that_would_build_millions_of_objects_is_refused_before_parsing():
    """90 MB of "[],[],..." took 2.4 GB of the grader's memory to parse before the decoder refused it."""
    from tfcore.grading import remote

    bloat = '{"value": {"list": [' + "[]," * (remote.MAX_STRUCTURE + 1) + "[]]}}"
    with pytest.raises(remote.KernelUnavailable, match="more than"):
        remote._loads(bloat)
    unpack = sandbox._guarded(json.loads)  # the Jupyter session's own parser, in front of every message
    with pytest.raises(ValueError, match="more than"):
        unpack(bloat.encode())
    assert unpack(b'{"status": "ok", "text": "[a, b]"}') == {"status": "ok", "text": "[a, b]"}


def test_a_checks_own_function_refuses_inputs_that_would_swamp_the_grader():
    """attention.permutation hands the learner attention functions that run in the grader: one call on
    x of shape (40000, 4), under the 8 MB cap, would allocate two 6.4 GB score matrices there."""
    from test_grading_remote import through_the_wall

    def gap(attn_fn, x, perm):
        attn_fn(torch.randn(8193, 4))  # (8193 x 8193 scores: 268 MB before the fix; 40000 is just as cheap to send)
        raise AssertionError("not reached")

    result = through_the_wall("attention.permutation", gap)
    assert result.status == "failed" and f"at most {remote.MAX_CALLBACK_ELEMENTS} numbers" in result.message


def test_a_prediction_that_breaks_the_parser_is_unreadable_not_a_crash(tmp_path):
    """A 3000-term formula (RecursionError) or a cell whose source is not text raised out of grade_notebook,
    which stopped the grading of the whole class."""
    formula = write_notebook(tmp_path / "a" / "02_masks.ipynb", "prediction = " + "+".join(["1"] * 3000) +
                             "\ncheck('masks.predict_off_by_one_pairs', prediction)", role="lesson")
    report = grade.grade_notebook(formula)
    assert report.error is None and report.passed == 0 and report.total == 2
    nb = nbformat.read(str(formula), as_version=4)
    nb.cells[1]["source"] = 123
    broken = tmp_path / "b" / "02_masks.ipynb"
    broken.parent.mkdir()
    broken.write_text(json.dumps(nb))
    report = grade.grade_notebook(broken)
    assert report.total == 2 and report.passed == 0


def test_the_report_says_when_no_process_limit_binds():
    """As root, RLIMIT_NPROC does not bind: the report said "processes" among the limits all the same."""
    limits = sandbox.asdict(sandbox.Limits())
    assert "NO PROCESS LIMIT" in sandbox.Protections("bwrap", limits=limits, process_limit=False).describe()
    assert "NO PROCESS LIMIT" not in sandbox.Protections("bwrap", limits=limits).describe()
    assert sandbox.process_limit_works() == (os.getuid() != 0)


HOSTILE_PROTOCOL = """
import json, time
import tfcore.grading.remote as remote
from tfcore.grading import check

real_serve = remote.serve

def bloated_serve(text, ask=None):
    if json.loads(text).get("op") == "answer" and json.loads(text).get("id") == "masks.padding":
        return remote._Reply('{"value": {"list": [' + '[],' * 2_000_000 + '[]]}}')
    return real_serve(text, ask)

remote.serve = bloated_serve

class Sleepy:  # every attribute lookup (the grader's proxy asks for __name__) sleeps
    def __getattr__(self, name):
        time.sleep(3600)
"""


@pytest.mark.slow
def test_a_kernel_that_bloats_or_stalls_its_replies_is_cut_off_and_scored(tmp_path):
    """A real kernel: a reply of 6 MB that parses into 2 million lists, and an answer that sleeps when the kernel
    describes it; both score 0 within the time limits, and the kernel's messages pass the guarded parser."""
    nb = write_notebook(tmp_path / "eve" / "02_masks.ipynb", HOSTILE_PROTOCOL,
                        "check('masks.causal', Sleepy())", "check('masks.padding', lambda lengths, t: None)")
    start = time.monotonic()
    report = grade.grade_notebook(nb, timeout=4)
    assert time.monotonic() - start < 40
    assert_all_zero(report, "02")
    rows = {r.exercise_id: r.message for r in report.rows}
    assert "did not answer within 4 s" in rows["masks.causal"], rows["masks.causal"]
    assert "more than" in rows["masks.padding"], rows["masks.padding"]


@pytest.mark.slow
@pytest.mark.skipif(not sandbox.describe_modes()["bwrap"] or sandbox.grader_home() is None,
                    reason="needs bubblewrap and a HOME outside /tmp")
def test_the_graders_home_is_hidden_from_the_kernel(tmp_path):
    """The kernel saw the grader's HOME read-only (SSH keys, tokens): a learner's error message could carry them
    into the report a student gets back."""
    import shutil
    import tempfile

    secret_folder = Path(tempfile.mkdtemp(prefix=".tfcore-test-", dir=sandbox.grader_home()))
    try:
        (secret_folder / "id_rsa").write_text("hunter2")
        nb = write_notebook(tmp_path / "mallory" / "02_masks.ipynb",
                            "import torch\nfrom tfcore.grading import check\n"
                            "def causal(t):\n"
                            f"    for path in ({str(secret_folder / 'id_rsa')!r},):\n"
                            "        try:\n"
                            "            raise ValueError('LEAK ' + open(path).read())\n"
                            "        except OSError:\n"
                            "            pass\n"
                            "    return torch.ones(t, t, dtype=torch.bool).tril()\n"
                            "check('masks.causal', causal)")
        report = grade.grade_notebook(nb, sandbox_mode="bwrap")
    finally:
        shutil.rmtree(secret_folder)
    causal = {r.exercise_id: r for r in report.rows}["masks.causal"]
    assert causal.status == "passed", causal.message  # the kernel ran (what Python needs is visible) ...
    assert report.protections["home_hidden"]  # ... and did not see the secret
    assert "your HOME hidden" in sandbox.Protections("bwrap", home_hidden=True).describe()


def test_a_notebook_file_too_large_to_parse_is_refused_unread(tmp_path, monkeypatch):
    """The grader parsed any file with nbformat in its own process: 5.6 MB of empty cells took 1.2 s and 120 MB,
    so a few hundred MB would stall it and exhaust its memory before any time limit applied."""
    nb = write_notebook(tmp_path / "a" / "02_masks.ipynb", *["x = 1"] * 200)
    monkeypatch.setattr(grade, "MAX_NOTEBOOK_BYTES", nb.stat().st_size - 1)
    report = grade.grade_notebook(nb)
    assert "not a readable notebook" in report.error and "MB" in report.error and report.total == 5
    assert report.protections is None and not report.all_passed
    monkeypatch.setattr(grade, "MAX_NOTEBOOK_BYTES", 2 ** 30)
    monkeypatch.setattr(grade, "MAX_NOTEBOOK_STRUCTURE", 1000)
    assert "JSON values" in grade.grade_notebook(nb).error


def test_grading_one_student_hides_the_other_students_too(tmp_path, monkeypatch):
    """`grade class/alice/02_masks.ipynb` (or `grade class/alice`) hid class/alice only: alice's kernel could read
    bob's notebook beside it, and run his code as her answer."""
    monkeypatch.setattr(grade.tempfile, "gettempdir", lambda: str(tmp_path / "elsewhere"))  # tmp_path is in /tmp
    alice = write_notebook(tmp_path / "class" / "alice" / "02_masks.ipynb", "x = 1")
    write_notebook(tmp_path / "class" / "bob" / "02_masks.ipynb", "x = 1")
    for target in (alice, alice.parent):
        hidden = grade.hidden_folders([target])
        assert str((tmp_path / "class").resolve()) in hidden  # which holds alice's folder
    checkout = Path(grade.__file__).resolve().parents[1]
    assert not any(checkout == Path(h) or Path(h) in checkout.parents for h in grade.hidden_folders([checkout / "x"]))
