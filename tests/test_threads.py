"""tfcore.threads: threads chosen by the work's size, and the caller's count restored; generate uses them."""

from __future__ import annotations

import pytest
import torch
from helpers import random_tokens, tiny_model

from tfcore.threads import WORK_PER_THREAD, intra_op_threads, set_threads, threads_for


@pytest.fixture
def two_threads():
    """PyTorch at two intra-op threads for the test (any machine can be asked for two), then as before."""
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(saved)


def test_threads_for_gives_each_thread_a_full_share_and_stays_in_range():
    assert threads_for(0, available=8) == 1
    assert threads_for(WORK_PER_THREAD - 1, available=8) == 1
    assert threads_for(2 * WORK_PER_THREAD, available=8) == 2
    assert threads_for(3 * WORK_PER_THREAD - 1, available=8) == 2
    assert threads_for(100 * WORK_PER_THREAD, available=8) == 8
    assert threads_for(100 * WORK_PER_THREAD, available=1) == 1
    counts = [threads_for(w, available=4) for w in range(0, 6 * WORK_PER_THREAD, WORK_PER_THREAD // 3)]
    assert counts == sorted(counts)  # more work never gets fewer threads


def test_threads_for_refuses_a_bad_thread_count():
    with pytest.raises(ValueError, match="available must be a positive integer"):
        threads_for(10, available=0)


def test_intra_op_threads_sets_the_count_and_restores_it(two_threads):
    with intra_op_threads(1):
        assert torch.get_num_threads() == 1
        set_threads(2)  # a change inside the block is undone too
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError, match="inside"):
        with intra_op_threads(1):
            raise RuntimeError("inside")
    assert torch.get_num_threads() == 2
    with intra_op_threads():  # None: leaves the count as it is
        assert torch.get_num_threads() == 2


def threads_seen_by(model: torch.nn.Module, **generate_kwargs) -> list[int]:
    """Generate, recording the thread count each decoding step's forward ran with."""
    seen: list[int] = []
    handle = model.register_forward_pre_hook(lambda module, args: seen.append(torch.get_num_threads()))
    try:
        model.generate(**generate_kwargs)
    finally:
        handle.remove()
    return seen


def test_generate_runs_a_small_models_steps_on_one_thread_and_restores_the_count(two_threads):
    model = tiny_model(max_seq_len=64)
    prompt = random_tokens(1, 5, model.config.vocab_size)
    seen = threads_seen_by(model, prompt=prompt, max_new_tokens=6, temperature=0.0)
    assert seen == [1] * 6  # widest layer and attention: a few thousand multiply-adds per step
    assert torch.get_num_threads() == 2


def test_generate_gives_a_large_step_every_thread(two_threads):
    # 4,096 sequences at once: every step's linear layers do millions of multiply-adds
    model = tiny_model(max_seq_len=64)
    prompt = random_tokens(4096, 2, model.config.vocab_size)
    widest = max(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert 4096 * widest >= 2 * WORK_PER_THREAD  # the premise: worth two threads
    seen = threads_seen_by(model, prompt=prompt, max_new_tokens=2, temperature=0.0)
    assert seen == [2, 2]
    assert torch.get_num_threads() == 2


def test_generate_restores_the_count_when_a_step_fails(two_threads):
    model = tiny_model(max_seq_len=64)

    def fail(module, args):
        raise RuntimeError("step failed")

    handle = model.decoder[0].register_forward_pre_hook(fail)
    try:
        with pytest.raises(RuntimeError, match="step failed"):
            model.generate(random_tokens(1, 3, model.config.vocab_size), 4)
    finally:
        handle.remove()
    assert torch.get_num_threads() == 2
