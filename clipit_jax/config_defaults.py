"""The paper's settings (CLIP-It, NeurIPS 2021, supplementary section 2): the one place
defaults live.

Every config under configs/ starts from `get_config()` (`configs/default.py` re-exports
it) and changes only what it must. A run's saved config.json is merged over these
defaults when loaded (`merge_saved`), so a field added after the run was saved takes its
default, and the code reads every field directly, without fallbacks.
"""

from collections.abc import Mapping
from typing import Any

import ml_collections


def get_model_config() -> ml_collections.ConfigDict:
  """The CLIP-It network: language-guided attention + frame-scoring transformer."""
  model = ml_collections.ConfigDict()
  model.frame_dim = 512  # Input frame features: 512 for CLIP ViT-B/32, 1024 for GoogLeNet pool5.
  model.input_norm = (
    True  # LayerNorm on each input frame and text vector (CLIP gives unit vectors).
  )
  # Subtract the mean of the window's frames from each frame before everything else (not in
  # the paper; docs/learning.md says when it helps).
  model.center_frames = False
  # Moving average of this many steps (odd; 1: none) over the frame logits, inside the model
  # (not in the paper; docs/learning.md gives the evidence).
  model.score_smoothing = 1
  model.text_dim = 512  # CLIP text embeddings.
  model.width = 512  # Model width after the input projections.
  # How the text enters the attention as key/value:
  #   'concat': M caption embeddings -> [M*512] -> Dense -> one 512-d token (the paper, generic).
  #   'tokens': one token per caption (L = M), each projected to the model width.
  #   'query':  the CLIP-encoded query is the single token (query-focused summaries).
  model.text_fusion = 'concat'
  model.num_captions = 7  # M; 15 for hour-long videos.
  # The cross-modal block between frames and text: 'attention' (the paper's language-guided
  # multi-head attention) or 'mlp' (the paper's Table 3 ablation: an MLP on each frame
  # concatenated with the mean text token).
  model.cross_modal = 'attention'
  model.language_heads = 4
  model.null_text_token = True  # A learned null key/value: frames can attend away from the text.
  model.num_heads = 8
  model.num_encoder_layers = 6
  model.num_decoder_layers = 6
  model.mlp_dim = 2048
  model.head_mlp_dim = 256  # Hidden width of the score head.
  model.dropout_rate = 0.1
  model.attention_dropout_rate = 0.1
  model.window = 256  # Frames per transformer input window.
  # The attention of the multi-head layers: 'einsum' (Flax's dot_product_attention) or
  # 'dot_product_attention' (jax.nn's: XLA, or cuDNN's fused kernel on a GPU; Flax's where
  # attention dropout is drawn). The same parameters and results.
  model.attention = 'einsum'

  model.dtype = 'float32'  # Compute dtype ('bfloat16' on accelerators); parameters stay float32.
  # Operands of the weight matmuls only ('bfloat16': mixed precision with float32 sums and
  # everything else float32; faster on CPUs with AVX512-BF16: benchmarks/README.md).
  model.matmul_dtype = 'float32'
  return model


def get_config() -> ml_collections.ConfigDict:
  """Model, losses and optimisation as in the paper."""
  config = ml_collections.ConfigDict()
  config.model = get_model_config()

  config.loss = 'supervised'  # 'supervised': a*Lc + b*Ld + l*Lr; 'unsupervised': Ld + Lr.
  # What Lc supervises the scores with: 'keyframes' (the paper: 0/1 keyframe labels,
  # gtsummary) or 'importance' (the annotators' mean score, gtscore, as PGL-SUM, DSNet
  # and VASNet train).
  config.target = 'keyframes'
  # The unsupervised loss adds |mean score - summary_rate| (SUM-GAN's sparsity term):
  # with Ld + Lr alone the scores all drift to about 0.95 (docs/learning.md). None: the
  # paper's Ld + Lr only.
  config.summary_rate = 0.15
  config.loss_weights = ml_collections.ConfigDict(
    dict(classification=0.5, diversity=0.3, reconstruction=0.2)
  )

  config.optimizer = 'adam'  # 'adam': coupled L2 weight decay (PyTorch Adam); 'adamw': decoupled.
  config.learning_rate = 1e-4
  config.lr_schedule = 'constant'  # 'constant' (the paper) or 'cosine' (after warmup_steps).
  config.warmup_steps = 0
  config.weight_decay = 1e-3
  config.num_epochs = 20
  config.batch_size = 100  # Global batch of windows, split over all devices.
  # Windows per forward/backward pass on a device; their gradients are summed, so the update
  # is the whole batch's. None: train_step.CPU_MICROBATCH on a CPU (the fastest per window in
  # benchmarks/train_step.py's micro rows), the whole batch on accelerators; 0: the whole batch.
  config.microbatch_size = ml_collections.config_dict.placeholder(int)
  # Data parallelism over all devices of all hosts: 'shard_map' (jax.shard_map on a mesh) or
  # 'pmap' (jax.pmap, in maintenance mode since JAX 0.8); the same per-device train step.
  config.parallelism = 'shard_map'
  config.axis_name = 'data'  # The device axis over which gradients are averaged.
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.dataset = 'summe'  # 'summe' | 'tvsum' | 'synthetic' | 'qfvs'.
  config.data.setting = 'standard'  # 'standard' | 'augment' | 'transfer'.
  config.data.split = 0  # Which of the 5 standard splits (0-4), or entry of the splits file.
  # A split file of the field (JSON of vsumm-reinforce/VASNet/PGL-SUM, YAML of DSNet) to
  # train and test on the videos it lists; None: our seeded splits (datasets/settings.py).
  config.data.splits_file = ml_collections.config_dict.placeholder(str)
  config.data.features = (
    'clip'  # Builder config: 'clip' (512-d, the paper) or 'googlenet' (1024-d).
  )
  config.data.data_dir = ml_collections.config_dict.placeholder(str)  # TFDS data_dir.
  config.data.manual_dir = ml_collections.config_dict.placeholder(str)  # Raw files.
  config.data.validation_fraction = 0.1  # Of the training videos, for the best checkpoint.
  config.data.part = 'generic'  # Synthetic benchmark: 'generic' or 'query' (query-focused).

  config.best_metric = 'f1'  # Validation metric that picks the 'best' checkpoint.
  # Evaluated after every epoch, logged as <name>_<metric> (evaluators.EVALUATORS): 'val'
  # (always: it picks the best checkpoint) and 'test'.
  config.evaluators = ('val',)
  # Also evaluate the test videos after every epoch, logged as test_* in metrics.jsonl, for
  # learning curves and the literature's optimistic "best test epoch". Never used to
  # choose a checkpoint.
  config.test_every_epoch = False
  config.progress = True  # Progress bars.
  # Stop (as an interruption would) after this epoch; running again resumes.
  config.stop_after_epoch = ml_collections.config_dict.placeholder(int)
  return config


# Fields a saved config must hold: they fix the shapes of the saved parameters, so a
# default in their place would describe another model.
SAVED_REQUIRED = tuple(
  f'model.{k}'
  for k in (
    'frame_dim',
    'text_dim',
    'width',
    'text_fusion',
    'num_captions',
    'cross_modal',
    'language_heads',
    'null_text_token',
    'num_heads',
    'num_encoder_layers',
    'num_decoder_layers',
    'mlp_dim',
    'head_mlp_dim',
    'input_norm',
  )
)


def merge_saved(saved: Any) -> ml_collections.ConfigDict:
  """The defaults with a saved config (config.json's object) merged over them.

  Raises ValueError naming the field: an unknown key, a value of the wrong type (a
  string or list for a number, ...), or a missing `SAVED_REQUIRED` field.
  """
  config = get_config()
  _merge_into(config, saved, '')
  for field in SAVED_REQUIRED:
    section, key = field.split('.')
    if key not in saved.get(section, {}):
      raise ValueError(f"{field} is missing (it fixes the saved parameters' shapes)")
  return config


def _merge_into(config: ml_collections.ConfigDict, saved: Any, prefix: str) -> None:
  if not isinstance(saved, Mapping):
    where = prefix.rstrip('.') or 'the config'
    raise ValueError(f'{where} must be an object of fields, got {type(saved).__name__}')
  for key, value in saved.items():
    name = prefix + key
    if key not in config:
      raise ValueError(f'unknown field {name!r} (not in clipit_jax/config_defaults.py)')
    if isinstance(config[key], ml_collections.ConfigDict):
      _merge_into(config[key], value, name + '.')
      continue
    if isinstance(config[key], tuple) and isinstance(value, list):
      value = tuple(value)  # JSON has no tuples.
    try:
      config[key] = value
    except TypeError:
      wanted = type(config[key]).__name__
      raise ValueError(f'{name} must be of type {wanted}, got {value!r}') from None
