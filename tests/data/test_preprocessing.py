"""The one preprocessing: timm's evaluation geometry from the model's data config, PIL or tensor resizing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from active_finetuning.data.preprocessing import Preprocessing
from active_finetuning.errors import InputError
from tests.features.test_extraction import rgb


def test_default_preprocessing_resizes_the_whole_image_without_crop():
    image = Image.fromarray(rgb(1, (30, 50)))
    pre = Preprocessing((16, 24), "bicubic", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    expected = np.asarray(image.resize((24, 16), Image.BICUBIC), np.float32) / 255.0
    got = pre(image).permute(1, 2, 0).numpy() * 0.25 + 0.5
    assert np.allclose(got, expected, atol=1e-6)
    cropped = Preprocessing((16, 24), "bicubic", (0.5,) * 3, (0.25,) * 3, crop_pct=0.5)(image)
    assert cropped.shape == (3, 16, 24) and not torch.allclose(cropped, pre(image))


def test_tensor_resize_is_torch_bicubic_clamped():
    image = Image.fromarray(rgb(2, (8, 8)))
    pre = Preprocessing((24, 24), "bicubic", (0.0,) * 3, (1.0,) * 3, resize="tensor")
    x = torch.from_numpy(np.asarray(image, np.float32) / 255.0).permute(2, 0, 1)[None]
    expected = torch.nn.functional.interpolate(x, size=(24, 24), mode="bicubic", align_corners=False).clamp(0, 1)[0]
    assert torch.allclose(pre(image), expected, atol=1e-6)
    with pytest.raises(InputError, match="interpolation 'lanczos' is not available with resize='tensor'"):
        Preprocessing((8, 8), "lanczos", (0.0,) * 3, (1.0,) * 3, resize="tensor")


def test_a_finetuned_model_is_scored_with_the_extraction_preprocessing():
    """evaluate() and extract() feed a model the same pixels for the same data config."""
    from PIL import Image

    from active_finetuning.training.model import eval_transform

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8))
    data = {"image_size": 24, "interpolation": "bicubic", "mean": [0.5] * 3, "std": [0.25] * 3, "crop_pct": 0.875}
    extraction = Preprocessing((24, 24), "bicubic", (0.5,) * 3, (0.25,) * 3, crop_pct=0.875)
    assert torch.equal(eval_transform(data)(image), extraction(image))
