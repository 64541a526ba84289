"""Search a space of pipeline settings on a suite; see `ragkit.tune.run.tune`."""
