"""Training-order samplers, registered by name (``random`` = plain shuffling).

A sampler factory takes the training split and a seed and returns a ``torch`` sampler, or
``None`` to let the loader shuffle.

``class_aware`` and ``patient`` follow class-aware sampling (Shen, Lin & Huang, "Relay
Backpropagation for Effective Learning of Deep Convolutional Neural Networks", ECCV 2016): draw a
class uniformly, then a sample of it — here as one weighted draw with replacement.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler, WeightedRandomSampler

from funduslab.data.split_data import SplitData
from funduslab.registry import Registry

__all__ = ["SAMPLERS", "PatientSampler", "build_sampler", "patient_groups"]

log = logging.getLogger(__name__)

SAMPLERS: Registry = Registry("sampler")


def _label_matrix(targets: np.ndarray) -> np.ndarray:
    """``(N, K)`` 0/1 labels; ``(N,)`` grades become one-hot.

    A missing multi-label entry (NaN, a label the row's dataset lacks; see
    :mod:`funduslab.data.join`) becomes 0 here: sampling weights count observed positives only,
    which is what the loss sees too. Nothing is guessed for the loss; this only orders draws.
    """
    y = np.asarray(targets)
    if y.ndim == 1:  # grades → one-hot
        return np.eye(int(y.max()) + 1)[y.astype(int)]
    return np.nan_to_num(y.astype(np.float64), nan=0.0)


@SAMPLERS.register("random")
def _random(split: SplitData, seed: int) -> Sampler | None:
    return None


def _inverse_frequency(split: SplitData, seed: int, power: float) -> Sampler:
    """Weight ``w_i = max_c y_ic / n_c^power`` (all-negative samples: ``1 / n_neg^power``)."""
    y = _label_matrix(split.targets)
    counts = y.sum(axis=0).clip(min=1)
    weights = (y / counts**power).max(axis=1)
    none = y.sum(axis=1) == 0
    if none.any():
        weights[none] = 1.0 / none.sum() ** power
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(
        torch.as_tensor(weights, dtype=torch.double), len(y), replacement=True, generator=generator
    )


@SAMPLERS.register("class_aware")
def class_aware(split: SplitData, seed: int) -> Sampler:
    """Oversample rare labels: a sample's weight is the largest inverse frequency of its labels.

    Multi-label: ``w_i = max_c [y_ic / n_c]`` (samples with no positive label get the weight of
    the most common "all negative" pattern, ``1 / n_neg``), so every class — and the
    all-negative group — is drawn about equally often per epoch.
    """
    return _inverse_frequency(split, seed, 1.0)


@SAMPLERS.register("class_sqrt")
def class_sqrt(split: SplitData, seed: int) -> Sampler:
    """Square-root sampling: class ``c`` is drawn in proportion to ``sqrt(n_c)``, not ``n_c``.

    ``w_i = max_c [y_ic / sqrt(n_c)]`` — between plain shuffling and ``class_aware`` (Mahajan et
    al., ECCV 2018; Kang et al., "Decoupling Representation and Classifier for Long-Tailed
    Recognition", ICLR 2020). Where a class has a handful of images (DR grade 4: 4 of 3,062
    training eyes) ``class_aware`` repeats each of them hundreds of times per epoch; square-root
    sampling still lifts rare classes without memorising those few.
    """
    return _inverse_frequency(split, seed, 0.5)


def patient_groups(split: SplitData) -> list[np.ndarray]:
    """Image indices of each patient, patients in first-appearance order, images in table order.

    Without ``split.patients`` every image is its own patient (logged).

    Raises:
        ValueError: if ``split.patients`` does not have one id per image.
    """
    n = len(split.targets)
    if split.patients is None:
        log.info("split %r has no patient ids; the patient sampler treats every image as its own "
                 "patient", split.name)
        return [np.array([i]) for i in range(n)]
    if len(split.patients) != n:
        raise ValueError(f"split {split.name!r} has {len(split.patients)} patient ids for {n} "
                         "images; give one patient id per image (or none)")
    groups: dict[str, list[int]] = {}
    for index, patient in enumerate(split.patients):
        groups.setdefault(str(patient), []).append(index)
    return [np.asarray(v) for v in groups.values()]


class PatientSampler(Sampler[int]):
    """Draw patients, class-aware, and yield each drawn patient's images consecutively.

    A patient's labels are the union of its images' labels. Its weight is ``1 / m_c`` for its
    rarest positive label c, where ``m_c`` is the number of patients positive for c (patients
    with no positive label: ``1 / m_none``), so every class and the all-negative group are drawn
    about equally often. Patients are drawn with replacement until the epoch holds ``len(self)``
    (= number of images) indices; the last patient of an epoch may be cut short. One generator
    seeded once: the same seed gives the same sequence of epochs, and epochs differ.

    Args:
        groups: Image indices per patient.
        labels: ``(N, K)`` 0/1 labels of the images.
        seed: Seed of the draws.
    """

    def __init__(self, groups: list[np.ndarray], labels: np.ndarray, seed: int) -> None:
        self.groups = groups
        self.num_images = int(sum(len(g) for g in groups))
        patient_labels = np.stack([labels[g].max(axis=0) for g in groups]) > 0  # (P, K)
        patients_per_class = patient_labels.sum(axis=0).clip(min=1)  # (K,)
        weights = (patient_labels / patients_per_class).max(axis=1)
        none = ~patient_labels.any(axis=1)
        if none.any():
            weights[none] = 1.0 / none.sum()
        self.weights = weights / weights.sum()  # (P,) drawing probabilities
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.num_images

    def __iter__(self) -> Iterator[int]:
        # at most num_images patients are needed (each has ≥ 1 image)
        drawn = self._rng.choice(len(self.groups), size=self.num_images, p=self.weights)
        emitted = 0
        for patient in drawn:
            for index in self.groups[patient]:
                if emitted == self.num_images:
                    return
                yield int(index)
                emitted += 1


@SAMPLERS.register("patient")
def patient(split: SplitData, seed: int) -> Sampler:
    """Patient-level class-aware sampling: all images of a drawn patient come together."""
    return PatientSampler(patient_groups(split), _label_matrix(split.targets), seed)


def build_sampler(name: str, split: SplitData, seed: int) -> Sampler | None:
    """Registered sampler for ``split`` (``ValueError`` lists the valid names)."""
    return SAMPLERS.get(name)(split, seed)
