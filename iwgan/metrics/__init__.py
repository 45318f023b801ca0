"""Metrics, registered by a name that carries their protocol: mode coverage, exact W1 and
the encoder metrics of a mixture run (mixture.py); FID and FD-<data>CNN (fid.py)."""
