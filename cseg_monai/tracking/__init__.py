"""MLflow tracking: find the run a bundle's MONAI ``MLFlowHandler`` created, log configs into it."""

from cseg_monai.tracking.mlflow_runs import (
    RunLookup,
    active_bundle_config,
    find_run_id,
    flatten_config,
    log_config,
    new_run,
)

__all__ = ["RunLookup", "active_bundle_config", "find_run_id", "flatten_config", "log_config", "new_run"]
