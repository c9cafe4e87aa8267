"""`make annotate [ALL=1] [PRELABEL=..]`: open labelImg on the dataset, then summarise the session.

labelImg (through annotation.launcher, which makes 1.8.6 work on Python 3.10+) opens the images
still to annotate (no VOC file yet, or a machine draft to review; every image with ALL=1), with
classes.txt as the predefined classes, annotations/ as the save folder, Pascal VOC, auto-save on.

Nothing the user made is lost: labelImg loads an existing VOC file for editing, and the previous
version of every annotation changed in a session is kept under quarantine/annotate-history/<time>/.
A draft (`maskset-draft` attribute, from `make prelabel`) becomes a reviewed annotation when a
person saves it: labelImg writes the file afresh, without the attribute.

The pure core: `images_to_annotate`, `annotation_states`, `session_summary`, `keep_previous`,
`drop_unchanged`; `annotate` runs one session (annotation/commands.py is the CLI).
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dataset import atomic, jsonl, manifest, voc
from dataset.errors import MasksetError
from dataset.layout import Dataset
from dataset.results import Result

from . import launcher

log = logging.getLogger(__name__)

HISTORY = "annotate-history"  # under quarantine/: previous versions of annotations changed


@dataclass(frozen=True)
class AnnotationState:
    """One image's annotation as found on disk."""
    exists: bool
    draft: bool = False
    boxes: tuple[str, ...] = ()  # class names, one per box
    error: str | None = None     # unreadable VOC file (validate says why in detail)
    content: bytes = b""

    @property
    def done(self) -> bool:
        """Annotated by a person: a readable, non-draft VOC file."""
        return self.exists and not self.draft and self.error is None


def annotation_state(dataset: Dataset, image: Path) -> AnnotationState:
    xml = dataset.annotation_for(image)
    try:
        content = xml.read_bytes()
    except FileNotFoundError:
        return AnnotationState(exists=False)
    try:
        ann = voc.parse(xml)
    except voc.VocError as error:
        return AnnotationState(exists=True, error=str(error), content=content)
    return AnnotationState(exists=True, draft=ann.draft, boxes=tuple(o.name for o in ann.objects),
                           content=content)


def annotation_states(dataset: Dataset) -> dict[str, AnnotationState]:
    """Image name -> its annotation's state, for every image in images/."""
    return {image.name: annotation_state(dataset, image) for image in dataset.image_files()}


def natural_key(path: Path):
    """img2 before img10, as labelImg's own file list orders them."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def images_to_annotate(dataset: Dataset, states: dict[str, AnnotationState],
                       all_images: bool = False) -> list[Path]:
    """The images a session opens: all, or those not yet annotated by a person (incl. drafts)."""
    return sorted((image for image in dataset.image_files() if all_images or not states[image.name].done),
                  key=natural_key)


@dataclass
class SessionSummary(Result):
    annotated: list[str] = field(default_factory=list)        # newly annotated this session
    reviewed_drafts: list[str] = field(default_factory=list)  # drafts a person saved
    edited: list[str] = field(default_factory=list)           # existing annotations changed
    emptied: list[str] = field(default_factory=list)          # had boxes, now have none
    left: int = 0                                             # images still to annotate
    drafts_left: int = 0
    images: int = 0
    session_boxes: dict = field(default_factory=dict)         # class -> boxes in files saved now
    boxes: dict = field(default_factory=dict)                 # class -> boxes, whole dataset
    unknown_classes: list[str] = field(default_factory=list)  # used but not in classes.txt
    unreadable: list[str] = field(default_factory=list)
    history: str | None = None                                # where previous versions went
    seconds: float = 0.0
    labelimg_exit: int | None = None
    note: str = ""                                            # e.g. "nothing to annotate ..."

    def summary(self) -> str:
        return "\n".join(([self.note] if self.note else []) + self.lines())

    def lines(self) -> list[str]:
        per_class = ", ".join(f"{name} {n}" for name, n in self.boxes.items()) or "none"
        saved = ", ".join(f"{name} {n}" for name, n in self.session_boxes.items())
        out = [
            f"annotated this session: {len(self.annotated)} new, {len(self.reviewed_drafts)} drafts "
            f"reviewed, {len(self.edited)} edited"
            + (f" (boxes in the files saved: {saved})" if saved else ""),
            f"left to annotate: {self.left} of {self.images} images"
            + (f" ({self.drafts_left} of them drafts to review)" if self.drafts_left else ""),
            f"boxes per class (dataset): {per_class}",
        ]
        if self.history:
            out.append(f"previous versions of the {len(self.edited) + len(self.reviewed_drafts)} "
                       f"changed annotations kept in {self.history}")
        for name in self.emptied:
            out.append(f"warning: {name}: its annotation had boxes and now has none; if that was "
                       f"not intended, copy it back from {self.history}")
        if self.unknown_classes:
            out.append(f"warning: classes not in classes.txt: {', '.join(self.unknown_classes)}; "
                       f"add them to classes.txt or relabel those boxes (make validate lists them)")
        for name in self.unreadable:
            out.append(f"warning: {name}: annotation unreadable; run `make validate` for details")
        return out


def session_summary(before: dict[str, AnnotationState], after: dict[str, AnnotationState],
                    classes: list[str]) -> SessionSummary:
    """What a session changed, from the annotation states before and after it."""
    summary = SessionSummary(images=len(after))
    session_boxes, boxes = Counter(), Counter()
    for name, now in after.items():
        old = before.get(name, AnnotationState(exists=False))
        if now.error:
            summary.unreadable.append(name)
        if now.done:
            boxes.update(now.boxes)
        else:
            summary.left += 1
            summary.drafts_left += now.draft
        if now.content == old.content or not now.exists:
            continue
        session_boxes.update(now.boxes)
        if not old.exists:
            if now.done:
                summary.annotated.append(name)
        elif old.draft and now.done:
            summary.reviewed_drafts.append(name)
        else:
            summary.edited.append(name)
        if old.boxes and not now.boxes and now.done:
            summary.emptied.append(name)
    order = {name: i for i, name in enumerate(classes)}
    by_class = lambda counter: dict(sorted(counter.items(), key=lambda kv: (order.get(kv[0], 1e9), kv[0])))
    summary.session_boxes, summary.boxes = by_class(session_boxes), by_class(boxes)
    summary.unknown_classes = sorted(set(boxes) - set(classes))
    return summary


def keep_previous(dataset: Dataset, before: dict[str, AnnotationState], images, stamp: str) -> Path:
    """Before labelImg opens: copy the existing annotation of every image it will open, so even a
    session that is killed mid-way leaves the previous versions (drop_unchanged tidies up)."""
    folder = dataset.quarantine / HISTORY / stamp
    for image in images:
        old = before.get(Path(image).name)
        if old is not None and old.exists:
            atomic.write_bytes(folder / (Path(image).stem + ".xml"), old.content)
    return folder


def drop_unchanged(folder: Path, before: dict[str, AnnotationState],
                   after: dict[str, AnnotationState]) -> Path | None:
    """After the session: remove our copies of annotations it left as they were. Returns the
    history folder if it still holds previous versions, else None."""
    kept = 0
    for name, old in before.items():
        copy = folder / (Path(name).stem + ".xml")
        if not copy.exists():
            continue
        now = after.get(name)
        if now is not None and now.content == old.content:
            copy.unlink()  # our own copy, identical to the file in annotations/
        else:
            kept += 1
    if not kept and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    return folder if kept else None


# -- running labelImg -----------------------------------------------------------------------------
def check_display(env=None) -> None:
    """labelImg is a window: fail early, saying how to get a display, when there is none."""
    env = os.environ if env is None else env
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return
    raise MasksetError(
        "no display: labelImg opens a window, and neither DISPLAY nor WAYLAND_DISPLAY is set. "
        "Run `make annotate` from a desktop session; over ssh use `ssh -X`; on a headless machine "
        "install xvfb (apt-get install xvfb) and run `xvfb-run -a make annotate` (for scripted "
        "use only: nobody can see that window).")


def launcher_command(dataset: Dataset, image_list: Path, settings: Path) -> list[str]:
    return [sys.executable, "-m", "annotation.launcher", str(dataset.images),
            str(dataset.classes_file), str(dataset.annotations),
            "--image-list", str(image_list), "--settings", str(settings)]


def run_labelimg(command: list[str], env=None) -> tuple[int, str]:
    """Run labelImg until its window closes; its output goes on to ours. Returns (code, stderr tail)."""
    env = dict(os.environ if env is None else env)
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, errors="replace")
    tail: list[str] = []

    def forward():  # stream stderr to the user, keep the end for the error message
        for line in process.stderr:
            sys.stderr.write(line)
            tail.append(line)
            del tail[:-40]

    reader = threading.Thread(target=forward, daemon=True)
    reader.start()
    try:
        code = process.wait()
    except KeyboardInterrupt:
        process.terminate()
        code = process.wait()
    reader.join(5)
    return code, "".join(tail)


def explain_exit(code: int, stderr_tail: str) -> str | None:
    """A sentence for a labelImg that did not end normally, or None."""
    if code == 0:
        return None
    if "could not connect to display" in stderr_tail or "cannot open display" in stderr_tail:
        return ("labelImg could not open the display named by DISPLAY. Check that the X server is "
                "running (or use `xvfb-run -a make annotate` on a headless machine).")
    if "xcb" in stderr_tail and "plugin" in stderr_tail:
        return ("Qt could not load its xcb platform plugin: install the Qt xcb libraries "
                "(apt-get install libxcb-xinerama0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 "
                "libxcb-keysyms1 libxcb-render-util0).")
    if "No module named" in stderr_tail and ("labelImg" in stderr_tail or "PyQt5" in stderr_tail):
        return "labelImg or PyQt5 is not installed in this environment: run `make setup`."
    if code < 0:
        how = f"killed by signal {-code}"
        if launcher.adaptation_disabled():
            how += f" ({launcher.UNPATCHED_ENV}=1 is set: unset it to use the adapted labelImg)"
        return f"labelImg crashed ({how}). Everything saved before the crash is kept."
    return f"labelImg exited with status {code}. Everything saved before that is kept."


def _prelabel(dataset: Dataset, value: str) -> str:
    from annotation.prelabel import prelabel  # loads TensorFlow: only when asked
    run_id = None if value.strip().lower() in ("", "1", "yes", "true", "latest") else value
    return prelabel(dataset, run=run_id).summary_line()


def annotate(dataset: Dataset, all_images: bool = False, prelabel: str | None = None,
             env=None) -> SessionSummary:
    """One labelImg session over the dataset (the caller holds its lock); returns what changed.
    What to do next is said through logging before labelImg opens."""
    env = os.environ if env is None else env
    check_display(env)
    dataset.ensure()
    classes = dataset.classes()  # raises for a malformed classes.txt, naming the line
    if not dataset.classes_file.exists():
        dataset.write_classes(classes)  # labelImg's predefined classes; makes defaults visible
    if prelabel is not None:
        log.info("prelabel: %s", _prelabel(dataset, prelabel))
    before = annotation_states(dataset)
    images = images_to_annotate(dataset, before, all_images)
    if not images:
        summary = session_summary(before, before, classes)
        summary.note = (f"nothing to annotate: all {len(before)} images have an annotation"
                        + ("" if before else " (images/ is empty: add images with make scrape or make import)")
                        + ("; use ALL=1 to open them all for review" if before else ""))
        return summary
    work = dataset.cache / "labelImg"
    image_list = atomic.write_text(work / "images.txt", "".join(f"{p}\n" for p in images))
    log.info("labelImg: %d images to %s, classes %s; saving Pascal VOC to %s (auto-save on: draw "
             "a box (w), pick its class, next image (d)); close the window when done", len(images),
             "review" if all_images else "annotate", ", ".join(classes), dataset.annotations)
    started = time.monotonic()
    history = keep_previous(dataset, before, images, time.strftime("%Y%m%dT%H%M%S"))
    code, tail = run_labelimg(launcher_command(dataset, image_list, work / "settings.pkl"), env)
    after = annotation_states(dataset)
    summary = session_summary(before, after, classes)
    summary.seconds, summary.labelimg_exit = round(time.monotonic() - started, 1), code
    history = drop_unchanged(history, before, after)
    summary.history = str(history.relative_to(dataset.root)) if history else None
    record = {"time": manifest.now(), "all": all_images, "opened": len(images), **asdict(summary)}
    atomic.write_json(dataset.export / "annotate.json", record)
    jsonl.append(dataset.export / "annotate-log.jsonl", record)
    problem = explain_exit(code, tail)
    if problem:
        error = MasksetError(problem)
        error.result = summary  # the CLI prints what the session saved before the error
        raise error
    return summary
