"""The trainer's I/O shell: the training loop, its checkpoints and commits, and the writer loop."""
