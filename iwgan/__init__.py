"""iWGAN: an autoencoder WGAN for inference, and the benchmark suite that replicates it."""
