"""Sequence encoders and the gate: causality, serving path = training path, padding
invariance, the gate's range and direction, the next-item loss, the fusion of both sources."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from models.nn.sequence import (
    ByteDropout,
    CausalSelfAttentionEncoder,
    FusedLogProbs,
    GRUEncoder,
    LongShortGate,
    LongShortScorer,
    fuse,
    gap_buckets,
    make_encoder,
    next_item_loss,
    short_long_contrastive,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny tensors: a second intra-op thread only adds contention (on a busy 2-core runner
    it made these tests several times slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
def test_last_is_the_whole_sequence_at_its_last_position(make) -> None:  # type: ignore[no-untyped-def]
    """``last`` (what serving calls) is ``forward(…)[:, -1]``, for full, left-padded and
    empty windows and for a window of one event."""
    torch.manual_seed(2)
    enc = make().eval()
    items, types, gaps = batch(seed=4, b=4, t=12)
    items[1, :11] = 0  # one event
    items[2] = 0  # no events
    with torch.inference_mode():
        for t in (12, 5, 1):
            x = items[:, -t:], types[:, -t:], gaps[:, -t:]
            full, last = enc(*x)[:, -1], enc.last(*x)
            assert last.shape == (4, 16) and torch.allclose(last, full, atol=1e-5), t
            assert (last[2] == 0).all() and bool(last[0].abs().sum() > 0)


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


@pytest.mark.parametrize("start", [None, -1.5])
def test_the_gate_is_a_weight_and_learns_when_long_term_matters(start: float | None) -> None:
    """Crafted: the long-term source is right after a long pause, the short-term one within a
    session. A few steps of fitting must make the gate rise with the time since the last
    event and fall with the session length, also from ``start_at(b)``, which gives σ(b) to
    every input (what the fit starts the per-user gate from: the gradient still reaches the
    hidden layer, so fitting moves away from the constant)."""
    torch.manual_seed(0)
    gate = LongShortGate(dim=4, hidden=8)
    n = 512
    since = torch.cat([torch.full((n // 2,), 30.0), torch.full((n // 2,), 3 * 86400.0)])
    session = torch.cat([torch.full((n // 2,), 12.0), torch.full((n // 2,), 1.0)])
    history = torch.full((n,), 100.0)
    long_vec, short_vec = torch.randn(n, 4), torch.randn(n, 4)
    target = torch.cat([torch.zeros(n // 2), torch.ones(n // 2)])  # 1 = long-term was right
    if start is not None:
        gate.start_at(start)
        w = gate(long_vec, short_vec, since, session, torch.rand(n) * 500)
        assert torch.equal(w, torch.sigmoid(torch.tensor(start)).expand(n))
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
    want = -torch.stack([torch.log_softmax(logits[b, t], 0)[i] for b, t, i in picked]).mean()
    assert torch.allclose(got, want, atol=1e-6)
    assert float(next_item_loss(states, torch.zeros(2, 3, dtype=torch.long), items)) == 0.0


def test_the_sampled_softmax_scores_each_target_against_the_drawn_items() -> None:
    torch.manual_seed(0)
    states = torch.randn(2, 3, 4)
    items = torch.randn(50, 4)
    targets = torch.tensor([[2, 0, 50], [7, 1, 0]])
    # as many negatives as items: the full softmax
    assert torch.equal(next_item_loss(states, targets, items, negatives=50),
                       next_item_loss(states, targets, items))  # fmt: skip
    g = torch.Generator().manual_seed(3)
    got = next_item_loss(states, targets, items, negatives=8, generator=g)
    neg = torch.randint(0, 50, (8,), generator=torch.Generator().manual_seed(3))
    picked = [(0, 0, 1), (0, 2, 49), (1, 0, 6), (1, 1, 0)]
    terms = []
    for b, t, y in picked:
        s = states[b, t]
        others = [float(s @ items[j]) for j in neg.tolist() if j != y]  # a hit is masked
        logits = torch.tensor([float(s @ items[y]), *others])
        terms.append(-torch.log_softmax(logits, 0)[0])
    assert torch.allclose(got, torch.stack(terms).mean(), atol=1e-5)
    # fewer competitors than the full catalogue: a smaller loss
    assert float(got) < float(next_item_loss(states, targets, items))


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


# -- relative positions ------------------------------------------------------------------


def left_pad(x: torch.Tensor, n: int) -> torch.Tensor:
    return torch.cat([torch.zeros(x.shape[0], n, dtype=x.dtype), x], dim=1)


@pytest.mark.parametrize("kind", ["attention", "gru"])
def test_left_padding_does_not_change_the_output(kind: str) -> None:
    """Positions count from the window's first real event: the same window left-padded to a
    longer batch tensor (a longer user in the same micro-batch) scores the same."""
    torch.manual_seed(0)
    enc = make_encoder(kind, num_items=20, dim=8, max_len=10, layers=1, heads=2, dropout=0.0)
    enc.eval()
    items = torch.tensor([[3, 4, 5, 6]])
    types = torch.tensor([[0, 1, 0, 2]])
    gaps = torch.tensor([[0.0, 60.0, 120.0, 5000.0]])
    with torch.no_grad():
        alone = enc(items, types, gaps)
        padded = enc(left_pad(items, 6), left_pad(types, 6), left_pad(gaps, 6))
    assert padded.shape == (1, 10, 8)
    assert torch.allclose(padded[:, 6:], alone, atol=1e-5)
    assert (padded[:, :6] == 0).all()


def test_a_window_longer_than_max_len_is_refused() -> None:
    enc = make_encoder("attention", 20, 8, 4, 1, 2, 0.0)
    x = torch.ones(1, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="exceeds max_len 4"):
        enc(x, torch.zeros_like(x), torch.zeros(1, 5))


def test_make_encoder_kinds() -> None:
    att = make_encoder("attention", 20, 8, 10, 2, 2, 0.1)
    gru = make_encoder("gru", 20, 8, 10, 2, 2, 0.1)
    assert isinstance(att, CausalSelfAttentionEncoder) and isinstance(gru, GRUEncoder)
    assert len(att.blocks.layers) == 2 and att.heads == 2
    for enc in (att, gru):
        assert enc.item_embeddings.shape == (20, 8)  # the padding row is not an item
    with pytest.raises(ValueError, match="attention or gru"):
        make_encoder("lstm", 20, 8, 10, 1, 2, 0.0)


# -- fuse ----------------------------------------------------------------------------------


def ref_log_softmax(x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """log-softmax over the allowed entries of each row, -inf elsewhere (the reference)."""
    out = torch.full_like(x, float("-inf"))
    for b in range(x.shape[0]):
        v = x[b, allowed[b]]
        out[b, allowed[b]] = v - torch.logsumexp(v, dim=0)
    return out


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal -inf patterns and close finite values."""
    return bool(torch.equal(torch.isneginf(a), torch.isneginf(b))) and torch.allclose(
        a[torch.isfinite(a)], b[torch.isfinite(b)], atol=1e-5
    )


def fuse_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    short = 3 * torch.randn(3, 6, generator=g)
    long = 3 * torch.randn(3, 6, generator=g)
    excluded = torch.zeros(3, 6, dtype=torch.bool)
    excluded[0, [1, 4]] = True
    excluded[2, 0] = True
    return short, long, excluded, torch.tensor(0.4)


def test_fuse_is_the_gated_geometric_mixture_of_the_two_sources() -> None:
    short, long, excluded, log_tau = fuse_inputs()
    allowed = ~excluded
    want_short = ref_log_softmax(short, allowed)
    want_long = ref_log_softmax(log_tau.exp() * long, allowed)
    w = torch.tensor([0.0, 1.0, 0.3])
    out = fuse(short, long, w, excluded, log_tau)
    assert isinstance(out, FusedLogProbs) and torch.equal(out.long_weight, w)
    assert same(out.short, want_short) and same(out.long, want_long)
    # w = 0: the short-term list exactly; w = 1: the long-term one
    assert same(out.fused[0:1], want_short[0:1])
    assert same(out.fused[1:2], want_long[1:2])
    mixed = ref_log_softmax(0.3 * want_long[2:3].nan_to_num(neginf=0.0)
                            + 0.7 * want_short[2:3].nan_to_num(neginf=0.0), allowed[2:3])  # fmt: skip
    assert same(out.fused[2:3], mixed)
    for lp in (out.fused, out.short, out.long):
        assert torch.isneginf(lp[excluded]).all() and torch.isfinite(lp[allowed]).all()
        assert torch.allclose(lp.exp().sum(dim=1), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("w", [0.0, 0.5, 1.0])
def test_fuse_weight_zero_and_one_for_every_row(w: float) -> None:
    short, long, excluded, log_tau = fuse_inputs()
    out = fuse(short, long, torch.full((3,), w), excluded, log_tau)
    if w == 0.0:
        assert same(out.fused, out.short)
    elif w == 1.0:
        assert same(out.fused, out.long)
    else:
        assert not same(out.fused, out.short) and not same(out.fused, out.long)


def test_fuse_items_and_users_the_snapshot_lacks() -> None:
    """An item without a long-term score (NaN) gets the row's lowest long-term score among
    the offered items; a user without any (all NaN, ``w = 0``) has no long-term list and the
    fused list is the short-term one."""
    nan = float("nan")
    short = torch.tensor([[0.5, 1.0, -1.0, 2.0, 0.0], [1.0, 2.0, 3.0, 0.0, -1.0]])
    long = torch.tensor([[1.0, nan, 3.0, -5.0, 2.0], [nan] * 5])
    excluded = torch.tensor(
        [[False, False, False, True, False], [False, True, False, False, False]]
    )
    out = fuse(short, long, torch.tensor([0.6, 0.0]), excluded, torch.tensor(0.0))
    # row 0: -5 is excluded, so the floor is 1.0 (item 0), not -5
    assert float(out.long[0, 1]) == pytest.approx(float(out.long[0, 0]))
    assert float(out.long[0, 1]) == pytest.approx(float(out.long[0, [0, 1, 2, 4]].min()))
    assert torch.isfinite(out.fused[0, [0, 1, 2, 4]]).all()
    # row 1: no long-term part at all
    assert torch.isneginf(out.long[1]).all()
    assert same(out.fused[1:2], out.short[1:2])
    assert torch.isneginf(out.fused[1, 1]) and torch.isneginf(out.short[1, 1])
    allowed = ~excluded
    for lp in (out.fused, out.short):
        assert torch.allclose(lp.exp().sum(1), torch.ones(2), atol=1e-5)
    assert torch.allclose(out.long[0].exp()[allowed[0]].sum(), torch.tensor(1.0), atol=1e-5)


# -- LongShortScorer -----------------------------------------------------------------------


def scorer(gate: str) -> LongShortScorer:
    torch.manual_seed(0)
    enc = make_encoder("attention", 12, 8, 6, 1, 2, 0.0)
    return LongShortScorer(enc, long_dim=4, gate_hidden=8, gate=gate).eval()


def scorer_args(b: int = 4) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    items = torch.randint(1, 13, (b, 6), generator=g)
    items[0, :3] = 0
    types = torch.zeros_like(items)
    gaps = torch.full(items.shape, 60.0)
    long_vec = torch.randn(b, 4, generator=g)
    long_logits = torch.randn(b, 12, generator=g)
    since = torch.tensor([10.0, 1e5, 60.0, 3600.0])[:b]
    session = torch.tensor([5.0, 1.0, 2.0, 9.0])[:b]
    history = torch.tensor([100.0, 3.0, 40.0, 7.0])[:b]
    known = torch.tensor([True, True, True, False])[:b]
    long_logits[~known] = float("nan")
    excluded = torch.zeros(b, 12, dtype=torch.bool)
    excluded.scatter_(1, (items - 1).clamp(min=0), items > 0)
    return items, types, gaps, long_vec, long_logits, since, session, history, known, excluded


@pytest.mark.parametrize("gate", ["learned", "fixed"])
def test_scorer_gate_kinds(gate: str) -> None:
    s = scorer(gate)
    args = scorer_args()
    with torch.no_grad():
        out = s(*args)
        w = out.long_weight
    assert w[3] == 0.0, "a user the snapshot lacks gets w = 0"
    assert ((w[:3] > 0) & (w[:3] < 1)).all()
    # the forward pass is the head over the encoder's last position
    with torch.no_grad():
        head = s.head(s.short_state(*args[:3]), *args[3:])
    for a, b in zip(out, head, strict=True):
        assert same(a, b)
    assert torch.isneginf(out.fused[args[-1]]).all()
    if gate == "fixed":
        assert torch.allclose(w[:3], torch.sigmoid(s.fixed_logit).expand(3))
        with torch.no_grad():
            s.fixed_logit.fill_(2.0)
            assert torch.allclose(s(*args).long_weight[:3], torch.sigmoid(torch.tensor(2.0)))
    else:
        assert len({round(float(v), 6) for v in w[:3]}) == 3, "the learned gate is per user"


def test_scorer_refuses_an_unknown_gate() -> None:
    enc = make_encoder("gru", 12, 8, 6, 1, 2, 0.0)
    with pytest.raises(ValueError, match="learned, fixed, off"):
        LongShortScorer(enc, long_dim=4, gate="mlp")


# -- the contrastive term ------------------------------------------------------------------


def test_short_long_contrastive_is_info_nce_over_cosines() -> None:
    torch.manual_seed(0)
    s, m = torch.randn(5, 8), torch.randn(5, 8)
    got = short_long_contrastive(s, m, temperature=0.2)
    cos = torch.nn.functional.cosine_similarity(s[:, None], m[None], dim=-1) / 0.2
    want = -torch.log_softmax(cos, dim=1).diagonal().mean()
    assert torch.allclose(got, want, atol=1e-5)
    # cosine: the length of the vectors does not matter; aligned pairs cost less
    assert torch.allclose(short_long_contrastive(3 * s, 0.5 * m, 0.2), got, atol=1e-5)
    aligned = short_long_contrastive(m + 0.01 * s, m, 0.2)
    assert float(aligned) < float(got) and float(aligned) < 0.1


def test_short_state_in_length_chunks_is_the_same_function() -> None:
    """Rows are encoded in chunks of similar length, each cut to its longest window: the
    result is each row's own (and their order is kept), whatever the mix of lengths."""
    s = scorer("learned").eval()
    g = torch.Generator().manual_seed(5)
    b, t = 23, 6  # the encoder's max_len
    items = torch.randint(1, 13, (b, t), generator=g)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    items[torch.arange(t)[None, :] < (t - lengths)[:, None]] = 0  # left padding
    types = torch.randint(0, 4, (b, t), generator=g)
    gaps = torch.rand(b, t, generator=g) * 1e4
    with torch.no_grad():
        whole = s.short_state(items, types, gaps, chunk=b)
        chunked = s.short_state(items, types, gaps, chunk=4)
        alone = torch.cat([s.encoder(items[k : k + 1, t - int(lengths[k]) :],
                                     types[k : k + 1, t - int(lengths[k]) :],
                                     gaps[k : k + 1, t - int(lengths[k]) :])[:, -1]
                           for k in range(b)])  # fmt: skip
    assert torch.allclose(chunked, whole, atol=1e-5)
    assert torch.allclose(chunked, alone, atol=1e-5)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_byte_dropout_drops_p_of_the_elements_and_keeps_the_mean(p: float) -> None:
    drop = ByteDropout(p)
    x = torch.ones(1000, 1000)
    torch.manual_seed(0)
    y = drop(x)
    dropped = float((y == 0).double().mean())
    q = round(p * 256) / 256  # p to the nearest 1/256
    assert abs(dropped - q) < 0.003 and abs(q - p) <= 1 / 512
    assert float(y.double().mean()) == pytest.approx(1.0, abs=0.005)
    assert torch.unique(y).tolist() == [0.0, pytest.approx(1 / (1 - q))]
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)  # seeded like every other draw
    drop.eval()
    assert drop(x) is x


def test_byte_dropout_passes_gradients_through_the_kept_elements() -> None:
    drop = ByteDropout(0.5)
    x = torch.randn(64, 32, requires_grad=True)
    y = drop(x)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.equal(x.grad != 0, kept) and torch.allclose(x.grad[kept], torch.tensor(2.0))
    with pytest.raises(ValueError, match="dropout"):
        ByteDropout(1.0)
    assert ByteDropout(0.0)(x) is x


def test_the_encoder_uses_byte_dropout_without_new_weights() -> None:
    enc = CausalSelfAttentionEncoder(20, dim=8, max_len=6, layers=2, heads=2, dropout=0.3)
    assert not any(isinstance(m, nn.Dropout) for m in enc.modules())
    assert sum(isinstance(m, ByteDropout) for m in enc.modules()) == 1 + 3 * 2
    # the parameters are those of the stock Transformer blocks: old snapshots still load
    stock = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 32, 0.3, batch_first=True,
                                                             norm_first=True), 2,
                                   enable_nested_tensor=False)  # fmt: skip
    assert {k.removeprefix("blocks.") for k in enc.state_dict() if k.startswith("blocks.")} == set(
        stock.state_dict()
    )
