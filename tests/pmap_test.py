"""`train_step` under `jax.pmap` over 4 CPU devices equals one device on the global batch.

The check runs in a subprocess, since the device count is fixed when JAX starts.
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
  from flax import jax_utils  # pylint: disable=g-import-not-at-top

  from clipit_jax import train  # pylint: disable=g-import-not-at-top
  from testutil import random_batch, small_config  # pylint: disable=g-import-not-at-top

  assert jax.local_device_count() == 4, jax.devices()
  config = small_config(dropout_rate=0.0, attention_dropout_rate=0.0)
  # Uneven padding: devices hold 2, 2, 1 and 0 real samples (two per device).
  batch = random_batch(config, 8, [16, 12, 16, 5, 9, 0, 0, 0])
  rng = jax.random.PRNGKey(3)
  # Plain SGD: parameter differences are then gradient differences. (Adam's first
  # step moves every parameter by about lr whatever the gradient, hiding errors.)
  state = train.create_train_state(config, jax.random.PRNGKey(0)).replace(tx=optax.sgd(0.1))
  state = state.replace(opt_state=state.tx.init(state.params))
  single_step = jax.jit(functools.partial(train.train_step, config=config))
  multi_step = train.make_train_step(config, pmapped=True)  # What train.py runs.
  one, four = state, train.replicate(state, config.axis_name)
  four_rng = train.replicate(rng, config.axis_name)
  sharded = jax.tree.map(lambda x: x.reshape((4, 2) + x.shape[1:]), batch)
  compiles = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda name, *_, **__: compiles.append(name) if name.endswith('backend_compile_duration')
      else None)
  for i in range(3):
    one, metrics_one = single_step(one, batch, rng)
    compiled_before = len(compiles)
    four, metrics_four = multi_step(four, sharded, four_rng)
    if i > 0:  # The returned state is laid out as the replicated one: no second compile.
      assert len(compiles) == compiled_before, f'step {i} compiled again'
    for key in metrics_one:
      np.testing.assert_allclose(metrics_four[key][0], metrics_one[key], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(jax_utils.unreplicate(four).params)):
    np.testing.assert_allclose(a, b, atol=1e-5)
  print('pmap matches single device')


def test_pmap_over_four_devices_matches_one_device():
  tests_dir = pathlib.Path(__file__).resolve().parent
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4',
             JAX_PLATFORMS='cpu',
             PYTHONPATH=os.pathsep.join([str(tests_dir), os.environ.get('PYTHONPATH', '')]))
  result = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
  assert result.returncode == 0, result.stdout + result.stderr
  assert 'pmap matches single device' in result.stdout


if __name__ == '__main__':
  _compare_one_and_four_devices()
