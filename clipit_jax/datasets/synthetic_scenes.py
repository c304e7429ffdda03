"""Procedural videos for the synthetic benchmark: scenes of coloured shapes in motion.

A video is a sequence of scenes over one background; each scene shows one object (a
colour and a shape) moving. Most scenes of a video show its one or two "common"
objects (red, green or blue circles and squares); a few show a rare event (a triangle
or a yellow object). Ground truth follows the content:

- generic importance: rare events matter. A scene's importance is its rarity in the
  video (1 - the share of the video's scenes showing the same object), scaled by 1
  for rare-event objects and by 0.3 for everyday ones;
- query-focused importance for a query "<colour> <shape>": scenes showing exactly that
  object matter most, scenes sharing only its colour or shape a little.

Simulated annotators (annotators.py) add scene-level and 2-second-segment noise to the
truth and score 1-5 per frame, like TVSum's annotators. Everything is a pure function of
the seed.
"""

import dataclasses

import numpy as np

COLOURS = {
  'red': (220, 40, 40),
  'green': (40, 190, 70),
  'blue': (50, 90, 235),
  'yellow': (235, 215, 40),
}
SHAPES = ('circle', 'square', 'triangle')
BACKGROUNDS = {'dark': (25, 25, 35), 'grey': (120, 120, 120), 'light': (215, 215, 205)}
DIRECTIONS = {'left': (-1.0, 0.0), 'right': (1.0, 0.0), 'up': (0.0, -1.0), 'down': (0.0, 1.0)}


@dataclasses.dataclass(frozen=True)
class Scene:
  """One scene: `frames` source frames of an object moving over a background."""

  colour: str
  shape: str
  background: str
  direction: str
  frames: int
  size: int
  start_xy: tuple[float, float]

  @property
  def concept(self) -> str:
    return f'{self.colour} {self.shape}'

  def caption(self) -> str:
    return f'a {self.colour} {self.shape} moves {self.direction} on a {self.background} background'


def make_script(
  rng: np.random.Generator,
  fps: float,
  min_scenes: int = 6,
  max_scenes: int = 10,
  scene_seconds: tuple[float, float] = (3.0, 7.0),
  image_size: int = 64,
) -> list[Scene]:
  """A random sequence of scenes: mostly 1-2 common objects, a few rare events."""
  concepts = [(c, s) for c in COLOURS for s in SHAPES]
  events = [(c, s) for c, s in concepts if c == 'yellow' or s == 'triangle']
  everyday = [(c, s) for c, s in concepts if (c, s) not in events]
  common = [everyday[i] for i in rng.permutation(len(everyday))[: int(rng.integers(1, 3))]]
  rare = events
  # One background per video: with random encoders the background would otherwise
  # dominate the frame features and hide the objects that the ground truth is about.
  background = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
  scenes = []
  for _ in range(int(rng.integers(min_scenes, max_scenes + 1))):
    colour, shape = (
      common[rng.integers(len(common))] if rng.random() < 0.75 else rare[rng.integers(len(rare))]
    )
    size = int(rng.integers(image_size // 3, image_size // 2))
    scenes.append(
      Scene(
        colour=colour,
        shape=shape,
        background=background,
        direction=list(DIRECTIONS)[rng.integers(len(DIRECTIONS))],
        frames=max(2, int(round(rng.uniform(*scene_seconds) * fps))),
        size=size,
        start_xy=(
          float(rng.uniform(size, image_size - size)),
          float(rng.uniform(size, image_size - size)),
        ),
      )
    )
  return scenes


def _shape_mask(shape: str, cx: float, cy: float, size: int, image_size: int) -> np.ndarray:
  y, x = np.mgrid[0:image_size, 0:image_size].astype(np.float32)
  half = size / 2
  if shape == 'circle':
    return (x - cx) ** 2 + (y - cy) ** 2 <= half**2
  if shape == 'square':
    return (np.abs(x - cx) <= half) & (np.abs(y - cy) <= half)
  # An upward triangle: below the two slanted edges and above the base.
  top = cy - half
  return (y <= cy + half) & (y >= top + 2 * np.abs(x - cx))


def render_scene(scene: Scene, image_size: int = 64) -> np.ndarray:
  """The scene's frames, uint8 `[frames, image_size, image_size, 3]`."""
  out = np.empty((scene.frames, image_size, image_size, 3), np.uint8)
  out[:] = BACKGROUNDS[scene.background]
  dx, dy = DIRECTIONS[scene.direction]
  speed = 0.6 * image_size / max(scene.frames, 1)
  for t in range(scene.frames):
    cx = (scene.start_xy[0] + dx * speed * t) % image_size
    cy = (scene.start_xy[1] + dy * speed * t) % image_size
    out[t][_shape_mask(scene.shape, cx, cy, scene.size, image_size)] = COLOURS[scene.colour]
  return out


def scene_of_frame(scenes: list[Scene]) -> np.ndarray:
  """Index of the scene each source frame belongs to, `[n_frames]`."""
  return np.repeat(np.arange(len(scenes)), [s.frames for s in scenes])


def is_event(scene: Scene) -> bool:
  """Rare events are triangles and yellow objects; everyday objects are the rest."""
  return scene.colour == 'yellow' or scene.shape == 'triangle'


def generic_importance(scenes: list[Scene]) -> np.ndarray:
  """Per-scene importance in [0, 1]: rarity in the video, x1 for events, x0.3 otherwise."""
  concepts = [s.concept for s in scenes]
  return np.array(
    [
      (1.0 if is_event(s) else 0.3) * (1.0 - concepts.count(s.concept) / len(scenes))
      for s in scenes
    ]
  )


def query_importance(scenes: list[Scene], query: str) -> np.ndarray:
  """Per-scene importance for a '<colour> <shape>' query: 1 exact, 0.25 half-match, else 0."""
  colour, shape = query.split()
  return np.array(
    [
      1.0
      if (s.colour, s.shape) == (colour, shape)
      else 0.25
      if s.colour == colour or s.shape == shape
      else 0.0
      for s in scenes
    ]
  )
