"""BiGAN (Donahue et al. 2016) on the shared Q, G and critic: ALI (baselines/ali.py) with a
deterministic encoder, Q(x) = the shared encoder's output, and nothing else changed.

The discriminator D(x, z), its losses, the 1:1 schedule and the logs are ALI's very
functions (see baselines/ali.py for their definitions); only the models (no ``log_std``)
and the phases (no ``code_noise`` draw) differ, and those come from ALI's own builders
with ``stochastic=False``. The runs the suite recorded as ``ali`` before ALI's encoder
became stochastic are BiGAN's (``python -m iwgan migrate-bigan`` renamed them).
"""

from __future__ import annotations

from baselines import ali
from iwgan.core.methods import Models

HAS_ENCODER = True
IMAGES = True
OPTIONS: dict = {}
LOGS = ali.LOGS
critic_loss, generator_loss = ali.critic_loss, ali.generator_loss


def build(cfg) -> Models:
    return ali.models(cfg, stochastic=False)


def phases(cfg):
    return ali.phases_of(stochastic=False)
