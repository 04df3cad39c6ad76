"""The course's experiments, one module each, found through one registry.

* :mod:`~bncourse.experiments.protocol`: the tutorials' protocols, a run's configuration,
  and training one protocol run;
* :mod:`~bncourse.experiments.registry`: the :class:`Experiment` record and the registry
  (:func:`experiment`, :func:`experiment_names`, :func:`experiment_configs`,
  :func:`verdicts`);
* one module per experiment (``t1_mlp``, ``t4_cnn_mnist``, ``ics``, ``epoch_time``, ...):
  its runs, what it records, and the verdicts on the claims it feeds.

Keras is imported only when a run trains, so the command line starts quickly.
"""

from bncourse.experiments.protocol import (
    DEFAULT_PROTOCOL,
    PROFILES,
    VARIANTS,
    Protocol,
    config_hash,
    describe_optimizer,
    prepare_data,
    run_config,
    set_seed,
    train_run,
)
from bncourse.experiments.registry import (
    Experiment,
    MissingRuns,
    experiment,
    experiment_configs,
    experiment_names,
    protocols,
    verdicts,
)

__all__ = [
    "DEFAULT_PROTOCOL",
    "PROFILES",
    "VARIANTS",
    "Experiment",
    "MissingRuns",
    "Protocol",
    "config_hash",
    "describe_optimizer",
    "experiment",
    "experiment_configs",
    "experiment_names",
    "prepare_data",
    "protocols",
    "run_config",
    "set_seed",
    "train_run",
    "verdicts",
]
