"""The components: thin, documented, in the project image, and working under ``kfp.local``."""

import inspect
import warnings

import pytest

from tests.conftest import gaussian_mixture

COMPONENT_NAMES = ["build-manifest", "diagnose", "evaluate", "export-for-annotation", "extract-features", "finetune",
                   "import-labels", "merge-features", "oracle-labels", "plan-grid", "plan-shards", "probe",
                   "report", "select", "start-study", "track-cell", "track-round"]


def _components():
    import active_finetuning.kfp.components as components

    return {getattr(components, name).component_spec.name: getattr(components, name) for name in components.__all__}


def test_one_module_per_component_with_user_documentation():
    from active_finetuning.kfp.image import IMAGE

    found = _components()
    assert sorted(found) == COMPONENT_NAMES
    for name, component in found.items():
        spec = component.component_spec
        assert spec.implementation.container.image == IMAGE, name
        command = " ".join(spec.implementation.container.command)
        assert "pip install" not in command, f"{name} installs packages at run time"
        doc = component.python_func.__doc__ or ""
        assert "Args:" in doc, f"{name} has no Args: section"
        documented = set(spec.inputs or {}) | set(o for o in (spec.outputs or {}) if o != "Output")
        for argument in documented:
            assert f"{argument}:" in doc, f"{name}: argument {argument!r} is not documented"
        body = inspect.getsource(component.python_func)
        assert "from active_finetuning" in body, f"{name} does not call the library"
        assert len(body.splitlines()) < 60, f"{name} is not thin"


def test_typed_artifacts():
    found = _components()
    outputs = {name: {k: v.type for k, v in (c.component_spec.outputs or {}).items()} for name, c in found.items()}
    assert outputs["select"]["selection"].startswith("system.Dataset")
    assert outputs["finetune"]["model"].startswith("system.Model")
    assert outputs["probe"]["metrics"].startswith("system.Metrics")
    assert outputs["probe"]["confusion"].startswith("system.ClassificationMetrics")
    assert outputs["evaluate"]["confusion"].startswith("system.ClassificationMetrics")
    assert outputs["report"]["table"].startswith("system.Markdown")
    assert outputs["report"]["page"].startswith("system.HTML")
    inputs = found["merge-features"].component_spec.inputs
    assert inputs["shards"].type.startswith("system.Dataset") and inputs["shards"].is_artifact_list


@pytest.fixture
def local_kfp(tmp_path):
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield tmp_path


def test_select_and_plan_grid_run_under_kfp_local(local_kfp):
    from active_finetuning.data.artifacts import (
        FeatureTable,
        read_selection,
        write_features,
    )
    from active_finetuning.kfp.components import plan_grid, select

    features, labels = gaussian_mixture(120, 8, 4)
    pool = FeatureTable.from_array(features, [f"s{i:03d}" for i in range(120)], labels)
    write_features(pool, str(local_kfp / "features.parquet"))
    grid = plan_grid(methods=["kcenter", "random"], budgets=["5%", "10"], seeds=[3])
    assert grid.output == [{"method": m, "budget": b, "seed": 3} for m in ("kcenter", "random") for b in ("5%", "10")]

    from kfp import dsl

    @dsl.pipeline
    def one_selection(uri: str) -> dsl.Dataset:
        imported = dsl.importer(artifact_uri=uri, artifact_class=dsl.Dataset)
        return select(features=imported.output, method="kcenter", budget="5%", seed=3,
                      method_params={"kcenter": {}}).outputs["selection"]

    result = one_selection(uri=str(local_kfp / "features.parquet"))
    selection = read_selection(result.output.path)
    assert len(selection) == 6 and selection.metadata["method"] == "kcenter" and selection.metadata["seed"] == 3


def test_numbers_in_dict_parameters_come_back_as_their_declared_types():
    """KFP's JSON turns every number in a dict parameter into a float and a tuple into a list; the
    parameter declarations convert them back."""
    from active_finetuning.selection import get_selector
    from active_finetuning.training.recipe import Recipe

    recipe = Recipe.from_dict({"epochs": 2.0, "lr": 0.01, "crop_scale": [0.08, 1.0], "image_size": 32.0})
    assert recipe.epochs == 2 and isinstance(recipe.epochs, int) and recipe.crop_scale == (0.08, 1.0)
    assert recipe.image_size == 32 and isinstance(recipe.image_size, int)
    bilaf = get_selector("bilaf").make_params(num_cores=25.0, core_params={"iterations": 20.0})
    assert bilaf.core_selector_params().iterations == 20 and bilaf.num_cores == 25
