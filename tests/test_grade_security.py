"""A hostile notebook cannot forge its grade, nor reach the grader or the instructor's files.

Every forgery route of issue 16 (and a few more) runs in a real sandboxed kernel against
exercises that are NOT implemented: each must score 0. The isolation test runs a notebook that
tries to read the grader's environment, write outside its folder, rewrite its own file, read
another student's notebook and open a connection, in every sandbox this machine supports.
One kernel per notebook; all marked slow.
"""
from __future__ import annotations

import hashlib
import socket
import threading
from pathlib import Path

import pytest

import tfcore.grade as grade
from tfcore.grading import exercises_for_lesson, sandbox

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
