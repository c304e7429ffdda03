"""TFDS builders for SumMe, TVSum, YouTube and OVP (`clipit_summe`, `clipit_tvsum`, ...).

One example per video, in one split named 'videos'; which videos train and which test
is the setting's business (`settings.py`), and the five standard splits are written
into the dataset's metadata. Build with, e.g.

    builder = tfds.builder('clipit_summe/googlenet', data_dir=DATA_DIR)
    builder.download_and_prepare()        # reads the manual directory, see below
    videos = builder.as_data_source()['videos']
"""

import functools
import json
import os
from collections.abc import Sequence

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from clipit_jax import arrays
from clipit_jax import input_pipeline
from clipit_jax.datasets import errors
from clipit_jax.datasets import h5_files
from clipit_jax.datasets import loading
from clipit_jax.datasets import registry
from clipit_jax.datasets import settings
from clipit_jax.datasets import split_files
from clipit_jax.datasets import tvsum_annotations
from clipit_jax.media import captions as captions_lib
from clipit_jax.media import encoders
from clipit_jax.media import video as video_io

TEXT_DIM = 512

_MANUAL = """\
Put the benchmark files of Zhang et al. (ECCV 2016), as distributed with every video
summarization code base (e.g. the "datasets" archive of KaiyangZhou/pytorch-vsumm-reinforce),
in the manual directory (`<data_dir>/downloads/manual/` unless you pass another):

  eccv16_dataset_summe_google_pool5.h5
  eccv16_dataset_tvsum_google_pool5.h5
  eccv16_dataset_youtube_google_pool5.h5
  eccv16_dataset_ovp_google_pool5.h5
  ydata-anno.tsv or ydata-anno.tsv.gz   (TVSum only, optional: the per-frame scores of its
                                         20 annotators, from github.com/yalesong/tvsum, for
                                         Kendall tau / Spearman rho)
  video_names/<dataset>.json            (optional: {"video_1": "<name>", ...} where a file
                                         carries no video names)

The `clip` config also needs the raw videos, named as in the files (or the mapping):

  videos/<dataset>/<name>.mp4 (or .avi, .webm, .mkv, .flv, .mpg, .mov, .m4v, .mpeg, .wmv)

SumMe: https://gyglim.github.io/me/vsum/index.html; TVSum: https://github.com/yalesong/tvsum;
YouTube and OVP: https://sites.google.com/site/vsummsite/ .
"""


def find_video(directory: str, name: str) -> str | None:
  """`directory/name.<ext>` for the first of `video_io.VIDEO_EXTENSIONS` that exists, else None."""
  return next(
    (
      os.path.join(directory, name + ext)
      for ext in video_io.VIDEO_EXTENSIONS
      if os.path.exists(os.path.join(directory, name + ext))
    ),
    None,
  )


class BenchmarkConfig(tfds.core.BuilderConfig):
  """Which frame features an example carries.

  With a `clip_model`, the features are that CLIP's image embeddings of the raw video
  frames at `picks`, and `num_captions` frames spread over the video are captioned by
  `captioner` and CLIP-text-encoded (the paper's generic-summary language).
  """

  def __init__(
    self,
    *,
    feature_dim: int,
    clip_model: str | None = None,
    captioner: str | None = None,
    num_captions: int = 15,
    **kwargs,
  ):
    super().__init__(**kwargs)
    self.feature_dim = feature_dim
    self.clip_model = clip_model
    self.captioner = captioner
    self.num_captions = num_captions


def example_features(feature_dim: int) -> tfds.features.FeaturesDict:
  """The per-video schema shared by every benchmark builder (shapes as in h5_files)."""
  zlib = tfds.features.Encoding.ZLIB
  return tfds.features.FeaturesDict(
    {
      'video_key': tfds.features.Text(),
      'video_name': tfds.features.Text(),
      'features': tfds.features.Tensor(shape=(None, feature_dim), dtype=np.float32),
      'gtscore': tfds.features.Tensor(shape=(None,), dtype=np.float32),
      'gtsummary': tfds.features.Tensor(shape=(None,), dtype=np.float32),
      'picks': tfds.features.Tensor(shape=(None,), dtype=np.int32),
      'n_frames': np.int32,
      'change_points': tfds.features.Tensor(shape=(None, 2), dtype=np.int32),
      'user_summary': tfds.features.Tensor(shape=(None, None), dtype=np.int8, encoding=zlib),
      # Per-frame scores of each annotator, for Kendall/Spearman: TVSum's raw 1-5 scores
      # when the annotation file is given, else the 0/1 user summaries.
      'user_scores': tfds.features.Tensor(shape=(None, None), dtype=np.float32, encoding=zlib),
      'captions': tfds.features.Text(),  # Newline-separated, in time order; may be empty.
      'caption_embeddings': tfds.features.Tensor(shape=(None, TEXT_DIM), dtype=np.float32),
    }
  )


def _load_name_mapping(manual_dir: str, dataset: str) -> dict[str, str]:
  path = os.path.join(manual_dir, 'video_names', f'{dataset}.json')
  if not os.path.exists(path):
    return {}
  try:
    with open(path) as f:
      mapping = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise errors.DatasetError(f'{path}: not a JSON object of video key -> name ({e})') from None
  if not isinstance(mapping, dict):
    raise errors.DatasetError(f'{path}: expected a JSON object of video key -> name')
  return {str(k): str(v) for k, v in mapping.items()}


def _tvsum_annotation_path(manual_dir: str) -> str | None:
  for name in ('ydata-anno.tsv', 'ydata-anno.tsv.gz'):
    if os.path.exists(os.path.join(manual_dir, name)):
      return os.path.join(manual_dir, name)
  return None


class _BenchmarkBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared logic of the four h5-file benchmarks; subclasses name the dataset."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'GoogLeNet pool5 features of the eccv16 files.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL
  BUILDER_CONFIGS = [
    BenchmarkConfig(
      name='googlenet',
      feature_dim=1024,
      description="The files' own 1024-d GoogLeNet pool5 features; no captions.",
    ),
    BenchmarkConfig(
      name='clip',
      feature_dim=TEXT_DIM,
      clip_model=encoders.DEFAULT_CLIP,
      captioner=captions_lib.DEFAULT_CAPTIONER,
      description="CLIP ViT-B/32 features of the raw videos at the files' picks, "
      'and 15 generated captions per video; needs the raw videos.',
    ),
    BenchmarkConfig(
      name='clip_tiny',
      feature_dim=TEXT_DIM,
      clip_model=encoders.TINY,
      captioner=captions_lib.TINY,
      description='As clip, with the tiny random CLIP and captioner: offline tests and demos only.',
    ),
  ]
  DATASET = ''  # 'summe', 'tvsum', 'youtube' or 'ovp'.
  _beam = False  # Whether download_and_prepare was given a Beam runner or options.

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=example_features(self.builder_config.feature_dim),
      metadata=tfds.core.MetadataDict(),
      homepage='https://github.com/KaiyangZhou/pytorch-vsumm-reinforce',
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    path = os.path.join(manual_dir, h5_files.h5_filename(self.DATASET))
    if not os.path.exists(path):
      raise errors.DatasetError(f'{path}: not found.\n{_MANUAL}')
    videos = list(
      h5_files.read_h5_videos(
        path, None if self.builder_config.clip_model else self.builder_config.feature_dim
      )
    )
    keys = [v.key for v in videos]
    self.info.metadata['source_files'] = loading.file_stamps(
      manual_dir, self._source_files(path, manual_dir, videos)
    )
    self.info.metadata['dataset'] = self.DATASET
    self.info.metadata['split_seed'] = settings.SPLIT_SEED
    self.info.metadata['standard_splits'] = settings.standard_splits(keys)
    return {'videos': self._generate_examples(videos, manual_dir)}

  def _user_scores(self, videos: list[h5_files.H5Video], manual_dir: str) -> dict[str, np.ndarray]:
    """Per-frame annotator scores where the dataset has them (TVSum); keyed by video key."""
    return {}

  def _source_files(
    self, h5_path: str, manual_dir: str, videos: list[h5_files.H5Video]
  ) -> list[str]:
    """Every file of the manual directory the examples are made from."""
    sources = [h5_path]
    names_path = os.path.join(manual_dir, 'video_names', f'{self.DATASET}.json')
    if os.path.exists(names_path):
      sources.append(names_path)
    if self.builder_config.clip_model:
      names = _load_name_mapping(manual_dir, self.DATASET)
      sources += self._raw_video_paths([names.get(v.key, v.name) for v in videos], manual_dir)
    return sources

  def _raw_video_paths(self, names: list[str], manual_dir: str) -> list[str]:
    directory = os.path.join(manual_dir, 'videos', self.DATASET)
    paths, missing = [], []
    for name in names:
      found = find_video(directory, name)
      (paths if found else missing).append(found or name)
    if missing:
      raise errors.DatasetError(
        f'{directory}: raw videos missing for the clip config: '
        f'{", ".join(missing[:5])}{" ..." if len(missing) > 5 else ""}\n{_MANUAL}'
      )
    return paths

  def _download_and_prepare(self, dl_manager, download_config):
    self._beam = bool(download_config.beam_runner or download_config.beam_options)
    return super()._download_and_prepare(dl_manager, download_config)

  def _generate_examples(self, videos: list[h5_files.H5Video], manual_dir: str):
    cfg = self.builder_config
    names = _load_name_mapping(manual_dir, self.DATASET)
    user_scores = self._user_scores(videos, manual_dir)
    if not cfg.clip_model:
      return (
        (v.key, _example(v, names.get(v.key, v.name), user_scores.get(v.key))) for v in videos
      )
    paths = self._raw_video_paths([names.get(v.key, v.name) for v in videos], manual_dir)
    items = [
      (v, p, names.get(v.key, v.name), user_scores.get(v.key)) for v, p in zip(videos, paths)
    ]
    fn = functools.partial(clip_examples, num_captions=cfg.num_captions)
    load = functools.partial(load_clip_and_captioner, cfg.clip_model, cfg.captioner)
    if self._beam:  # The same work as a Beam pipeline: `tfds build --beam_pipeline_options`.
      # pylint: disable-next=g-import-not-at-top
      from clipit_jax.media import beam_models  # Needs the beam extra.

      return beam_models.map_with_models(items, fn, load)
    return _local_map_with_models(items, fn, load)


def _local_map_with_models(items, fn, load):
  """`beam_models.map_with_models` in this process: `load` once, on first use."""
  models = load()
  for item in items:
    yield from fn(item, *models)


def load_clip_and_captioner(clip_model: str, captioner: str) -> tuple:
  """(`ClipEncoder`, `Captioner`): the models of a clip config."""
  return encoders.load_clip(clip_model), captions_lib.load_captioner(captioner)


def clip_language_and_features(
  video: h5_files.H5Video, path: str, encoder: encoders.ClipEncoder, captioner, num_captions: int
):
  """(features [n_steps, 512], captions, caption embeddings [n, 512]) from the raw video."""
  caption_steps = set(arrays.uniform_indices(len(video.picks), num_captions))
  features, caption_frames, step = [], [], 0
  for chunk in video_io.decode_frames_at(path, video.picks, size=encoder.image_size):
    features.append(encoder.encode_images(chunk))
    caption_frames += [chunk[i] for i in range(len(chunk)) if step + i in caption_steps]
    step += len(chunk)
  fps = video_io.probe(path).fps
  times = video.picks[sorted(caption_steps)] / fps
  texts = [
    c.text for c in captions_lib.generate_captions(np.stack(caption_frames), times, captioner)
  ]
  return np.concatenate(features), texts, encoder.encode_texts(texts)


def clip_examples(item: tuple, encoder: encoders.ClipEncoder, captioner, *, num_captions: int):
  """(video, raw video path, name, user scores or None) -> [(key, example)] of a clip config."""
  video, path, name, user_scores = item
  features, texts, text_embeddings = clip_language_and_features(
    video, path, encoder, captioner, num_captions
  )
  return [(video.key, _example(video, name, user_scores, features, texts, text_embeddings))]


def _example(
  video: h5_files.H5Video,
  name: str,
  user_scores: np.ndarray | None,
  features: np.ndarray | None = None,
  texts: Sequence[str] = (),
  text_embeddings: np.ndarray | None = None,
) -> dict:
  """One video's example; features default to the file's own, language to none."""
  return dict(
    video_key=video.key,
    video_name=name,
    features=video.features if features is None else features,
    gtscore=video.gtscore,
    gtsummary=video.gtsummary,
    picks=video.picks.astype(np.int32),
    n_frames=video.n_frames,
    change_points=video.change_points.astype(np.int32),
    user_summary=video.user_summary,
    user_scores=video.user_summary.astype(np.float32) if user_scores is None else user_scores,
    captions='\n'.join(texts),
    caption_embeddings=(
      np.zeros((0, TEXT_DIM), np.float32) if text_embeddings is None else text_embeddings
    ),
  )


class ClipitSumme(_BenchmarkBuilder):
  """SumMe (Gygli et al. 2014): 25 user videos, 15-18 user summaries each; F1 = max over users."""

  DATASET = 'summe'


class ClipitTvsum(_BenchmarkBuilder):
  """TVSum (Song et al. 2015): 50 videos in 10 categories, 20 annotators; F1 = mean over users."""

  DATASET = 'tvsum'

  def _source_files(
    self, h5_path: str, manual_dir: str, videos: list[h5_files.H5Video]
  ) -> list[str]:
    annotations = _tvsum_annotation_path(manual_dir)
    return super()._source_files(h5_path, manual_dir, videos) + (
      [annotations] if annotations else []
    )

  def _user_scores(self, videos: list[h5_files.H5Video], manual_dir: str) -> dict[str, np.ndarray]:
    path = _tvsum_annotation_path(manual_dir)
    if path is None:
      return {}
    try:
      by_name = {
        k: v.user_scores for k, v in tvsum_annotations.load_tvsum_annotations(path).items()
      }
    except ValueError as e:
      raise errors.DatasetError(str(e)) from None
    annotations = list(by_name)
    explicit = _load_name_mapping(manual_dir, 'tvsum')
    out = {}
    for i, video in enumerate(videos):
      name = explicit.get(video.key, video.name)
      if name not in by_name:
        # The eccv16 TVSum file lists the videos in the annotation file's order.
        if len(annotations) != len(videos):
          raise errors.DatasetError(
            f'{path}: {len(annotations)} videos but the h5 file has '
            f'{len(videos)}; add video_names/tvsum.json'
          )
        name = annotations[i]
      scores = by_name[name].astype(np.float32)
      if abs(scores.shape[1] - video.n_frames) > 1:
        raise errors.DatasetError(
          f'{path}: {name} has {scores.shape[1]} annotated frames but '
          f'{video.key} has {video.n_frames}; the videos do not correspond, '
          'add video_names/tvsum.json'
        )
      fitted = np.zeros((scores.shape[0], video.n_frames), np.float32)
      n = min(video.n_frames, scores.shape[1])
      fitted[:, :n] = scores[:, :n]
      fitted[:, n:] = scores[:, n - 1 : n]
      out[video.key] = fitted
    return out


class ClipitYoutube(_BenchmarkBuilder):
  """YouTube (De Avila et al. 2011): 39 videos; used to augment training data."""

  DATASET = 'youtube'


class ClipitOvp(_BenchmarkBuilder):
  """OVP, the Open Video Project (De Avila et al. 2011): 50 videos; augments training data."""

  DATASET = 'ovp'


def load_setting(
  data: ml_collections.ConfigDict, num_captions: int
) -> dict[str, list[input_pipeline.Video]]:
  """Train, validation and test videos of a benchmark setting (SumMe/TVSum).

  The split is entry `data.split` of `data.splits_file` when one is given, else our
  seeded split. Returns {'train', 'validation', 'test'} lists of videos; the validation
  videos are held out of the training ones.
  """
  splits = split_files.read(data.splits_file) if data.splits_file else None
  if splits is not None:
    needed = split_files.entry_datasets(splits, data.split, data.dataset)
  else:
    needed = [data.dataset] if data.setting == 'standard' else list(settings.BENCHMARKS)
  records = {
    name: loading.read_records(
      loading.load_builder(name, data.features, data.data_dir, data.manual_dir)
    )
    for name in needed
  }
  keys = {name: list(r) for name, r in records.items()}
  if splits is not None:
    chosen = split_files.split_videos(splits, data.split, data.dataset, data.setting, keys)
  else:
    chosen = settings.resolve_setting(data.dataset, data.setting, data.split, keys)
  train, validation = settings.hold_out_validation(chosen['train'], data.validation_fraction)

  def videos(refs):
    return [loading.benchmark_video(d, records[d][k], num_captions) for d, k in refs]

  return dict(train=videos(train), validation=videos(validation), test=videos(chosen['test']))


_FEATURES = tuple(c.name for c in _BenchmarkBuilder.BUILDER_CONFIGS)
SUMME = registry.register(
  registry.DatasetSpec(
    name='summe',
    title='SumMe',
    features=_FEATURES,
    load=load_setting,
    settings=settings.SETTINGS,
    f1_reduction='max',  # The best-matching user.
  )
)
TVSUM = registry.register(
  registry.DatasetSpec(
    name='tvsum', title='TVSum', features=_FEATURES, load=load_setting, settings=settings.SETTINGS
  )
)
# YouTube and OVP only augment the training data of SumMe and TVSum (settings.py).
YOUTUBE = registry.register(
  registry.DatasetSpec(name='youtube', title='YouTube', features=_FEATURES, load=None)
)
OVP = registry.register(
  registry.DatasetSpec(name='ovp', title='OVP', features=_FEATURES, load=None)
)
