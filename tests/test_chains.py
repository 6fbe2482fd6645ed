"""Persistent contrastive chains (training/chains.py): the buffer's draws, restarts and ages."""
import pytest
import torch

from dualat.errors import DualatError
from dualat.training.chains import ChainStarts, ContrastiveChains

K, SHAPE = 3, (1, 2, 2)


def seeds(n, y, g):
    """Fresh seeds in [0, 0.5): a buffered chain is marked 1.0 below, so starts tell restarts apart."""
    return 0.5 * torch.rand((n, *SHAPE), generator=g)


def chains(size=30, reinit_prob=0.0, max_age=100):
    return ContrastiveChains(size, ChainStarts(seeds, K), reinit_prob, max_age, torch.Generator().manual_seed(0))


def test_the_buffer_holds_labelled_chains_of_age_zero_and_draws_the_asked_class():
    c = chains(size=31)
    assert c.images.shape == (31, *SHAPE) and c.images.dtype == torch.float32
    assert torch.equal(c.labels, torch.arange(31) % K) and c.labels.dtype == torch.int64
    assert c.ages.dtype == torch.int64 and int(c.ages.sum()) == 0
    g, s = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    y = torch.randint(0, K, (500,), generator=g)
    idx, starts, ages = c.draw(y, 3, g, s)
    assert torch.equal(c.labels[idx], y) and starts.shape == (500, *SHAPE)
    assert len(set(idx.tolist())) == 31          # every chain of every class can be drawn (10 or 11 of each)


def test_reinit_prob_restarts_that_share_of_the_drawn_chains():
    g, s = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    for p in (0.0, 0.3, 1.0):
        c = chains(size=300, reinit_prob=p)
        c.images.fill_(1.0)                       # every chain has moved away from its seed
        fresh = 0
        for _ in range(20):
            y = torch.randint(0, K, (100,), generator=g)
            idx, starts, ages = c.draw(y, 2, g, s)
            restarted = starts.flatten(1).amax(1) < 1.0
            fresh += int(restarted.sum())
            assert torch.equal(ages[restarted], torch.zeros_like(ages[restarted]))
        assert c.restarts == fresh and c.draws == 2000
        assert abs(fresh / 2000 - p) < 0.04, (p, fresh)


def test_max_age_restarts_a_chain_that_would_pass_it_and_put_ages_the_chains_by_t():
    c = chains(size=K, max_age=10)                # one chain per class: each draw takes it
    g, s = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    y = torch.arange(K)
    seen = []
    for _ in range(6):
        idx, starts, ages = c.draw(y, 4, g, s)
        assert torch.equal(idx, y)
        c.put(idx, torch.ones_like(starts), ages + 4)
        seen.append(int(c.ages[0]))
    assert seen == [4, 8, 4, 8, 4, 8]             # 8 + 4 > 10: restarted, then 4 steps old again
    assert int(c.ages.max()) <= 10 and c.restarts == 2 * K
    assert c.mean_age() == 8.0
    idx, _, ages = c.draw(y, 0, g, s)             # T = 0: chains stay where they are, and as old
    assert torch.equal(ages, torch.full((K,), 8))


def test_a_chain_drawn_twice_keeps_its_later_copy_with_its_own_age():
    c = chains(size=K)
    idx = torch.tensor([1, 1, 2])
    x = torch.stack([torch.full(SHAPE, v) for v in (0.2, 0.7, 0.9)])
    c.put(idx, x, torch.tensor([3, 5, 7]))
    assert torch.equal(c.images[1], torch.full(SHAPE, 0.7)) and c.ages.tolist() == [0, 5, 7]


def test_state_round_trip_and_mismatches_are_refused():
    c = chains()
    c.put(torch.tensor([4]), torch.ones((1, *SHAPE)), torch.tensor([6]))
    c.restarts, c.draws = 3, 9
    d = chains()
    d.load_state_dict(c.state_dict())
    assert torch.equal(d.images, c.images) and torch.equal(d.ages, c.ages) and (d.restarts, d.draws) == (3, 9)
    with pytest.raises(DualatError, match="stage2.buffer_size=30"):
        chains(size=60).load_state_dict(c.state_dict())
    with pytest.raises(DualatError, match="must give each of the 3 classes a chain"):
        chains(size=2)
