"""``active-finetuning schedule --cron "0 0 2 * * *"``: a recurring run of the pipeline on KFP."""

from __future__ import annotations

import argparse

from ._kfp_cluster import add_cluster_arguments, settings_and_parameters


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_cluster_arguments(parser)
    parser.add_argument("--cron", help='six fields, seconds first: "0 0 2 * * *" is daily at 02:00 '
                                       "(default: the config's schedule.cron)")
    parser.add_argument("--name", help="the recurring run's name (default: config, else the pipeline's)")
    parser.add_argument("--max-concurrency", type=int, help="runs of this schedule at once (default 1)")


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..kfp.orchestration import schedule

    settings, parameters, sched = settings_and_parameters(args)
    cron = args.cron or sched.get("cron")
    if not cron:
        raise InputError('give --cron "S M H DoM Mon DoW" (six fields) or schedule.cron in --config')
    result = schedule(settings, parameters, cron, name=args.name or sched.get("name") or settings.pipeline,
                      max_concurrency=args.max_concurrency or int(sched.get("max_concurrency", 1)),
                      description=sched.get("description"))
    print(f"recurring run {result['recurring_run_id']} on cron {result['cron']!r} "
          f"(pipeline version {result['version_id']}): {result['url']}")
    return 0
