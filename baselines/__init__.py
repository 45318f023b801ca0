"""Baselines on the very same networks as iWGAN (Appendix D), behind the same interface
(see :mod:`iwgan.core.methods`), so that differences in results come from the methods."""
