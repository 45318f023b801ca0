"""The machinery every experiment shares: configs, devices, seeds, the trainer and its
stacked members, run records and results tables, the grid runner."""
