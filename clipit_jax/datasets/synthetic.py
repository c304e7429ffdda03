"""`clipit_synthetic`: a benchmark that needs nothing from outside (the embedded default).

Videos of coloured shapes in motion (synthetic_scenes.py) are written as real H.264
mp4 files with PyAV, decoded again at 2 fps and encoded by the configured CLIP (the
tiny random CLIP built in code by default; any CLIP by name or path through a custom
config), so the whole path from video file to summary is exercised offline. Two splits:

- 'videos': generic summaries. Importance follows the rarity of a scene's object in
  its video; captions are sentences describing each scene.
- 'queries': query-focused summaries of the same videos: one example per (video,
  query "<colour> <shape>"), whose ground truth depends on the query, so a model that
  ignores the query cannot do well.

Both carry the benchmarks' fields (features at `picks`, gtscore, gtsummary, KTS shots
as change_points, user_summary and 1-5 user_scores of 5 simulated annotators) and are
evaluated exactly like them.
"""

import os

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from clipit_jax import input_pipeline
from clipit_jax import protocol
from clipit_jax.datasets import annotators
from clipit_jax.datasets import loading
from clipit_jax.datasets import registry
from clipit_jax.datasets import settings
from clipit_jax.datasets import summe_tvsum
from clipit_jax.datasets import synthetic_scenes as scenes_lib
from clipit_jax.media import encoders
from clipit_jax.media import video as video_io

SOURCE_FPS = 8.0
SAMPLE_FPS = 2.0
IMAGE_SIZE = 64
NUM_USERS = 5
QUERIES_PER_VIDEO = 3


class SyntheticConfig(tfds.core.BuilderConfig):
  """How many videos, from which seed, encoded by which CLIP."""

  def __init__(
    self, *, clip_model: str = encoders.TINY, num_videos: int = 100, seed: int = 0, **kwargs
  ):
    super().__init__(**kwargs)
    self.clip_model = clip_model
    self.num_videos = num_videos
    self.seed = seed


def example_features() -> tfds.features.FeaturesDict:
  """The benchmark schema plus the query (empty for generic summaries)."""
  features = dict(summe_tvsum.example_features(summe_tvsum.TEXT_DIM))
  features['query'] = tfds.features.Text()
  features['query_embedding'] = tfds.features.Tensor(
    shape=(None, summe_tvsum.TEXT_DIM), dtype=np.float32
  )
  return tfds.features.FeaturesDict(features)


def change_points_from_steps(
  step_shots: np.ndarray, picks: np.ndarray, n_frames: int
) -> np.ndarray:
  """KTS shots over sampled steps `[shots, 2]` -> inclusive source-frame ranges `[shots, 2]`."""
  starts = picks[step_shots[:, 0]].copy()
  starts[0] = 0
  ends = np.append(starts[1:] - 1, n_frames - 1)
  return np.stack([starts, ends], axis=1).astype(np.int32)


class ClipitSynthetic(tfds.core.GeneratorBasedBuilder):
  """Synthetic videos with generic and query-focused ground truth; builds offline."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Shapes in motion, rarity and query ground truth, 5 annotators.'}
  BUILDER_CONFIGS = [
    SyntheticConfig(name='tiny', description='100 videos encoded by the tiny random CLIP.'),
    SyntheticConfig(
      name='small',
      num_videos=12,
      description='12 videos encoded by the tiny random CLIP: a quick start in seconds.',
    ),
    SyntheticConfig(
      name='vit_b32',
      clip_model=encoders.DEFAULT_CLIP,
      description='100 videos encoded by CLIP ViT-B/32 (needs its weights).',
    ),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=example_features(), metadata=tfds.core.MetadataDict()
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    cfg = self.builder_config
    video_dir = os.path.join(
      os.fspath(dl_manager.download_dir), 'clipit_synthetic_videos', f'{cfg.name}_seed{cfg.seed}'
    )
    os.makedirs(video_dir, exist_ok=True)
    encoder = encoders.load_clip(cfg.clip_model)
    videos = [self._make_video(i, video_dir, encoder) for i in range(cfg.num_videos)]
    keys = [v['key'] for v in videos]
    self.info.metadata.update(
      dataset='synthetic',
      seed=cfg.seed,
      clip_model=cfg.clip_model,
      video_dir=video_dir,
      split_seed=settings.SPLIT_SEED,
      standard_splits=settings.standard_splits(keys),
    )
    return {
      'videos': self._generate_examples(videos, 'generic'),
      'queries': self._generate_examples(videos, 'query'),
    }

  def _make_video(self, index: int, video_dir: str, encoder: encoders.ClipEncoder) -> dict:
    """Renders, writes, decodes and encodes one video; returns what its examples need."""
    rng = np.random.default_rng([self.builder_config.seed, index])
    script = scenes_lib.make_script(rng, SOURCE_FPS, image_size=IMAGE_SIZE)
    path = os.path.join(video_dir, f'video_{index:03d}.mp4')
    frames = np.concatenate([scenes_lib.render_scene(s, IMAGE_SIZE) for s in script])
    video_io.write_frames(path, frames, SOURCE_FPS)
    features, timestamps = encoders.video_features(path, encoder, SAMPLE_FPS)
    n_frames = frames.shape[0]
    picks = np.minimum(np.round(timestamps * SOURCE_FPS).astype(np.int64), n_frames - 1)
    shots = protocol.kts_centred(features)
    change_points = change_points_from_steps(shots, picks, n_frames)
    captions = [s.caption() for s in script]
    present = sorted({s.concept for s in script})
    queries = [present[i] for i in rng.permutation(len(present))[:QUERIES_PER_VIDEO]]
    return dict(
      key=f'video_{index:03d}',
      name=os.path.basename(path),
      script=script,
      index=index,
      features=features,
      picks=picks,
      n_frames=n_frames,
      change_points=change_points,
      captions=captions,
      caption_embeddings=encoder.encode_texts(captions),
      queries=queries,
      query_embeddings=encoder.encode_texts(queries),
    )

  def _example(
    self, video: dict, truth: np.ndarray, query: str, query_embedding: np.ndarray, stream: int
  ):
    """One record; `stream` (0 generic, 1.. per query) seeds its annotators."""
    rng = np.random.default_rng([self.builder_config.seed, video['index'], 1000 + stream])
    user_scores = annotators.annotator_scores(
      truth, scenes_lib.scene_of_frame(video['script']), rng, NUM_USERS, int(round(2 * SOURCE_FPS))
    )
    return dict(
      video_key=video['key'],
      video_name=video['name'],
      features=video['features'],
      picks=video['picks'].astype(np.int32),
      n_frames=video['n_frames'],
      change_points=video['change_points'],
      user_scores=user_scores,
      captions='\n'.join(video['captions']),
      caption_embeddings=video['caption_embeddings'],
      query=query,
      query_embedding=query_embedding,
      **annotators.fields_from_scores(
        user_scores, video['change_points'], video['picks'], video['n_frames']
      ),
    )

  def _generate_examples(self, videos: list[dict], part: str):
    """Generic examples (one per video) or query-focused ones (one per video and query)."""
    for video in videos:
      if part == 'generic':
        truth = scenes_lib.generic_importance(video['script'])
        yield (
          video['key'],
          self._example(video, truth, '', np.zeros((0, summe_tvsum.TEXT_DIM), np.float32), 0),
        )
        continue
      for i, (query, embedding) in enumerate(zip(video['queries'], video['query_embeddings'])):
        truth = scenes_lib.query_importance(video['script'], query)
        yield f'{video["key"]}/{query}', self._example(video, truth, query, embedding[None], i + 1)


def load_synthetic(
  data: ml_collections.ConfigDict, num_captions: int
) -> dict[str, list[input_pipeline.Video]]:
  """The synthetic benchmark's generic ('videos') or query-focused ('queries') part.

  Videos are split 80/20 by the standard split `data.split`; every query of a video
  goes where its video goes.
  """
  if data.part not in ('generic', 'query'):
    raise ValueError(f"unknown synthetic part {data.part!r}; expected 'generic' or 'query'")
  builder = loading.load_builder(
    'synthetic', data.features, data.data_dir, data.manual_dir, needs_manual_dir=False
  )
  source = builder.as_data_source()['videos' if data.part == 'generic' else 'queries']
  records = [source[i] for i in range(len(source))]
  by_video: dict[str, list[dict]] = {}
  for record in records:
    by_video.setdefault(loading.decode_text(record['video_key']), []).append(record)
  chosen = settings.resolve_setting(
    'synthetic', 'standard', data.split, {'synthetic': list(by_video)}
  )
  train, validation = settings.hold_out_validation(chosen['train'], data.validation_fraction)

  def videos(refs):
    out = []
    for _, key in refs:
      for record in sorted(by_video[key], key=lambda r: loading.decode_text(r['query'])):
        out.append(
          loading.benchmark_video('synthetic', record, num_captions)
          if data.part == 'generic'
          else loading.query_video('synthetic', record)
        )
    return out

  return dict(train=videos(train), validation=videos(validation), test=videos(chosen['test']))


_FEATURES = tuple(c.name for c in ClipitSynthetic.BUILDER_CONFIGS)  # 'tiny', 'small', 'vit_b32'
SPEC = registry.register(
  registry.DatasetSpec(name='synthetic', title='Synthetic', features=_FEATURES, load=load_synthetic)
)
