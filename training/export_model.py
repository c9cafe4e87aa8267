"""`make export-model [RUN=..] FORMAT=savedmodel|tflite|onnx|ncnn`: a run's inference model in a
format people deploy, checked against the Keras model on the run's val images.

    savedmodel  <run>/export/savedmodel/        TF SavedModel (signature serving_default), whole graph
    onnx        <run>/export/model.onnx          tf2onnx, opset 17, whole graph (ONNX Runtime)
    tflite      <run>/export/model.tflite        up to the boxes and scores; filtering in NumPy
    ncnn        <run>/export/model.ncnn.param/.bin  the heads (pnnx, FP32); the rest in NumPy

Each writes a manifest beside it (`<file>.json`: format, graph, backbone, image sides, classes,
FilterDetections' parameters, versions, notes, and the check's report), so `make detect
MODEL=<file>` needs nothing else. Where part of the graph does not convert, the manifest's notes
and the command's output say which op and what the export falls back to (runtimes.py explains
the graph kinds). The check: per val image, every detection the model returns (down to
FilterDetections' own 0.05) must be there, in the same number, boxes within 1 px (in the image's
pixels) and scores within 1e-3; every disagreement is listed and the command exits 1.
"""
from __future__ import annotations

import csv
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dataset import atomic
from dataset.errors import MasksetError
from dataset.results import Result

from . import runs
from .runtimes import FORMATS, MANIFEST_VERSION, KerasRunner, Runner, manifest_path, open_runner

log = logging.getLogger(__name__)

BOX_TOLERANCE = 1.0      # px, in the original image
SCORE_TOLERANCE = 1e-3
ONNX_OPSET = 17
EXPORT = "export"        # <run>/export/
TARGETS = {"savedmodel": ["savedmodel"], "onnx": ["model.onnx"], "tflite": ["model.tflite"],
           "ncnn": ["model.ncnn.param", "model.ncnn.bin"]}
DEFAULT_GRAPH = {"savedmodel": "full", "onnx": "full", "tflite": "raw", "ncnn": "heads"}
# pnnx traces the graph at two input sizes; a size that is the same in both is written into the
# ncnn graph as a constant. At these two, every pyramid level (P3..P7) differs in both sides.
PNNX_SHAPES = ("[1,256,320,3]", "[1,512,640,3]")

NOTES = {
    "tflite": ("TFLite: FilterDetections' non-max suppression (tf.image.non_max_suppression, "
               "NonMaxSuppressionV3) converts to NON_MAX_SUPPRESSION_V4, whose indices come back padded "
               "to 300, so the converted graph returns 300 detections per image. Fell back to: the graph "
               "stops at the clipped boxes and class scores, and detection runs FilterDetections in NumPy "
               "(training/postprocess.py, equal to the TF layer). GRAPH=full exports the whole graph to see "
               "the check fail."),
    "ncnn": ("ncnn: pnnx cannot convert ClipBoxes' unstack nor FilterDetections' loop and NMS. Fell back "
             "to: the graph stops at the regression and classification heads; anchors, box regression, "
             "clipping and FilterDetections run in NumPy (geometry.anchors_for, postprocess.py). pnnx "
             "writes TF's 'same' max-pool padding as symmetric padding and UpsampleLike as a fixed size; "
             "both were rewritten in the .param so any input size gives Keras' numbers."),
}


# -- the graphs ------------------------------------------------------------------------------------
def filter_params(keras_model) -> dict:
    layer = keras_model.get_layer("filtered_detections")
    if not (layer.nms and layer.class_specific_filter):
        raise MasksetError("the inference model's FilterDetections is not convert_model's (nms and "
                           "class-specific filtering); training/postprocess.py implements that one only.")
    return dict(score_threshold=float(layer.score_threshold), nms_threshold=float(layer.nms_threshold),
                max_detections=int(layer.max_detections))


def part_of(keras_model, graph: str):
    """The Keras model cut where `graph` says, with named outputs."""
    from tensorflow import keras
    if graph == "full":
        return keras_model, ("boxes", "scores", "labels")
    if graph == "raw":
        layers = ("clipped_boxes", "classification")
        names = ("boxes", "classification")
    else:
        layers = ("regression", "classification")
        names = ("regression", "classification")
    return keras.Model(keras_model.inputs, [keras_model.get_layer(n).output for n in layers]), names


def serving_function(keras_model, graph: str, batch: int | None = None):
    """A tf.function over image float32 [batch, H, W, 3] returning the graph's named outputs."""
    import tensorflow as tf
    net, names = part_of(keras_model, graph)
    spec = [tf.TensorSpec([batch, None, None, 3], tf.float32, name="image")]

    @tf.function(input_signature=spec)
    def serve(image):
        outputs = net(image, training=False)
        return {name: tensor for name, tensor in zip(names, outputs[:len(names)])}
    return serve, spec, net


# -- writing each format ---------------------------------------------------------------------------
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace_folder(tmp: Path, target: Path) -> None:
    """tmp (a finished folder) becomes target; an earlier export there goes only once it has."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_savedmodel(keras_model, graph: str, target: Path, notes: list) -> None:
    import tensorflow as tf
    serve, _, net = serving_function(keras_model, graph)
    module = tf.Module()
    module.model = net
    module.serve = serve
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700
    try:
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": serve})
        _replace_folder(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def onnx_proto(keras_model, graph: str, batch: int | None = None):
    """tf2onnx's ModelProto for the graph. tf2onnx deep-copies the whole graph (weights included)
    before each of its ~36 optimiser passes so that a failing pass can be skipped; that is 3/4 of
    the conversion time. It runs without the copies first and with them only if a pass fails."""
    import tf2onnx
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)  # its INFO lines are a log of each pass
    serve, spec, _ = serving_function(keras_model, graph, batch)
    previous = os.environ.get("TF2ONNX_CATCH_ERRORS")
    try:
        os.environ["TF2ONNX_CATCH_ERRORS"] = "FALSE"
        try:
            proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=ONNX_OPSET)
        except Exception as error:  # noqa: BLE001 - any optimiser pass failing: the careful way
            log.warning("tf2onnx: a pass failed (%s); converting again, skipping failing passes", error)
            os.environ["TF2ONNX_CATCH_ERRORS"] = "TRUE"
            proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=ONNX_OPSET)
    finally:
        if previous is None:
            os.environ.pop("TF2ONNX_CATCH_ERRORS", None)
        else:
            os.environ["TF2ONNX_CATCH_ERRORS"] = previous
    return proto


def unsupported_ops(error: Exception) -> str:
    text = str(error)
    for marker in ("Unsupported ops:", "not supported"):
        if marker in text:
            return text[text.index(marker):][:300]
    return f"{type(error).__name__}: {text[:300]}"


def write_onnx(keras_model, graph: str, target: Path, notes: list) -> str:
    try:
        proto = onnx_proto(keras_model, graph)
    except Exception as error:  # noqa: BLE001 - tf2onnx raises many kinds for an op it cannot take
        if graph != "full":
            raise MasksetError(f"ONNX: tf2onnx cannot convert the {graph} graph ({unsupported_ops(error)}).") \
                from None
        notes.append(f"ONNX: tf2onnx could not convert the whole graph ({unsupported_ops(error)}). Fell back "
                     f"to: the graph up to the clipped boxes and class scores, FilterDetections in NumPy.")
        graph = "raw"
        proto = onnx_proto(keras_model, graph)
    ops = Counter(node.op_type for node in proto.graph.node)
    loops = [n for n in proto.graph.node if n.op_type == "Loop"]
    inner = Counter(n.op_type for loop in loops for attr in loop.attribute if attr.g for n in attr.g.node)
    notes.append(f"ONNX opset {ONNX_OPSET}: {sum(ops.values())} ops ({ops.get('Conv', 0)} Conv)"
                 + (f"; FilterDetections is a Loop holding {', '.join(sorted(inner))}" if loops else ""))
    with atomic.writing(target) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    return graph


def write_tflite(keras_model, graph: str, target: Path, notes: list) -> None:
    import tensorflow as tf
    serve, _, net = serving_function(keras_model, graph)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], net)
    try:
        data = converter.convert()
    except Exception as error:  # noqa: BLE001 - an op with no TFLite builtin kernel
        notes.append(f"TFLite: builtin ops could not express the graph ({unsupported_ops(error)}). Fell back "
                     f"to: TensorFlow ops (SELECT_TF_OPS, the Flex delegate) for those ops.")
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        data = converter.convert()
    if graph == "raw":
        notes.append(NOTES["tflite"])
    with atomic.writing(target) as tmp:
        tmp.write_bytes(data)


def pnnx_program() -> Path:
    """The pnnx converter: the binary inside the pnnx wheel (its Python part wants torch; not needed)."""
    import importlib.util
    spec = importlib.util.find_spec("pnnx")
    if spec is None or not spec.submodule_search_locations:
        raise MasksetError("FORMAT=ncnn needs the pnnx converter, which `make setup` installs "
                           "(requirements-nodeps.txt); run `make setup` again.")
    program = Path(list(spec.submodule_search_locations)[0]) / "pnnx"
    if not os.access(program, os.X_OK):
        raise MasksetError(f"{program}: the pnnx converter is missing or not executable; run `make setup` again.")
    return program


def patch_ncnn_param(text: str) -> str:
    """pnnx's .param, made to give Keras' numbers at any input size:

    * TF's 'same' max pooling becomes pnnx's Padding (1 on every side) + a 'valid' Pooling; TF pads
      0 before and 1 after on an even side, so the windows shift. It becomes one Pooling with
      ncnn's SAME_UPPER mode (5=2), TF's rule at every size.
    * UpsampleLike (resize P5 to C4's size) becomes an Interp to the size pnnx traced. It becomes an
      Interp to the size of the blob it is added to (5=1: a second input gives the size; a Split
      feeds that blob to both, since an ncnn blob has one consumer).
    """
    lines = text.splitlines()
    magic, counts, layers = lines[0], lines[1], [line.split() for line in lines[2:] if line.strip()]
    layer_count, blob_count = map(int, counts.split())
    pads = {p[5]: p[4] for p in layers if p[0] == "Padding" and p[2] == p[3] == "1"
            and any(x.startswith("5=-3.4") for x in p[6:])}  # -FLT_MAX: a max-pool's padding
    out = []
    for p in layers:
        if p[0] == "Padding" and p[5] in pads:
            layer_count, blob_count = layer_count - 1, blob_count - 1
            continue
        if p[0] == "Pooling" and p[4] in pads:
            kept = [x for x in p[6:] if x.split("=")[0] not in ("3", "5", "13", "14", "15")]
            p = p[:4] + [pads[p[4]], p[5]] + kept + ["5=2"]
        out.append(p)
    sizes = {}   # blob giving the size -> (its copy for Interp, its copy for the add, the add's name)
    rewritten = []
    for p in out:
        if p[0] == "Interp" and p[2] == "1":
            adds = [q for q in out if q[0] == "BinaryOp" and p[5] in q[4:6]]
            if len(adds) != 1:
                raise MasksetError("ncnn: an Interp that is not UpsampleLike's (not added to one blob); "
                                   "this backbone cannot be exported to ncnn. Use FORMAT=onnx.")
            add = adds[0]
            reference = add[5] if add[4] == p[5] else add[4]
            sizes[reference] = (f"{reference}_size", f"{reference}_add", add[1])
            kept = [x for x in p[6:] if x.split("=")[0] not in ("3", "4", "5")]
            p = ["Interp", p[1], "2", "1", p[4], f"{reference}_size", p[5]] + kept + ["5=1"]
        rewritten.append(p)
    final = []
    for p in rewritten:
        if p[0] == "BinaryOp":
            p = p[:4] + [sizes[b][1] if b in sizes and sizes[b][2] == p[1] else b for b in p[4:6]] + p[6:]
        final.append(p)
        produced = p[4 + int(p[2]):4 + int(p[2]) + int(p[3])]
        for reference, (size, add, _) in sizes.items():
            if reference in produced:
                final.append(["Split", f"split_{reference}", "1", "2", reference, size, add])
                layer_count, blob_count = layer_count + 1, blob_count + 2
    body = [" ".join(p) for p in final]
    return "\n".join([magic, f"{layer_count} {blob_count}", *body]) + "\n"


def write_ncnn(keras_model, graph: str, targets: list[Path], notes: list) -> dict:
    program = pnnx_program()
    proto = onnx_proto(keras_model, "heads", batch=1)
    outputs = [o.name for o in proto.graph.output]
    with tempfile.TemporaryDirectory(prefix=".ncnn-", dir=targets[0].parent) as work:
        work = Path(work)
        (work / "heads.onnx").write_bytes(proto.SerializeToString())
        del proto
        done = subprocess.run([str(program), "heads.onnx", f"inputshape={PNNX_SHAPES[0]}",
                               f"inputshape2={PNNX_SHAPES[1]}", "fp16=0"], cwd=work,
                              capture_output=True, text=True, timeout=1800)
        if done.returncode != 0 or not (work / "heads.ncnn.param").is_file():
            raise MasksetError(f"ncnn: pnnx failed ({done.returncode}): {(done.stdout + done.stderr)[-800:]}")
        # pnnx names the ONNX outputs out0, out1 ... in graph order
        io = {"input": "in0", **{name: f"out{i}" for i, name in enumerate(outputs)}}
        with atomic.writing(targets[1]) as tmp:
            shutil.copyfile(work / "heads.ncnn.bin", tmp)
        with atomic.writing(targets[0]) as tmp:
            tmp.write_text(patch_ncnn_param((work / "heads.ncnn.param").read_text()))
    notes.append(NOTES["ncnn"])
    return io


# -- the check -------------------------------------------------------------------------------------
@dataclass
class ImageCheck:
    image: str
    keras_count: int
    exported_count: int
    max_box_diff: float = 0.0
    max_score_diff: float = 0.0
    problems: list = field(default_factory=list)


def valid(outputs, scale: float):
    """The detections of one image (label >= 0), boxes in the original image's pixels."""
    boxes, scores, labels = outputs
    keep = labels >= 0
    return boxes[keep] / scale, scores[keep], labels[keep]


def pair(reference, candidate) -> list[tuple[int, int]]:
    """Each reference detection with the nearest unused candidate box of its label, best score
    first (two scores within float noise may come out in either order)."""
    rb, rs, rl = reference
    cb, cs, cl = candidate
    pairs, used = [], set()
    for i in np.argsort(-rs, kind="stable"):
        same = [j for j in np.flatnonzero(cl == rl[i]) if j not in used]
        if not same:
            continue
        j = min(same, key=lambda j: (float(np.max(np.abs(cb[j] - rb[i]))), abs(float(cs[j] - rs[i]))))
        used.add(j)
        pairs.append((int(i), int(j)))
    return pairs


def _box(values) -> list:
    return [round(float(v), 1) for v in values]


def compare(name: str, keras_out, exported_out, scale: float, box_tol: float = BOX_TOLERANCE,
            score_tol: float = SCORE_TOLERANCE) -> ImageCheck:
    reference, candidate = valid(keras_out, scale), valid(exported_out, scale)
    check = ImageCheck(name, len(reference[1]), len(candidate[1]))
    if check.keras_count != check.exported_count:
        check.problems.append(f"{check.keras_count} detections from Keras, {check.exported_count} from the export")
    pairs = pair(reference, candidate)
    paired_r, paired_c = {i for i, _ in pairs}, {j for _, j in pairs}
    for i in range(check.keras_count):
        if i not in paired_r:
            check.problems.append(f"Keras' detection (label {int(reference[2][i])}, score {reference[1][i]:.4f}, "
                                  f"box {_box(reference[0][i])}) has no match in the export")
    for j in range(check.exported_count):
        if j not in paired_c:
            check.problems.append(f"the export's detection (label {int(candidate[2][j])}, score "
                                  f"{candidate[1][j]:.4f}, box {_box(candidate[0][j])}) has no match in Keras'")
    for i, j in pairs:
        box_diff = float(np.max(np.abs(reference[0][i] - candidate[0][j])))
        score_diff = abs(float(reference[1][i] - candidate[1][j]))
        check.max_box_diff = max(check.max_box_diff, box_diff)
        check.max_score_diff = max(check.max_score_diff, score_diff)
        if box_diff > box_tol:
            check.problems.append(f"a box differs by {box_diff:.2f} px (Keras {_box(reference[0][i])}, export "
                                  f"{_box(candidate[0][j])})")
        if score_diff > score_tol:
            check.problems.append(f"a score differs by {score_diff:.2e} (Keras {reference[1][i]:.5f}, export "
                                  f"{candidate[1][j]:.5f})")
    return check


def verify(reference: Runner, exported: Runner, images, preprocess, progress: bool = True) -> dict:
    """Per image: the same number of detections, boxes within 1 px, scores within 1e-3.

    images: [(name, BGR array)]; preprocess: BGR -> (float32 H x W x 3, scale)."""
    from dataset import progress as progress_bars
    checks = []
    for name, image in progress_bars.bar(images, desc="checking", leave=False, enabled=progress):
        tensor, scale = preprocess(image)
        batch = np.expand_dims(tensor, 0)
        want = [a[0] for a in reference.predict(batch)]
        try:
            got = [a[0] for a in exported.predict(batch)]
        except Exception as error:  # noqa: BLE001 - a runtime that cannot run its graph on this image (TFLite's
            # whole graph can fail inside its NMS loop, "GATHER failed to invoke") disagrees as plainly as a wrong box
            check = ImageCheck(name, len(valid(want, scale)[1]), 0)
            check.problems.append(f"the export could not run on this image ({type(error).__name__}: "
                                  f"{' '.join(str(error).split())[:300]})")
            checks.append(check)
            continue
        checks.append(compare(name, want, got, scale))
    return {
        "ok": bool(checks) and not any(c.problems for c in checks),
        "images": len(checks),
        "detections": sum(c.keras_count for c in checks),
        "max_box_diff": max((c.max_box_diff for c in checks), default=0.0),
        "max_score_diff": max((c.max_score_diff for c in checks), default=0.0),
        "box_tolerance": BOX_TOLERANCE, "score_tolerance": SCORE_TOLERANCE,
        "disagreements": [{"image": c.image, "problems": c.problems} for c in checks if c.problems],
    }


def val_images(run_dir: Path, data: Path | None = None, limit: int | None = None) -> tuple[Path, list]:
    """(the CSV, [(image name, BGR)]): the run's val.csv, else DATA's export/val.csv."""
    from .config import TrainConfig
    from .detect import read_bgr
    config = TrainConfig.from_json(Path(run_dir) / runs.CONFIG)
    candidates = [Path(config.val_csv)] if config.val_csv else []
    if data is not None:
        candidates.append(Path(data) / "export" / "val.csv")
    for val_csv in candidates:
        if not val_csv.is_file():
            continue
        names = []
        with open(val_csv, newline="", encoding="utf-8") as handle:
            for row in csv.reader(handle):
                if row and row[0] not in names:
                    names.append(row[0])
        if names:
            names = names[:limit] if limit else names
            return val_csv, [(name, read_bgr(val_csv.parent / name)) for name in names]
    raise MasksetError(f"{run_dir}: no val images to check the export on (the run's val CSV "
                       f"{config.val_csv or '(none)'} is missing or empty, and so is DATA's export/val.csv). "
                       f"Run `make split` with VAL= > 0, or pass DATA= a dataset with a val part.")


# -- the stage -------------------------------------------------------------------------------------
def versions() -> dict:
    import importlib.metadata as metadata
    found = {"python": sys.version.split()[0], "numpy": np.__version__}
    for name in ("tensorflow-cpu", "tensorflow", "keras-retinanet", "tf2onnx", "onnx", "onnxruntime", "ncnn",
                 "pnnx"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def export_run(run_dir: Path, fmt: str, graph: str | None = None, out: Path | None = None,
               data: Path | None = None, limit: int | None = None, threads: int | None = None,
               progress: bool = True) -> "ExportResult":
    """Export a finished run's inference model as fmt, check it, write its manifest."""
    from .detect import load_inference_model
    if fmt not in FORMATS:
        raise MasksetError(f"FORMAT={fmt}: expected one of {', '.join(FORMATS)}.")
    graph = graph or DEFAULT_GRAPH[fmt]
    if fmt == "ncnn" and graph != "heads":
        raise MasksetError("FORMAT=ncnn exports the heads only (GRAPH=heads, the default): pnnx cannot convert "
                           "the rest.")
    if graph not in ("full", "raw", "heads"):
        raise MasksetError(f"GRAPH={graph}: expected full, raw or heads.")
    model = load_inference_model(run_dir)
    val_csv, images = val_images(run_dir, data, limit)   # before the minutes of converting
    folder = Path(out) if out else Path(run_dir) / EXPORT
    folder.mkdir(parents=True, exist_ok=True)
    targets = [folder / name for name in TARGETS[fmt]]
    keras_model = model.keras_model
    params = filter_params(keras_model)
    notes: list[str] = []
    io = None
    started = time.monotonic()
    if fmt == "savedmodel":
        write_savedmodel(keras_model, graph, targets[0], notes)
    elif fmt == "onnx":
        graph = write_onnx(keras_model, graph, targets[0], notes)
    elif fmt == "tflite":
        write_tflite(keras_model, graph, targets[0], notes)
    else:
        io = write_ncnn(keras_model, graph, targets, notes)
    seconds = time.monotonic() - started
    manifest = {
        "maskset_export": MANIFEST_VERSION, "format": fmt, "graph": graph,
        "files": [t.name for t in targets], "run": str(Path(run_dir).resolve()),
        "backbone": model.backbone, "image_min_side": model.min_side, "image_max_side": model.max_side,
        "classes": [model.classes[label] for label in sorted(model.classes)], "filter": params,
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(seconds, 1),
        "versions": versions(), "notes": notes}
    if io:
        manifest["io"] = io
    manifest["_folder"] = str(folder.resolve())
    runner = open_runner(manifest, threads)
    try:
        report = verify(KerasRunner(keras_model), runner, images, model.preprocess, progress)
    finally:
        runner.close()
    report["val_csv"] = str(val_csv)
    report["runtime"] = runner.name
    manifest.pop("_folder")
    manifest["verify"] = report
    atomic.write_json(manifest_path(targets[0]), manifest)
    return ExportResult(fmt, graph, targets[0], manifest)


@dataclass
class ExportResult(Result):
    format: str
    graph: str
    model: Path
    manifest: dict

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return 0 if self.manifest["verify"]["ok"] else 1

    def summary(self) -> str:
        v = self.manifest["verify"]
        lines = [f"export-model: {self.format} ({self.graph} graph) in {self.manifest['seconds']:.0f}s -> {self.model}",
                 f"  manifest: {manifest_path(self.model)}"]
        for note in self.manifest["notes"]:
            lines.append(f"  note: {note}")
        verdict = "agrees with" if v["ok"] else "DISAGREES with"
        lines.append(f"  check on {v['images']} val images ({v['val_csv']}), {v['runtime']}: the export {verdict} "
                     f"the Keras model: {v['detections']} detections (every one down to score "
                     f"{self.manifest['filter']['score_threshold']}), boxes within {v['max_box_diff']:.2g} px "
                     f"(allowed {v['box_tolerance']:g}), scores within {v['max_score_diff']:.2g} "
                     f"(allowed {v['score_tolerance']:g})")
        for item in v["disagreements"]:
            lines.append(f"  {item['image']}: " + "; ".join(item["problems"]))
        if v["ok"]:
            lines.append(f"  run it: make detect MODEL={self.model} IMAGE=..|DIR=..|VIDEO=..|SOURCE=..")
        else:
            lines.append("error: the export does not give the Keras model's detections (listed above); do not "
                         "deploy it." + (" Use GRAPH=raw (the default for tflite)." if self.graph == "full"
                                         and self.format == "tflite" else ""))
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"format": self.format, "graph": self.graph, "model": str(self.model), **self.manifest}
