"""The data: the RING, SPIRAL and GRID mixtures and the image datasets."""
