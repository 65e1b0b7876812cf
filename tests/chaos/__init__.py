"""The chaos suite: seeded, replayable faults under a steady mixed load, on real processes."""
