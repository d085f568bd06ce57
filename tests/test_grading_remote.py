"""tfcore.grading.remote: checks through the wall between the grader and the learner's kernel.

A ``Loopback`` session serves requests in this very process but serialises every message, so
each check sees exactly what it sees in the grader: the answer as a ``Proxy``, results rebuilt
from JSON and ``.npy`` bytes, the check's own functions as callbacks. The real kernel runs in
tests/test_grade*.py.
"""
from __future__ import annotations

import base64
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import tfcore.grading as grading
from tfcore.grading import Checker, check, remote, run_check
from tfcore.grading.remote import KernelUnavailable, Loopback, Proxy, Session
from tfcore.heads import MultiHeadAttention

from test_grading import _stub, all_cases

HERE = Path(__file__).resolve().parent


def through_the_wall(exercise_id, answer, seed=0):
    """The Result the grader gives ``answer`` (held by a loopback "kernel")."""
    remote._ANSWERS.clear()
    remote.record(exercise_id, answer)
    session = Session(Loopback())
    session.begin()
    found, value = session.answer(exercise_id)
    assert found
    return run_check(exercise_id, value, seed=seed, session=session)


@pytest.fixture
def session():
    remote._ANSWERS.clear()
    s = Session(Loopback())
    s.begin()
    return s


def proxy_of(session, value, exercise_id="x.test"):
    remote.record(exercise_id, value)
    found, out = session.answer(exercise_id)
    return out


# ----------------------------------------------------------------------------- every check, both ways


LESSON_FILES = sorted(p.stem for p in HERE.glob("test_grading_lesson*.py"))


@pytest.mark.parametrize("lesson_file", LESSON_FILES)
def test_every_tests_for_tests_case_gives_the_same_result_through_the_wall(lesson_file):
    """Solutions, stubs, other styles and wrong answers: the grader's verdict and message equal check()'s."""
    import importlib

    cases = importlib.import_module(lesson_file).CASES
    differ = []
    for exercise_id, entry in cases.items():
        answers = [("solution", entry.solution), ("stub", _stub), *entry.styles.items(),
                   *((k, v[0]) for k, v in entry.wrong.items())]
        for name, answer in answers:
            inline, graded = check(exercise_id, answer), through_the_wall(exercise_id, answer)
            if str(inline) != str(graded) and str(inline) != str(check(exercise_id, answer)):
                # an answer with state of its own (a random guesser): only the verdict must agree
                if inline.status == graded.status:
                    continue
            if str(inline) != str(graded):
                differ.append(f"{exercise_id} [{name}]\n  inline: {inline}\n  grader: {graded}")
    assert not differ, "\n".join(differ)


def test_the_secret_seed_changes_the_inputs_not_the_verdicts():
    from tfcore.attention import softmax

    seen = []

    def spy(x, dim=-1):
        seen.append(x.clone())
        return softmax(x, dim)

    assert through_the_wall("attention.softmax", spy, seed=0).passed
    first = seen[:]
    seen.clear()
    assert through_the_wall("attention.softmax", spy, seed=12345).passed
    assert not torch.equal(first[0], seen[0])


# ----------------------------------------------------------------------------- what travels, and how


def test_tensors_travel_with_their_strides_dtype_and_grad_flag(session):
    got = {}

    def keep(*args, **kwargs):
        got["args"], got["kwargs"] = args, kwargs
        return args[0]

    fn = proxy_of(session, keep)
    base = torch.randn(5, 3, dtype=torch.float64)
    view = base.T  # non-contiguous
    sliced = torch.arange(20).reshape(4, 5)[1:3, ::2]
    leaf = torch.randn(2, 2).requires_grad_(True)
    bf = torch.randn(3).to(torch.bfloat16)
    g = torch.Generator().manual_seed(7)
    reply = session.call(fn, (view, sliced, leaf, bf, np.arange(6.0).reshape(2, 3), np.int64(3), g),
                         {"opt": {"a": (1, 2.5, None, True, "s")}, "dtype": torch.float16})
    v, s, l, b, a, n, g2 = got["args"]
    assert v.stride() == view.stride() and not v.is_contiguous() and torch.equal(v, view)
    assert s.stride() == sliced.stride() and torch.equal(s, sliced)
    assert l.requires_grad and b.dtype == torch.bfloat16 and torch.equal(b, bf)
    assert type(a) is np.ndarray and np.array_equal(a, np.arange(6.0).reshape(2, 3))
    assert type(n) is np.int64 and n == 3
    assert torch.equal(torch.rand(3, generator=g2), torch.rand(3, generator=torch.Generator().manual_seed(7)))
    assert got["kwargs"] == {"opt": {"a": (1, 2.5, None, True, "s")}, "dtype": torch.float16}
    out = reply["value"]
    assert type(out) is torch.Tensor and torch.equal(out, view) and out.is_contiguous()


def test_results_are_rebuilt_as_plain_data_never_as_the_kernels_objects(session):
    class Always(torch.Tensor):  # a subclass whose comparisons always say "equal"
        def __eq__(self, other):
            return True

        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") in ("allclose", "equal", "isclose"):
                return True
            return super().__torch_function__(func, types, args, kwargs or {})

    class Equal:
        def __eq__(self, other):
            return True

    values = {
        "subclass": torch.zeros(3).as_subclass(Always),
        "object": Equal(),
        "nested": {"a": [np.float32(1.5), (torch.ones(2, dtype=torch.bool), "x")], 3: None},
        "named": torch.tensor([3.0, 1.0]).max(dim=0),
    }
    fn = proxy_of(session, lambda key: values[key])
    sub = session.call(fn, ("subclass",), {})["value"]
    assert type(sub) is torch.Tensor and torch.equal(sub, torch.zeros(3))
    obj = session.call(fn, ("object",), {})["value"]
    assert type(obj) is Proxy and not (obj == 1) and grading._type_name(obj) == "Equal"
    nested = session.call(fn, ("nested",), {})["value"]
    assert type(nested) is dict and type(nested["a"][0]) is np.float32 and nested[3] is None
    assert type(nested["a"][1]) is tuple and nested["a"][1][0].dtype == torch.bool
    named = session.call(fn, ("named",), {})["value"]
    assert type(named) is tuple and float(named[0]) == 3.0


def test_the_kernels_exceptions_and_in_place_changes_come_back_as_facts(session):
    def boom(x):
        raise NotImplementedError("todo")

    def in_place(x):
        x.add_(1)
        return x

    reply = session.call(proxy_of(session, boom), (torch.ones(2),), {})
    assert reply["raised"]["type"] == "NotImplementedError" and reply["raised"]["not_implemented"]
    reply = session.call(proxy_of(session, in_place, "y.test"), (torch.ones(2),), {})
    assert reply["changed"] == ["argument 1"]


@pytest.mark.parametrize("payload, reason", [
    ({"value": {"ndarray": "pickle"}}, "cannot read"),
    ({"value": [1, 2]}, "cannot read"),  # a bare list is not in the protocol
    ({"value": {"tensor": {"npy": "x", "dtype": "float32"}}}, "cannot read"),
    ({"value": {"unknown": 1}}, "cannot read"),
    ({"value": {"dict": [[{"proxy": {"ref": 1}}, 1]]}}, "cannot read"),  # a proxy as a dict key
    ({"value": 10 ** 400}, "cannot read"),
    ({"error": "serve was replaced"}, "could not serve"),
    ({"value": {"ndarray": "header bomb"}}, "cannot read"),  # a header claiming 80 GB over 16 bytes
])
def test_replies_outside_the_protocol_are_refused_without_running_anything(payload, reason, tmp_path):
    if payload.get("value") == {"ndarray": "pickle"}:
        # an object array: loading it with pickle would run os.system in the grader
        class Evil:
            def __reduce__(self):
                import os

                return os.system, (f"touch {tmp_path / 'PWNED'}",)

        buf = io.BytesIO()
        np.save(buf, np.array([Evil()], dtype=object), allow_pickle=True)
        payload = {"value": {"ndarray": base64.b64encode(buf.getvalue()).decode()}}

    if payload.get("value") == {"ndarray": "header bomb"}:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 10,)})
        buf.write(b"x" * 16)
        payload = {"value": {"ndarray": base64.b64encode(buf.getvalue()).decode()}}

    class Forged:
        def request(self, text, on_callback, timeout):
            return json.dumps(payload)

    session = Session(Forged())
    with pytest.raises(KernelUnavailable, match=reason):
        session.answer("attention.softmax")
    assert not (tmp_path / "PWNED").exists()


def test_deep_or_huge_replies_are_refused():
    class Deep:
        def request(self, text, on_callback, timeout):
            return '{"value": ' + '{"list": [' * 5000 + "1" + "]}" * 5000 + "}"

    with pytest.raises(KernelUnavailable, match="cannot read|not JSON"):
        Session(Deep()).answer("attention.softmax")


def test_callbacks_answer_with_data_and_refuse_kernel_objects(session):
    calls = []

    def model_fn(tokens):
        calls.append(tokens)
        return tokens.float() * 2

    def learner(f, tokens):
        out = f(tokens)
        try:
            f(object())  # a kernel object cannot reach the grader's function
        except TypeError as e:
            return out, str(e)
        return out, "accepted"

    reply = session.call(proxy_of(session, learner), (model_fn, torch.arange(3)), {})
    out, refused = reply["value"]
    assert torch.equal(out, torch.tensor([0.0, 2.0, 4.0])) and "accepts tensors" in refused
    assert len(calls) == 1 and type(calls[0]) is torch.Tensor

    def flood(f):  # the grader computes the check's function: its arguments are capped
        try:
            f(torch.zeros(3_000_000))
        except ValueError as e:
            return str(e)

    assert "at most 8 MB" in session.call(proxy_of(session, flood, "z.test"), (model_fn,), {})["value"]
    assert len(calls) == 1


# ----------------------------------------------------------------------------- the Checker's helpers


class TinyNet(torch.nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(width, width) for _ in range(2)])

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


def _build_tiny(width: int) -> torch.nn.Module:
    return TinyNet(width)


def test_a_class_answer_is_driven_through_proxies_and_helpers(session):
    c = Checker("x.test", session=session)
    answer = proxy_of(session, TinyNet)
    model = c.call(answer, 4, case="build")
    assert type(model) is Proxy and grading._type_name(model) == "TinyNet"
    x = torch.randn(3, 4)
    state = {k: torch.randn_like(v) for k, v in TinyNet().state_dict().items()}
    c.call(model.load_state_dict, state, case="load")
    ref = TinyNet()
    ref.load_state_dict(state)
    assert torch.allclose(c.call(model, x, case="forward"), ref(x))
    assert torch.allclose(c.call(model.blocks[1], x, case="one block"), ref.blocks[1](x))
    types = c.module_types(model)
    assert types[0] == ("", f"{__name__}.TinyNet") and ("blocks.0", "torch.nn.modules.linear.Linear") in types
    assert c.hook_count(model) == 0
    assert all(torch.equal(v, state[k]) for k, v in c.state_dict(model).items())


def test_shared_modules_are_real_in_the_kernel_and_inspected_there(session):
    c = Checker("x.test", session=session)
    local = c.share(TinyNet(4), f"{__name__}:_build_tiny", 4)

    def leaves_a_hook(model, x):
        model.blocks[0].register_forward_hook(lambda m, a, o: None)
        with torch.no_grad():
            model.blocks[1].weight.zero_()
        return model(x)

    out = c.call(proxy_of(session, leaves_a_hook), local, torch.ones(1, 4), case="hooks")
    assert out.shape == (1, 4)
    assert c.hook_count(local) == 1 and not local.blocks[0]._forward_hooks  # the kernel's copy, not ours
    assert torch.count_nonzero(c.state_dict(local)["blocks.1.weight"]) == 0
    assert torch.count_nonzero(local.blocks[1].weight) > 0


def test_a_monitor_runs_around_the_learners_call_in_the_kernel(session):
    from tfcore.grading.lesson08 import _WholeRowReductions

    c = Checker("complexity.online_softmax", session=session)
    fn = proxy_of(session, lambda x: torch.softmax(x, 0))
    with c.monitor(_WholeRowReductions, 5) as seen:
        c.call(fn, torch.randn(24), case="whole row")
    assert seen.calls == ["softmax"] and seen.sizes == [24]


def test_the_grader_never_trusts_a_grad_flag_it_did_not_get(session):
    c = Checker("x.test", session=session)
    fn = proxy_of(session, lambda x: (x * 2).sum())
    out = c.call(fn, torch.ones(3).requires_grad_(True), case="grad")
    assert c.has_grad(out) and out.grad_fn is None
    assert not c.has_grad(torch.ones(1)) and not c.has_grad(1.0)


def test_check_records_the_answer_in_a_graders_kernel(monkeypatch):
    from tfcore.attention import softmax

    remote._ANSWERS.clear()
    monkeypatch.setenv(grading.GRADING_ENV, "1")
    result = check("attention.softmax", softmax)
    assert result.status == "not attempted" and "recorded" in result.message
    assert remote._ANSWERS["attention.softmax"][1] is softmax
    check("attention.softmax", None)
    assert remote._ANSWERS["attention.softmax"][1] is None  # the last call wins


def test_kernel_side_replies_are_json_text(session):
    reply = remote.serve(json.dumps({"op": "hello"}))
    assert json.loads(repr(reply)) == {"hello": 1}
    assert "error" in json.loads(remote.serve("not json").text)


class FaultyAttention(MultiHeadAttention):
    """A swapped-in attention class with a plain attribute, as tfcore.diagnostics.BrokenAttention."""

    fault = "none"

    def forward(self, x, source=None, mask=None, is_causal=False, cache=None):
        b, t, _ = x.shape
        q, k, v = (p(x).view(b, t, -1, self.d_head).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        weights = torch.softmax(q @ k.transpose(-2, -1) / self.d_head ** 0.5, dim=-2 if self.fault == "softmax axis"
                                else -1)
        if self.capture_weights:
            self.last_weights = weights.detach()
        return self.out_proj((weights @ v).transpose(1, 2).reshape(b, t, -1))


def test_a_function_of_a_model_the_check_built_gets_a_real_model(monkeypatch):
    """find_bug(model) -> str (lesson 10): the check shares the model it built; the learner's function runs
    hooks and forward passes on the kernel's copy, and only its verdict (a str) comes back."""
    from tfcore.grading.lesson10 import _checklist_model
    from tfcore.model import Transformer, TransformerConfig, capture_attention

    def find_bug(model):
        with capture_attention(model) as weights:
            model(torch.arange(6)[None])
        rows = next(iter(weights.values())).sum(-1)
        return "fine" if torch.allclose(rows, torch.ones_like(rows)) else "softmax axis"

    def diagnose(answer, c):
        for kind, want in (("columns", "softmax axis"), ("healthy", "fine")):
            model = c.share(_checklist_model(kind), _checklist_model, kind)
            c.cases += 1
            if c.call(answer, model, case=kind) != want:
                c.fail(f"wrong diagnosis of the {kind} model")
        plain = Transformer(TransformerConfig(vocab_size=11, d_model=16, n_layers=1, n_heads=2, max_seq_len=8))
        c.cases += 1
        if c.call(answer, plain, case="a plain model, shared without a builder") != "fine":
            c.fail("wrong diagnosis of the plain model")
        broken = copy.deepcopy(plain)  # as tfcore.diagnostics.inject_bug does: a swapped class and an attribute
        for layer in broken.attention_layers().values():
            layer.__class__, layer.fault = FaultyAttention, "softmax axis"
        c.cases += 1
        if c.call(answer, broken, case="a swapped attention class, no builder") != "softmax axis":
            c.fail("wrong diagnosis of the broken model")

    monkeypatch.setitem(grading._REGISTRY, "diagnostics.x_find", grading.Exercise(
        "diagnostics.x_find", "a find_bug-like check", "10_diagnostics", diagnose))
    assert check("diagnostics.x_find", find_bug).passed
    graded = through_the_wall("diagnostics.x_find", find_bug)
    assert graded.passed and graded.message == "passed (4 cases)"


def test_a_model_that_cannot_be_rebuilt_reaches_the_learner_as_a_function(session):
    from tfcore.model import Transformer, TransformerConfig

    model = Transformer(TransformerConfig(vocab_size=11, d_model=16, n_layers=1, n_heads=2, max_seq_len=8)).eval()
    assert remote._transformer_spec(model) == {"config": remote._transformer_spec(model)["config"], "classes": {},
                                               "attributes": {}}
    model.decoder[0].register_forward_hook(lambda m, a, o: o * 2)  # a hook the kernel cannot rebuild
    assert remote._transformer_spec(model) is None
    c = Checker("x.test", session=session)
    tokens = torch.arange(5)[None]
    out = c.call(proxy_of(session, lambda m, t: (type(m).__name__, m(t))), model, tokens, case="callback")
    assert out[0] == "_Callback"
    with torch.no_grad():
        assert torch.allclose(out[1], model(tokens))  # the grader's model, hook included, answered the call


def test_a_string_result_is_read_as_text_in_both_modes(session):
    for c, fn in ((Checker("x.test"), lambda: 3), (Checker("x.test", session=session), proxy_of(session, lambda: 3))):
        assert c.text("softmax axis", "case", "a bug name") == "softmax axis"
        with pytest.raises(grading.CheckFailed, match="returned a int on case: return a bug name"):
            c.text(c.call(fn, case="case"), "case", "a bug name")
        with pytest.raises(grading.CheckFailed, match="returned None"):
            c.text(None, "case", "a bug name")


class Verdict:
    """A learner's own result type: the grader sees it only as a kernel object."""


def test_a_kernel_objects_class_is_named_in_messages_never_proxy():
    for exercise_id, answer in (("diagnostics.find_bug", lambda model: Verdict()),
                                ("mlp.param_counts", lambda *args, **kwargs: [Verdict(), 1])):
        inline, graded = check(exercise_id, answer), through_the_wall(exercise_id, answer)
        assert "Verdict" in graded.message and "Proxy" not in graded.message, graded
        assert str(graded) == str(inline)
