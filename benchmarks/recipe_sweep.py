"""Training recipes on the SumMe/TVSum stand-ins against the validated linear probe.

Written for an accelerator machine without TFDS: reads the stand-in h5 files directly (the
same videos, fields and seeded splits as `train.py`), and runs many (recipe, dataset,
split, seed) jobs in parallel worker processes on one device.

    python benchmarks/recipe_sweep.py --manual_dir /tmp/standins --out /tmp/sweep \\
        --summe_gt ../shared/data/summe/GT --tvsum_annotations ../shared/data/tvsum/ydata-anno.tsv.gz \\
        --tvsum_shots ../shared/data/tvsum/shot_TVSum.mat --recipes small_long,small_win1024 --workers 3

Builds the stand-ins first where absent (`clipit_jax.datasets.standins`). Per (dataset,
split): the linear probe on gtscore with its ridge chosen on validation tau
(`baselines.validated_probe`), on the test videos. Per job: the recipe trained with the
Standard setting's training videos, validation tau every `--eval_every` epochs (the best
one's parameters are kept, as `best_metric='kendall'` does) and the test metrics logged at
the same epochs (the curve; never used to choose). One JSON line per job in
OUT/runs.jsonl; OUT/table.md aggregates them (mean over splits and seeds).

Two phases: every recipe on --search_splits x --search_seeds, then the recipe with the best mean
validation tau per dataset on --splits x --seeds. On one H200, 3 workers ran a 150-epoch TVSum
run in about 100 s (60 s of it start-up); 15 workers slowed each run about fourfold
(docs/learning.md).
"""

import argparse
import fcntl
import json
import shutil
import os
import subprocess
import sys
import time

import numpy as np

RECIPES = {
  # The shipped TVSum/SumMe config before this sweep: the paper's model and optimizer,
  # importance target, batch 8.
  'paper_b8': dict(),
  # configs/synthetic.py's recipe (issue 22's hand-found row).
  'small': dict(
    model=dict(
      width=128,
      mlp_dim=256,
      head_mlp_dim=64,
      num_encoder_layers=2,
      num_decoder_layers=2,
      text_fusion='tokens',
    ),
    learning_rate=1e-3,
    lr_schedule='cosine',
    warmup_steps=50,
    num_epochs=60,
  ),
}
RECIPES['small_long'] = dict(RECIPES['small'], num_epochs=150)
RECIPES['small_win1024'] = dict(
  RECIPES['small'], model=dict(RECIPES['small']['model'], window=1024), num_epochs=150
)
# Windows that cover every TVSum video; its training step at batch 8 needs about 28 GB (the
# attention of 8 x 2048 steps): an accelerator's run, not a laptop's.
RECIPES['small_win2048'] = dict(
  RECIPES['small'], model=dict(RECIPES['small']['model'], window=2048), num_epochs=150
)
# The same with each window's mean frame subtracted first (model.center_frames).
RECIPES['small_win1024_centered'] = dict(
  RECIPES['small_win1024'], model=dict(RECIPES['small_win1024']['model'], center_frames=True)
)
RECIPES['small_centered_long'] = dict(
  RECIPES['small_long'], model=dict(RECIPES['small']['model'], center_frames=True)
)
# Whole-video context at a CPU's cost: 2 heads of 64 (not 8 of 16) make the 1024-step
# attention about 3x cheaper; batch 4 doubles the updates per epoch.
RECIPES['context'] = dict(
  RECIPES['small_win1024_centered'],
  model=dict(RECIPES['small_win1024_centered']['model'], num_heads=2),
  batch_size=4,
  num_epochs=60,
)
RECIPES['context_long'] = dict(RECIPES['context'], num_epochs=150)
# The context recipe trained on Lc alone (no Ld, no Lr).
RECIPES['context_lc'] = dict(
  RECIPES['context'], loss_weights=dict(classification=1.0, diversity=0.0, reconstruction=0.0)
)
# The context recipe with decoupled weight decay 0.05 (AdamW).
RECIPES['context_adamw'] = dict(RECIPES['context'], optimizer='adamw', weight_decay=0.05)
# The context recipe with its logits averaged over 5 or 9 steps inside the model.
RECIPES.update(
  {
    f'context_smooth{width}': dict(
      RECIPES['context'], model=dict(RECIPES['context']['model'], score_smoothing=width)
    )
    for width in (5, 9)
  }
)
RECIPES['small_lr3e-4_long'] = dict(RECIPES['small'], learning_rate=3e-4, num_epochs=150)
RECIPES['small_b4_long'] = dict(RECIPES['small'], batch_size=4, num_epochs=150)
RECIPES['small_nodrop_long'] = dict(
  RECIPES['small'],
  model=dict(RECIPES['small']['model'], dropout_rate=0.0, attention_dropout_rate=0.0),
  num_epochs=150,
)
RECIPES['mid_long'] = dict(
  RECIPES['small'],
  model=dict(
    width=256,
    mlp_dim=512,
    head_mlp_dim=128,
    num_encoder_layers=3,
    num_decoder_layers=3,
    text_fusion='tokens',
  ),
  learning_rate=5e-4,
  num_epochs=150,
)
RECIPES['paper_cosine'] = dict(
  learning_rate=3e-4, lr_schedule='cosine', warmup_steps=100, num_epochs=100
)


# registry.get(dataset).f1_reduction, without importing the TFDS builders that register it.
F1_REDUCTION = {'summe': 'max'}


def make_config(dataset: str, recipe: str, split: int, seed: int, epochs: int | None):
  """configs/summe_tvsum.py's Standard config (without its TFDS import) plus the recipe."""
  from clipit_jax import config_defaults  # pylint: disable=g-import-not-at-top

  config = config_defaults.get_config()
  config.data.dataset, config.data.setting, config.data.split = dataset, 'standard', split
  config.model.frame_dim = 1024
  config.target, config.batch_size, config.best_metric, config.seed = (
    'importance',
    8,
    'kendall',
    seed,
  )
  overrides = dict(RECIPES[recipe])
  config.model.update(overrides.pop('model', {}))
  config.update(overrides)
  if epochs is not None:
    config.num_epochs = epochs
  return config


def load_videos(dataset: str, manual_dir: str, num_captions: int) -> dict:
  """{key: input_pipeline.Video} of a stand-in h5 file, as loading.benchmark_video makes them."""
  from clipit_jax import protocol, evaluators, input_pipeline  # noqa: I001
  from clipit_jax.datasets import h5_files, tvsum_annotations

  user_scores = {}
  if dataset == 'tvsum':
    anno = tvsum_annotations.load_tvsum_annotations(os.path.join(manual_dir, 'ydata-anno.tsv.gz'))
    user_scores = {k: v.user_scores.astype(np.float32) for k, v in anno.items()}
  videos = {}
  for v in h5_files.read_h5_videos(os.path.join(manual_dir, h5_files.h5_filename(dataset))):
    text, text_mask = input_pipeline.select_captions(np.zeros((0, 512), np.float32), num_captions)
    truth = evaluators.KeyshotTruth(
      gtscore=v.gtscore,
      picks=v.picks,
      change_points=v.change_points,
      user_summary=v.user_summary,
      user_scores=user_scores.get(v.name, v.user_summary.astype(np.float32)),
      n_frames=int(v.n_frames),
      video_name=v.name,
      f1_reduction=F1_REDUCTION.get(dataset, 'avg'),
    )
    videos[v.key] = input_pipeline.Video(
      ref=(dataset, v.key),
      features=v.features.astype(np.float32),
      labels=v.gtsummary.astype(np.float32),
      importance=protocol.min_max(v.gtscore).astype(np.float32),
      text=text,
      text_mask=text_mask,
      truth=truth,
    )
  return videos


def split_videos(videos: dict, dataset: str, split: int, validation_fraction: float) -> dict:
  from clipit_jax.datasets import settings  # pylint: disable=g-import-not-at-top

  chosen = settings.resolve_setting(dataset, 'standard', split, {dataset: list(videos)})
  train, validation = settings.hold_out_validation(chosen['train'], validation_fraction)
  return {
    part: [videos[k] for _, k in refs]
    for part, refs in (('train', train), ('validation', validation), ('test', chosen['test']))
  }


def make_step(config, total_steps: int):
  """Initial parameters and optimizer state, and the jitted `step(params, opt_state, batch,
  i)` of `config` (Adam with its schedule over `total_steps`, the loss of `config.loss`)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp
  import optax

  from clipit_jax import losses, models, train_step

  model = models.CLIPIt(config.model)
  tx = train_step.make_optimizer(config, total_steps)
  init_rng, dropout_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  params = models.init_params(config.model, init_rng)

  @jax.jit
  def step(params, opt_state, batch, i):
    rng = jax.random.fold_in(dropout_rng, i)

    def loss_fn(p):
      out = model.apply(
        {'params': p},
        batch['frames'],
        batch['frame_mask'],
        batch['text'],
        batch['text_mask'],
        deterministic=False,
        rngs={'dropout': rng},
      )
      per = losses.per_sample_losses(out, batch, config)
      return losses.batch_mean(per['total'], jnp.any(batch['frame_mask'], -1))

    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  return params, tx.init(params), step


def step_seconds(recipe: str, dataset: str, repeats: int = 3) -> float:
  """Seconds of one training step of `recipe` (its window and batch, every frame real),
  after a compiling step."""
  import jax  # pylint: disable=g-import-not-at-top

  config = make_config(dataset, recipe, 0, 0, None)
  b, t, m = config.batch_size, config.model.window, config.model.num_captions
  batch = dict(
    frames=np.random.default_rng(0).normal(size=(b, t, config.model.frame_dim)).astype('f4'),
    frame_mask=np.ones((b, t), bool),
    text=np.zeros((b, m, config.model.text_dim), np.float32),
    text_mask=np.zeros((b, m), bool),
    labels=np.zeros((b, t), np.float32),
    importance=np.full((b, t), 0.5, np.float32),
  )
  params, opt_state, step = make_step(config, 100)
  params, opt_state = jax.block_until_ready(step(params, opt_state, batch, 0))
  start = time.time()
  for i in range(repeats):
    params, opt_state = step(params, opt_state, batch, i + 1)
  jax.block_until_ready(params)
  return (time.time() - start) / repeats


def training_epochs(config, videos, transform_batch=None):
  """Trains `config` on `videos` (their windows, batches of `config.batch_size`); yields
  `(epoch, apply, params, steps)` after each epoch. `transform_batch(batch, i)` edits each
  batch (`[batch, window, ...]` arrays) before step `i`."""
  import jax  # pylint: disable=g-import-not-at-top

  from clipit_jax import input_pipeline, models

  windows = input_pipeline.video_windows(videos, config.model.window)
  steps_per_epoch = input_pipeline.num_batches(windows['window_id'].shape[0], config.batch_size, 1)
  params, opt_state, step = make_step(config, steps_per_epoch * config.num_epochs)
  apply = jax.jit(models.CLIPIt(config.model).apply)
  i = 0
  for epoch in range(1, config.num_epochs + 1):
    for batch in input_pipeline.epoch_batches(
      windows, config.batch_size, seed=config.seed, epoch=epoch
    ):
      batch = {k: v[0] for k, v in batch.items()}
      if transform_batch is not None:
        batch = transform_batch(batch, i)
      params, opt_state = step(params, opt_state, batch, i)
      i += 1
    yield epoch, apply, params, i


def train_job(config, data, eval_every: int) -> dict:
  """Trains one run; returns the curve and the test metrics of the best validation epoch."""
  validation = data['validation'] or data['train']
  curve, best, start = [], None, time.time()
  for epoch, apply, params, steps in training_epochs(config, data['train']):
    if epoch % eval_every and epoch != config.num_epochs:
      continue
    val = evaluate(apply, params, validation, config.model.window)
    test = evaluate(apply, params, data['test'], config.model.window)
    curve.append(dict(epoch=epoch, val=val, test=test))
    print(
      f'  {config.data.dataset} split {config.data.split} seed {config.seed} epoch {epoch}: '
      f'val tau {val["kendall"]:.3f} test tau {test["kendall"]:.3f} rho '
      f'{test["spearman"]:.3f} ({time.time() - start:.0f}s, {steps} steps)',
      flush=True,
    )
    if best is None or val['kendall'] > best['val']['kendall']:
      best = curve[-1]
  return dict(best=best, curve=curve, steps=steps, seconds=time.time() - start)


def score_videos(apply, params, videos, window: int) -> list[np.ndarray]:
  """evaluators.score_video of each video, 2 windows a call (its default of 16 windows of 2048
  steps holds 16 attention matrices of 2048 x 2048 per head at once)."""
  from clipit_jax import evaluators  # pylint: disable=g-import-not-at-top

  return [
    np.asarray(
      evaluators.score_video(apply, params, v.features, v.text, v.text_mask, window, batch_size=2)
    )
    for v in videos
  ]


def evaluate(apply, params, videos, window: int) -> dict[str, float]:
  """The test metrics (`evaluators.evaluate_scores`) of `score_videos`."""
  from clipit_jax import evaluators  # pylint: disable=g-import-not-at-top

  return evaluators.evaluate_scores(videos, score_videos(apply, params, videos, window))['metrics']


def probes(manual_dir: str, datasets, splits, validation_fraction: float) -> dict:
  """{dataset: {split: test metrics of the references}}: the validated probe on gtscore, the
  annotators' mean, and the probe plus the training-free context `within_video_rarity` (both
  standardised per video, the rarity's weight chosen on validation tau)."""
  from clipit_jax import baselines, evaluators  # pylint: disable=g-import-not-at-top

  def standard(x):
    return (x - x.mean()) / (x.std() + 1e-9)

  out = {}
  for dataset in datasets:
    videos = load_videos(dataset, manual_dir, 7)
    for split in splits:
      data = split_videos(videos, dataset, split, validation_fraction)
      probe = baselines.validated_probe(data['train'], data['validation'], 'importance')

      def context(vs, weight, window=None):
        return [
          standard(probe(v.features)) + weight * standard(windowed_rarity(v.features, window))
          for v in vs
        ]

      def metrics(vs, scores):
        return evaluators.evaluate_scores(vs, scores)['metrics']

      weight = max(
        (0.0, 0.25, 0.5, 1.0, 2.0, 4.0),
        key=lambda w: metrics(data['validation'], context(data['validation'], w))['kendall'],
      )
      test = data['test']
      out.setdefault(dataset, {})[split] = dict(
        probe=metrics(test, [probe(v.features) for v in test]),
        annotators=metrics(test, [v.importance for v in test]),
        probe_and_rarity=dict(metrics(test, context(test, weight)), weight=weight),
      )
      for window in RARITY_WINDOWS:  # The same weight, the rarity within each model window.
        out[dataset][split][f'probe_and_rarity_{window}'] = metrics(
          test, context(test, weight, window)
        )
  return out


RARITY_WINDOWS = (256, 512, 1024)


def windowed_rarity(features: np.ndarray, window: int | None) -> np.ndarray:
  """`baselines.within_video_rarity` within each window of `window` steps (None: the whole
  video), as a model that sees one window at a time could compute it, `[n]`."""
  from clipit_jax import baselines  # pylint: disable=g-import-not-at-top

  window = window or len(features)
  return np.concatenate(
    [
      baselines.within_video_rarity(features[i : i + window])
      for i in range(0, len(features), window)
    ]
  )


def jobs(args) -> list[tuple]:
  """(recipe, dataset, split, seed), seed and split outermost so that early jobs cover all.

  The search phase: every recipe on `search_splits` x `search_seeds`; the final phase
  (`final` = {dataset: recipe}): the chosen recipe on `splits` x `seeds`, less runs done.
  """
  if not args.final:
    return [
      (r, d, sp, se)
      for se in args.search_seeds
      for sp in args.search_splits
      for d in args.datasets
      for r in args.recipes
    ]
  final = dict(item.split('=') for item in args.final.split(','))
  done = {(r['recipe'], r['dataset'], r['split'], r['seed']) for r in read_runs(args.out)}
  todo = [(final[d], d, sp, se) for se in args.seeds for sp in args.splits for d in final]
  return [job for job in todo if job not in done]


def read_runs(out: str) -> list[dict]:
  path = os.path.join(out, 'runs.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def choose(out: str, datasets) -> dict[str, str]:
  """{dataset: the recipe of the highest mean validation tau} over the runs done."""
  runs, chosen = read_runs(out), {}
  for dataset in datasets:
    means = {}
    for r in runs:
      if r['dataset'] == dataset:
        means.setdefault(r['recipe'], []).append(r['best']['val']['kendall'])
    if means:
      chosen[dataset] = max(means, key=lambda k: np.mean(means[k]))
  return chosen


def worker(args) -> None:
  index, count = map(int, args.worker.split('/'))
  cache = {}
  deadline = args.start + (args.final_start_s if args.final else args.search_s)
  path = os.path.join(args.out, 'runs.jsonl')
  for n, (recipe, dataset, split, seed) in enumerate(jobs(args)):
    if n % count != index or time.time() > deadline:
      continue
    config = make_config(dataset, recipe, split, seed, args.epochs)
    config.data.validation_fraction = args.validation_fraction
    if dataset not in cache:
      cache[dataset] = load_videos(dataset, args.manual_dir, config.model.num_captions)
    data = split_videos(cache[dataset], dataset, split, args.validation_fraction)
    result = train_job(config, data, args.eval_every)
    line = dict(recipe=recipe, dataset=dataset, split=split, seed=seed, **result)
    with open(path, 'a') as f:
      fcntl.flock(f, fcntl.LOCK_EX)
      f.write(json.dumps(line) + '\n')
    print(
      f'[{index}] {recipe} {dataset} split {split} seed {seed}: best epoch '
      f'{result["best"]["epoch"]} val tau {result["best"]["val"]["kendall"]:.3f} test tau '
      f'{result["best"]["test"]["kendall"]:.3f} rho {result["best"]["test"]["spearman"]:.3f}'
      f' ({result["seconds"]:.0f}s)',
      flush=True,
    )


def table(out: str) -> str:
  """Markdown: per dataset and recipe, validation tau (the choice), test tau/rho/F1 vs probe."""
  runs = read_runs(out)
  with open(os.path.join(out, 'probes.json')) as f:
    probe = json.load(f)
  lines = [
    '| dataset | recipe | runs | val tau | test tau | test rho | test F1 | tau - probe '
    '(min over splits) | rho - probe (min over splits) | best epochs | s/run |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ]
  for dataset in sorted({r['dataset'] for r in runs}):
    for recipe in RECIPES:
      rs = [r for r in runs if r['dataset'] == dataset and r['recipe'] == recipe]
      if not rs:
        continue

      def stat(part, key):
        v = [r['best'][part][key] for r in rs]
        return f'{np.mean(v):.3f} ± {np.std(v):.3f}' if key != 'f1' else f'{np.mean(v):.1f}'

      gaps = {}
      for key in ('kendall', 'spearman'):
        per_split = {}
        for r in rs:
          per_split.setdefault(r['split'], []).append(r['best']['test'][key])
        diffs = [np.mean(v) - probe[dataset][str(s)]['probe'][key] for s, v in per_split.items()]
        gaps[key] = f'{np.mean(diffs):+.3f} ({min(diffs):+.3f})'
      lines.append(
        f'| {dataset} | {recipe} | {len(rs)} | {stat("val", "kendall")} | '
        f'{stat("test", "kendall")} | {stat("test", "spearman")} | {stat("test", "f1")} | '
        f'{gaps["kendall"]} | {gaps["spearman"]} | '
        f'{",".join(str(r["best"]["epoch"]) for r in rs)} | '
        f'{np.mean([r["seconds"] for r in rs]):.0f} |'
      )
  for dataset, per_split in sorted(probe.items()):
    names = ['probe', 'probe_and_rarity', *(f'probe_and_rarity_{w}' for w in RARITY_WINDOWS)]
    for name in [*names, 'annotators']:
      m = [v[name] for v in per_split.values() if name in v]
      if not m:
        continue
      lines.append(
        f'| {dataset} | reference: {name} (splits {",".join(per_split)}) | | | '
        f'{np.mean([x["kendall"] for x in m]):.3f} | {np.mean([x["spearman"] for x in m]):.3f} |'
        f' {np.mean([x["f1"] for x in m]):.1f} | | | | |'
      )
  return '\n'.join(lines) + '\n'


def spawn(args, env, final: str | None) -> list:
  """The worker processes of a phase (none with --probes_only)."""
  extra = ['--start', str(args.start)] + (['--final', final] if final else [])
  return [
    subprocess.Popen(
      [sys.executable, __file__, *sys.argv[1:], *extra, '--worker', f'{i}/{args.workers}'],
      env=env,
    )
    for i in range(0 if args.probes_only else args.workers)
  ]


def wait(procs, deadline: float) -> None:
  """Waits for the workers; kills those still running at `deadline` (their runs are lost)."""
  for p in procs:
    try:
      p.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
      p.kill()
      print(f'killed worker {p.pid} at the deadline', flush=True)


def parse_args() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--manual_dir', required=True)
  parser.add_argument('--out', required=True)
  parser.add_argument('--summe_gt')
  parser.add_argument('--tvsum_annotations')
  parser.add_argument('--tvsum_shots')
  parser.add_argument('--recipes', type=lambda s: s.split(','), default=list(RECIPES))
  parser.add_argument('--datasets', type=lambda s: s.split(','), default=['tvsum', 'summe'])
  parser.add_argument(
    '--splits', type=lambda s: [int(x) for x in s.split(',')], default=[0, 1, 2, 3, 4]
  )
  parser.add_argument('--seeds', type=lambda s: [int(x) for x in s.split(',')], default=[0, 1, 2])
  parser.add_argument('--epochs', type=int, default=None, help='Override (dry runs).')
  parser.add_argument('--eval_every', type=int, default=3)
  parser.add_argument('--validation_fraction', type=float, default=0.1)
  parser.add_argument('--probes', default=None, help='A probes.json of an earlier run.')
  parser.add_argument('--probes_only', action='store_true')
  parser.add_argument(
    '--step_seconds', action='store_true', help="Only time each recipe's training step."
  )
  parser.add_argument('--workers', type=int, default=3, help='Processes on the one device.')
  parser.add_argument(
    '--search_splits', type=lambda s: [int(x) for x in s.split(',')], default=[0, 1]
  )
  parser.add_argument('--search_seeds', type=lambda s: [int(x) for x in s.split(',')], default=[0])
  parser.add_argument(
    '--search_s',
    type=float,
    default=1e9,
    help='No search job starts after this many seconds; then the final phase.',
  )
  parser.add_argument(
    '--final_start_s', type=float, default=1e9, help='No final job starts after this many seconds.'
  )
  parser.add_argument('--total_s', type=float, default=1e9, help='Workers are killed then.')
  parser.add_argument('--final', default=None, help=argparse.SUPPRESS)
  parser.add_argument('--start', type=float, default=None)
  parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
  return parser.parse_args()


def main() -> None:
  args = parse_args()
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  if args.worker:
    return worker(args)
  if args.step_seconds:
    for recipe in args.recipes:
      seconds = step_seconds(recipe, args.datasets[0])
      print(f'{recipe}: {seconds:.2f} s a training step', flush=True)
    return None
  from clipit_jax.datasets import h5_files, standins  # pylint: disable=g-import-not-at-top

  args.start = time.time()
  os.makedirs(args.out, exist_ok=True)
  for dataset in args.datasets:
    if not os.path.exists(os.path.join(args.manual_dir, h5_files.h5_filename(dataset))):
      standins.write_standin(
        dataset,
        args.manual_dir,
        tvsum_annotations=args.tvsum_annotations,
        tvsum_shots=args.tvsum_shots,
        summe_gt=args.summe_gt,
      )
  for dataset in args.datasets:  # The same on every machine: the stand-ins are deterministic.
    videos = load_videos(dataset, args.manual_dir, 7)
    total = sum(float(np.sum(v.features, dtype=np.float64)) for v in videos.values())
    print(f'{dataset}: {len(videos)} videos, feature sum {total:.6f}', flush=True)
  env = dict(
    os.environ,
    XLA_PYTHON_CLIENT_PREALLOCATE='false',
    OMP_NUM_THREADS='1',
    OPENBLAS_NUM_THREADS='1',
    MKL_NUM_THREADS='1',
  )
  procs = spawn(args, env, None)
  if args.probes:  # Computed earlier on the same stand-ins (they are deterministic).
    shutil.copy(args.probes, os.path.join(args.out, 'probes.json'))
  else:
    result = probes(args.manual_dir, args.datasets, args.splits, args.validation_fraction)
    with open(os.path.join(args.out, 'probes.json'), 'w') as f:
      json.dump(result, f)
  print(f'probes ready ({time.time() - args.start:.0f}s)', flush=True)
  wait(procs, args.start + args.total_s)
  if not args.probes_only:
    final = ','.join(f'{d}={r}' for d, r in choose(args.out, args.datasets).items())
    print(f'chosen by validation tau: {final} ({time.time() - args.start:.0f}s)', flush=True)
    if final:
      wait(spawn(args, env, final), args.start + args.total_s)
  text = table(args.out)
  with open(os.path.join(args.out, 'table.md'), 'w') as f:
    f.write(text)
  print(text)


if __name__ == '__main__':
  main()
