"""Pascal VOC files as labelImg reads and writes them.

Parsing is safe: lxml with entity resolution, DTD loading and network access off, so a hostile
XML file cannot expand entities, read local files or reach the network. Every problem is raised
as a VocError naming the file and the field.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from lxml import etree

from . import atomic
from .errors import MasksetError

# Written into <annotation> by `make prelabel`; labelImg drops unknown attributes when a person
# saves, so the mark disappears exactly when a human has reviewed the file.
DRAFT_ATTRIBUTE = "maskset-draft"

MAX_BYTES = 32 << 20  # 10,000 boxes take 2 MB; a larger "VOC file" is something else

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
    huge_tree=False, remove_comments=True, remove_pis=True,
)


class VocError(MasksetError):
    def __init__(self, path, field_name: str, message: str):
        self.path, self.field, self.detail = Path(path), field_name, message
        super().__init__(f"{path}: {field_name}: {message}")


@dataclass
class VocObject:
    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool = False
    truncated: bool = False
    pose: str = "Unspecified"
    raw: dict = field(default_factory=dict)  # coordinate texts as written, for validation

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.xmin, self.ymin, self.xmax, self.ymax)


@dataclass
class VocAnnotation:
    filename: str
    width: int | None
    height: int | None
    depth: int | None = 3
    objects: list[VocObject] = field(default_factory=list)
    folder: str = ""
    path: str = ""
    verified: bool = False
    draft: bool = False
    source: Path | None = None  # the XML file this was read from


def _text(node, tag: str) -> str | None:
    child = node.find(tag)
    if child is None or child.text is None:
        return None
    return child.text.strip()


def _number(xml_path, node, tag: str, where: str) -> tuple[float, str]:
    text = _text(node, tag)
    if text is None or text == "":
        raise VocError(xml_path, where, "missing. labelImg writes it for every box; redraw this box.")
    return _finite(xml_path, text, where), text


def _finite(xml_path, text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise VocError(xml_path, where, f"{text!r} is not a number. Redraw the box in labelImg.") from None
    if not math.isfinite(value):
        raise VocError(xml_path, where, f"{text!r} is not a finite number. Redraw the box in labelImg "
                                        f"(or correct the number in the file).")
    return value


def _tree(xml_path: Path):
    """The parsed root of a VOC file, safely (no entities, DTD or network), or a VocError."""
    try:
        size = xml_path.stat().st_size
    except OSError as error:
        raise VocError(xml_path, "file", f"cannot read: {error.strerror or error}") from None
    if size > MAX_BYTES:
        raise VocError(xml_path, "file", f"{size} bytes is too large for a VOC file (at most "
                                         f"{MAX_BYTES >> 20} MB). Is it really an annotation?")
    try:
        return etree.parse(str(xml_path), _PARSER).getroot()
    except etree.XMLSyntaxError as error:
        raise VocError(xml_path, f"line {error.lineno}", f"malformed XML: {error.msg}. "
                       f"Open it in labelImg (`make annotate`) and save again.") from None
    except OSError as error:
        raise VocError(xml_path, "file", f"cannot read: {error}") from None


def parse(xml_path: Path | str) -> VocAnnotation:
    """Read one VOC file. Raises VocError for malformed XML or missing/unreadable fields."""
    xml_path = Path(xml_path)
    root = _tree(xml_path)
    if root.tag != "annotation":
        raise VocError(xml_path, "<annotation>", f"root element is <{root.tag}>, not a Pascal VOC file.")

    filename = _text(root, "filename")
    if not filename:
        raise VocError(xml_path, "<filename>", "missing. It must name the image file.")
    size = root.find("size")
    width = height = depth = None
    if size is not None:
        sizes = {}
        for tag in ("width", "height", "depth"):
            text = _text(size, tag)
            if text in (None, ""):
                sizes[tag] = None
                continue
            value = _finite(xml_path, text, f"<size><{tag}>")
            if not 0 <= value < 1 << 31:
                raise VocError(xml_path, f"<size><{tag}>", f"{text} is not an image side in pixels. "
                                                          f"FIX=1 (make validate) writes the real size.")
            sizes[tag] = int(value)
        width, height, depth = sizes["width"], sizes["height"], sizes["depth"]

    objects = []
    for index, node in enumerate(root.findall("object"), 1):
        where = f"<object> #{index}"
        name = _text(node, "name")
        if not name:
            raise VocError(xml_path, f"{where} <name>", "missing class name.")
        box = node.find("bndbox")
        if box is None:
            raise VocError(xml_path, f"{where} <bndbox>", "missing.")
        coords, raw = {}, {}
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            coords[tag], raw[tag] = _number(xml_path, box, tag, f"{where} <bndbox><{tag}>")
        objects.append(VocObject(
            name=name, **coords,
            difficult=(_text(node, "difficult") or "0") in ("1", "true", "True"),
            truncated=(_text(node, "truncated") or "0") in ("1", "true", "True"),
            pose=_text(node, "pose") or "Unspecified", raw=raw,
        ))
    return VocAnnotation(
        filename=filename, width=width, height=height, depth=depth, objects=objects,
        folder=_text(root, "folder") or "", path=_text(root, "path") or "",
        verified=root.get("verified") == "yes", draft=root.get(DRAFT_ATTRIBUTE) is not None,
        source=xml_path,
    )


_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _esc(text) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def to_xml(annotation: VocAnnotation) -> bytes:
    """labelImg's own layout (PascalVocWriter), so labelImg reopens it for editing.

    Written as text (an import writes thousands: this is ~8x faster than building the tree),
    byte for byte what lxml writes for the same tree (tests/test_voc_writer.py); text that XML
    cannot hold goes through lxml, which refuses it."""
    a = annotation
    texts = [a.folder, a.filename, a.path, *(t for o in a.objects for t in (o.name, o.pose))]
    if any(_NOT_XML.search(str(t)) for t in texts):
        return _to_xml_tree(annotation)
    attributes = (' verified="yes"' if a.verified else "") + (f' {DRAFT_ATTRIBUTE}="yes"' if a.draft else "")
    parts = [f"<annotation{attributes}>\n  <folder>{_esc(a.folder)}</folder>\n"
             f"  <filename>{_esc(a.filename)}</filename>\n  <path>{_esc(a.path)}</path>\n"
             f"  <source>\n    <database>Unknown</database>\n  </source>\n"
             f"  <size>\n    <width>{_esc(a.width)}</width>\n    <height>{_esc(a.height)}</height>\n"
             f"    <depth>{a.depth or 3}</depth>\n  </size>\n  <segmented>0</segmented>\n"]
    for obj in a.objects:
        parts.append(f"  <object>\n    <name>{_esc(obj.name)}</name>\n    <pose>{_esc(obj.pose)}</pose>\n"
                     f"    <truncated>{1 if obj.truncated else 0}</truncated>\n"
                     f"    <difficult>{1 if obj.difficult else 0}</difficult>\n    <bndbox>\n"
                     f"      <xmin>{int(round(obj.xmin))}</xmin>\n      <ymin>{int(round(obj.ymin))}</ymin>\n"
                     f"      <xmax>{int(round(obj.xmax))}</xmax>\n      <ymax>{int(round(obj.ymax))}</ymax>\n"
                     f"    </bndbox>\n  </object>\n")
    parts.append("</annotation>\n")
    return "".join(parts).encode("utf-8")


def _to_xml_tree(annotation: VocAnnotation) -> bytes:
    """to_xml through lxml's tree (the reference layout; raises on text XML cannot hold)."""
    root = etree.Element("annotation")
    if annotation.verified:
        root.set("verified", "yes")
    if annotation.draft:
        root.set(DRAFT_ATTRIBUTE, "yes")
    etree.SubElement(root, "folder").text = annotation.folder
    etree.SubElement(root, "filename").text = annotation.filename
    etree.SubElement(root, "path").text = annotation.path
    source = etree.SubElement(root, "source")
    etree.SubElement(source, "database").text = "Unknown"
    size = etree.SubElement(root, "size")
    etree.SubElement(size, "width").text = str(annotation.width)
    etree.SubElement(size, "height").text = str(annotation.height)
    etree.SubElement(size, "depth").text = str(annotation.depth or 3)
    etree.SubElement(root, "segmented").text = "0"
    for obj in annotation.objects:
        node = etree.SubElement(root, "object")
        etree.SubElement(node, "name").text = obj.name
        etree.SubElement(node, "pose").text = obj.pose
        etree.SubElement(node, "truncated").text = "1" if obj.truncated else "0"
        etree.SubElement(node, "difficult").text = "1" if obj.difficult else "0"
        box = etree.SubElement(node, "bndbox")
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            etree.SubElement(box, tag).text = str(int(round(getattr(obj, tag))))
    return etree.tostring(root, pretty_print=True, encoding="utf-8")


def write(annotation: VocAnnotation, xml_path: Path | str, overwrite: bool = False) -> Path:
    """Write atomically. Refuses to replace an existing file unless overwrite=True."""
    xml_path = Path(xml_path)
    try:
        return atomic.write_bytes(xml_path, to_xml(annotation), exclusive=not overwrite)
    except FileExistsError:
        raise MasksetError(f"{xml_path}: exists already; maskset never overwrites an annotation.") from None


def edited(xml_path: Path | str, change: Callable) -> bytes:
    """The XML of xml_path after change(root) edits its element tree in place.

    The one way to edit a VOC file while keeping everything maskset does not touch (extra tags,
    attributes, comments aside). Parsed as safely as parse() does; a VocError if unreadable."""
    root = _tree(Path(xml_path))
    change(root)
    return etree.tostring(root, pretty_print=True, encoding="utf-8", xml_declaration=False)


def set_text(parent, tag: str, text: str):
    """parent's <tag> child (made if missing) with its text set."""
    node = parent.find(tag)
    if node is None:
        node = etree.SubElement(parent, tag)
    node.text = text
    return node


def rewrite_location(xml_path: Path | str, folder: str, filename: str, image_path: str) -> bytes:
    """The XML of xml_path with <folder>, <filename> and <path> pointing at a new place.

    Everything else (objects, attributes, extra tags) is kept as it was.
    """
    def move(root):
        for tag, value in (("folder", folder), ("filename", filename), ("path", image_path)):
            set_text(root, tag, value)
    return edited(xml_path, move)
