"""The synthetic e-commerce marketplace that `moon synth` writes (see ``world.build_world``)."""
