"""The weighted LightGCN module: propagation equals the explicit normalised-adjacency math."""

from __future__ import annotations

import torch

from models.nn.lightgcn import (
    WeightedLightGCN,
    bpr_loss,
    edge_weights,
    normalized_adjacency,
    spmm,
)


def test_propagation_equals_the_normalised_adjacency_computation() -> None:
    torch.manual_seed(0)
    users = torch.tensor([0, 0, 1, 2, 2])
    items = torch.tensor([0, 1, 1, 0, 2])
    w = torch.tensor([1.0, 3.0, 0.5, 2.0, 1.0])
    model = WeightedLightGCN(num_users=3, num_items=3, dim=4, num_layers=2)
    edge_index = WeightedLightGCN.bipartite_edges(users, items, 3)
    got = model.get_embedding(edge_index, torch.cat([w, w]))

    a = torch.zeros(6, 6)
    for u, i, wt in zip(users.tolist(), items.tolist(), w.tolist(), strict=True):
        a[u, 3 + i] = a[3 + i, u] = wt
    d = a.sum(1).pow(-0.5)
    norm = d[:, None] * a * d[None, :]
    x0 = model.embedding.weight.detach()
    x1 = norm @ x0
    x2 = norm @ x1
    assert torch.allclose(got, (x0 + x1 + x2) / 3, atol=1e-6)
    u_emb, i_emb = model(edge_index, torch.cat([w, w]))
    assert u_emb.shape == (3, 4) and i_emb.shape == (3, 4)


def test_edge_weights_halve_every_half_life() -> None:
    w = edge_weights(
        torch.tensor([2.0, 2.0]), torch.tensor([100.0, 90.0]), now=100.0, half_life_s=10.0
    )
    assert torch.allclose(w, torch.tensor([2.0, 1.0]))


def test_bpr_training_separates_observed_from_unobserved_items() -> None:
    torch.manual_seed(0)
    users = torch.tensor([0, 0, 1, 1])
    items = torch.tensor([0, 1, 2, 3])
    model = WeightedLightGCN(num_users=2, num_items=4, dim=8, num_layers=1)
    edge_index = WeightedLightGCN.bipartite_edges(users, items, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    neg = torch.tensor([2, 3, 0, 1])  # the other user's items
    for _ in range(100):
        u, i = model(edge_index)
        loss = bpr_loss((u[users] * i[items]).sum(1), (u[users] * i[neg]).sum(1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    u, i = model(edge_index)
    scores = u @ i.T
    assert scores[0, :2].min() > scores[0, 2:].max() and scores[1, 2:].min() > scores[1, :2].max()


def test_precomputed_normalized_adjacency_gives_the_same_propagation() -> None:
    torch.manual_seed(1)
    users = torch.tensor([0, 1, 1, 2, 3])
    items = torch.tensor([1, 0, 2, 2, 1])
    w = torch.tensor([1.0, 2.0, 0.5, 4.0, 1.5])
    model = WeightedLightGCN(num_users=4, num_items=3, dim=5, num_layers=3)
    edge_index = WeightedLightGCN.bipartite_edges(users, items, 4)
    ww = torch.cat([w, w])
    adj = normalized_adjacency(edge_index, ww, 7)
    assert torch.allclose(model.get_embedding(adj), model.get_embedding(edge_index, ww), atol=1e-6)
    with torch.no_grad():  # the LGConv path
        assert torch.allclose(model.get_embedding(adj), model.get_embedding(edge_index, ww),
                              atol=1e-6)  # fmt: skip
    # the symmetric backward gives the gradient autograd computes through LGConv
    target = torch.randn(7, 5)
    (model.get_embedding(adj) * target).sum().backward()
    fast = model.embedding.weight.grad.clone()
    model.embedding.weight.grad = None
    (model.get_embedding(edge_index, ww) * target).sum().backward()
    assert torch.allclose(fast, model.embedding.weight.grad, atol=1e-6)


def test_spmm_equals_the_sparse_product_and_lgconv() -> None:
    torch.manual_seed(2)
    users = torch.randint(0, 20, (200,))
    items = torch.randint(0, 15, (200,))
    edge_index = WeightedLightGCN.bipartite_edges(users, items, 20)
    adj = normalized_adjacency(edge_index, torch.rand(400) + 0.1, 35)
    x = torch.randn(35, 8)
    assert torch.allclose(spmm(adj, x), torch.sparse.mm(adj, x), atol=1e-6)
    nodes_without_edges = normalized_adjacency(edge_index, None, 40)  # rows 35..39 are empty
    out = spmm(nodes_without_edges, torch.randn(40, 8))
    assert out.shape == (40, 8) and (out[35:] == 0).all()
