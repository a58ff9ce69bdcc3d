"""The Yin-Yang data set (Kriener, Göltz, Petrovici 2021), generated in code.

Definition (the published reference generator, reproduced draw for draw):

- ``rng = numpy.random.RandomState(seed)``; for each of ``size`` samples draw a
  goal class ``rng.randint(3)``, then draw points ``(x, y) = rng.rand(2) * 2 *
  r_big`` until one lies in the big disc (centre ``(r_big, r_big)``, radius
  ``r_big``) and has the goal class (rejection sampling), so the classes are
  balanced in expectation (``exact_balance=True`` instead cycles through a
  seeded permutation of ``0, 1, 2, 0, 1, 2, ...`` goals: counts differ by at
  most 1; this departs from the published sets).
- ``r_big = 0.5``, ``r_small = 0.1``; with ``d_right``/``d_left`` the distances
  to the dot centres ``(1.5 r_big, r_big)`` / ``(0.5 r_big, r_big)``:
  ``is_yin = d_right <= r_small or r_small < d_left <= r_big / 2 or
  (y > r_big and d_right > r_big / 2)``; the class is 2 ("dot") when
  ``d_right < r_small or d_left < r_small``, else ``int(is_yin)``.  The labels
  are exactly the reference's integers (its ``class_names`` list reads
  ``['yin', 'yang', 'dot']`` while ``int(is_yin)`` gives the yin region label 1;
  we keep the integers and the names as published).
- Inputs: ``(x, y, 1 - x, 1 - y)`` (all in [0, 1]) plus a constant bias input
  (``bias``, default 1.0; ``bias=None`` leaves 4 inputs).

The published sets: train ``seed=42, size=5000``, validation ``seed=41,
size=1000``, test ``seed=40, size=1000`` (:data:`SPLITS`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from spikeloop.data.batching import ArrayDataset

R_BIG = 0.5
R_SMALL = 0.1
CLASS_NAMES = ("yin", "yang", "dot")
#: the published splits: name -> (seed, size)
SPLITS = {"train": (42, 5000), "validation": (41, 1000), "test": (40, 1000)}


def which_class(x: float, y: float, r_big: float = R_BIG, r_small: float = R_SMALL) -> int:
    d_right = math.sqrt((x - 1.5 * r_big) ** 2 + (y - r_big) ** 2)
    d_left = math.sqrt((x - 0.5 * r_big) ** 2 + (y - r_big) ** 2)
    is_yin = (d_right <= r_small or r_small < d_left <= 0.5 * r_big
              or (y > r_big and d_right > 0.5 * r_big))
    if d_right < r_small or d_left < r_small:
        return 2
    return int(is_yin)


def generate_yinyang(size: int, seed: int, *, r_big: float = R_BIG, r_small: float = R_SMALL,
                     exact_balance: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(xy [size, 2] float64, labels [size] int64)`` by the reference's rejection sampling."""
    rng = np.random.RandomState(seed)
    goals = None
    if exact_balance:
        goals = rng.permutation(np.arange(size) % 3)
    xy = np.empty((size, 2))
    labels = np.empty(size, dtype=np.int64)
    for k in range(size):
        goal = int(goals[k]) if goals is not None else rng.randint(3)
        while True:
            x, y = rng.rand(2) * 2.0 * r_big
            if math.sqrt((x - r_big) ** 2 + (y - r_big) ** 2) > r_big:
                continue
            if which_class(x, y, r_big, r_small) == goal:
                break
        xy[k] = x, y
        labels[k] = goal
    return xy, labels


def yinyang_inputs(xy: np.ndarray, bias: float | None = 1.0) -> np.ndarray:
    """``[N, 2]`` points -> ``[N, 5]`` inputs ``(x, y, 1-x, 1-y, bias)`` (4 without bias)."""
    x, y = xy[:, 0], xy[:, 1]
    cols = [x, y, 1.0 - x, 1.0 - y]
    if bias is not None:
        cols.append(np.full_like(x, bias))
    return np.stack(cols, axis=1)


def load_yinyang(split: str = "train", *, size: int | None = None, seed: int | None = None,
                 bias: float | None = 1.0, exact_balance: bool = False) -> ArrayDataset:
    """Yin-Yang as float32 inputs ``[N, 5]`` and labels ``[N]``.

    ``split`` picks the published seed and size; ``size``/``seed`` override them.
    """
    if split not in SPLITS:
        raise ValueError(f"split = {split!r}; allowed: {tuple(SPLITS)}")
    seed = SPLITS[split][0] if seed is None else seed
    size = SPLITS[split][1] if size is None else size
    xy, labels = generate_yinyang(size, seed, exact_balance=exact_balance)
    return ArrayDataset(torch.from_numpy(yinyang_inputs(xy, bias)).to(torch.float32),
                        torch.from_numpy(labels), name=f"yinyang-{split}",
                        class_names=CLASS_NAMES,
                        info={"seed": seed, "size": size, "bias": bias,
                              "exact_balance": exact_balance,
                              "r_big": R_BIG, "r_small": R_SMALL})
