"""Named seed offsets: every random stream a run draws from is `cfg.seed` moved by one of these,
so that "the sample seed" has one name wherever it is used (the policy's one home).

    training_seed(seed, DAT_REAL)   -> seed * 1000 + 11   (the streams and generators of training)
    seed + SAMPLE_SEED              -> the seeds of evaluation samples (FD probe, `dualat eval`, JEM's)
"""
from __future__ import annotations

SAMPLE_SEED = 99   # offset of the seeds / chains whose samples evaluations measure
FLOOR_SEED = 1     # offset of the other split's images drawn for the FD floor (`dualat eval`)
OOD_SEED = 7       # offset of the OOD sets' noise and crops (`dualat eval`)
STEP_SWEEP_SEED = 98  # offset of the seeds of the end-of-stage-2 step sweep (evaluate/stepchoice.py)

# training's streams and generators: training_seed(cfg.seed, part)
STAGE1_STREAM, STAGE1_PGD = 1, 2
DAT_GLOBAL, DAT_REAL, DAT_ADV, DAT_SEEDS, DAT_PGD = 10, 11, 12, 13, 14
DAT_CHAINS = 15  # which persistent chains are drawn and restarted (stage2.contrastive=persistent)
JEM_GLOBAL, JEM_STREAM, JEM_BUFFER, JEM_SGLD = 30, 31, 32, 33


def training_seed(seed: int, part: int) -> int:
    """The seed of one of training's random streams: seed * 1000 + part (parts above)."""
    return seed * 1000 + part


__all__ = ["DAT_ADV", "DAT_CHAINS", "DAT_GLOBAL", "DAT_PGD", "DAT_REAL", "DAT_SEEDS", "FLOOR_SEED", "JEM_BUFFER", "JEM_GLOBAL",
           "JEM_SGLD", "JEM_STREAM", "OOD_SEED", "SAMPLE_SEED", "STAGE1_PGD", "STEP_SWEEP_SEED", "STAGE1_STREAM", "training_seed"]
