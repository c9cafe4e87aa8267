"""make export: keras-retinanet's CSV exactly; its own CSVGenerator reads back every box."""
from collections import Counter
from pathlib import Path


from dataset import voc
from dataset.export import export
from dataset.importer import import_folder
from dataset.layout import Dataset
from helpers import make


def _generator(dataset):
    from keras_retinanet.preprocessing.csv_generator import CSVGenerator
    return CSVGenerator(str(dataset.export / "annotations.csv"), str(dataset.export / "classes.csv"),
                        shuffle_groups=False)


def test_every_seed_voc_box_arrives_in_keras_retinanet(tmp_path, seed_voc):
    dataset = Dataset.at(tmp_path / "data")
    import_folder(dataset, seed_voc, progress=False)
    make("export", data=dataset.root)
    generator = _generator(dataset)
    assert generator.size() == 691
    assert [generator.label_to_name(i) for i in range(generator.num_classes())] == dataset.classes()
    arrived = Counter()
    for index in range(generator.size()):
        image = Path(generator.image_path(index))
        ann = voc.parse(dataset.annotation_for(image))
        got = generator.load_annotations(index)
        expected = sorted((o.name, o.xmin - 1, o.ymin - 1, o.xmax - 1, o.ymax - 1) for o in ann.objects)
        actual = sorted((generator.label_to_name(int(l)), *map(float, b))
                        for l, b in zip(got["labels"], got["bboxes"]))
        assert actual == expected, image.name  # 0-based: VOC's 1-based minus one
        arrived.update(name for name, *_ in actual)
    assert arrived == Counter({"mask": 457, "noMask": 366})
    # the image path keras-retinanet resolves is the dataset's own copy
    assert Path(generator.image_path(0)).resolve().parent == dataset.images


def test_negative_images_and_difficult_objects(sample_dataset):
    ds = sample_dataset
    empty = voc.parse(ds.annotations / "scene_0000.xml")
    empty.objects = []
    voc.write(empty, ds.annotations / "scene_0000.xml", overwrite=True)
    hard = voc.parse(ds.annotations / "scene_0001.xml")
    hard.objects[0].difficult = True
    voc.write(hard, ds.annotations / "scene_0001.xml", overwrite=True)

    export(ds, progress=False)
    lines = (ds.export / "annotations.csv").read_text().splitlines()
    assert "../images/scene_0000.jpg,,,,," in lines
    with_difficult = sum(l.startswith("../images/scene_0001.jpg,") for l in lines)
    generator = _generator(ds)
    index = [Path(generator.image_path(i)).name for i in range(generator.size())].index("scene_0000.jpg")
    assert len(generator.load_annotations(index)["bboxes"]) == 0  # arrives as a picture without faces

    result = export(ds, skip_difficult=True, progress=False)
    lines = (ds.export / "annotations.csv").read_text().splitlines()
    assert sum(l.startswith("../images/scene_0001.jpg,") for l in lines) == with_difficult - 1
    assert result.skipped_difficult == 1
    assert (ds.export / "classes.csv").read_text() == "mask,0\nno_mask,1\n"


def test_export_refuses_while_validate_finds_errors(sample_dataset):
    xml = sample_dataset.annotations / "scene_0002.xml"
    xml.write_text(xml.read_text().replace("<name>mask</name>", "<name>helmet</name>").replace(
        "<name>no_mask</name>", "<name>helmet</name>"))
    result = make("export", data=sample_dataset.root, check=False)
    assert result.returncode != 0
    assert "export refuses" in result.stderr and "scene_0002.xml" in result.stderr and "helmet" in result.stderr
    assert not (sample_dataset.export / "annotations.csv").exists()


def test_pending_images_are_not_exported(sample_dataset):
    (sample_dataset.annotations / "scene_0004.xml").unlink()
    result = export(sample_dataset, progress=False)
    assert "scene_0004.jpg" not in (sample_dataset.export / "annotations.csv").read_text()
    assert result.pending == 1


def test_drafts_are_pending_unless_included(sample_dataset):
    ann = voc.parse(sample_dataset.annotations / "scene_0005.xml")
    ann.draft = True
    voc.write(ann, sample_dataset.annotations / "scene_0005.xml", overwrite=True)
    export(sample_dataset, progress=False)
    assert "scene_0005.jpg" not in (sample_dataset.export / "annotations.csv").read_text()
    make("export", "INCLUDE_DRAFTS=1", data=sample_dataset.root)
    assert "scene_0005.jpg" in (sample_dataset.export / "annotations.csv").read_text()


def test_a_box_at_the_edge_written_zero_based_stays_a_box(sample_dataset):
    ann = voc.parse(sample_dataset.annotations / "scene_0007.xml")
    ann.objects[0].xmin, ann.objects[0].xmax = 0, 1  # another tool's 0-based VOC, one pixel wide
    voc.write(ann, sample_dataset.annotations / "scene_0007.xml", overwrite=True)
    export(sample_dataset, progress=False)
    generator = _generator(sample_dataset)  # raises on any x2 <= x1
    index = [Path(generator.image_path(i)).name for i in range(generator.size())].index("scene_0007.jpg")
    boxes = generator.load_annotations(index)["bboxes"]
    assert any(b[0] == 0 and b[2] == 1 for b in boxes)


def test_resize_points_at_copies_scaled_as_training_scales_them(sample_dataset):
    """RESIZE=120x160: each 320x240 image becomes a 160x120 copy (scale 0.5), boxes halved."""
    export(sample_dataset, progress=False)
    full = {tuple(r.split(",")[1:]) for r in (sample_dataset.export / "annotations.csv").read_text().splitlines()
            if r.startswith("../images/scene_0003.jpg,")}
    make("export", "RESIZE=120x160", data=sample_dataset.root)
    generator = _generator(sample_dataset)
    names = [Path(generator.image_path(i)).name for i in range(generator.size())]
    index = names.index("scene_0003.jpg")
    assert Path(generator.image_path(index)).parent == sample_dataset.export / "resized" / "120x160"
    assert generator.image_aspect_ratio(index) == 160 / 120
    from PIL import Image
    assert Image.open(generator.image_path(index)).size == (160, 120)
    halved = {tuple(str(int(round(int(v) * 0.5))) for v in box[:4]) + (box[4],) for box in full}
    got = {tuple(str(int(v)) for v in b) + (generator.label_to_name(int(l)),)
           for l, b in zip(generator.load_annotations(index)["labels"], generator.load_annotations(index)["bboxes"])}
    assert got == halved
    assert (sample_dataset.images / "scene_0003.jpg").exists()  # the original is untouched
    make("split", data=sample_dataset.root)  # split finds each resized row's image by name
