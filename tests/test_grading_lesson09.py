"""Tests-for-tests of lesson 09's checks (training.*): see tests/test_grading.py."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from test_grading import Entry, case_params, run_case


def lm_loss(logits, tokens):
    v = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, v), tokens[:, 1:].reshape(-1))


def lm_loss_gather(logits, tokens):
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    return -logp.gather(-1, tokens[:, 1:, None]).mean()


def lm_loss_loop(logits, tokens):
    b, t, _ = logits.shape
    total = logits.new_zeros(())
    for i in range(b):
        for j in range(t - 1):
            total = total - torch.log_softmax(logits[i, j], dim=-1)[tokens[i, j + 1]]
    return total / (b * (t - 1))


def lm_loss_naive(logits, tokens):
    p = torch.softmax(logits[:, :-1], dim=-1)
    return -torch.log(p.gather(-1, tokens[:, 1:, None])).mean()


CASES = {
    "training.lm_loss": Entry(
        solution=lm_loss,
        styles={"gather": lm_loss_gather, "loop": lm_loss_loop},
        wrong={
            "no_shift": (lambda lg, tk: F.cross_entropy(lg.reshape(-1, lg.shape[-1]), tk.reshape(-1)), "did not shift"),
            "wrong_direction": (lambda lg, tk: F.cross_entropy(lg[:, 1:].reshape(-1, lg.shape[-1]), tk[:, :-1].reshape(-1)),
                                "shifted the wrong way"),
            "sum": (lambda lg, tk: F.cross_entropy(lg[:, :-1].reshape(-1, lg.shape[-1]), tk[:, 1:].reshape(-1),
                                                   reduction="sum"), "summed the losses"),
            "log2": (lambda lg, tk: lm_loss(lg, tk) / math.log(2), "log base 2 instead of natural log"),
            "item": (lambda lg, tk: lm_loss(lg, tk).item(), "drop .item()"),
            "naive_log_softmax": (lm_loss_naive, "large logits"),
            "view": (lambda lg, tk: F.cross_entropy(lg[:, :-1].view(-1, lg.shape[-1]), tk[:, 1:].view(-1)), ".reshape"),
            "detached": (lambda lg, tk: lm_loss(lg, tk).detach(), "detached from the graph"),
        },
    ),
}


@pytest.mark.parametrize("exercise_id, kind, name", case_params(CASES))
def test_lesson09_checks(exercise_id, kind, name):
    run_case(CASES, exercise_id, kind, name)
