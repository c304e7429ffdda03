"""Media, the base layer: video I/O, the CLIP and captioner encoders, caption files, the feature cache.

  video.py        decoding at a fixed rate, lazily; writing the summary video with its audio
  encoders.py     CLIP image and text encoders (hub, local or the offline tiny CLIP), feature cache
  captions.py     caption files (SRT, VTT, plain), the image captioner, uniform caption sampling
  clip_model.py   our Flax CLIP (vision and text transformers, projections) for any hub CLIPModel
  captioner_model.py  our Flax ViT + GPT-2 captioner (the hub's ViT-GPT2), greedy and beam decoding
  hub.py          checkpoints by hub name or directory: huggingface_hub, safetensors -> Flax, no torch
  tokenizer.py    CLIP's and GPT-2's BPE with the `tokenizers` library
  beam_models.py  Beam transforms whose workers load their models once

The dataset builders (`clipit_jax.datasets`) and the product (`clipit_jax.summarize`) both use
this package; it imports neither (only the base modules `files`, `cli` and `arrays`).
"""
