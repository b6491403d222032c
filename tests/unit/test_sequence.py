"""Sequence encoders and the gate: causality, serving path = training path, the gate's range
and direction, the next-item loss."""

from __future__ import annotations

import pytest
import torch

from models.sequence import (
    CausalSelfAttentionEncoder,
    GRUEncoder,
    LongShortGate,
    gap_buckets,
    next_item_loss,
)

ENCODERS = [
    lambda: CausalSelfAttentionEncoder(num_items=30, dim=16, max_len=12, layers=2, heads=2),
    lambda: GRUEncoder(num_items=30, dim=16, max_len=12),
]


def batch(seed: int = 0, b: int = 3, t: int = 10) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, 31, (b, t), generator=g)
    items[0, :4] = 0  # a left-padded (short) history
    types = torch.randint(0, 5, (b, t), generator=g)
    gaps = torch.randint(0, 100_000, (b, t), generator=g).float()
    return items, types, gaps


@pytest.mark.parametrize("make", ENCODERS, ids=["attention", "gru"])
def test_no_position_depends_on_a_later_one(make) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    enc = make().eval()
    items, types, gaps = batch()
    out = enc(items, types, gaps)
    changed = items.clone()
    changed[:, 7:] = (changed[:, 7:] % 30) + 1  # other items from position 7 on
    types2, gaps2 = types.clone(), gaps.clone()
    types2[:, 7:] = (types2[:, 7:] + 1) % 5
    gaps2[:, 7:] += 5000
    out2 = enc(changed, types2, gaps2)
    assert torch.allclose(out[:, :7], out2[:, :7], atol=1e-5)
    assert not torch.allclose(out[:, 7:], out2[:, 7:], atol=1e-3)
    assert torch.isfinite(out).all()
    assert (out[0, :4] == 0).all(), "padded positions give zero vectors"


@pytest.mark.parametrize("make", ENCODERS, ids=["attention", "gru"])
def test_event_by_event_equals_the_whole_sequence(make) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(1)
    enc = make().eval()
    items, types, gaps = batch(seed=3, b=2, t=9)
    items[0, :4] = 0
    full = enc(items, types, gaps)
    for t in range(1, 10):
        prefix = enc(items[:, :t], types[:, :t], gaps[:, :t])
        assert torch.allclose(prefix[:, -1], full[:, t - 1], atol=1e-5), t


def test_gap_buckets_are_log_minutes() -> None:
    got = gap_buckets(torch.tensor([[0.0, 59.0, 60.0, 180.0, 3600.0, 1e12]]))
    assert got.tolist() == [[0, 0, 1, 2, 5, 23]]


def test_the_gate_is_a_weight_and_learns_when_long_term_matters() -> None:
    """Crafted: the long-term source is right after a long pause, the short-term one within a
    session. A few steps of fitting must make the gate rise with the time since the last
    event and fall with the session length."""
    torch.manual_seed(0)
    gate = LongShortGate(dim=4, hidden=8)
    n = 512
    since = torch.cat([torch.full((n // 2,), 30.0), torch.full((n // 2,), 3 * 86400.0)])
    session = torch.cat([torch.full((n // 2,), 12.0), torch.full((n // 2,), 1.0)])
    history = torch.full((n,), 100.0)
    long_vec, short_vec = torch.randn(n, 4), torch.randn(n, 4)
    target = torch.cat([torch.zeros(n // 2), torch.ones(n // 2)])  # 1 = long-term was right
    w = gate(long_vec, short_vec, since, session, history)
    assert ((w > 0) & (w < 1)).all()
    opt = torch.optim.Adam(gate.parameters(), lr=0.05)
    for _ in range(150):
        loss = torch.nn.functional.binary_cross_entropy(
            gate(long_vec, short_vec, since, session, history), target
        )
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    z = torch.zeros(1, 4)
    one = torch.ones(1)
    with torch.no_grad():
        binge = gate(z, z, torch.tensor([30.0]), torch.tensor([12.0]), 100 * one)
        returning = gate(z, z, torch.tensor([3 * 86400.0]), one, 100 * one)
    assert float(binge) < 0.2 < 0.8 < float(returning)


def test_next_item_loss_is_the_full_softmax_cross_entropy() -> None:
    torch.manual_seed(0)
    states = torch.randn(2, 3, 4)
    items = torch.randn(5, 4)
    targets = torch.tensor([[2, 0, 5], [1, 1, 0]])  # 0 = no target
    got = next_item_loss(states, targets, items)
    logits = states @ items.T
    picked = [(0, 0, 1), (0, 2, 4), (1, 0, 0), (1, 1, 0)]
    want = -sum(torch.log_softmax(logits[b, t], 0)[i] for b, t, i in picked) / len(picked)
    assert torch.allclose(got, want, atol=1e-6)
    assert float(next_item_loss(states, torch.zeros(2, 3, dtype=torch.long), items)) == 0.0


def test_the_attention_encoder_learns_a_sequential_pattern() -> None:
    """Next item = current + 1 (mod I), with left-padded short histories: trained with the
    full-softmax loss, the last position predicts the next item."""
    torch.manual_seed(0)
    n_items, length, users = 40, 12, 256
    start = torch.randint(0, n_items, (users,))
    seq = (start[:, None] + torch.arange(length + 1)[None]) % n_items + 1
    for u in range(0, users, 3):
        seq[u, : u % 6] = 0
    types, gaps = torch.zeros_like(seq), torch.full(seq.shape, 60.0)
    enc = CausalSelfAttentionEncoder(n_items, dim=32, max_len=length, layers=1, heads=2,
                                     dropout=0.0)  # fmt: skip
    opt = torch.optim.Adam(enc.parameters(), lr=3e-3)
    for _ in range(25):
        for b in range(0, users, 64):
            x = seq[b : b + 64, :-1]
            y = seq[b : b + 64, 1:] * (x != 0)
            loss = next_item_loss(enc(x, types[b : b + 64, :-1], gaps[b : b + 64, :-1]), y,
                                  enc.item_embeddings)  # fmt: skip
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    enc.eval()
    with torch.no_grad():
        scores = enc(seq[:, :-1], types[:, :-1], gaps[:, :-1])[:, -1] @ enc.item_embeddings.T
    accuracy = float((scores.argmax(1) + 1 == seq[:, -1]).float().mean())
    assert accuracy > 0.8, accuracy
