"""The training engine: devices, the loop, checkpoints and what a run leaves in its workdir."""
