"""Keras `model.fit` across workers, as users write it.

Keras 3 (TF 2.21's default `keras` and `tf.keras`) fails `model.fit` under MultiWorkerMirroredStrategy with two or
more workers (keras#20585, tensorflow#72388): `Attempt to convert a value (PerReplica:{…}) … to a Tensor`. Two
places in its TensorFlow trainer cause it, both fixed here without touching the user's code:

1. Before the first step the trainer builds the model from one batch, which it first *reduces across workers*
   (`strategy.reduce("MEAN", batch)`) though only shapes and dtypes are needed. A collective reduce of a
   PerReplica value outside a tf.function fails on MultiWorkerMirroredStrategy; this worker's own replica of the
   batch has the same shapes, so that is what builds the model here (and no collective runs).
2. Each step's logs are averaged over workers with `strategy.reduce("MEAN", v, axis=0)`; logs are scalars, which
   have no axis 0. Here `axis=None`: the mean over replicas, what Keras 2 did.

Keras 3 has no ParameterServerStrategy support in `fit` at all. There, and if a later Keras no longer has the
places patched, `fit` stops before training with a message naming the Keras 2 option (the `tf-keras` package,
`TF_USE_LEGACY_KERAS=1`; job spec `keras: 2`; `TFCluster.run(..., keras=2)`), never with the PerReplica traceback.

`install()` patches when Keras is first imported (at once if it is already), in every tfoy container and Spark node
before user code runs; nothing is imported that the user's code does not import itself.
"""

from __future__ import annotations

import logging
import os
from types import ModuleType
from typing import Any

from hdfs_io.import_hooks import when_imported
from tfnode.errors import TfnodeError

log = logging.getLogger(__name__)

LEGACY_ENV = "TF_USE_LEGACY_KERAS"
KERAS_2_HINT = ("set `keras: 2` in the job spec (YARN), or TF_USE_LEGACY_KERAS=1 / TFCluster.run(..., keras=2) "
                "(Spark mode), to train with tf-keras (Keras 2)")


class KerasDistributionError(TfnodeError, RuntimeError):
    """model.fit under a strategy this Keras cannot train with; the message names the option that can."""


def keras_env(version: int) -> dict[str, str]:
    """The environment that selects Keras `version` (2: tf-keras as `tf.keras`; 3: TF's default)."""
    if version not in (2, 3):
        raise ValueError(f"keras: 2 or 3, got {version!r}")
    return {LEGACY_ENV: "1" if version == 2 else "0"}


def install() -> None:
    """Applies the fix when Keras 3 is imported (see the module doc)."""
    when_imported("keras", _patch)


def _patch(keras: ModuleType) -> None:
    if not str(getattr(keras, "__version__", "")).startswith("3.") or keras.backend.backend() != "tensorflow":
        return
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer, "_tfoy_patched", False):
        return
    cls = trainer.TensorFlowTrainer
    fixable = all(hasattr(x, name) for x, name in ((cls, "_maybe_symbolic_build"), (cls, "_symbolic_build"),
                                                    (trainer, "reduce_per_replica"),
                                                    (trainer, "_collective_all_reduce_multi_worker")))
    original_fit = cls.fit

    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        _check_strategy(self.distribute_strategy, fixable, keras.__version__)
        return original_fit(self, *args, **kwargs)

    fit.__doc__, fit.__wrapped__ = original_fit.__doc__, original_fit  # type: ignore[attr-defined]
    cls.fit = fit
    if fixable:
        cls._maybe_symbolic_build = _maybe_symbolic_build
        trainer.reduce_per_replica = _mean_over_workers(trainer.reduce_per_replica,
                                                         trainer._collective_all_reduce_multi_worker)
    else:
        log.warning("Keras %s: tfoy's multi-worker fix does not apply; multi-worker fit will ask for Keras 2",
                    keras.__version__)
    trainer._tfoy_patched = True


def _check_strategy(strategy: Any, fixable: bool, version: str) -> None:
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy):
        raise KerasDistributionError(
            f"Keras {version} model.fit does not support ParameterServerStrategy (Keras 3 has no "
            f"ClusterCoordinator training): {KERAS_2_HINT}, or train with a custom loop")
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    if multi_worker and not fixable and strategy.extended._num_workers > 1:
        raise KerasDistributionError(
            f"Keras {version} model.fit fails under MultiWorkerMirroredStrategy with several workers "
            f"(keras#20585) and tfoy's fix does not apply to this version: {KERAS_2_HINT}")


def _maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> None:
    """Keras's own, except that a distributed batch is built from this worker's first replica, not a reduction."""
    import tensorflow as tf
    from keras.src import tree

    if self._distribute_strategy is None:
        return  # built when the train function is traced, as in Keras
    strategy = self.distribute_strategy
    if iterator is not None:
        for _, _, it in iterator:
            batch = next(it)
            data_batch = tree.map_structure(
                lambda v: strategy.experimental_local_results(v)[0]
                if isinstance(v, tf.distribute.DistributedValues) else v, batch)
            break
    with strategy.scope():
        self._symbolic_build(data_batch=data_batch)


def _mean_over_workers(original: Any, multi_worker: Any) -> Any:
    from keras.src import tree

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction in ("auto", "mean") and multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    return reduce_per_replica


def chosen_keras(keras: int | None, spark_conf: Any = None) -> int | None:
    """The Keras version a Spark-mode job asked for: the `keras` argument, else TF_USE_LEGACY_KERAS from the
    Spark conf's executor environment (`spark.executorEnv.TF_USE_LEGACY_KERAS`) or the driver's own environment,
    else None (the nodes' default). spark_conf: anything with SparkConf's `get(key, default)`."""
    if keras is not None:
        keras_env(keras)  # validates
        return keras
    conf_value = spark_conf.get(f"spark.executorEnv.{LEGACY_ENV}", None) if spark_conf is not None else None
    for value in (conf_value, os.environ.get(LEGACY_ENV)):
        if value is not None and value.strip():
            return 2 if value.strip().lower() in ("1", "true", "yes") else 3
    return None
