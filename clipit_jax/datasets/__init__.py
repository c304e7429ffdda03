"""The data sets: one module each (TFDS builder, loader, spec in registry.py), their settings
and split files, and what the loaders share (loading.py). docs/adding_a_dataset.md adds one."""
