"""A Jupyter kernel in a sandbox, for the grader: ``Kernel(...)`` runs cells and carries requests.

What the kernel gets (``Protections`` lists what was in force):

- a fresh temporary folder as its working directory and HOME, holding a copy of the notebook;
- a scrubbed environment: nothing of the grader's but what Python needs (``kernel_env``);
- resource limits: CPU time, address space (memory), file size, processes (``Limits``);
- wall-clock caps per cell and per notebook (the grader enforces them; the kernel is
  interrupted, and killed if it does not answer);
- where the OS allows it: no network, a read-only view of everything outside its folder, its
  own process namespace (it cannot see or signal the grader, nor read ``/proc/<pid>/environ``),
  and the folders being graded hidden. ``bwrap`` (bubblewrap) when installed, else
  unprivileged user, mount, network and PID namespaces with ``unshare``; else none of these.

The kernel speaks ZeroMQ over Unix sockets in a folder of the grader's, so that it needs no
network. The grader never subscribes to its output (IOPub): what a notebook prints is never
read. ``Kernel.request`` is the transport of ``tfcore.grading.remote.Session``.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from tfcore.grading.remote import CALLBACK_PREFIX, MAX_MESSAGE_CHARS, MAX_STRUCTURE, KernelUnavailable, structure_count

MODES = ("auto", "bwrap", "unshare", "none")
_PASS_THROUGH = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH", "SYSTEMROOT")


@dataclass
class Limits:
    """Per-notebook limits. Seconds for the timeouts; MiB for memory and file size."""

    cell_timeout: float = 60.0
    notebook_timeout: float = 600.0
    memory_mb: int = 4096
    file_size_mb: int = 256
    processes: int = 256  # tasks (processes and threads) beyond what the grader's user runs already

    @property
    def cpu_seconds(self) -> int:
        """CPU time of the kernel process: the notebook's wall time on every core, and a margin."""
        return int(self.notebook_timeout * max(os.cpu_count() or 1, 1) + 60)


@dataclass
class Protections:
    """What isolated one notebook's kernel; ``describe()`` is the report's line."""

    sandbox: str  # "bwrap", "unshare" or "none"
    fresh_folder: bool = True
    scrubbed_environment: bool = True
    no_network: bool = False
    read_only_outside: bool = False
    own_process_namespace: bool = False
    hidden_folders: list[str] = field(default_factory=list)
    home_hidden: bool = False  # the grader's HOME (bwrap: a fresh tmpfs, with what Python needs shown again)
    limits: dict = field(default_factory=dict)
    process_limit: bool = True  # False where RLIMIT_NPROC cannot bind (root, or no /proc to count tasks)

    def describe(self) -> str:
        parts = [f"sandbox {self.sandbox}", "fresh folder as cwd and HOME", "scrubbed environment"]
        lim = self.limits
        if lim:
            parts.append(f"limits: {lim['cell_timeout']:g} s per cell, {lim['notebook_timeout']:g} s per notebook, "
                         f"{lim['memory_mb']} MiB memory, {lim['file_size_mb']} MiB per file, CPU time"
                         + (", processes" if self.process_limit else
                            ", NO PROCESS LIMIT (root is exempt from it: grade as an ordinary user)"))
        parts.append("no network" if self.no_network else "NETWORK AVAILABLE")
        parts.append("read-only outside its folder" if self.read_only_outside else "FILES OUTSIDE ITS FOLDER WRITABLE")
        parts.append("own process namespace" if self.own_process_namespace else "SHARED PROCESS NAMESPACE")
        if self.hidden_folders:
            parts.append("graded folders hidden")
        if self.home_hidden:
            parts.append("your HOME hidden")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- choosing a sandbox


@functools.lru_cache(maxsize=None)
def _works(mode: str) -> bool:
    """Can this machine run a process in the ``mode`` sandbox (tried once per grader run)?"""
    if sys.platform != "linux":
        return False
    probe = {"bwrap": ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-all",
                       "--cap-drop", "ALL", "--die-with-parent", "true"],
             "unshare": ["unshare", "--user", "--map-root-user", "--mount", "--net", "--pid", "--fork",
                         "--mount-proc", "--propagation", "private", "sh", "-c",
                         "mount --bind / / && mount -o remount,bind,ro / / 2>/dev/null; true"]}[mode]
    if shutil.which(probe[0]) is None:
        return False
    try:
        return subprocess.run(probe, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def choose(mode: str = "auto") -> str:
    """The sandbox to use: ``mode`` itself (ValueError if it does not work here), or for "auto" the
    strongest that works: bwrap, then unshare, then none."""
    if mode not in MODES:
        raise ValueError(f"sandbox must be one of {MODES}, got {mode!r}")
    if mode == "none":
        return mode
    if mode != "auto":
        if not _works(mode):
            raise ValueError(f"the {mode} sandbox does not work on this machine"
                             + (" (install the Debian package bubblewrap)" if mode == "bwrap" else ""))
        return mode
    return next((m for m in ("bwrap", "unshare") if _works(m)), "none")


# The first process in the unshare sandbox: make every mount read-only but the notebook's folder
# and the socket folder, hide the graded folders, then become the kernel. argv: work ipc hidden... -- cmd...
_UNSHARE_BOOT = r"""
import os, subprocess, sys
args = sys.argv[1:]; cut = args.index("--"); keep, hidden, cmd = args[:2], args[2:cut], args[cut + 1:]
run = lambda *a: subprocess.run(["mount", *a], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL).returncode == 0
ok = all([run("--bind", k, k) for k in keep])
for h in hidden:
    run("-t", "tmpfs", "-o", "size=1m", "tmpfs", h)
points = []
for line in open("/proc/self/mountinfo"):
    p = line.split()[4].encode().decode("unicode_escape")
    if p not in points:
        points.append(p)
for p in points:
    if p in keep:
        continue
    if not run("-o", "remount,bind,ro", p) and not p.startswith(("/proc", "/sys", "/dev")):
        ok = False
sys.stderr.write("tfcore-sandbox: read-only %s\n" % ("ok" if ok else "partial")); sys.stderr.flush()
os.chdir(keep[0])
os.execvp(cmd[0], cmd)
"""


def sandbox_command(mode: str, cmd: list[str], work: Path, ipc: Path, connection_file: Path,
                    hidden: list[str]) -> list[str]:
    """``cmd`` wrapped in the ``mode`` sandbox."""
    if mode == "bwrap":
        wrap = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        for path in _needed_under(Path("/tmp")):  # a checkout or a virtual environment in /tmp stays visible
            wrap += ["--ro-bind", path, path]
        home = grader_home()
        if home is not None:  # keys, tokens, other courses' files: a learner's error message could carry them
            wrap += ["--tmpfs", str(home)]  # into the report; what Python needs there stays visible
            for path in _needed_under(home):
                wrap += ["--ro-bind", path, path]
        for h in hidden:
            wrap += ["--tmpfs", h]
        wrap += ["--bind", str(work), str(work), "--bind", str(ipc), str(ipc),
                 "--ro-bind", str(connection_file), str(connection_file),
                 "--unshare-all", "--cap-drop", "ALL", "--die-with-parent", "--chdir", str(work), "--"]
        return wrap + cmd
    if mode == "unshare":
        return (["unshare", "--user", "--map-root-user", "--mount", "--net", "--pid", "--fork", "--mount-proc",
                 "--propagation", "private", "--kill-child", "--", sys.executable, "-I", "-S", "-c", _UNSHARE_BOOT,
                 str(work), str(ipc), *hidden, "--"] + cmd)
    return cmd


def needed_paths() -> list[Path]:
    """What every kernel must see: tfcore's checkout, the Python installation and its environment, and the
    folders on the grader's ``sys.path`` (user site-packages, editable installs), its working folder aside."""
    import tfcore

    paths = [Path(tfcore.__file__).resolve().parents[1], Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(),
             Path(sys.executable).resolve().parent]
    cwd = Path.cwd().resolve()
    for entry in sys.path:
        if entry and os.path.isabs(entry) and os.path.isdir(entry) and Path(entry).resolve() != cwd:
            paths.append(Path(entry).resolve())
    return list(dict.fromkeys(paths))


def _needed_under(folder: Path) -> list[str]:
    """The needed paths inside ``folder``, which bwrap hides under a fresh tmpfs (outermost first)."""
    under = sorted(str(p) for p in needed_paths() if folder in p.parents)
    return [p for i, p in enumerate(under) if not any(p.startswith(q + os.sep) for q in under[:i])]


def grader_home() -> Path | None:
    """The grader's HOME, which bwrap hides from the kernel; None where it cannot be hidden (it is /, lies in
    /tmp, or a needed path holds it)."""
    try:
        home = Path.home().resolve()
    except (RuntimeError, KeyError, OSError):
        return None
    if home == Path(home.anchor) or Path("/tmp") in home.parents or home == Path("/tmp") \
            or any(p == home or p in home.parents for p in needed_paths()):
        return None
    return home


def _user_tasks() -> int:
    """Processes and threads of this user now (RLIMIT_NPROC counts them all)."""
    uid, n = os.getuid(), 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            status = Path("/proc", pid, "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1").split()[0]) == uid:
            n += int(fields.get("Threads", "1").strip())
    return n


def process_limit_works() -> bool:
    """Can RLIMIT_NPROC bind the kernel? Not for root (exempt), nor without /proc (the tasks cannot be counted)."""
    return os.getuid() != 0 and Path("/proc/self").is_dir()


def _rlimits(limits: Limits, processes: int | None) -> Callable[[], None]:
    """The function the kernel's process runs before it becomes the sandbox (sets its limits)."""
    memory, size, cpu = limits.memory_mb * 2 ** 20, limits.file_size_mb * 2 ** 20, limits.cpu_seconds

    def apply() -> None:
        wanted = [(resource.RLIMIT_AS, memory), (resource.RLIMIT_FSIZE, size), (resource.RLIMIT_CPU, cpu),
                  (resource.RLIMIT_CORE, 0)] + ([(resource.RLIMIT_NPROC, processes)] if processes is not None else [])
        for which, value in wanted:
            try:
                resource.setrlimit(which, (value, value + 10 if which == resource.RLIMIT_CPU else value))
            except (ValueError, OSError):  # a limit this OS does not enforce (macOS: address space)
                pass
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write fails (EFBIG) instead of killing

    return apply


def kernel_env(work: Path, extra: dict | None = None) -> dict[str, str]:
    """The kernel's whole environment: what Python and Jupyter need, nothing else of the grader's."""
    import tfcore

    python_dir = str(Path(sys.executable).parent)
    env = {k: os.environ[k] for k in _PASS_THROUGH if k in os.environ}
    env.setdefault("LANG", "C.UTF-8")
    env.update({
        "PATH": os.pathsep.join([python_dir, "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(work), "TMPDIR": str(work), "USER": "learner",
        # The kernel imports the same tfcore as the grader, even where tfcore is not installed.
        "PYTHONPATH": str(Path(tfcore.__file__).resolve().parents[1]),
        "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg",
        "IPYTHONDIR": str(work / ".ipython"), "JUPYTER_CONFIG_DIR": str(work / ".jupyter"),
        "JUPYTER_DATA_DIR": str(work / ".local"), "JUPYTER_RUNTIME_DIR": str(work / ".jupyter" / "runtime"),
        "MPLCONFIGDIR": str(work / ".config" / "matplotlib"),
        "TFCORE_GRADING": "1",  # check() records answers for the grader (and never reports)
        # One torch thread: the course's models are small, and on a machine where another program keeps a core
        # busy, two threads made lesson 09's training cell 10x slower and its generation cell 100x (CI, a class
        # graded while other work runs): time limits must not depend on that.
        "OMP_NUM_THREADS": "1",
    })
    env.update(extra or {})
    return env


# ----------------------------------------------------------------------------- the kernel


def _guarded(unpack: Callable[[bytes], object], on_refused: Callable[[], None] = lambda: None
             ) -> Callable[[bytes], object]:
    """``unpack`` (the Jupyter session's JSON parser) refusing a message that would build too many objects:
    the kernel signs its messages with a key it holds, so it can send any JSON it likes. A refused message
    is dropped (``Kernel._recv``), as one that does not verify, and ``on_refused`` is called."""

    def guarded(data: bytes) -> object:
        if structure_count(data) > MAX_STRUCTURE:
            on_refused()
            raise ValueError(f"a message with more than {MAX_STRUCTURE} values")
        return unpack(data)

    return guarded


@dataclass
class CellEvent:
    """The end of one cell: ``ok``, or the error's name and value ("CellTimeoutError" when it timed out)."""

    index: int
    ok: bool
    ename: str = ""
    evalue: str = ""


TIMEOUT_ENAME = "CellTimeoutError"


class KernelStopped(Exception):
    """The kernel can no longer run cells: it died or stopped responding (``str`` says which)."""


class Kernel:
    """A sandboxed kernel for one notebook: ``start``, ``execute`` cells, ``request`` (grading), ``close``.

    root: a fresh folder of the grader's (the notebook's folder, the socket folder and the log go
    there). notebook: the file to copy into the kernel's folder.
    """

    GRACE = 5.0  # seconds a kernel has to answer after an interrupt before it counts as stuck

    def __init__(self, root: Path, notebook: Path | None, limits: Limits, mode: str = "auto",
                 kernel_name: str = "python3", hidden: list[str] | None = None) -> None:
        self.root, self.limits, self.kernel_name = Path(root), limits, kernel_name
        self.mode = choose(mode)
        self.work = self.root / "work"
        self.ipc = self.root / "ipc"
        self.work.mkdir(parents=True)
        self.ipc.mkdir()
        (self.work / "tmp").mkdir()
        if notebook is not None:
            shutil.copyfile(notebook, self.work / Path(notebook).name)
        self.hidden = [h for h in (hidden or []) if self.mode != "none"]
        self.protections = Protections(self.mode, no_network=self.mode != "none",
                                       read_only_outside=self.mode == "bwrap", own_process_namespace=self.mode != "none",
                                       hidden_folders=list(self.hidden), limits=asdict(self.limits),
                                       home_hidden=self.mode == "bwrap" and grader_home() is not None)
        self.proc: subprocess.Popen | None = None
        self.client = None
        self.deadline = float("inf")
        self.dead: str | None = None
        self.refused = False  # a message of the kernel's was refused unread (too many values)

    # --- starting and stopping
    def start(self, timeout: float = 120.0) -> None:
        """Launch the kernel and wait until it answers. Raises KernelStopped with the reason."""
        import zmq
        from jupyter_client.blocking.client import BlockingKernelClient
        from jupyter_client.connect import write_connection_file
        from jupyter_client.kernelspec import KernelSpecManager

        spec = KernelSpecManager().get_kernel_spec(self.kernel_name)  # NoSuchKernel propagates
        connection_file = self.root / "kernel.json"
        _, info = write_connection_file(str(connection_file), ip=str(self.ipc / "k"), transport="ipc",
                                        key=os.urandom(32).hex().encode())
        cmd = [a.replace("{connection_file}", str(connection_file)) for a in spec.argv]
        if cmd and cmd[0] in ("python", f"python{sys.version_info[0]}", "python%d.%d" % sys.version_info[:2]):
            cmd[0] = sys.executable
        # RLIMIT_NPROC counts every task of the user (root is exempt; without /proc we cannot count them)
        processes = _user_tasks() + self.limits.processes if process_limit_works() else None
        self.protections.process_limit = processes is not None
        self._log = open(self.root / "kernel.log", "wb")
        self.proc = subprocess.Popen(
            sandbox_command(self.mode, cmd, self.work, self.ipc, connection_file, self.hidden),
            env=kernel_env(self.work, spec.env), cwd=str(self.work), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=True,
            preexec_fn=_rlimits(self.limits, processes))
        self._context = zmq.Context()
        # A message larger than a reply may be disconnects the kernel (its requests then time out).
        self._context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_CHARS + 2 ** 20)
        self._context.setsockopt(zmq.LINGER, 0)
        self.client = BlockingKernelClient(context=self._context)
        self.client.session.unpack = _guarded(self.client.session.unpack, self._refused)
        self.client.load_connection_info(info)
        self.client.start_channels(shell=True, iopub=False, stdin=True, hb=False, control=True)
        msg_id = self.client.kernel_info()
        try:
            self._wait(msg_id, time.monotonic() + timeout, None)
        except KernelUnavailable as e:
            tail = self._log_tail()
            self.close()
            raise KernelStopped(f"the kernel did not start ({e.reason})" + (f": {tail}" if tail else "")) from None
        if self.mode == "unshare":
            self.protections.read_only_outside = b"tfcore-sandbox: read-only ok" in self._log_bytes()

    def _refused(self) -> None:
        self.refused = True

    def _log_bytes(self) -> bytes:
        try:
            return (self.root / "kernel.log").read_bytes()[-4000:]
        except OSError:
            return b""

    def _log_tail(self) -> str:
        lines = [line for line in self._log_bytes().decode("utf-8", "replace").splitlines() if line.strip()]
        return " ".join(" | ".join(lines[-3:]).split())[:300]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self.dead is None

    def close(self) -> None:
        """Kill the kernel and everything it started (the sandbox's process tree)."""
        if self.client is not None:
            try:
                self.client.stop_channels()
            except Exception:  # noqa: BLE001
                pass
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                self.proc.kill()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
        if getattr(self, "_context", None) is not None:
            self._context.destroy(linger=0)
            self._context = None
        if getattr(self, "_log", None) is not None:
            self._log.close()

    # --- messages
    def _interrupt(self) -> None:
        try:
            self.client.control_channel.send(self.client.session.msg("interrupt_request", {}))
        except Exception:  # noqa: BLE001
            pass

    def _wait(self, msg_id: str, deadline: float, on_input: Callable[[str], str] | None) -> dict:
        """The shell reply to ``msg_id``; answers input requests meanwhile. Raises KernelUnavailable."""
        import zmq

        shell, stdin = self.client.shell_channel, self.client.stdin_channel
        poller = zmq.Poller()
        poller.register(shell.socket, zmq.POLLIN)
        poller.register(stdin.socket, zmq.POLLIN)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise KernelUnavailable("did not answer in time", "timeout")
            if self.proc.poll() is not None:
                self.dead = "died (the process exited or crashed)"
                raise KernelUnavailable(self.dead, "died")
            ready = dict(poller.poll(min(left, 0.5) * 1000))
            if self.refused:  # its reply, most likely: answer now, not after the time limit
                self.refused = False
                raise KernelUnavailable(f"sent a message with more than {MAX_STRUCTURE} values", "malformed")
            if stdin.socket in ready:
                msg = self._recv(stdin)
                if msg is not None and msg.get("msg_type") == "input_request":
                    prompt = str(msg.get("content", {}).get("prompt", ""))
                    parent = msg.get("parent_header", {}).get("msg_id")
                    ok = on_input is not None and parent == msg_id and prompt.startswith(CALLBACK_PREFIX)
                    self.client.input(on_input(prompt[len(CALLBACK_PREFIX):]) if ok else "")
            if shell.socket in ready:
                msg = self._recv(shell)
                if msg is not None and msg.get("parent_header", {}).get("msg_id") == msg_id:
                    return msg.get("content", {})

    @staticmethod
    def _recv(channel) -> dict | None:
        try:
            msg = channel.get_msg(timeout=0)
        except Exception:  # noqa: BLE001  Empty, or a message that does not verify
            return None
        return msg if isinstance(msg, dict) else None

    def _recover(self, msg_id: str) -> bool:
        """After a timeout: interrupt, and wait a little for the reply. False if the kernel is stuck."""
        self._interrupt()
        try:
            self._wait(msg_id, time.monotonic() + self.GRACE, None)
            return True
        except KernelUnavailable:
            if self.dead is None:
                self.dead = "stopped responding (it ignored an interrupt)"
            return False

    # --- cells
    def execute(self, index: int, code: str) -> CellEvent:
        """Run one cell within the cell and notebook limits. Raises KernelStopped when the kernel is gone."""
        if not self.alive():
            raise KernelStopped(self.dead or "died (the process exited or crashed)")
        cell_deadline = time.monotonic() + self.limits.cell_timeout
        msg_id = self.client.execute(code, silent=False, store_history=True, allow_stdin=False, stop_on_error=False)
        try:
            content = self._wait(msg_id, min(cell_deadline, self.deadline), None)
        except KernelUnavailable as e:
            if e.kind != "timeout":
                raise KernelStopped(self.dead or e.reason) from None
            whole = time.monotonic() >= self.deadline
            if not self._recover(msg_id):
                raise KernelStopped(self.dead) from None
            if whole:
                raise KernelStopped(f"ran out of its time limit for the whole notebook "
                                    f"({self.limits.notebook_timeout:g} s)") from None
            return CellEvent(index, False, TIMEOUT_ENAME, f"the cell did not finish within {self.limits.cell_timeout:g} s")
        ok = content.get("status") == "ok"
        return CellEvent(index, ok, str(content.get("ename", "")) if not ok else "",
                         str(content.get("evalue", ""))[:2000] if not ok else "")

    # --- the transport of remote.Session
    def request(self, text: str, on_callback: Callable[[str], str], timeout: float) -> str:
        """Send one grader request to ``tfcore.grading.remote.serve`` in the kernel; return its reply text."""
        if not self.alive():
            raise KernelUnavailable(self.dead or "died (the process exited or crashed)", "died")
        if time.monotonic() >= self.deadline:
            raise KernelUnavailable(f"ran out of its time limit for the whole notebook "
                                    f"({self.limits.notebook_timeout:g} s)", "died")
        expression = f"__import__('tfcore.grading.remote', fromlist=['serve']).serve({text!r})"
        msg_id = self.client.execute("", silent=True, store_history=False, user_expressions={"r": expression},
                                     allow_stdin=True, stop_on_error=False)
        deadline = min(time.monotonic() + timeout, self.deadline)
        try:
            content = self._wait(msg_id, deadline, on_callback)
        except KernelUnavailable as e:
            if e.kind == "timeout":
                whole = time.monotonic() >= self.deadline
                if not self._recover(msg_id):
                    raise KernelUnavailable(self.dead, "died") from None
                if whole:
                    self.dead = (f"ran out of its time limit for the whole notebook "
                                 f"({self.limits.notebook_timeout:g} s)")
                    raise KernelUnavailable(self.dead, "died") from None
                raise KernelUnavailable(f"did not answer within {timeout:g} s", "timeout") from None
            raise
        result = (content.get("user_expressions") or {}).get("r") or {}
        if result.get("status") != "ok":
            raise KernelUnavailable(f"could not run the grader's request ({result.get('ename', 'no reply')}: "
                                    f"{' '.join(str(result.get('evalue', '')).split())[:200]})", "malformed")
        data = result.get("data", {}).get("text/plain")
        if not isinstance(data, str):
            raise KernelUnavailable("sent a reply without text", "malformed")
        return data


def temporary_root() -> Path:
    """A fresh folder for one notebook's kernel (``cleanup`` removes it)."""
    return Path(tempfile.mkdtemp(prefix="tfcore-grade-"))


def cleanup(root: Path) -> None:
    """Remove a kernel's folder, whatever the notebook left there (read-only folders, links)."""
    def onerror(func, path, exc):
        try:
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
            func(path)
        except OSError:
            pass

    shutil.rmtree(root, onerror=onerror)


def describe_modes() -> dict[str, bool]:
    """{mode: works here} for bwrap and unshare (for `doctor`-style messages and tests)."""
    return {m: _works(m) for m in ("bwrap", "unshare")}

