"""Persistent contrastive chains (stage2.contrastive=persistent, training/chains.py): the buffer's
draws, restarts and ages; its place in last.pt; resume bit for bit; the config's checks."""
import json

import pytest
import torch

from conftest import TINY_DIGITS
from dualat.checkpoint import safe_load
from dualat.config import load_config
from dualat.distributed import check_config
from dualat.errors import DualatError
from dualat.training import train
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


@pytest.mark.parametrize("override, needle", [
    ("stage2.contrastive=lasting", "stage2.contrastive='lasting' is not one of fresh, persistent"),
    ("stage2.buffer_size=0", "stage2.buffer_size must hold at least one batch"),
    ("stage2.buffer_size=-5", "stage2.buffer_size must hold at least one batch"),
    ("stage2.reinit_prob=1.5", "stage2.reinit_prob must be in [0, 1]"),
    ("stage2.reinit_prob=-0.1", "stage2.reinit_prob must be in [0, 1]"),
    ("stage2.max_age=0", "stage2.max_age must be at least 1"),
    ("stage2.max_age=-3", "stage2.max_age must be at least 1"),
])
def test_bad_values_are_refused_with_one_line_naming_the_key(override, needle):
    with pytest.raises(DualatError) as err:
        load_config("digits", ["stage2.contrastive=persistent", override])
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_the_command_line_says_a_bad_value_in_one_line(capsys):
    from dualat.cli import main
    assert main(["train", "digits", "stage2.contrastive=persistent", "stage2.max_age=0", "--out", "unused"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["dualat: error: config key stage2.max_age must be at least 1 (PGD steps since a chain's seed), got 0"]


def test_the_default_is_fresh_and_torchrun_refuses_persistent_chains():
    cfg = load_config("fashion_mnist")
    assert (cfg.stage2.contrastive, cfg.stage2.buffer_size, cfg.stage2.reinit_prob) == ("fresh", 10000, 0.05)
    check_config(cfg, 2)
    with pytest.raises(DualatError, match="stage2.contrastive=persistent keeps its chains in one process"):
        check_config(load_config("fashion_mnist", ["stage2.contrastive=persistent"]), 2)


# stage 1 is only a starting point here; stage 2's 16 iterations see T rise from 2, ages pass max_age
PERSISTENT = TINY_DIGITS + ["stage1.iterations=5", "stage2.iterations=16", "stage2.contrastive=persistent",
                            "stage2.buffer_size=200", "stage2.max_age=5", "stage2.reinit_prob=0.1",
                            "eval.step_sweep=false", "eval.every=100", "eval.n_test=50", "eval.n_samples=20"]


@pytest.fixture(scope="module")
def persistent_run(tmp_path_factory):
    return train("digits", PERSISTENT, out=tmp_path_factory.mktemp("runs") / "persistent", show_progress=False)


def test_the_chains_are_in_last_pt_and_the_log_counts_passes_and_ages(persistent_run):
    last = safe_load(persistent_run / "last.pt")
    ch = last["chains"]
    assert ch["images"].shape == (200, 1, 8, 8) and ch["images"].dtype == torch.float32
    assert torch.equal(ch["labels"], torch.arange(200) % 10) and ch["ages"].dtype == torch.int64
    assert 0 < int(ch["ages"].max()) <= 5 + last["curriculum"]["T"] and ch["draws"] == 16 * 64
    assert 0 < ch["restarts"] < ch["draws"]
    assert set(last["generators"]) == {"seeds", "pgd", "chains"}
    records = [json.loads(line) for line in (persistent_run / "metrics.jsonl").read_text().splitlines()]
    stage2 = [r for r in records if r.get("stage") == 2 and "bce" in r]
    assert stage2 and all({"buffer_age", "contrastive_age", "restarted", "contrastive_passes", "batch_passes"}
                          <= r.keys() for r in stage2)
    assert all(r["contrastive_passes"] == r["T"] and r["batch_passes"] == pytest.approx(r["T"] + 5 + 3) for r in stage2)
    summary = json.loads((persistent_run / "summary.json").read_text())["stage2"]
    assert summary["buffer_age"] >= 0 and 0 < summary["chain_restart_rate"] < 1


def test_resume_halfway_gives_the_same_weights_and_chains_bit_for_bit(persistent_run, tmp_path):
    half = train("digits", PERSISTENT + ["stage2.iterations=8"], out=tmp_path / "half", show_progress=False)
    train(None, ["stage2.iterations=16"], resume=half, show_progress=False)
    a, b = safe_load(persistent_run / "last.pt"), safe_load(half / "last.pt")
    assert a["iteration"] == b["iteration"] == 16 and a["curriculum"] == b["curriculum"]
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for k, v in a["ema"]["model"].items():
        assert torch.equal(v, b["ema"]["model"][k]), k
    for k in ("images", "labels", "ages"):
        assert torch.equal(a["chains"][k], b["chains"][k]), k
    assert (a["chains"]["restarts"], a["chains"]["draws"]) == (b["chains"]["restarts"], b["chains"]["draws"])
    for k in a["generators"]:
        assert torch.equal(a["generators"][k], b["generators"][k]), k


def test_fresh_chains_keep_no_buffer_in_last_pt(tmp_path):
    run = train("digits", TINY_DIGITS + ["stage1.iterations=2", "stage2.iterations=2", "eval.step_sweep=false",
                                         "eval.every=100", "eval.n_test=50", "eval.n_samples=20"],
                out=tmp_path / "fresh", show_progress=False)
    last = safe_load(run / "last.pt")
    assert "chains" not in last and set(last["generators"]) == {"seeds", "pgd"}
