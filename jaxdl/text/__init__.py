"""Text utilities shared by the sequence families: tokenisers and the n-gram baseline."""
