"""`train_step` per device over 4 CPU devices, under shard_map and pmap, equals one device.

The checks run in a subprocess, since the device count is fixed when JAX starts.
"""

import functools
import os
import pathlib
import subprocess
import sys

import numpy as np


def _compare_one_and_four_devices() -> None:
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  from clipit_jax import parallel  # pylint: disable=g-import-not-at-top
  from clipit_jax import train_step  # pylint: disable=g-import-not-at-top
  from testutil import random_batch, small_config  # pylint: disable=g-import-not-at-top

  assert jax.device_count() == 4, jax.devices()
  config = small_config(dropout_rate=0.0, attention_dropout_rate=0.0)
  # Uneven padding: devices hold 2, 2, 1 and 0 real samples (two per device).
  batch = random_batch(config, 8, [16, 12, 16, 5, 9, 0, 0, 0])
  host_batch = jax.tree.map(lambda x: x.reshape((4, 2) + x.shape[1:]), batch)  # epoch_batches'
  rng = jax.random.PRNGKey(3)
  # Plain SGD: parameter differences are then gradient differences. (Adam's first
  # step moves every parameter by about lr whatever the gradient, hiding errors.)
  state = train_step.create_train_state(config, jax.random.PRNGKey(0)).replace(tx=optax.sgd(0.1))
  state = state.replace(opt_state=state.tx.init(state.params))
  one = state
  single_step = jax.jit(functools.partial(train_step.train_step, config=config))
  compiles = []
  jax.monitoring.register_event_duration_secs_listener(
    lambda event, *_, **__: (
      compiles.append(event) if event.endswith('backend_compile_duration') else None
    )
  )
  outputs_one = []
  for _ in range(3):
    one, metrics = single_step(one, batch, rng)
    outputs_one.append(metrics)

  for mode in ('shard_map', 'pmap'):
    config.parallelism = mode
    step = parallel.make_train_step(config, parallel.make_mesh(config))  # What train.py runs.
    fresh = jax.tree.map(np.array, state)  # The step donates the state it is given.
    four, four_rng = step.place_state(fresh), step.place_state(rng)
    placed = step.place_batch(host_batch)
    if mode == 'shard_map':  # One global batch, a quarter of it on each device.
      assert placed['frames'].shape == batch['frames'].shape
      assert {s.data.shape[0] for s in placed['frames'].addressable_shards} == {2}
    before = len(compiles)
    for i in range(3):
      four, metrics = step(four, placed, four_rng)
      for key, value in outputs_one[i].items():
        np.testing.assert_allclose(np.ravel(metrics[key])[0], value, rtol=1e-5, err_msg=key)
    # One compile; the returned state is laid out as the one given, so no second.
    assert len(compiles) == before + 1, (mode, compiles[before:])
    params = parallel.local_copy(step.global_state(four)).params
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(params)):
      np.testing.assert_allclose(a, b, atol=1e-5)
    print(f'{mode} matches single device')


def test_shard_map_and_pmap_over_four_devices_match_one_device():
  tests_dir = pathlib.Path(__file__).resolve().parent
  env = dict(
    os.environ,
    XLA_FLAGS='--xla_force_host_platform_device_count=4',
    JAX_PLATFORMS='cpu',
    PYTHONPATH=os.pathsep.join([str(tests_dir), os.environ.get('PYTHONPATH', '')]),
  )
  result = subprocess.run(
    [sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600, check=False
  )
  assert result.returncode == 0, result.stdout + result.stderr
  assert 'shard_map matches single device' in result.stdout
  assert 'pmap matches single device' in result.stdout


if __name__ == '__main__':
  _compare_one_and_four_devices()
