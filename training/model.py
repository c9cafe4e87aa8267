"""Build, compile, resume and convert RetinaNet through keras-retinanet's library API.

keras-retinanet's bin/train.py compiles with `Adam(lr=...)`; Keras 2.11+ ignores the `lr`
keyword and trains at 1e-3 whatever --lr says. We pass `learning_rate=`, so the LR asked for
is the LR used (tests read it back from the optimizer during the run).
"""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ start-up chatter hides our output

from dataset import atomic  # noqa: E402
from dataset.errors import MasksetError  # noqa: E402


def quiet_tensorflow():
    """Import TF with its Python-side warnings turned down; returns the tf module."""
    import logging
    import warnings
    import tensorflow as tf
    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="keras")
    warnings.filterwarnings("ignore", category=UserWarning)
    return tf


def backbone(name: str):
    from keras_retinanet import models
    try:
        return models.backbone(name)
    except (ValueError, NotImplementedError) as error:
        raise MasksetError(f"BACKBONE={name}: {error}. resnet50 is the default.") from None


def compile_model(model, lr: float, clipnorm: float):
    from tensorflow import keras
    from keras_retinanet import losses
    model.compile(
        loss={"regression": losses.smooth_l1(), "classification": losses.focal()},
        optimizer=keras.optimizers.Adam(learning_rate=lr, clipnorm=clipnorm),
    )
    return model


def _scope(strategy):
    import contextlib
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def build(config, num_classes: int, weights_file: str | None, strategy=None):
    """(model, prediction_model): the trainable model (what snapshots save) and its bbox wrapper.

    strategy (training/devices.py): the model, its weights and its optimizer are made in its scope."""
    from keras_retinanet.models.retinanet import retinanet_bbox
    from keras_retinanet.utils.model import freeze
    with _scope(strategy):
        net = backbone(config.backbone)
        model = net.retinanet(num_classes, modifier=freeze if config.freeze_backbone else None)
        if weights_file:
            # by name, skipping mismatches: COCO's 80-class heads do not fit our classes
            model.load_weights(weights_file, by_name=True, skip_mismatch=True)
        compile_model(model, config.lr, config.clipnorm)
    return model, retinanet_bbox(model=model)


def load_snapshot(path: Path, backbone_name: str, lr: float | None = None, strategy=None):
    """A training snapshot with its optimizer state (for RESUME); lr, if given, replaces the saved one."""
    from tensorflow import keras
    from keras_retinanet import models
    from keras_retinanet.models.retinanet import retinanet_bbox
    with _scope(strategy):
        try:
            model = models.load_model(str(path), backbone_name=backbone_name)
        except (OSError, ValueError) as error:
            raise MasksetError(f"{path}: cannot load the snapshot ({error}). It may be incomplete; "
                               f"start a new run or resume another one.") from None
        if lr is not None:
            keras.backend.set_value(model.optimizer.learning_rate, lr)
    return model, retinanet_bbox(model=model)


def optimizer_lr(model) -> float:
    from tensorflow import keras
    return float(keras.backend.get_value(model.optimizer.learning_rate))


def save_atomic(model, path: Path, include_optimizer: bool = True) -> Path:
    """model.save to a temp .h5 beside path, then rename: a crash never leaves half a snapshot."""
    with atomic.writing(path) as tmp:
        model.save(str(tmp), include_optimizer=include_optimizer, save_format="h5")
    return Path(path)


def convert_and_save(model, path: Path) -> Path:
    """The inference model (boxes regressed, clipped, NMS-filtered) as keras-retinanet's convert_model makes it."""
    from keras_retinanet.models import convert_model
    return save_atomic(convert_model(model), path, include_optimizer=False)


def load_inference(path: Path, backbone_name: str):
    from keras_retinanet import models
    try:
        return models.load_model(str(path), backbone_name=backbone_name)
    except (OSError, ValueError) as error:
        raise MasksetError(f"{path}: cannot load the inference model ({error}).") from None
