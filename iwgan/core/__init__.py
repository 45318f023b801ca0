"""The method library: the paper's networks (Appendix D), losses, iWGAN's Algorithm 1, the
duality gap of eq. (4) with the stopping rule, and the quality score (Section 4)."""
