"""The published mode-coverage numbers (../shared/docs/protocols.md): the standard protocol
on the literature presets, 2,500 samples, 3 std. They stand beside the suite's numbers in
reports/mode_coverage.md; they are not targets, and the suite compares methods only under
its own identical setup."""

from __future__ import annotations

# (source, method, ring (modes, HQ %), grid (modes, HQ %), spread)
PUBLISHED = [
    ("VEEGAN", "GAN", (1.0, 99.3), (3.3, 0.5), "mean of 5 runs"),
    ("VEEGAN", "ALI", (2.8, 0.13), (15.8, 1.6), "mean of 5 runs"),
    ("VEEGAN", "Unrolled GAN", (7.6, 35.6), (23.6, 16.0), "mean of 5 runs"),
    ("VEEGAN", "VEEGAN", (8.0, 52.9), (24.6, 40.0), "mean of 5 runs"),
    ("GDPP", "WGAN-GP", (6.8, 59.6), (24.2, 28.7), "not given"),
    ("GDPP", "GDPP-GAN", (8.0, 71.7), (24.8, 68.5), "not given"),
    ("PacGAN", "GAN", (6.3, 98.2), (17.3, 94.8), "s.e. over 10 runs"),
    ("PacGAN", "ALI", (6.6, 97.6), (24.1, 95.7), "s.e. over 10 runs"),
    ("PacGAN", "PacGAN2", (7.9, 95.6), (23.8, 91.3), "s.e. over 10 runs"),
]
# Every source's setup, from its public code: the budget is the fact that matters most.
SETUPS = {
    "VEEGAN": ("128-unit ReLU layers, batch 500, Adam 1e-3, about 100,000 iterations (from "
               "a port of its notebook)", 100_000),
    "GDPP": ("G two tanh layers of 128, z dim 256, D two layers of 128, batch 512, Adam G "
             "1e-3 / D 1e-4 (β1 0.5), one step each, 25,000 iterations; its ring has 7 "
             "distinct centres (np.linspace)", 25_000),
    "PacGAN": ("G four layers of 400 with batch norm, D three maxout layers of 200, Adam "
               "1e-4 (β1 0.8), batch 100, about 400,000 updates", 400_000),
}
TABLES = {"VEEGAN": "Table 1", "GDPP": "Table 1", "PacGAN": "Table 1"}
# The suite's methods that the literature reports, by its names.
# ("ali" is ALI's stochastic encoder: the suite's BiGAN is not the published ALI.)
BASELINES = {"gan": "GAN", "ali": "ALI", "wgan_gp": "WGAN-GP"}
MIXTURE_INDEX = {"ring": 2, "grid": 3}


def published(method_name: str, mixture: str) -> list[tuple[str, float, float]]:
    """(source, modes, HQ %) of every published number for that method and mixture."""
    i = MIXTURE_INDEX[mixture]
    return [(row[0], *row[i]) for row in PUBLISHED if row[1] == method_name]
