"""Finetuning with a real tiny timm model (``test_efficientnet``) on tiny real images."""

import json

import numpy as np
import pytest

from active_finetuning.cli.main import main
from active_finetuning.errors import InputError
from active_finetuning.labels import Labels
from active_finetuning.training.checkpoint import CHECKPOINT_FILE, Progress, checkpoint_bytes
from active_finetuning.training.finetune import finetune
from active_finetuning.training.recipe import Recipe, loss_class_weights, lr_scheduler, sgd
from active_finetuning.training.model import MODEL_FILE
from tests.training.conftest import CLASSES, FAST, MODEL


def test_finetune_writes_safetensors_and_a_config_that_records_the_run(data):
    from safetensors.torch import load_file

    config, out = data["reference"], data["root"] / "reference"
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]  # checkpoint removed
    assert json.loads((out / "config.json").read_text()) == config
    assert config["model"] == MODEL and config["classes"] == CLASSES and config["num_classes"] == 3
    assert config["image_size"] == 32 and config["recipe"]["lr"] == 0.05 and config["recipe"]["momentum"] == 0.9
    assert config["selection"] == {"method": "random"} and config["labeled"] == 48
    assert config["epochs"] == 4 and config["steps"] == 24  # 48 / 8 steps per epoch
    assert config["images_per_second"] > 0 and config["train_seconds"] > 0
    assert [h["epoch"] for h in config["history"]] == [1, 2, 3, 4]
    assert config["history"][-1]["train_loss"] < config["history"][0]["train_loss"]
    assert load_file(out / MODEL_FILE)["classifier.weight"].shape[0] == 3


def test_an_interrupted_run_resumes_mid_epoch_to_the_same_weights_whatever_the_workers(data, tmp_path):
    out = tmp_path / "model"

    def preempt(epoch, metrics):
        if epoch == 2:
            raise KeyboardInterrupt  # the node goes away at the end of epoch 2, after the checkpoint of step 10

    # 6 steps per epoch: checkpoints at steps 5 and 10, so the resumed run re-enters epoch 2 at its 5th step
    with pytest.raises(KeyboardInterrupt):
        finetune(data["train"], data["labels"], model=MODEL, out=str(out), on_epoch_end=preempt, progress=False,
                 checkpoint_steps=5, num_workers=2, **FAST)
    assert (out / CHECKPOINT_FILE).exists() and not (out / MODEL_FILE).exists()
    epochs_run = []
    config = finetune(data["train"], data["labels"], model=MODEL, out=str(out), progress=False, num_workers=0,
                      on_epoch_end=lambda epoch, m: epochs_run.append(epoch), **FAST)
    assert epochs_run == [2, 3, 4]
    assert (out / MODEL_FILE).read_bytes() == (data["root"] / "reference" / MODEL_FILE).read_bytes()
    assert [h["train_loss"] for h in config["history"]] == [h["train_loss"] for h in data["reference"]["history"]]
    again = []
    finetune(data["train"], data["labels"], model=MODEL, out=str(out), progress=False,
             on_epoch_end=lambda epoch, m: again.append(epoch), **FAST)
    assert again == []  # a retry of a finished step does no work


def test_a_corrupt_or_foreign_checkpoint_is_an_error_and_nothing_is_written(data, tmp_path, capsys):
    out = tmp_path / "model"
    out.mkdir()
    (out / CHECKPOINT_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    code = main(["finetune", "--manifest", str(data["root"] / "train.parquet"), "--labels",
                 str(data["root"] / "labels.parquet"), "--model", MODEL, "--out", str(out), "--no-tracking",
                 "--epochs", "1", "--image-size", "32", "--drop-path", "0"])
    stderr = capsys.readouterr().err
    assert code == 2 and "is corrupt" in stderr and "delete it" in stderr
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT_FILE]
    import torch

    net = torch.nn.Linear(2, 2)  # a checkpoint of another run
    (out / CHECKPOINT_FILE).write_bytes(checkpoint_bytes(net, torch.optim.SGD(net.parameters(), lr=1), None,
                                                         Progress(step=1), "another-run"))
    with pytest.raises(InputError, match="belongs to another run"):
        finetune(data["train"], data["labels"], model=MODEL, out=str(out), progress=False, **FAST)


def test_empty_single_class_and_unknown_labels_are_refused(data, tmp_path):
    train = data["train"]
    single = Labels(train.sample_ids[train.labels == 1], np.ones(16, dtype=np.int64), CLASSES)
    with pytest.raises(InputError, match="single class"):
        finetune(train, single, model=MODEL, out=str(tmp_path / "m"), **FAST)
    stranger = Labels(np.asarray(["elsewhere/1.png", "train/000.png"], dtype=object), [0, 1], CLASSES)
    with pytest.raises(InputError, match="not in the manifest"):
        finetune(train, stranger, model=MODEL, out=str(tmp_path / "m"), **FAST)
    with pytest.raises(InputError, match="empty"):
        Labels(np.asarray([], dtype=object), np.asarray([], dtype=np.int64))
    other_names = Labels(train.sample_ids, train.labels, ["r", "g", "b"])
    with pytest.raises(InputError, match="import the labels against this manifest"):
        finetune(train, other_names, model=MODEL, out=str(tmp_path / "m"), **FAST)
    assert not (tmp_path / "m").exists()


def test_recipe_is_validated_and_its_length_scales_with_the_labeled_set():
    assert Recipe(epochs=10, batch_size=64).plan(500) == (10, 80)  # the last partial batch is kept
    assert Recipe(epochs=10, batch_size=64, drop_last=True).plan(500) == (10, 70)
    assert Recipe(epochs=10, batch_size=64).plan(5000) == (10, 790)
    assert Recipe(steps=100, batch_size=64).plan(500) == (13, 104)  # whole epochs covering the budget
    assert Recipe(batch_size=64).plan(20) == (100, 100)  # one batch of the whole set per epoch
    assert Recipe(batch_size=16).steps_per_epoch(30) == 2  # 30 labels, batch 16: every label each epoch
    for bad, message in [({"lr": -1}, "'lr' must be a finite number >= 0 or None, got -1"),
                         ({"epochs": 0}, "'epochs' must be an integer >= 1, got 0"),
                         ({"crop_scale": (0.9, 0.1)}, "'crop_scale' must be .low, high. with low <= high"),
                         ({"crop_scale": (0.0, 1.0)}, "'crop_scale' must be 2 values, each a finite number in .0, 1."),
                         ({"interpolation": "cubic"}, "'interpolation' must be one of 'bicubic'"),
                         ({"epoch_size": "all"}, "'epoch_size' must be one of 'labeled', 'deit'"),
                         ({"preset": "paper"}, "'preset' of the finetuning recipe must be one of .'papers'., got 'paper'"),
                         ({"warmup": 3}, "unknown parameter 'warmup' for the finetuning recipe")]:
        with pytest.raises(InputError, match=message):
            Recipe.from_dict(bad)


def test_learning_rate_scales_with_the_batch_unless_given():
    assert Recipe(batch_size=64).peak_lr == pytest.approx(0.01 * 64 / 512)  # DeiT's linear rule
    assert Recipe(batch_size=64, lr_base=0.1, lr_base_size=256).peak_lr == pytest.approx(0.025)
    assert Recipe(batch_size=64, lr=0.05).peak_lr == 0.05


def test_the_papers_preset_is_their_code_on_one_process():
    papers = Recipe.from_dict({"preset": "papers"})
    assert papers.peak_lr == pytest.approx(0.01) and papers.aug_repeats == 3 and not papers.drop_last
    assert papers.plan(250) == (1000, 1000)  # DeiT's epoch: max(1, 250 // 256) * 256 = 256 images, one step
    assert papers.plan(1000) == (1000, 2000)  # 768 images: a step of 512 and one of 256
    assert papers.warmup_steps(250) == 5 and papers.warmup_steps(1000) == 10  # 5 epochs
    assert Recipe(steps=24, batch_size=8).warmup_steps(64) == 12  # 5 epochs would be the whole run: half of it
    overridden = Recipe.from_dict({"preset": "papers", "epochs": "20", "image_size": 64})
    assert overridden.epochs == 20 and overridden.image_size == 64 and overridden.aug_repeats == 3


def test_learning_rate_warms_up_linearly_then_follows_a_cosine():
    import timm

    recipe = Recipe(lr=0.1, warmup_lr=0.0, min_lr=0.0, warmup_epochs=1, epochs=10, batch_size=10)
    optimizer = sgd(timm.create_model("test_efficientnet", pretrained=False, num_classes=3), recipe)
    scheduler = lr_scheduler(optimizer, recipe, labeled=100)  # 10 steps an epoch, 100 in all
    rates = []
    for step in range(100):
        scheduler.step_update(step)
        rates.append(optimizer.param_groups[0]["lr"])
    assert {group["weight_decay"] for group in optimizer.param_groups} == {0.0, recipe.weight_decay}
    assert not optimizer.param_groups[0]["nesterov"] and optimizer.param_groups[0]["momentum"] == 0.9
    assert rates[0] == 0.0 and rates[5] == pytest.approx(0.05) and rates[10] == pytest.approx(0.1)
    assert rates[55] == pytest.approx(0.05) and rates[99] < 1e-4
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))


def test_a_probe_head_starts_finetuning_from_the_linear_probe(data):
    """LP-FT: the new classifier is the logistic-regression probe on the frozen features, folded back
    from standardised features and cooled, so the untrained network's logits are the probe's decision
    function divided by one temperature."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from active_finetuning.data.images import decode_image
    from active_finetuning.features.extraction import pooled_pre_logits
    from active_finetuning.features.models import create_model
    from active_finetuning.training.finetune import _probe_head, preprocessing
    from active_finetuning.training.model import eval_transform

    train, labels = data["train"], data["labels"]
    network = create_model(MODEL, weights=None, num_classes=3)
    config = preprocessing(network.pretrained_cfg, Recipe(image_size=32))
    _probe_head(network, train, np.arange(len(train)), labels.labels, 3, config, torch.device("cpu"),
                Recipe(image_size=32, label_smoothing=0.1))
    transform = eval_transform(config)
    images = torch.stack([transform(decode_image(train.load_bytes(i), "x")) for i in range(len(train))])
    network.eval()
    with torch.inference_mode():
        features, logits = pooled_pre_logits(network, images).numpy(), network(images).numpy()
    scaler = StandardScaler().fit(features)
    probe = LogisticRegression(C=0.5, max_iter=1000).fit(scaler.transform(features), labels.labels)
    expected = probe.decision_function(scaler.transform(features))
    temperature = expected.std() / logits.std()  # the head is the probe, cooled by one temperature
    assert temperature > 1 and np.allclose(logits * temperature, expected, atol=1e-3 * np.abs(expected).max())
    assert (logits.argmax(1) == probe.predict(scaler.transform(features))).all()


def test_a_checkpoint_carries_the_grad_scaler_and_the_random_state(tmp_path):
    """float16 autocast's GradScaler (its scale and growth tracker) and torch's random state come back
    from a checkpoint, so a resumed fp16 run scales its losses as the interrupted one would have."""
    import torch

    from active_finetuning.training.checkpoint import read_checkpoint, restore

    net = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1)
    loss = net(torch.ones(4, 3)).sum()
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()  # the scale grows to 2048 after one clean step
    torch.manual_seed(5)
    uri = str(tmp_path / "checkpoint.safetensors")
    (tmp_path / "checkpoint.safetensors").write_bytes(checkpoint_bytes(net, optimizer, scaler, Progress(step=3), "run"))
    expected = torch.rand(3)
    tensors, progress, scaler_state = read_checkpoint(uri, "run")
    fresh = torch.amp.GradScaler("cpu", init_scale=1.0)
    restore(uri, tensors, scaler_state, torch.nn.Linear(3, 2), torch.optim.SGD(net.parameters(), lr=0.1), fresh)
    assert progress.step == 3 and fresh.get_scale() == scaler.get_scale() == 2048.0
    assert torch.equal(torch.rand(3), expected)  # the random stream continues where it was saved


def test_checkpoints_also_come_by_wall_time(data, tmp_path):
    out = tmp_path / "model"

    def preempt(epoch, metrics):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # no step cadence: the clock alone writes the checkpoint
        finetune(data["train"], data["labels"], model=MODEL, out=str(out), on_epoch_end=preempt, progress=False,
                 checkpoint_steps=0, checkpoint_seconds=1e-6, **FAST)
    data_bytes = (out / CHECKPOINT_FILE).read_bytes()
    header = json.loads(data_bytes[8:8 + int.from_bytes(data_bytes[:8], "little")])
    assert json.loads(header["__metadata__"]["progress"])["step"] == 6  # written after the epoch's last step


def test_balanced_class_weights_follow_scikit_learn_and_leave_classes_without_labels_at_one():
    labels = np.array([0, 0, 0, 1, 0, 1])  # class 2 has no label
    assert loss_class_weights(Recipe(), labels, 3) is None  # the papers' unweighted loss by default
    weights = loss_class_weights(Recipe(class_weight="balanced"), labels, 3)
    assert np.allclose(weights.numpy(), [6 / (2 * 4), 6 / (2 * 2), 1.0])
    assert Recipe.from_dict({"class_weight": "none"}).class_weight is None
    with pytest.raises(InputError, match="class_weight"):
        Recipe(class_weight="inverse")


def test_a_balanced_loss_lifts_a_rare_class(data, tmp_path):
    """Two labels of one class against 24 of two others: from the same seed, steps and images, the
    balanced loss gives the rare class a higher probability on its own test images than the plain one."""
    import torch

    from active_finetuning.training.model import eval_transform, load_model, predict

    train, test = data["train"], data["test"]
    keep = np.flatnonzero(train.labels != 2)[:24].tolist() + np.flatnonzero(train.labels == 2)[:2].tolist()
    labels = Labels(train.sample_ids[keep], train.labels[keep], CLASSES, {"source": "oracle"})
    rare = {}
    for weighting in (None, "balanced"):
        out = str(tmp_path / str(weighting))
        config = finetune(train, labels, model=MODEL, out=out, progress=False, class_weight=weighting,
                          **FAST)
        assert config["recipe"]["class_weight"] == weighting
        model, _ = load_model(out)
        logits = predict(model, test, eval_transform(config["data_config"]), batch_size=32,
                         device=torch.device("cpu"), num_workers=0, progress=False)
        rare[weighting] = float(torch.softmax(torch.as_tensor(logits), 1)[test.labels == 2, 2].mean())
    assert rare["balanced"] > rare[None] + 0.05, rare


def test_frozen_batchnorm_keeps_the_pretrained_statistics_and_still_trains_scale_and_shift(data, tmp_path):
    """``batchnorm="frozen"``: every BatchNorm layer normalises with the starting running statistics
    (never updated) while its affine parameters and the rest of the network train; the default
    updates the statistics from the batches."""
    import torch
    from safetensors.torch import load_file

    from active_finetuning.features.models import create_model

    start = create_model(MODEL, weights=None, num_classes=3).state_dict()
    trained = {}
    for mode in ("train", "frozen"):
        config = finetune(data["train"], data["labels"], model=MODEL, out=str(tmp_path / mode), progress=False,
                          batchnorm=mode, **FAST)
        assert config["recipe"]["batchnorm"] == mode
        trained[mode] = load_file(tmp_path / mode / MODEL_FILE)
    statistics = [k for k in start if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    scales = [k[: -len("running_mean")] + "weight" for k in statistics if k.endswith("running_mean")]
    assert len(scales) > 5
    assert all(torch.equal(trained["frozen"][k], start[k]) for k in statistics)
    assert not all(torch.equal(trained["train"][k], start[k]) for k in statistics)
    for mode in ("train", "frozen"):
        assert not all(torch.equal(trained[mode][k], start[k]) for k in scales)
        assert not torch.equal(trained[mode]["classifier.weight"], start["classifier.weight"])
    with pytest.raises(InputError, match="batchnorm"):
        Recipe(batchnorm="eval")
