"""Running a detector: a run's Keras model, or an exported one through its own runtime.

Every runner has one method, `predict(batch) -> (boxes [B, N, 4], scores [B, N], labels [B, N])`,
shaped like the Keras inference model's outputs (padded with -1), so detection, verification
and the bench treat them alike:

    KerasRunner        inference.h5 through keras' predict_on_batch (what detect always did)
    SavedModelRunner   TF SavedModel, signature serving_default        (tensorflow)
    OnnxRunner         .onnx through ONNX Runtime                     (onnxruntime)
    TfliteRunner       .tflite through TF's own TFLite interpreter    (tensorflow)
    NcnnRunner         .ncnn.param/.bin through ncnn                  (ncnn)

An export's graph says how much of the model the file holds (make export-model writes it in the
manifest beside the file):

    full   the whole inference graph, FilterDetections included: boxes, scores, labels
    raw    up to the clipped boxes and the class scores; FilterDetections runs in NumPy
    heads  up to the regression and classification heads; anchors, box regression, clipping
           and FilterDetections run in NumPy (training/postprocess.py, geometry.anchors_for)

`load_exported(path)` reads the manifest (`<file>.json` beside the file) and picks the runtime,
so `make detect MODEL=<file>` needs no run folder. ONNX Runtime and ncnn never import TensorFlow.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from dataset.errors import MasksetError

FORMATS = ("savedmodel", "onnx", "tflite", "ncnn")
GRAPHS = ("full", "raw", "heads")
MANIFEST_VERSION = 1


class Runner:
    """predict(batch float32 [B, H, W, 3]) -> (boxes, scores, labels) as the Keras inference model."""

    name = "?"
    graph = "full"

    def __init__(self, graph: str = "full", params: dict | None = None):
        self.graph = graph
        self.params = params or {}

    def outputs(self, batch: np.ndarray) -> dict:
        raise NotImplementedError

    def finish(self, outputs: dict, batch_shape) -> tuple:
        from . import postprocess
        if self.graph == "full":
            return (np.asarray(outputs["boxes"], np.float32), np.asarray(outputs["scores"], np.float32),
                    np.asarray(outputs["labels"]).astype(np.int32))
        boxes = np.asarray(outputs["boxes"], np.float32) if self.graph == "raw" else None
        classification = np.asarray(outputs["classification"], np.float32)
        if self.graph == "heads":
            from .geometry import anchors_for
            height, width = batch_shape[1:3]
            anchors = anchors_for(height, width)
            regression = np.asarray(outputs["regression"], np.float32)
            if regression.shape[1] != len(anchors):
                raise MasksetError(
                    f"{self.name}: the model gives {regression.shape[1]} anchors for a {height}x{width} input, "
                    f"keras-retinanet's geometry {len(anchors)}; this backbone's feature sizes differ from "
                    f"ceil(side / stride). Export this run in another FORMAT (onnx or savedmodel).")
            boxes = np.stack([postprocess.regress_boxes(anchors, r, height, width) for r in regression])
        return postprocess.filter_batch(boxes, classification, **self.params)

    def predict(self, batch) -> tuple:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self.finish(self.outputs(batch), batch.shape)

    def close(self) -> None:
        pass


class KerasRunner(Runner):
    """The run's inference.h5, called as detect always called it (predict_on_batch)."""

    name = "keras"

    def __init__(self, keras_model):
        super().__init__("full")
        self.model = keras_model

    def predict(self, batch) -> tuple:
        boxes, scores, labels = self.model.predict_on_batch(np.asarray(batch, np.float32))[:3]
        return np.asarray(boxes), np.asarray(scores), np.asarray(labels).astype(np.int32)


class SavedModelRunner(Runner):
    name = "savedmodel (TensorFlow)"

    def __init__(self, path: Path, graph: str = "full", params: dict | None = None, threads: int | None = None):
        from .model import quiet_tensorflow
        tf = quiet_tensorflow()
        super().__init__(graph, params)
        _tf_threads(tf, threads)
        self.loaded = tf.saved_model.load(str(path))
        self.fn = self.loaded.signatures["serving_default"]

    def outputs(self, batch):
        return {k: v.numpy() for k, v in self.fn(image=batch).items()}


class OnnxRunner(Runner):
    """ONNX Runtime on the CPU. Its worker threads do not spin while idle (busy-waiting costs
    dearly on a shared machine: 0.55x of Keras with spinning, 1.01x without, docs/deploy.md);
    denormals flush to zero as in TensorFlow."""

    name = "onnxruntime"

    def __init__(self, path: Path, graph: str = "full", params: dict | None = None, threads: int | None = None):
        import onnxruntime as ort
        super().__init__(graph, params)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.name = f"onnxruntime {ort.__version__}" + (f", {threads} thread(s)" if threads else "")

    def outputs(self, batch):
        return dict(zip(self.output_names, self.session.run(self.output_names, {self.input: batch})))


class TfliteRunner(Runner):
    """TF's own TFLite interpreter, on its built-in kernels: its XNNPACK delegate takes graphs of
    static shapes only, and an export for any input size is not one (XNNPACK would refuse it with
    a warning on every start). The whole graph (GRAPH=full) keeps TFLite's default set-up: there
    the padded NMS indices come out as 300 detections an image, which the check reports, where the
    built-in GATHER alone stops with "gather index out of bounds". The tensors are resized once
    per new input size."""

    name = "tflite"

    def __init__(self, path: Path, graph: str = "raw", params: dict | None = None, threads: int | None = None):
        from .model import quiet_tensorflow
        tf = quiet_tensorflow()
        super().__init__(graph, params)
        resolver = tf.lite.experimental.OpResolverType
        self.interpreter = tf.lite.Interpreter(
            str(path), num_threads=threads,
            experimental_op_resolver_type=resolver.AUTO if graph == "full" else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        signature = self.interpreter.get_signature_runner("serving_default")
        self.input = signature.get_input_details()["image"]["index"]
        self.output_index = {name: d["index"] for name, d in signature.get_output_details().items()}
        self.shape = None
        self.name = f"tflite (TF {tf.__version__})" + (f", {threads} thread(s)" if threads else "")

    def outputs(self, batch):
        if self.shape != batch.shape:
            self.interpreter.resize_tensor_input(self.input, batch.shape, strict=False)
            self.interpreter.allocate_tensors()
            self.shape = batch.shape
        self.interpreter.set_tensor(self.input, batch)
        self.interpreter.invoke()
        return {name: self.interpreter.get_tensor(index) for name, index in self.output_index.items()}


class NcnnRunner(Runner):
    """ncnn at FP32 (every fp16/bf16 option off, so outputs equal Keras') with Winograd 3x3
    convolutions: the fastest runtime on this CPU, 1.6-1.8x less CPU per image than Keras (docs/deploy.md)."""

    name = "ncnn"

    def __init__(self, param: Path, binary: Path, graph: str = "heads", params: dict | None = None,
                 threads: int | None = None, io: dict | None = None):
        # ncnn's OpenMP (libgomp) spins its idle threads by default: on this shared 2-core machine
        # that took 666 CPU-ms per image instead of 218. libgomp reads this when ncnn loads it.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import ncnn
        super().__init__(graph, params)
        self.net = ncnn.Net()
        options = self.net.opt
        options.num_threads = threads or (os.cpu_count() or 1)
        options.use_winograd_convolution = True
        options.use_fp16_packed = options.use_fp16_storage = options.use_fp16_arithmetic = False
        options.use_bf16_storage = False
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(binary)) != 0:
            raise MasksetError(f"{param}: ncnn cannot load this model (or {binary.name}); export it again.")
        self.io = io or {"input": "in0", "classification": "out0", "regression": "out1"}
        self.ncnn = ncnn
        self.name = f"ncnn {getattr(ncnn, '__version__', '')}, {options.num_threads} thread(s)".replace("  ", " ")

    def outputs(self, batch):
        classification, regression = [], []
        for image in batch:
            with self.net.create_extractor() as extractor:
                extractor.input(self.io["input"], self.ncnn.Mat(image[None], batch_index=0).clone())
                _, c = extractor.extract(self.io["classification"])
                _, r = extractor.extract(self.io["regression"])
            classification.append(np.array(c))
            regression.append(np.array(r))
        return {"classification": np.stack(classification), "regression": np.stack(regression)}

    def close(self) -> None:
        self.net.clear()


def _tf_threads(tf, threads: int | None) -> None:
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TF already started in this process: its pools keep their size
            pass


# -- the manifest beside an export ---------------------------------------------------------------
def manifest_path(model: Path) -> Path:
    """Where the manifest of an exported model is: <file>.json beside it (model.onnx.json,
    savedmodel.json for the savedmodel/ folder, model.ncnn.json for model.ncnn.param/.bin)."""
    model = Path(model)
    if model.suffix == ".json":
        return model
    if model.suffix in (".param", ".bin") and model.stem.endswith(".ncnn"):
        return model.with_name(model.stem + ".json")
    return model.parent / (model.name.rstrip("/") + ".json")


def read_manifest(model: Path) -> dict:
    path = manifest_path(model)
    if not Path(model).exists():
        raise MasksetError(f"MODEL={model}: no such file or folder. Export one with "
                           f"`make export-model FORMAT=savedmodel|tflite|onnx|ncnn`.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MasksetError(f"MODEL={model}: no manifest {path.name} beside it. `make detect MODEL=` takes a "
                           f"model written by `make export-model` (it writes the manifest: backbone, image "
                           f"sides, classes, graph); for a run's Keras model use RUN=.") from None
    except (OSError, ValueError) as error:
        raise MasksetError(f"{path}: cannot read the export's manifest ({error}); export again.") from None
    for key in ("format", "graph", "backbone", "image_min_side", "image_max_side", "classes", "filter", "files"):
        if key not in manifest:
            raise MasksetError(f"{path}: the manifest has no {key!r}; export again with `make export-model`.")
    if manifest["format"] not in FORMATS or manifest["graph"] not in GRAPHS:
        raise MasksetError(f"{path}: unknown format/graph {manifest['format']}/{manifest['graph']}.")
    manifest["_folder"] = str(path.parent.resolve())
    return manifest


def open_runner(manifest: dict, threads: int | None = None) -> Runner:
    """The runtime for an export described by its manifest (files relative to the manifest)."""
    folder = Path(manifest["_folder"])
    files = [folder / name for name in manifest["files"]]
    graph, params, fmt = manifest["graph"], manifest["filter"], manifest["format"]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise MasksetError(f"{', '.join(missing)}: missing beside {fmt}'s manifest; export again.")
    try:
        if fmt == "savedmodel":
            return SavedModelRunner(files[0], graph, params, threads)
        if fmt == "onnx":
            return OnnxRunner(files[0], graph, params, threads)
        if fmt == "tflite":
            return TfliteRunner(files[0], graph, params, threads)
        return NcnnRunner(files[0], files[1], graph, params, threads, manifest.get("io"))
    except ImportError as error:
        raise MasksetError(f"{fmt} models need the {error.name} package, which `make setup` installs "
                           f"(requirements-nodeps.txt); run `make setup` again.") from None


def load_exported(model: Path, threads: int | None = None) -> tuple[Runner, dict]:
    manifest = read_manifest(model)
    return open_runner(manifest, threads), manifest
