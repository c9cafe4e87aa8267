"""`make train DEVICES=1|N|all`: data-parallel training through TensorFlow's MirroredStrategy.

* With GPUs: `all` uses every GPU TensorFlow sees, N the first N (memory growth on, so a shared
  GPU is not taken whole).
* Without a GPU: N > 1 splits the CPU into N logical devices (the way the tests run this path on
  a CPU-only machine; the devices share the same cores, so it is not faster); `all` is the one CPU.
* One device (the default): no strategy at all, the code path training always had.

Under a strategy, the training model, its weights and its optimizer (compile) are made inside
`strategy.scope()` (model.build / model.load_snapshot); Keras' fit() then splits each batch of
BATCH images over the replicas (BATCH / N each), sums their gradients (each replica's loss is
scaled by 1/N, so the sum is the mean) and takes one step at the learning rate asked for, not
scaled by N. config.json records the devices, the replicas and the per-replica batch.

Devices must be set before TensorFlow starts its runtime (any tensor), so train() calls
configure() first.
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

from dataset.errors import MasksetError

log = logging.getLogger(__name__)


@dataclass
class Placement:
    strategy: object | None    # tf.distribute.MirroredStrategy, or None on one device
    names: list                # ["/gpu:0", "/gpu:1"] or ["/cpu:0", "/cpu:1"] ...
    kind: str                  # "gpu", "cpu" or "logical cpu"

    @property
    def replicas(self) -> int:
        return len(self.names)

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def describe(self) -> str:
        if self.strategy is None:
            return self.kind
        return f"{self.replicas} {self.kind} devices (MirroredStrategy: {', '.join(n.lstrip('/') for n in self.names)})"


def parse(devices) -> str | int:
    word = str(devices if devices is not None else "1").strip().lower() or "1"
    if word == "all":
        return "all"
    if word.isdigit() and int(word) >= 1:
        return int(word)
    raise MasksetError(f"DEVICES={devices}: expected all or a number of devices (1, 2, ...).")


def configure(devices) -> Placement:
    """The devices to train on; call before anything creates a tensor."""
    from .model import quiet_tensorflow
    tf = quiet_tensorflow()
    wanted = parse(devices)
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        count = len(gpus) if wanted == "all" else wanted
        if count > len(gpus):
            raise MasksetError(f"DEVICES={devices}: TensorFlow sees {len(gpus)} GPU(s) here. Pass DEVICES=all "
                               f"or a number up to {len(gpus)}.")
        if count > 1:
            for gpu in gpus:
                try:
                    tf.config.experimental.set_memory_growth(gpu, True)
                except RuntimeError:  # the runtime has started: it keeps its settings
                    pass
        names, kind = [f"/gpu:{i}" for i in range(count)], "gpu"
    else:
        count = 1 if wanted == "all" else wanted
        if count > 1:
            _logical_cpus(tf, count, devices)
            log.warning("DEVICES=%s: no GPU here, so the CPU is split into %s logical devices. They share its "
                        "%s cores: this runs the data-parallel code path, it does not train faster.",
                        devices, count, os.cpu_count())
        names, kind = [f"/cpu:{i}" for i in range(count)], "logical cpu" if count > 1 else "cpu"
    if count == 1:
        return Placement(None, names, kind)
    return Placement(tf.distribute.MirroredStrategy(names), names, kind)


def _logical_cpus(tf, count: int, devices) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:  # TensorFlow has started in this process: its devices are fixed
        have = len(tf.config.list_logical_devices("CPU"))
        if have != count:
            raise MasksetError(f"DEVICES={devices}: TensorFlow already runs in this process with {have} CPU "
                               f"device(s); train in a new process (make train DEVICES={devices}).") from None


def record(config, placement: Placement) -> None:
    """Put the devices into the config (config.json) and check that BATCH splits evenly."""
    replicas = placement.replicas
    if config.batch is not None and config.batch % replicas:
        raise MasksetError(f"BATCH={config.batch} cannot be split evenly over {replicas} devices (DEVICES="
                           f"{config.devices}): pass BATCH= a multiple of {replicas}, e.g. BATCH={replicas * max(1, config.batch // replicas)}.")
    config.device_names = list(placement.names)
    config.replicas = replicas
    config.per_replica_batch = config.batch // replicas if config.batch is not None else None


class CrossReplicaPredict:
    """The bbox model for the per-epoch evaluation, called through a plain tf.function.

    Callbacks run inside fit()'s strategy scope, where Keras' predict_on_batch distributes even a
    batch of one image: replica 1 gets an empty batch and the first ResNet convolution fails
    ("input depth must be evenly divisible by filter depth: 3 vs 64"). A tf.function call runs once,
    in the cross-replica context, on the whole batch, reading the mirrored variables."""

    def __init__(self, model):
        import tensorflow as tf
        self.model = model
        self._call = tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)

    def predict_on_batch(self, batch):
        return [tensor.numpy() for tensor in self._call(batch)]

    def __getattr__(self, name):
        return getattr(self.model, name)


def for_evaluation(prediction_model, placement: Placement):
    return prediction_model if placement.strategy is None else CrossReplicaPredict(prediction_model)
