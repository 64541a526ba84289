"""Write an evaluation suite from a corpus; see `ragkit.synth.run.synth`."""
