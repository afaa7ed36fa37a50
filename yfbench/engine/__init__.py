"""Training loop, checkpoint/resume and the run contract."""
