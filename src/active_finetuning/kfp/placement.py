"""Where each step runs on a cluster, as data: CPU/memory requests, the GPU steps' accelerator,
node selector and tolerations, retries and caching. Edit here to fit your node pools.

``kfp.local`` ignores all of it (with a warning), so the same pipeline runs on one machine.
"""

from __future__ import annotations

from kfp import kubernetes

GPU = {
    "accelerator": "nvidia.com/gpu",
    "count": 1,
    # GKE labels GPU nodes with their accelerator; other clusters: any label of the GPU pool
    "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}
# kfp.local honours these too (with the sleeps), so a bad input fails locally after ~1.5 minutes
GPU_RETRY = {"num_retries": 2, "backoff_duration": "30s", "backoff_factor": 2.0, "backoff_max_duration": "600s"}
TRACKING_RETRY = {"num_retries": 2, "backoff_duration": "15s", "backoff_factor": 2.0, "backoff_max_duration": "300s"}

# component name -> requests (and limits) on a cluster
RESOURCES = {
    "build-manifest": {"cpu": "1", "memory": "2G"},
    "plan-shards": {"cpu": "100m", "memory": "256M"},
    "plan-grid": {"cpu": "250m", "memory": "1G"},
    "start-study": {"cpu": "250m", "memory": "1G"},
    "extract-features": {"cpu": "4", "memory": "16G", "gpu": True},
    "merge-features": {"cpu": "1", "memory": "8G"},
    "select": {"cpu": "4", "memory": "16G"},
    "diagnose": {"cpu": "2", "memory": "8G"},
    "oracle-labels": {"cpu": "500m", "memory": "2G"},
    "import-labels": {"cpu": "500m", "memory": "2G"},
    "export-for-annotation": {"cpu": "500m", "memory": "2G"},
    "finetune": {"cpu": "8", "memory": "32G", "gpu": True},
    "evaluate": {"cpu": "4", "memory": "16G"},
    "probe": {"cpu": "2", "memory": "8G"},
    "track-cell": {"cpu": "1", "memory": "4G"},
    "track-round": {"cpu": "500m", "memory": "2G"},
    "report": {"cpu": "500m", "memory": "2G"},
}
# Steps with side effects outside their outputs (MLflow) or whose inputs are not their identity
# (a folder listing) are never served from the cache.
NOT_CACHED = {"build-manifest", "start-study", "track-cell", "track-round", "report"}
TRACKING = {"start-study", "track-cell", "track-round", "report"}
# The steps that talk to Label Studio read its API key from this secret (optional: a pipeline run
# that does not push or pull needs none). kubectl create secret generic label-studio --from-literal=api-key=…
LABEL_STUDIO = {"export-for-annotation", "import-labels"}
LABEL_STUDIO_SECRET = {"secret_name": "label-studio", "secret_key_to_env": {"api-key": "LABEL_STUDIO_API_KEY"}}


def place(task):
    """Apply this module's settings to a pipeline task (by its component's name); return the task."""
    name = task.component_spec.name
    settings = RESOURCES[name]
    task.set_cpu_request(settings["cpu"]).set_memory_request(settings["memory"])
    task.set_memory_limit(settings["memory"])
    task.set_caching_options(enable_caching=name not in NOT_CACHED)
    if settings.get("gpu"):
        task.set_accelerator_type(GPU["accelerator"]).set_accelerator_limit(GPU["count"])
        for key, value in GPU["node_selector"].items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for toleration in GPU["tolerations"]:
            kubernetes.add_toleration(task, **toleration)
        task.set_retry(**GPU_RETRY)
    elif name in TRACKING:
        task.set_retry(**TRACKING_RETRY)
    if name in LABEL_STUDIO:
        kubernetes.use_secret_as_env(task, **LABEL_STUDIO_SECRET, optional=True)
    return task
