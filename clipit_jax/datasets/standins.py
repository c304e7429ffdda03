"""Benchmark-shaped stand-ins: eccv16-format h5 files the size of SumMe, TVSum, YouTube and OVP.

They let the whole data path (the real builders, settings, training at real sizes,
the evaluation protocol) run offline, before the real files are downloaded:

    python -m clipit_jax.datasets.standins --manual_dir ~/clipit_standins/downloads/manual \\
        --tvsum_annotations ../shared/data/tvsum/ydata-anno.tsv.gz \\
        --tvsum_shots ../shared/data/tvsum/shot_TVSum.mat --summe_gt ../shared/data/summe/GT
    python train.py --config configs/tvsum_standard.py --workdir runs/tvsum_standin \\
        --config.data.data_dir ~/clipit_standins

Every file has the fields of the field's files (h5_files.py): 1024-d `features` at
`picks` (every 15th frame, 2 fps at 30 fps), `gtscore`, `gtsummary`, `user_summary`
`[users, n_frames]`, `change_points` `[shots, 2]`, `n_frame_per_seg`, `n_frames`,
`n_steps` and `video_name`, derived from the annotations by the standard procedure
(annotators.py). Sizes follow the real sets: TVSum 50 videos with 20 annotators'
1-5 scores (the real frame counts and scores when the annotation file is given,
simulated otherwise; with dppLSTM's `shot_TVSum.mat` also the real KTS shots); SumMe 25
videos of 1-6 minutes with 15-18 annotators' 0/1 selections (with SumMe's `GT/` directory:
the real frame counts, `user_summary = (user_score > 0).T` and `gtscore = gt_score[picks]`,
in the eccv16 order); YouTube 39 and OVP 50 videos with 5 annotators each.

The signal in the features, by construction:

- Each video is cut into shots of 2-10 s (these are the `change_points`) and each shot
  shows one *concept*: a random direction in feature space from a vocabulary of 256,
  shared by all videos. How often a concept recurs within its video falls with the
  shot's importance: the least important half of the shots share two concepts, the
  next 30 % share concepts in pairs or triples, the most important 20 % are unique.
  Which concept plays which role is random per video, so a concept's identity says
  nothing about importance: only its *rarity within the video* does (context).
- A per-frame cue: every sampled frame moves along one fixed "salience" direction in
  proportion to its importance (centred per video). Its strength lets a per-frame
  linear probe on TVSum's stand-in reach about half of the annotators' own agreement
  (as on the synthetic benchmark), leaving the rarity to models that see context.
- A per-video offset (like the background that dominates real CNN features) and
  Gaussian per-frame noise.

Importance is the annotators' mean (TVSum) or the simulated shot truth (the others).
"""

import argparse
import dataclasses
import gzip
import os
import sys

import h5py
import numpy as np
import scipy.io

from clipit_jax import files
from clipit_jax.datasets import annotators
from clipit_jax.datasets import h5_files
from clipit_jax.datasets import tvsum_annotations

FEATURE_DIM = 1024
FRAME_STRIDE = 15  # `picks`: every 15th frame, as in the eccv16 files.
SOURCE_FPS = 30.0
NUM_CONCEPTS = 256  # More than any video has shots, so tiers never wrap.
SHOT_SECONDS = (2.0, 10.0)
# Feature scales (per dimension): per-video offset, concept, salience cue, noise.
OFFSET_SCALE = 1.0
CONCEPT_SCALE = 0.6
SALIENCE_SCALE = 2.0  # 0.75 left the probe at tau 0.05 of 0.36: too weak to show learning.
NOISE_SCALE = 0.5
TIERS = ((0.5, 'common'), (0.8, 'shared'), (1.0, 'unique'))  # Cumulative shares of shots.


@dataclasses.dataclass(frozen=True)
class Shape:
  """A benchmark's size and kind of annotation."""

  num_videos: int
  seconds: tuple[float, float]  # Range of video durations.
  users: tuple[int, int]  # Range of annotators per video.
  annotation: str  # 'scores' (1-5 per frame, TVSum) or 'selections' (0/1 shots).


SHAPES = {
  'summe': Shape(25, (60.0, 360.0), (15, 18), 'selections'),
  'tvsum': Shape(50, (83.0, 647.0), (20, 20), 'scores'),
  'youtube': Shape(39, (60.0, 600.0), (5, 5), 'selections'),
  'ovp': Shape(50, (60.0, 240.0), (5, 5), 'selections'),
}


def random_shots(
  n_frames: int, rng: np.random.Generator, seconds: tuple[float, float] = SHOT_SECONDS
) -> np.ndarray:
  """Inclusive frame ranges `[shots, 2]` of random lengths covering `[0, n_frames)`."""
  starts, start = [], 0
  while start < n_frames:
    starts.append(start)
    start += int(rng.uniform(*seconds) * SOURCE_FPS)
  starts = np.asarray(starts)
  if len(starts) > 1 and n_frames - starts[-1] < seconds[0] * SOURCE_FPS:
    starts = starts[:-1]  # A short tail joins the shot before it.
  return np.stack([starts, np.append(starts[1:] - 1, n_frames - 1)], axis=1)


def assign_concepts(
  shot_importance: np.ndarray, rng: np.random.Generator, num_concepts: int = NUM_CONCEPTS
) -> np.ndarray:
  """A concept index per shot whose recurrence in the video falls with importance `[shots]`.

  Shots ranked by importance fall into tiers (TIERS): 'common' shots share two concepts,
  'shared' shots share a concept in twos or threes, 'unique' shots each have their own.
  """
  n = len(shot_importance)
  order = np.argsort(shot_importance, kind='stable')
  vocabulary = rng.permutation(num_concepts)
  concept = np.empty(n, np.int64)
  used, begin = 0, 0
  for share, tier in TIERS:
    end = int(round(share * n))
    members = order[begin:end]
    if tier == 'common':
      groups = rng.integers(0, 2, len(members))
    elif tier == 'shared':
      groups = np.arange(len(members)) // int(rng.integers(2, 4))
    else:
      groups = np.arange(len(members))
    concept[members] = vocabulary[(used + groups) % num_concepts]
    used += int(groups.max()) + 1 if len(members) else 0
    begin = end
  return concept


def standin_features(
  importance: np.ndarray,
  shot_of_step: np.ndarray,
  concept: np.ndarray,
  vocabulary: np.ndarray,
  salience: np.ndarray,
  rng: np.random.Generator,
) -> np.ndarray:
  """Features `[n_steps, FEATURE_DIM]` float32 of one video (see the module docstring).

  Args:
    importance: `[n_steps]` in [0, 1] at the sampled frames.
    shot_of_step: `[n_steps]` shot index of each sampled frame.
    concept: `[shots]` concept index of each shot.
    vocabulary: `[NUM_CONCEPTS, FEATURE_DIM]` concept directions.
    salience: `[FEATURE_DIM]` unit vector.
  """
  n = importance.shape[0]
  offset = rng.normal(0.0, OFFSET_SCALE, FEATURE_DIM)
  cue = SALIENCE_SCALE * 2.0 * (importance - importance.mean())
  noise = rng.normal(0.0, NOISE_SCALE, (n, FEATURE_DIM))
  features = (
    offset + CONCEPT_SCALE * vocabulary[concept[shot_of_step]] + cue[:, None] * salience + noise
  )
  return features.astype(np.float32)


def _video_lengths(shape: Shape, rng: np.random.Generator, count: int) -> np.ndarray:
  """Frame counts, log-uniform over the shape's durations."""
  low, high = np.log(shape.seconds[0]), np.log(shape.seconds[1])
  return np.round(np.exp(rng.uniform(low, high, count)) * SOURCE_FPS).astype(np.int64)


def make_video(
  shape: Shape,
  n_frames: int,
  rng: np.random.Generator,
  vocabulary: np.ndarray,
  salience: np.ndarray,
  user_scores: np.ndarray | None = None,
  real: 'RealVideo | None' = None,
) -> dict:
  """Every eccv16 field of one stand-in video.

  `user_scores` `[users, n_frames]` (1-5) are TVSum's real annotations when given;
  `real` holds SumMe's real selections and per-frame score and/or real shot boundaries;
  whatever is not given is simulated from a random shot truth.
  """
  real = real or RealVideo()
  change_points = random_shots(n_frames, rng) if real.change_points is None else real.change_points
  lengths = change_points[:, 1] - change_points[:, 0] + 1
  shot_of_frame = np.repeat(np.arange(len(change_points)), lengths)
  picks = np.arange(0, n_frames, FRAME_STRIDE)
  num_users = int(rng.integers(shape.users[0], shape.users[1] + 1))
  if user_scores is None and real.user_summary is None:
    truth = rng.beta(0.8, 1.6, len(change_points))  # Most shots dull, a few important.
    if shape.annotation == 'scores':
      user_scores = annotators.annotator_scores(
        truth, shot_of_frame, rng, num_users, int(2 * SOURCE_FPS)
      )
  if shape.annotation == 'scores':
    fields = annotators.fields_from_scores(user_scores, change_points, picks, n_frames)
    importance = fields['gtscore']
  elif real.user_summary is not None:
    fields = annotators.fields_from_selections(real.user_summary, change_points, picks, n_frames)
    importance = fields['gtscore'] = real.gt_score[picks].astype(np.float32)
    fields['gtsummary'] = annotators.keyframe_labels(importance, change_points, n_frames, picks)
  else:
    fields = annotators.fields_from_selections(
      annotators.annotator_selections(truth, change_points, rng, num_users),
      change_points,
      picks,
      n_frames,
    )
    importance = truth[shot_of_frame][picks]
  shot_importance = np.bincount(
    shot_of_frame[picks], weights=importance, minlength=len(lengths)
  ) / np.maximum(np.bincount(shot_of_frame[picks], minlength=len(lengths)), 1)
  concept = assign_concepts(shot_importance, rng)
  features = standin_features(importance, shot_of_frame[picks], concept, vocabulary, salience, rng)
  return dict(
    features=features,
    change_points=change_points.astype(np.int32),
    n_frame_per_seg=lengths.astype(np.int32),
    n_frames=np.int32(n_frames),
    n_steps=np.int32(len(picks)),
    picks=picks.astype(np.int32),
    user_scores=user_scores,
    **fields,
  )


@dataclasses.dataclass(frozen=True)
class RealVideo:
  """Real annotations of one video, where a release gives them."""

  change_points: np.ndarray | None = None  # `[shots, 2]` inclusive frame ranges.
  user_summary: np.ndarray | None = None  # `[users, n_frames]` 0/1 (SumMe).
  gt_score: np.ndarray | None = None  # `[n_frames]` per-frame score (SumMe).


def shots_from_boundaries(boundaries: np.ndarray, n_frames: int) -> np.ndarray:
  """Inclusive frame ranges `[shots, 2]` from dppLSTM boundaries `[0, b1, ..., n_frames]`.

  Boundaries past `n_frames` (a video cut short) are dropped; the last shot ends there.
  """
  inner = np.unique(np.asarray(boundaries, np.int64).ravel())
  inner = inner[(inner > 0) & (inner < n_frames)]
  starts = np.concatenate([[0], inner])
  return np.stack([starts, np.append(starts[1:] - 1, n_frames - 1)], axis=1)


def load_tvsum_shots(path: str) -> list[np.ndarray]:
  """The 50 videos' KTS boundaries of dppLSTM's `shot_TVSum.mat`, in ydata-anno order."""
  try:
    cells = scipy.io.loadmat(path)['shot_boundaries']
  except (OSError, ValueError, KeyError) as e:
    raise ValueError(f"{path} is not dppLSTM's shot_TVSum.mat ({e})") from e
  return [np.asarray(cell).ravel() for cell in cells.ravel()]


def load_summe_gt(gt_dir: str) -> list[tuple[str, RealVideo]]:
  """SumMe's 25 `GT/<name>.mat` files in the eccv16 order (names sorted, upper case first).

  `user_summary` is `(user_score > 0).T`, `gt_score` the file's per-frame mean.
  """
  names = (
    sorted(n for n in os.listdir(gt_dir) if n.endswith('.mat')) if os.path.isdir(gt_dir) else []
  )
  if not names:
    raise ValueError(f'{gt_dir} holds no SumMe ground truth (GT/<name>.mat files)')
  videos = []
  for name in names:
    try:
      mat = scipy.io.loadmat(os.path.join(gt_dir, name))
      user_score, gt_score = mat['user_score'], mat['gt_score'].ravel()
    except (OSError, ValueError, KeyError) as e:
      raise ValueError(f'{name} is not a SumMe ground-truth file ({e})') from e
    if user_score.ndim != 2 or user_score.shape[0] != gt_score.shape[0]:
      raise ValueError(f'{name}: user_score {user_score.shape} does not match gt_score')
    user_summary = (user_score > 0).T.astype(np.int8)
    videos.append((name[:-4], RealVideo(user_summary=user_summary, gt_score=gt_score)))
  return videos


def _real_tvsum(path: str | None) -> list[tuple[str, np.ndarray]] | None:
  if path is None:
    return None
  return [
    (name, video.user_scores.astype(np.float32))
    for name, video in tvsum_annotations.load_tvsum_annotations(path).items()
  ]


def _write_h5(path: str, videos: list[tuple[str, dict]]) -> None:
  with files.atomic_path(path) as tmp:
    with h5py.File(tmp, 'w') as f:
      for i, (name, video) in enumerate(videos):
        group = f.create_group(f'video_{i + 1}')
        for key in h5_files.REQUIRED_FIELDS + ('n_steps',):
          group[key] = video[key]
        group['video_name'] = name.encode()


def _write_tvsum_annotations(path: str, videos: list[tuple[str, dict]]) -> None:
  """`ydata-anno.tsv.gz` in TVSum's format: one line per (video, annotator)."""
  lines = []
  for name, video in videos:
    for user in np.asarray(video['user_scores'], np.int64):
      lines.append(f'{name}\tSI\t{",".join(map(str, user))}\n')
  with files.atomic_path(path) as tmp:
    with gzip.open(tmp, 'wt') as f:
      f.writelines(lines)


def write_standin(
  dataset: str,
  manual_dir: str,
  *,
  seed: int = 0,
  num_videos: int | None = None,
  tvsum_annotations: str | None = None,
  tvsum_shots: str | None = None,
  summe_gt: str | None = None,
  max_seconds: float | None = None,
) -> str:
  """Writes `eccv16_dataset_<dataset>_google_pool5.h5` (and TVSum's annotations) into `manual_dir`.

  Args:
    dataset: 'summe', 'tvsum', 'youtube' or 'ovp'.
    manual_dir: the builders' manual directory.
    seed: every array is a pure function of (seed, dataset, video index).
    num_videos: fewer videos than the real set (tests); the first ones.
    tvsum_annotations: TVSum's `ydata-anno.tsv[.gz]`: its videos' real frame counts and
      20 annotators' scores are used. Simulated when None.
    tvsum_shots: dppLSTM's `shot_TVSum.mat`: the real KTS shots (with `tvsum_annotations`).
    summe_gt: SumMe's `GT/` directory: the real frame counts, selections and gt_score.
    max_seconds: caps video durations (tests).
  Returns:
    The h5 file's path.
  """
  if dataset not in SHAPES:
    raise ValueError(f'unknown dataset {dataset!r}; expected one of {sorted(SHAPES)}')
  if tvsum_shots is not None and tvsum_annotations is None:
    raise ValueError('--tvsum_shots needs --tvsum_annotations (the shots cut the real videos)')
  shape = SHAPES[dataset]
  count = shape.num_videos if num_videos is None else min(num_videos, shape.num_videos)
  shared = np.random.default_rng([seed, 0])
  vocabulary = shared.normal(0.0, 1.0, (NUM_CONCEPTS, FEATURE_DIM))
  salience = shared.normal(0.0, 1.0, FEATURE_DIM)
  salience /= np.linalg.norm(salience)
  real = _real_videos(dataset, tvsum_annotations, tvsum_shots, summe_gt)
  count = count if real is None else min(count, len(real))
  lengths = _video_lengths(shape, np.random.default_rng([seed, 1, len(dataset)]), count)
  cap = None if max_seconds is None else int(max_seconds * SOURCE_FPS)
  if cap is not None:
    lengths = np.minimum(lengths, cap)
  videos = []
  for i in range(count):
    rng = np.random.default_rng([seed, 2, sum(map(ord, dataset)), i])
    if real is None:
      name = f'{dataset}_standin_{i + 1:02d}'
      video = make_video(shape, int(lengths[i]), rng, vocabulary, salience)
    else:
      name, scores, annotation = _cut(*real[i], cap)
      n_frames = (scores if scores is not None else annotation.gt_score[None]).shape[1]
      video = make_video(shape, n_frames, rng, vocabulary, salience, scores, annotation)
    videos.append((name, video))
  os.makedirs(manual_dir, exist_ok=True)
  path = os.path.join(manual_dir, h5_files.h5_filename(dataset))
  _write_h5(path, videos)
  if dataset == 'tvsum':
    _write_tvsum_annotations(os.path.join(manual_dir, 'ydata-anno.tsv.gz'), videos)
  return path


def _real_videos(dataset, tvsum_annotations, tvsum_shots, summe_gt):
  """`[(name, user_scores or None, RealVideo or None)]` from the real releases given, or None."""
  if dataset == 'summe' and summe_gt is not None:
    return [(name, None, video) for name, video in load_summe_gt(summe_gt)]
  if dataset != 'tvsum' or tvsum_annotations is None:
    return None
  real = _real_tvsum(tvsum_annotations)
  if tvsum_shots is None:
    return [(name, scores, None) for name, scores in real]
  boundaries = load_tvsum_shots(tvsum_shots)
  if len(boundaries) != len(real):
    raise ValueError(f'{tvsum_shots} has {len(boundaries)} videos, the annotations {len(real)}')
  out = []
  for (name, scores), cuts in zip(real, boundaries):
    if cuts[-1] != scores.shape[1]:
      raise ValueError(
        f'{name}: the shots end at frame {cuts[-1]}, the video has {scores.shape[1]}'
      )
    out.append((name, scores, RealVideo(change_points=shots_from_boundaries(cuts, cuts[-1]))))
  return out


def _cut(name, scores, annotation, cap):
  """The video's real arrays cut to its first `cap` frames (tests); `cap` None keeps them."""
  n_frames = (scores if scores is not None else annotation.gt_score[None]).shape[1]
  n = n_frames if cap is None else min(cap, n_frames)
  if scores is not None:
    scores = scores[:, :n]
  if annotation is not None:
    annotation = RealVideo(
      change_points=None
      if annotation.change_points is None
      else shots_from_boundaries(annotation.change_points[:, 0], n),
      user_summary=None if annotation.user_summary is None else annotation.user_summary[:, :n],
      gt_score=None if annotation.gt_score is None else annotation.gt_score[:n],
    )
  return name, scores, annotation


QFVS_DIM = 512  # CLIP ViT-B/32, as the clipit_qfvs builder expects.
QFVS_FRAMES_PER_SHOT = 10  # 5-second shots at the paper's 2 fps.
QFVS_CONCEPT_SCALE = 1.0
QFVS_NOISE_SCALE = 0.05  # Per dimension: about as large as the concepts in norm.


def write_qfvs_standin(origin_data: str, manual_dir: str, *, seed: int = 0) -> str:
  """QFVS features from the real release: `manual_dir/qfvs/features/P0k.npy` and queries.npz.

  Every 5-second shot gets 10 frames (2 fps): a per-video offset, plus the sum of its real
  concepts' directions (one random unit vector per concept of the dictionary), plus noise,
  L2-normalised as CLIP embeddings are. A query '<c1>_<c2>' is the normalised sum of its
  two concepts' directions, so the training-free similarity to the query finds the shots
  that show them. `manual_dir/qfvs/origin_data` links to `origin_data` (not copied).
  Returns the features directory.
  """
  from clipit_jax.datasets import qfvs  # pylint: disable=g-import-not-at-top (TFDS)

  release = qfvs.read_release(origin_data)
  rng = np.random.default_rng([seed, 48])
  directions = rng.normal(0.0, 1.0, (next(iter(release.values()))[0].shape[1], QFVS_DIM))
  directions /= np.linalg.norm(directions, axis=1, keepdims=True)
  out = os.path.join(manual_dir, 'qfvs', 'features')
  os.makedirs(out, exist_ok=True)
  link = os.path.join(manual_dir, 'qfvs', 'origin_data')
  if not os.path.exists(link):
    os.symlink(os.path.abspath(origin_data), link)
  dictionary = qfvs.read_dictionary(
    os.path.join(origin_data, 'Dense_per_shot_tags', 'Dictionary.txt')
  )
  index = {name.lower(): i for i, name in enumerate(dictionary)}
  queries = {}
  for v, (video, (tags, video_queries)) in enumerate(release.items()):
    video_rng = np.random.default_rng([seed, 49, v])
    shots = tags.astype(np.float64) @ directions * QFVS_CONCEPT_SCALE  # [shots, 512]
    frames = np.repeat(shots, QFVS_FRAMES_PER_SHOT, axis=0)
    frames += video_rng.normal(0.0, 1.0, QFVS_DIM) / np.sqrt(QFVS_DIM)  # The offset.
    frames += video_rng.normal(0.0, QFVS_NOISE_SCALE, frames.shape)
    frames /= np.linalg.norm(frames, axis=1, keepdims=True)
    with files.atomic_path(os.path.join(out, f'{video}.npy')) as tmp:
      with open(tmp, 'wb') as f:
        np.save(f, frames.astype(np.float32))
    for (a, b), _, _ in video_queries:
      pair = directions[index[a.lower()]] + directions[index[b.lower()]]
      queries[f'{a}_{b}'] = (pair / np.linalg.norm(pair)).astype(np.float32)
  with files.atomic_path(os.path.join(out, 'queries.npz')) as tmp:
    with open(tmp, 'wb') as f:
      np.savez(f, **queries)
  return out


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    prog='python -m clipit_jax.datasets.standins',
    description='Write benchmark-shaped stand-in eccv16 h5 files (offline).',
  )
  parser.add_argument(
    '--manual_dir',
    required=True,
    help='Where to write them: <data_dir>/downloads/manual of a data_dir '
    'kept apart from the real data.',
  )
  parser.add_argument('--datasets', default='summe,tvsum,youtube,ovp')
  parser.add_argument(
    '--tvsum_annotations',
    default=None,
    help="TVSum's ydata-anno.tsv[.gz]: real frame counts and scores.",
  )
  parser.add_argument(
    '--tvsum_shots',
    default=None,
    help="dppLSTM's shot_TVSum.mat: TVSum's real KTS shots (needs --tvsum_annotations).",
  )
  parser.add_argument(
    '--summe_gt',
    default=None,
    help="SumMe's GT/ directory: real frame counts, user selections and gt_score.",
  )
  parser.add_argument(
    '--qfvs_origin',
    default=None,
    help="QFVS's origin_data directory: with --datasets qfvs, features for its real shots.",
  )
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  for dataset in args.datasets.split(','):
    existing = 'qfvs/features' if dataset == 'qfvs' else h5_files.h5_filename(dataset)
    if os.path.exists(os.path.join(args.manual_dir, existing)):
      print(
        f'standins: {args.manual_dir} already holds {existing}; choose an empty manual directory',
        file=sys.stderr,
      )
      return 2
  for dataset in args.datasets.split(','):
    try:
      if dataset == 'qfvs':
        if args.qfvs_origin is None:
          raise ValueError('--datasets qfvs needs --qfvs_origin (the release: origin_data/)')
        path = write_qfvs_standin(args.qfvs_origin, args.manual_dir, seed=args.seed)
      else:
        path = write_standin(
          dataset,
          args.manual_dir,
          seed=args.seed,
          tvsum_annotations=args.tvsum_annotations,
          tvsum_shots=args.tvsum_shots,
          summe_gt=args.summe_gt,
        )
    except ValueError as e:
      print(f'standins: {e}', file=sys.stderr)
      return 2
    print(f'wrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
