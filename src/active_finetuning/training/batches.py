"""The training stream: which labeled images each optimizer step sees, and the seed of each one's
augmentation (docs/methods.md §4).

Every draw comes from the recipe's seed and a position alone: epoch ``e``'s order from ``(seed, e)``,
the augmentation of the image at position ``p`` of epoch ``e`` from ``(seed, e, p)``. So the images
and pixels of step ``s`` are the same whatever the number of loader workers and wherever a run was
resumed, and one loader (its workers started once) serves the whole run.
"""

from __future__ import annotations

from ..seeding import derived_seed, torch_generator
from .recipe import Recipe


class TrainingBatches:
    """A batch sampler over steps ``start .. total - 1``: each batch a list of ``(item, augmentation seed)``."""

    def __init__(self, recipe: Recipe, labeled: int, start: int = 0):
        self.recipe, self.labeled, self.start = recipe, labeled, start
        self.epoch_images = recipe.epoch_images(labeled)
        self.per_epoch = recipe.steps_per_epoch(labeled)
        self.total = recipe.plan(labeled)[1]

    def __len__(self) -> int:
        return self.total - self.start

    def epoch_order(self, epoch: int) -> list[int]:
        """Epoch ``epoch``'s items: a shuffle of the labeled set, each item ``aug_repeats`` times in a row
        (DeiT's repeated augmentation), wrapped around to ``epoch_images`` (its padding)."""
        import torch

        order = torch.randperm(self.labeled, generator=torch_generator(self.recipe.seed, "epoch", epoch))
        repeated = torch.repeat_interleave(order, self.recipe.aug_repeats).tolist()
        return [repeated[i % len(repeated)] for i in range(self.epoch_images)]

    def __iter__(self):
        size = self.recipe.batch_size
        for epoch in range(self.start // self.per_epoch, self.total // self.per_epoch):
            order = self.epoch_order(epoch)
            for index in range(self.per_epoch):
                if epoch * self.per_epoch + index < self.start:
                    continue
                positions = range(index * size, min((index + 1) * size, len(order)))
                yield [(order[p], derived_seed(self.recipe.seed, "augment", epoch, p)) for p in positions]


class SeededItems:
    """A map-style dataset keyed by ``(item, seed)``: item of ``dataset``, transformed with torch's
    random state set to ``seed`` and then put back, so the caller's stream (drop-path) is untouched."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        import torch

        item, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[item]
