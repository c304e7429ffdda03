"""Media, the base layer: video I/O, the CLIP and captioner encoders, caption files, the feature cache.

  video.py        decoding at a fixed rate, lazily; writing the summary video with its audio
  encoders.py     CLIP image and text encoders (hub, local or the offline tiny CLIP), feature cache
  captions.py     caption files (SRT, VTT, plain), the image captioner, uniform caption sampling
  beam_models.py  Beam transforms whose workers load their models once

The dataset builders (`clipit_jax.datasets`) and the product (`clipit_jax.summarize`) both use
this package; it imports neither (only the base modules `files`, `cli` and `arrays`).
"""
