"""The Kubeflow Pipelines layer: components (one per step), pipelines (the compiled DAGs), the image
they run in, placement of steps on nodes, the pipeline configuration, and orchestration (compile,
run locally, submit, schedule). Thin: every component calls the library."""
