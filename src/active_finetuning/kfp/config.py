"""The pipeline's configuration file: the budget study's parameters, and how to run or schedule it.

    pipeline:            # parameters of active_finetuning_pipeline (see `active-finetuning compile --help`)
      manifest_uri: gs://bucket/pool.parquet
      test_manifest_uri: gs://bucket/test.parquet
      methods: [random, activeft, bilaf]
      budgets: ["1%", 500]
      seeds: [0, 1, 2]
    schedule:            # for `active-finetuning submit` and `schedule` (all optional)
      pipeline: budget-study   # or select-for-annotation, train-on-annotations
      cron: "0 0 2 * * *"   # six fields, seconds first
      experiment: active-finetuning
      name: nightly-budget-study
      pipeline_root: gs://bucket/kfp-root
      service_account: active-finetuning

Unknown sections and keys are errors that name the key and the keys allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import InputError

SECTIONS = ("pipeline", "schedule")
SCHEDULE_KEYS = ("pipeline", "cron", "experiment", "name", "pipeline_root", "service_account", "max_concurrency",
                 "enable_caching", "description")
#: ``schedule.pipeline`` (or ``--pipeline``): which compiled pipeline ``submit`` and ``schedule`` run
PIPELINE_CHOICES = {"budget-study": "active_finetuning_pipeline",
                    "select-for-annotation": "select_for_annotation_pipeline",
                    "train-on-annotations": "train_on_annotations_pipeline"}
DEFAULT_PIPELINE = "budget-study"


def pipeline_function(pipeline: str = DEFAULT_PIPELINE):
    """The pipeline of a ``schedule.pipeline`` name."""
    from .pipelines import PIPELINES

    if pipeline not in PIPELINE_CHOICES:
        raise InputError(f"pipeline must be one of {list(PIPELINE_CHOICES)}, got {pipeline!r}")
    return PIPELINES[PIPELINE_CHOICES[pipeline]]
LIST_PARAMETERS = {"methods": str, "budgets": str, "seeds": int}


@dataclass
class PipelineConfig:
    parameters: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)


def pipeline_parameters(pipeline: str = DEFAULT_PIPELINE) -> dict[str, Any]:
    """The pipeline's parameter names with their defaults (``None`` where required)."""
    inputs = pipeline_function(pipeline).component_spec.inputs or {}
    return {name: spec.default for name, spec in inputs.items()}


def check_parameters(values: Mapping[str, Any], where: str = "pipeline parameters",
                     pipeline: str = DEFAULT_PIPELINE) -> dict[str, Any]:
    """Validate parameter names against the pipeline and normalise list values (budgets become strings);
    the budget study's parameters are checked whole (:func:`check_study`), the others' types."""
    known = pipeline_parameters(pipeline)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InputError(f"{where}: unknown parameter(s) {unknown}; the {pipeline} pipeline takes {sorted(known)}")
    checked = dict(values)
    for name, kind in LIST_PARAMETERS.items():
        if name in checked:
            value = checked[name]
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                value = [value]
            if not isinstance(value, (list, tuple)):
                raise InputError(f"{where}: {name} must be a list, got {value!r}")
            try:
                checked[name] = [kind(v) for v in value]
            except (TypeError, ValueError):
                raise InputError(f"{where}: {name} must be a list of {kind.__name__}, got {value!r}") from None
    missing = [name for name, default in known.items() if default is None and name not in checked]
    if missing:
        raise InputError(f"{where}: missing required parameter(s) {missing}")
    if pipeline != DEFAULT_PIPELINE:
        return _check_types(checked, pipeline_function(pipeline), where)
    return check_study(checked, where)


def _check_types(checked: dict[str, Any], pipeline, where: str) -> dict[str, Any]:
    """Each scalar parameter of the right type (a whole float passes as an integer, as KFP sends it)."""
    for name, spec in pipeline.component_spec.inputs.items():
        kind = _SCALARS.get(str(spec.type))
        if name not in checked or kind is None:
            continue
        value = checked[name]
        if kind is int and isinstance(value, float) and value.is_integer():
            value = checked[name] = int(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InputError(f"{where}: {name} must be {_NOUNS[kind]}, got {value!r}")
    return checked


_SCALARS = {"String": str, "Integer": int, "Boolean": bool, "Dict": dict}
_NOUNS = {str: "a string", int: "an integer", bool: "true or false", dict: "a mapping"}


def check_study(values: dict[str, Any], where: str = "pipeline parameters") -> dict[str, Any]:
    """Everything about a study that can be known before the first step: each parameter's type, the
    evaluation's choice, the grid (methods registered, budgets and seeds well formed), the shard
    count, and every method's, the probe's and the recipe's parameters against their declarations.
    ``run``, ``submit`` and ``schedule`` call it; the pipeline's first step repeats the grid check."""
    from ..selection import get_selector
    from ..study.plan import EVALUATIONS, plan_grid, plan_shards
    from ..training.recipe import Recipe
    from ..training.probe import ProbeParams

    checked = _check_types(dict(values), pipeline_function(DEFAULT_PIPELINE), where)
    evaluation = checked.get("evaluation", "probe")
    if evaluation not in EVALUATIONS:
        raise InputError(f"{where}: evaluation must be one of {list(EVALUATIONS)}, got {evaluation!r}")
    defaults = pipeline_parameters()
    methods = checked.get("methods", defaults["methods"])
    plan_grid(methods, checked.get("budgets", defaults["budgets"]), checked.get("seeds", defaults["seeds"]))
    plan_shards(checked.get("num_shards", defaults["num_shards"]))
    for method, params in (checked.get("method_params") or {}).items():
        if not isinstance(params, dict):
            raise InputError(f"{where}: method_params.{method} must be a mapping of parameters, got {params!r}")
        try:
            get_selector(method).make_params(**params)
        except InputError as err:
            raise InputError(f"{where}: method_params.{method}: {err}") from None
    readers = {"probe_params": lambda values: ProbeParams.from_values("probe_params", **values),
               "recipe": Recipe.from_dict}
    for name, read in readers.items():
        try:
            read(checked.get(name) or {})
        except InputError as err:
            raise InputError(f"{where}: {name}: {err}") from None
    return checked


def load_config(uri: str) -> PipelineConfig:
    """Read and validate a YAML configuration file (local or ``gs://``)."""
    import yaml

    from ..data import storage

    try:
        data = yaml.safe_load(storage.read_bytes(uri).decode("utf-8")) or {}
    except yaml.YAMLError as err:
        raise InputError(f"configuration {uri!r} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise InputError(f"configuration {uri!r} must be a mapping with sections {list(SECTIONS)}")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise InputError(f"configuration {uri!r}: unknown section(s) {unknown}; allowed: {list(SECTIONS)}")
    parameters = data.get("pipeline") or {}
    schedule = data.get("schedule") or {}
    for name, section in (("pipeline", parameters), ("schedule", schedule)):
        if not isinstance(section, dict):
            raise InputError(f"configuration {uri!r}: section {name!r} must be a mapping")
    bad = sorted(set(schedule) - set(SCHEDULE_KEYS))
    if bad:
        raise InputError(f"configuration {uri!r}: unknown schedule key(s) {bad}; allowed: {list(SCHEDULE_KEYS)}")
    pipeline = schedule.get("pipeline", DEFAULT_PIPELINE)
    if pipeline not in PIPELINE_CHOICES:
        raise InputError(f"configuration {uri!r}: schedule.pipeline must be one of {list(PIPELINE_CHOICES)}, "
                         f"got {pipeline!r}")
    return PipelineConfig(check_parameters(parameters, where=f"configuration {uri!r}, section 'pipeline'",
                                           pipeline=pipeline), dict(schedule))


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``NAME=VALUE`` command-line overrides; values are YAML (``budgets=[1%, 2%]``, ``seeds=[0,1]``)."""
    import yaml

    values: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise InputError(f"--set expects NAME=VALUE, got {pair!r}")
        try:
            values[name.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise InputError(f"--set {name}: {text!r} is not a YAML value: {err}") from None
    return values


def check_cron(cron: str) -> str:
    """KFP recurring runs take a six-field cron with seconds first (``0 0 2 * * *`` = daily 02:00)."""
    fields = str(cron).split()
    if len(fields) == 5:
        raise InputError(
            f"cron {cron!r} has 5 fields; KFP's cron has 6, seconds first: use {'0 ' + ' '.join(fields)!r}")
    if len(fields) != 6 and not str(cron).startswith("@"):
        raise InputError(f"cron {cron!r} must have 6 fields (seconds minutes hours day month weekday)")
    return " ".join(fields)
