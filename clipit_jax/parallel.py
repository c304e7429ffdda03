"""Data parallelism: the per-device train step over every device of every host.

`make_train_step(config, mesh)` compiles the one per-device step, `train_step.train_step`
with its gradients `pmean`-ed and its metrics `psum`-ed over `config.axis_name`, and
says how its inputs sit on the devices:

  step = make_train_step(config, make_mesh(config))
  state, rng = step.place_state(state), step.place_state(rng)
  state, metrics = step(state, step.place_batch(host_batch), rng)
  saved = step.global_state(state)              # what Orbax saves and restores

'shard_map' (`ShardMapStep`, the default): `jax.jit(jax.shard_map(...))` over the mesh of
all hosts' devices; the state is one replicated global array per leaf and the batch one
global array `[global_batch, ...]` split over the mesh axis. 'pmap' (`PmapStep`): the
same step under `jax.pmap` over the local devices, as a thin wrapper.
"""

import collections
import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from clipit_jax import train_step

Array = jax.Array
Batch = dict[str, Array]


def make_mesh(config: ml_collections.ConfigDict) -> Mesh:
  """Every device of every host on one data axis, `config.axis_name`."""
  return Mesh(np.array(jax.devices()), (config.axis_name,))


class ShardMapStep:
  """`state, metrics = step(state, batch, rng)`: the per-device step under `jax.shard_map`.

  The state and the dropout key are replicated over `mesh` (`NamedSharding(mesh, P())`)
  and the batch `[global_batch, ...]` is split over its axis; each device runs
  `train_step` on its part. The state is donated.
  """

  def __init__(self, config: ml_collections.ConfigDict, mesh: Mesh):
    self.config, self.mesh, self.axis_name = config, mesh, config.axis_name
    per_device = functools.partial(train_step.train_step, config=config, axis_name=self.axis_name)
    self._step = self._compile(per_device)

  def __call__(self, state: Any, batch: Batch, rng: Array) -> tuple[Any, dict[str, Array]]:
    return self._step(state, batch, rng)

  def _compile(self, per_device: Callable) -> Callable:
    replicated, split = P(), P(self.axis_name)
    # check_vma=False: autodiff must not insert its own psum into the gradients of the
    # replicated parameters; the step averages them itself.
    mapped = jax.shard_map(
      per_device,
      mesh=self.mesh,
      in_specs=(replicated, split, replicated),
      out_specs=(replicated, replicated),
      check_vma=False,
    )
    return jax.jit(mapped, donate_argnums=(0,))

  def place_state(self, tree: Any) -> Any:
    """The state (or the dropout key) replicated on every device of the mesh. Every host
    must pass the same values."""
    return jax.device_put(tree, NamedSharding(self.mesh, P()))

  def place_batch(self, batch: Batch) -> Batch:
    """A host batch `[local_devices, per_device, ...]` (`input_pipeline.epoch_batches`) as
    this host's part of one global array `[global_batch, ...]` split over the mesh axis."""
    sharding = NamedSharding(self.mesh, P(self.axis_name))
    return {
      k: jax.make_array_from_process_local_data(sharding, v.reshape((-1,) + v.shape[2:]))
      for k, v in batch.items()
    }

  def global_state(self, placed: Any) -> Any:
    """The placed state replicated over the mesh: what Orbax saves and restores."""
    return placed


class PmapStep(ShardMapStep):
  """The same per-device step under `jax.pmap` over this host's devices (config.parallelism
  'pmap'; pmap is in maintenance mode since JAX 0.8): state `[local_devices, ...]`, batches
  `[local_devices, per_device, ...]`."""

  def _compile(self, per_device: Callable) -> Callable:
    return jax.pmap(per_device, axis_name=self.axis_name, donate_argnums=(0,))

  def _local_split(self) -> NamedSharding:
    return NamedSharding(Mesh(np.array(jax.local_devices()), (self.axis_name,)), P(self.axis_name))

  def place_state(self, tree: Any) -> Any:
    """`[local_devices, ...]` copies laid out as `jax.pmap` lays out its outputs
    (`flax.jax_utils.replicate` names its mesh axis otherwise, so the second step would
    compile again)."""
    sharding, n = self._local_split(), jax.local_device_count()
    return jax.tree.map(
      lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (n,) + np.shape(x)), sharding), tree
    )

  def place_batch(self, batch: Batch) -> Batch:
    return jax.device_put(batch, self._local_split())

  def global_state(self, placed: Any) -> Any:
    first = lambda x: np.asarray(x.addressable_data(0)).reshape(x.shape[1:])  # noqa: E731
    return jax.device_put(jax.tree.map(first, placed), NamedSharding(self.mesh, P()))


def make_train_step(config: ml_collections.ConfigDict, mesh: Mesh) -> ShardMapStep:
  """The per-device step for `config.parallelism` over `mesh`, with its input placement."""
  return (PmapStep if config.parallelism == 'pmap' else ShardMapStep)(config, mesh)


def local_copy(tree: Any) -> Any:
  """This host's first device's copy of replicated arrays: evaluation runs there."""
  return jax.tree.map(lambda x: x.addressable_data(0), tree)


def prefetch(
  batches: Iterator[Batch], place: Callable[[Batch], Batch], ahead: int = 1
) -> Iterator[Batch]:
  """`place(batch)` for each batch, placed `ahead` batches before it is needed.

  The step runs asynchronously, so the next batch is assembled and copied to the
  devices while the current step computes.
  """
  queue = collections.deque()
  for batch in batches:
    queue.append(place(batch))
    if len(queue) > ahead:
      yield queue.popleft()
  while queue:
    yield queue.popleft()
