"""Options shared by ``submit`` and ``schedule``: the KFP endpoint, the configuration, overrides."""

from __future__ import annotations

import argparse


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    from ..kfp.config import PIPELINE_CHOICES

    parser.add_argument("--host", required=True, help="the KFP API endpoint, e.g. http://ml-pipeline.kubeflow:8888")
    parser.add_argument("--config", help="YAML configuration: section 'pipeline' (parameters), 'schedule'")
    parser.add_argument("--set", action="append", metavar="NAME=VALUE", dest="overrides",
                        help="a pipeline parameter (YAML value), e.g. --set budgets='[1%%, 2%%]'; repeatable")
    parser.add_argument("--experiment", help="KFP experiment (default: config, else active-finetuning)")
    parser.add_argument("--pipeline", choices=list(PIPELINE_CHOICES),
                        help="which pipeline to run (default: the config's schedule.pipeline, else budget-study)")
    parser.add_argument("--pipeline-name", help="the pipeline's name in KFP (default: active-finetuning, or "
                                                "active-finetuning-<pipeline> for the annotation pipelines)")
    parser.add_argument("--version", help="the pipeline version's name (default: a UTC timestamp)")
    parser.add_argument("--namespace", help="the KFP namespace (multi-user installs: your profile)")
    parser.add_argument("--token", help="a bearer token for the KFP API (default: KF_PIPELINES_TOKEN)")
    parser.add_argument("--pipeline-root", help="where the run's artifacts go, e.g. gs://bucket/kfp-root")
    parser.add_argument("--service-account", help="the Kubernetes service account of the run's pods")
    parser.add_argument("--no-cache", action="store_true", help="run every step, ignoring cached results")


def settings_and_parameters(args: argparse.Namespace):
    import os

    from ..kfp.config import DEFAULT_PIPELINE, PipelineConfig, load_config, parse_overrides
    from ..kfp.orchestration import ClusterSettings

    config = load_config(args.config) if args.config else PipelineConfig()
    parameters = {**config.parameters, **parse_overrides(args.overrides)}
    sched = config.schedule
    pipeline = args.pipeline or sched.get("pipeline") or DEFAULT_PIPELINE
    default_name = "active-finetuning" if pipeline == DEFAULT_PIPELINE else f"active-finetuning-{pipeline}"
    settings = ClusterSettings(
        host=args.host, experiment=args.experiment or sched.get("experiment") or "active-finetuning",
        pipeline_name=args.pipeline_name or default_name, version=args.version, namespace=args.namespace,
        pipeline=pipeline,
        token=args.token or os.environ.get("KF_PIPELINES_TOKEN"),
        pipeline_root=args.pipeline_root or sched.get("pipeline_root"),
        service_account=args.service_account or sched.get("service_account"),
        enable_caching=False if args.no_cache else sched.get("enable_caching"))
    return settings, parameters, sched
