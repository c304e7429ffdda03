"""`clipit_qfvs`: query-focused video summarization on UT Egocentric (Sharghi et al. 2017).

Four egocentric videos of 3-5 hours (P01-P04), cut into 5-second shots; every shot is
tagged with the concepts (of 48) it shows; a query is a pair of concepts; for each
query there are the summaries of three users and an oracle summary, as shot lists.
One example per video holds its CLIP frame features at 2 fps (the paper's rate), each
frame's shot, the shot concept tags, and every query with its CLIP text embedding,
oracle and user summaries as 0/1 shot masks. The standard four rounds (train on two
videos, validate on one, test on one) are in `rounds()` and the dataset metadata.
"""

import os
import re

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from clipit_jax import evaluators
from clipit_jax import input_pipeline
from clipit_jax.datasets import errors
from clipit_jax.datasets import loading
from clipit_jax.datasets import registry
from clipit_jax.datasets import summe_tvsum
from clipit_jax.media import encoders

VIDEOS = ('P01', 'P02', 'P03', 'P04')
SHOT_SECONDS = 5.0
SAMPLE_FPS = 2.0
NUM_USERS = 3
# Concept names of the dictionary that are not plain words, as a CLIP query reads them.
READABLE = {
  'cupglass': 'cup or glass',
  'petsanimal': 'pet or animal',
  'musicalinstrument': 'musical instrument',
}

_MANUAL = """\
Put the QFVS annotations and the UT Egocentric videos in the manual directory
(`<data_dir>/downloads/manual/` unless you pass another), under qfvs/:

  qfvs/videos/P01.mp4 ... P04.mp4            UT Egocentric videos (also .avi, .mkv, ...),
      http://vision.cs.utexas.edu/projects/egocentric_data/UT_Egocentric_Dataset.html
  qfvs/origin_data/                          the QFVS release, https://www.aidean-sharghi.com/cvpr2017
    Dense_per_shot_tags/Dictionary.txt       the 48 concepts, one per line
    Dense_per_shot_tags/P0k/P0k.txt          one line per 5-second shot: its concepts, comma-separated
    Query-Focused_Summaries/Oracle_Summaries/P0k/<c1>_<c2>_oracle.txt       1-based shot numbers
    Query-Focused_Summaries/User_Summaries/P0k/.../<c1>_<c2>..._user<u>.txt  (u = 1, 2, 3)

Instead of the videos, per-frame features computed elsewhere (e.g. on a cluster):
  qfvs/features/P01.npy ... P04.npy          float32 [frames, 512], frame i at i / 2 s (2 fps),
                                             covering every 5-second shot of the tags file
  qfvs/features/queries.npz                  optional: '<c1>_<c2>' -> [512] query embedding
                                             (without it the queries are encoded by CLIP)
"""


def rounds() -> list[dict[str, list[str]]]:
  """Round r tests on video r, validates on the next one, trains on the other two."""
  out = []
  for r, test in enumerate(VIDEOS):
    val = VIDEOS[(r + 1) % len(VIDEOS)]
    out.append(
      dict(train=[v for v in VIDEOS if v not in (test, val)], validation=[val], test=[test])
    )
  return out


def query_text(concepts: tuple[str, str]) -> str:
  """The CLIP text of a concept-pair query, e.g. ('Cupglass', 'Street') -> 'cup or glass and street'."""
  return ' and '.join(READABLE.get(c.lower(), c.lower()) for c in concepts)


def read_dictionary(path: str) -> list[str]:
  """The concept names, in file order (quotes and blanks stripped)."""
  if not os.path.exists(path):
    raise errors.DatasetError(f'{path}: not found.\n{_MANUAL}')
  with open(path) as f:
    names = [line.strip().strip('\'"') for line in f if line.strip()]
  if not names or len(set(n.lower() for n in names)) != len(names):
    raise errors.DatasetError(f'{path}: expected distinct concept names, one per line')
  return names


def read_shot_tags(path: str, dictionary: list[str]) -> np.ndarray:
  """`[n_shots, n_concepts]` uint8 tags from one line of comma-separated concepts per shot."""
  if not os.path.exists(path):
    raise errors.DatasetError(f'{path}: not found.\n{_MANUAL}')
  index = {name.lower(): i for i, name in enumerate(dictionary)}
  with open(path) as f:
    lines = f.read().splitlines()  # A shot without concepts is an empty line.
  tags = np.zeros((len(lines), len(dictionary)), np.uint8)
  for shot, line in enumerate(lines):
    for name in filter(None, (c.strip().strip('\'"') for c in line.split(','))):
      if name.lower() not in index:
        raise errors.DatasetError(f'{path}:{shot + 1}: unknown concept {name!r}')
      tags[shot, index[name.lower()]] = 1
  if not len(lines):
    raise errors.DatasetError(f'{path}: no shots')
  return tags


def read_shot_list(path: str, n_shots: int) -> np.ndarray:
  """A summary file of 1-based shot numbers -> a 0/1 mask `[n_shots]`."""
  mask = np.zeros((n_shots,), np.uint8)
  with open(path) as f:
    for line_no, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        shot = int(line.strip())
      except ValueError:
        raise errors.DatasetError(
          f'{path}:{line_no}: not a shot number: {line.strip()!r}'
        ) from None
      if not 1 <= shot <= n_shots:
        raise errors.DatasetError(f'{path}:{line_no}: shot {shot} outside 1..{n_shots}')
      mask[shot - 1] = 1
  return mask


def read_queries(root: str, video: str, n_shots: int):
  """[(concept pair, oracle mask [n_shots], user masks [3, n_shots])] of one video, sorted."""
  oracle_dir = os.path.join(root, 'Query-Focused_Summaries', 'Oracle_Summaries', video)
  user_dir = os.path.join(root, 'Query-Focused_Summaries', 'User_Summaries', video)
  if not os.path.isdir(oracle_dir):
    raise errors.DatasetError(f'{oracle_dir}: not found.\n{_MANUAL}')
  user_files = [
    os.path.join(d, f) for d, _, files in os.walk(user_dir) for f in files if f.endswith('.txt')
  ]
  queries = []
  for name in sorted(os.listdir(oracle_dir)):
    match = re.fullmatch(r'([^_]+)_([^_]+)_oracle\.txt', name)
    if not match:
      continue
    pair = (match.group(1), match.group(2))
    users = []
    for u in range(1, NUM_USERS + 1):
      found = [
        f
        for f in user_files
        if os.path.basename(f).lower().startswith(f'{pair[0]}_{pair[1]}'.lower())
        and re.search(rf'user_?{u}\b', os.path.basename(f))
      ]
      if len(found) != 1:
        raise errors.DatasetError(
          f'{user_dir}: expected one summary of user {u} for query '
          f'{pair[0]}_{pair[1]}, found {len(found)}'
        )
      users.append(read_shot_list(found[0], n_shots))
    queries.append((pair, read_shot_list(os.path.join(oracle_dir, name), n_shots), np.stack(users)))
  if not queries:
    raise errors.DatasetError(f'{oracle_dir}: no <c1>_<c2>_oracle.txt files')
  return queries


def read_release(annotations: str) -> dict[str, tuple[np.ndarray, list]]:
  """{video: (shot tags `[shots, concepts]`, read_queries' list)} of the `origin_data` directory."""
  dictionary = read_dictionary(os.path.join(annotations, 'Dense_per_shot_tags', 'Dictionary.txt'))
  out = {}
  for video in VIDEOS:
    tags = read_shot_tags(
      os.path.join(annotations, 'Dense_per_shot_tags', video, f'{video}.txt'), dictionary
    )
    out[video] = (tags, read_queries(annotations, video, tags.shape[0]))
  return out


class QfvsConfig(tfds.core.BuilderConfig):
  """Which CLIP encodes the frames and the queries."""

  def __init__(self, *, clip_model: str, **kwargs):
    super().__init__(**kwargs)
    self.clip_model = clip_model


class ClipitQfvs(tfds.core.GeneratorBasedBuilder):
  """QFVS (UT Egocentric): CLIP features at 2 fps, shot concepts, queries and summaries."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'CLIP features at 2 fps, 5-second shots, 48 concepts.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL
  BUILDER_CONFIGS = [
    QfvsConfig(
      name='clip',
      clip_model=encoders.DEFAULT_CLIP,
      description='CLIP ViT-B/32 frame and query embeddings.',
    ),
    QfvsConfig(
      name='tiny',
      clip_model=encoders.TINY,
      description='The tiny random CLIP: offline tests and demos only.',
    ),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    zlib = tfds.features.Encoding.ZLIB
    dim = summe_tvsum.TEXT_DIM
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          'video_key': tfds.features.Text(),
          'features': tfds.features.Tensor(shape=(None, dim), dtype=np.float32),
          'timestamps': tfds.features.Tensor(shape=(None,), dtype=np.float32),
          'shot_of_frame': tfds.features.Tensor(shape=(None,), dtype=np.int32),
          'shot_concepts': tfds.features.Tensor(shape=(None, None), dtype=np.uint8, encoding=zlib),
          'concepts': tfds.features.Text(),  # Newline-separated dictionary.
          'queries': tfds.features.Text(),  # Newline-separated '<c1>_<c2>'.
          'query_embeddings': tfds.features.Tensor(shape=(None, dim), dtype=np.float32),
          'oracle': tfds.features.Tensor(shape=(None, None), dtype=np.uint8, encoding=zlib),
          'user_shots': tfds.features.Tensor(
            shape=(None, NUM_USERS, None), dtype=np.uint8, encoding=zlib
          ),
        }
      ),
      metadata=tfds.core.MetadataDict(),
      homepage='https://www.aidean-sharghi.com/cvpr2017',
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = os.path.join(os.fspath(dl_manager.manual_dir), 'qfvs')
    annotations = os.path.join(root, 'origin_data')
    dictionary = read_dictionary(os.path.join(annotations, 'Dense_per_shot_tags', 'Dictionary.txt'))
    sources = {}
    for video in VIDEOS:
      features = os.path.join(root, 'features', f'{video}.npy')
      found = features if os.path.exists(features) else None
      found = found or summe_tvsum.find_video(os.path.join(root, 'videos'), video)
      if not found:
        raise errors.DatasetError(
          f'{os.path.join(root, "videos", video)}.mp4 (or features/{video}.npy): not found.\n'
          f'{_MANUAL}'
        )
      sources[video] = found
    self.info.metadata.update(dataset='qfvs', rounds=rounds(), concepts=dictionary)
    queries = os.path.join(root, 'features', 'queries.npz')
    queries = queries if os.path.exists(queries) else None
    return {'videos': self._generate_examples(annotations, dictionary, sources, queries)}

  def _generate_examples(
    self, annotations: str, dictionary: list[str], sources: dict[str, str], queries_path
  ):
    encoder = None
    for video, path in sources.items():
      tags = read_shot_tags(
        os.path.join(annotations, 'Dense_per_shot_tags', video, f'{video}.txt'), dictionary
      )
      queries = read_queries(annotations, video, tags.shape[0])
      names = [f'{a}_{b}' for (a, b), _, _ in queries]
      if path.endswith('.npy'):
        features = read_frame_features(path, tags.shape[0])
        timestamps = np.arange(features.shape[0]) / SAMPLE_FPS
      else:
        encoder = encoder or encoders.load_clip(self.builder_config.clip_model)
        features, timestamps = encoders.video_features(path, encoder, SAMPLE_FPS, progress=True)
      if queries_path is not None:
        query_embeddings = read_query_embeddings(queries_path, names)
      else:
        encoder = encoder or encoders.load_clip(self.builder_config.clip_model)
        query_embeddings = encoder.encode_texts([query_text(q) for q, _, _ in queries])
      shot_of_frame = np.minimum(timestamps // SHOT_SECONDS, tags.shape[0] - 1).astype(np.int32)
      yield (
        video,
        dict(
          video_key=video,
          features=features,
          timestamps=timestamps.astype(np.float32),
          shot_of_frame=shot_of_frame,
          shot_concepts=tags,
          concepts='\n'.join(dictionary),
          queries='\n'.join(names),
          query_embeddings=query_embeddings,
          oracle=np.stack([o for _, o, _ in queries]),
          user_shots=np.stack([u for _, _, u in queries]),
        ),
      )


def read_frame_features(path: str, n_shots: int) -> np.ndarray:
  """Precomputed per-frame features `[frames, 512]` at 2 fps that cover `n_shots` shots.

  The frames must reach into the last shot and end within one shot after it (the video's
  tail), as frames decoded from the video do.
  """
  try:
    features = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise errors.DatasetError(f'{path}: not a .npy array ({e})') from None
  per_shot = int(SHOT_SECONDS * SAMPLE_FPS)
  if features.ndim != 2 or features.shape[1] != summe_tvsum.TEXT_DIM:
    raise errors.DatasetError(
      f'{path}: expected [frames, {summe_tvsum.TEXT_DIM}] features, got {list(features.shape)}'
    )
  if not (n_shots - 1) * per_shot < features.shape[0] <= (n_shots + 1) * per_shot:
    raise errors.DatasetError(
      f'{path}: {features.shape[0]} frames at {SAMPLE_FPS:g} fps do not cover the {n_shots} '
      f'shots of {SHOT_SECONDS:g} s of the tags file ({(n_shots - 1) * per_shot + 1}-'
      f'{(n_shots + 1) * per_shot} frames)'
    )
  if not np.all(np.isfinite(features)):
    raise errors.DatasetError(f'{path}: features are not all finite')
  return features.astype(np.float32)


def read_query_embeddings(path: str, names: list[str]) -> np.ndarray:
  """`[queries, 512]` from an .npz of '<c1>_<c2>' -> embedding, in the order of `names`."""
  try:
    with np.load(path, allow_pickle=False) as stored:
      embeddings = {n: np.asarray(stored[n], np.float32).reshape(-1) for n in stored.files}
  except (OSError, ValueError) as e:
    raise errors.DatasetError(f'{path}: not an .npz of query embeddings ({e})') from None
  missing = [n for n in names if n not in embeddings]
  if missing:
    raise errors.DatasetError(f'{path}: no embedding for queries {missing[:3]}')
  out = np.stack([embeddings[n] for n in names])
  if out.shape[1] != summe_tvsum.TEXT_DIM:
    raise errors.DatasetError(f'{path}: embeddings are {out.shape[1]}-d, expected 512')
  return out


def qfvs_videos(record: dict) -> list[input_pipeline.Video]:
  """One query-focused video per query of a QFVS record; all share the record's features."""
  features = np.asarray(record['features'], np.float32)
  shot_of_frame = np.asarray(record['shot_of_frame'])
  shot_concepts = np.asarray(record['shot_concepts'])
  videos = []
  for i, query in enumerate(loading.decode_text(record['queries']).split('\n')):
    oracle = np.asarray(record['oracle'][i])
    user_shots = np.asarray(record['user_shots'][i])
    videos.append(
      input_pipeline.Video(
        ref=('qfvs', f'{loading.decode_text(record["video_key"])}/{query}'),
        features=features,
        labels=oracle[shot_of_frame].astype(np.float32),
        importance=user_shots.mean(axis=0)[shot_of_frame].astype(np.float32),
        text=np.asarray(record['query_embeddings'][i : i + 1], np.float32),
        text_mask=np.ones((1,), bool),
        truth=evaluators.QfvsTruth(
          shot_of_frame=shot_of_frame,
          shot_concepts=shot_concepts,
          oracle=oracle,
          user_shots=user_shots,
          query=query,
        ),
      )
    )
  return videos


def load_qfvs(
  data: ml_collections.ConfigDict, num_captions: int
) -> dict[str, list[input_pipeline.Video]]:
  """The videos of QFVS round `data.split` (0-3): two train, one validation, one test video."""
  del num_captions  # A QFVS video's one text token is its query.
  if not 0 <= data.split < len(VIDEOS):
    raise ValueError(f'QFVS has rounds 0-{len(VIDEOS) - 1}, got split={data.split}')
  records = loading.read_records(
    loading.load_builder('qfvs', data.features, data.data_dir, data.get('manual_dir'))
  )
  chosen = rounds()[data.split]
  return {
    part: [v for key in keys for v in qfvs_videos(records[key])] for part, keys in chosen.items()
  }


SPEC = registry.register(
  registry.DatasetSpec(
    name='qfvs',
    title='QFVS',
    features=tuple(c.name for c in ClipitQfvs.BUILDER_CONFIGS),
    load=load_qfvs,
    num_splits=lambda data: len(VIDEOS),  # The four rounds.
  )
)
