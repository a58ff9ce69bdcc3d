"""Training in the loop: tasks, the training loop, and replay on the RTL."""
