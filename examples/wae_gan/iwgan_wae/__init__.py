"""WAE-GAN for iwgan-bench (docs/add-a-method.md of the suite walks through it)."""
