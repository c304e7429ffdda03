"""The data sets as TFDS builders, their settings and split files, and reading them."""
