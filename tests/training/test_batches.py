"""The training stream: which images each step sees and the seed of each augmentation."""

import torch

from active_finetuning.training.batches import SeededItems, TrainingBatches
from active_finetuning.training.recipe import Recipe


def test_repeated_augmentation_shows_each_drawn_image_several_times_in_a_row_with_its_own_seed():
    recipe = Recipe(batch_size=6, aug_repeats=3, epochs=2, seed=4)
    batches = list(TrainingBatches(recipe, labeled=10))
    assert len(batches) == 4  # an epoch is 10 images: steps of 6 and 4
    first_epoch = [key for batch in batches[:2] for key in batch]
    items = [item for item, _ in first_epoch]
    assert items[0] == items[1] == items[2] != items[3] and len(set(items)) == 4  # 10 draws: 3 + 3 + 3 + 1
    assert len({seed for _, seed in first_epoch}) == 10  # every draw is augmented differently
    assert [i for i, _ in batches[2] + batches[3]] != items  # the next epoch reshuffles


def test_the_stream_depends_on_the_seed_and_the_step_alone():
    recipe = Recipe(batch_size=4, epochs=3, seed=1)
    full = list(TrainingBatches(recipe, labeled=10))
    assert list(TrainingBatches(recipe, labeled=10, start=4)) == full[4:]  # resumed mid-epoch: same tail
    assert list(TrainingBatches(recipe, labeled=10)) == full
    assert list(TrainingBatches(Recipe(batch_size=4, epochs=3, seed=2), labeled=10)) != full
    assert sorted(i for b in full[:3] for i, _ in b) == list(range(10))  # an epoch sees every image once


def test_deit_epochs_are_256_images_of_repeated_draws_wrapped_around_a_small_set():
    recipe = Recipe.from_dict({"preset": "papers", "epochs": 1})
    (batch,) = list(TrainingBatches(recipe, labeled=100))
    assert len(batch) == 256 and len({i for i, _ in batch}) == 86  # 3 repeats: the first 86 draws
    (batch,) = list(TrainingBatches(Recipe.from_dict({"preset": "papers", "epochs": 1, "aug_repeats": 1}), 100))
    assert len(batch) == 256 and {i for i, _ in batch} == set(range(100))  # wrapped around


def test_seeded_items_give_the_same_pixels_for_a_seed_and_leave_the_callers_random_stream_alone():
    class Noise:
        def __len__(self):
            return 1

        def __getitem__(self, item):
            return torch.rand(3)

    items = SeededItems(Noise())
    torch.manual_seed(0)
    expected_next = torch.rand(1)
    torch.manual_seed(0)
    a, b, c = items[(0, 7)], items[(0, 7)], items[(0, 8)]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.rand(1), expected_next)
