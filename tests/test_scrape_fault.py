"""Faults through the real CLI: kill -9 and Ctrl-C mid-run, then the same command again.
Manifest and images must agree, with nothing duplicated or half-written."""
from __future__ import annotations

import os
import signal
import subprocess
import time

from PIL import Image

from dataset import atomic, manifest
from dataset.layout import Dataset
from dataset.fixtures.scenes import jpeg_bytes
from dataset.fixtures.fakebing import FakeBing
from scraping.store import inconsistencies
from helpers import MASKSET, REPO

COUNT = 40


def start_cli(data, base):
    return subprocess.Popen([MASKSET, "scrape", "--data", str(data), "--query", "masks",
                             "--limit", "100", "--bing-url", base, "--threads", "3", "--no-progress"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def added(dataset) -> int:
    return sum(1 for r in manifest.read_records(dataset) if r["event"] == "added") if dataset.manifest.exists() else 0


def wait_for(dataset, count: int, process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while added(dataset) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the scraper made no progress"
        time.sleep(0.05)


def whole_images_only(dataset) -> None:
    """Every file in images/ is complete: its bytes hash to the name it was given."""
    for path in dataset.images.iterdir():
        if not path.name.startswith("."):
            assert manifest.sha256_file(path).startswith(path.stem), f"{path.name} is half-written"


def test_kill_9_and_ctrl_c_mid_run_lose_nothing_and_the_same_command_continues(tmp_path):
    dataset = Dataset.at(tmp_path / "data")
    with FakeBing(page_size=10) as fake:
        for index in range(COUNT):
            img = Image.new("RGB", (200, 150), (index * 6, 255 - index * 6, (index * 53) % 256))
            fake.add_result(fake.add_route(f"/img/{index}.jpg", body=jpeg_bytes(img), delay=0.15))

        first = start_cli(dataset.root, fake.base)
        wait_for(dataset, 3, first)
        rival = start_cli(dataset.root, fake.base)  # a second writer is turned away, naming the first
        out, err = rival.communicate(timeout=60)
        assert rival.returncode == 2 and "another stage is writing this dataset: `scrape`" in err
        assert f"pid {first.pid}" in err
        wait_for(dataset, 6, first)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        assert first.returncode == -signal.SIGKILL
        whole_images_only(dataset)
        killed_at = added(dataset)
        assert 6 <= killed_at < COUNT

        second = start_cli(dataset.root, fake.base)
        wait_for(dataset, killed_at + 6, second)
        second.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = second.communicate(timeout=60)
        assert second.returncode == 130, err
        assert "interrupted: everything finished so far is saved" in err
        whole_images_only(dataset)
        assert inconsistencies(dataset) == []  # the second run recorded what the kill left behind
        interrupted_at = added(dataset)
        assert interrupted_at < COUNT

        third = start_cli(dataset.root, fake.base)
        out, err = third.communicate(timeout=120)
        assert third.returncode == 0, err
        assert f"{COUNT - interrupted_at} images saved" in out
        assert f"{interrupted_at} before this run" in out

    assert inconsistencies(dataset) == []
    records = [r for r in manifest.read_records(dataset) if r["event"] == "added"]
    assert len(records) == COUNT == len(dataset.image_files())
    assert len({r["murl"] for r in records}) == COUNT and len({r["sha256"] for r in records}) == COUNT
    assert not list(dataset.images.glob(".*"))
    assert not [p for p in dataset.root.rglob("*") if atomic.temp_target(p.name)]


def test_a_death_between_writing_an_image_and_recording_it_is_repaired_by_the_next_run(tmp_path):
    from scraping.store import Store
    dataset = Dataset.at(tmp_path / "data").ensure()
    store = Store(dataset)

    def die(record):
        raise SystemExit("killed after the image was written, before the manifest")

    store._record = die
    data = jpeg_bytes(Image.new("RGB", (100, 100), "purple"))
    try:
        store.save(data, ".jpg", {"murl": "http://127.0.0.1:9/x.jpg", "query": "q"})
    except SystemExit:
        pass
    stray_temp = atomic.new_temp(dataset.images / "0123456789abcdef.jpg")  # as a kill -9 leaves it
    stray_temp.write_bytes(data[:10])
    users_file = dataset.images / ".my-notes.tmp"  # not ours: left alone
    users_file.write_text("mine")
    assert any(p.endswith("in images/ but not in the manifest") for p in inconsistencies(dataset))
    again = Store(dataset)
    assert again.recover() == 1
    assert not stray_temp.exists() and users_file.exists()
    users_file.unlink()
    assert inconsistencies(dataset) == []
    record = manifest.read_records(dataset)[0]
    assert record["murl"] == "http://127.0.0.1:9/x.jpg" and record["event"] == "added"
    assert Store(dataset).save(data, ".jpg", {"murl": "http://127.0.0.1:9/y.jpg"}) is None  # same bytes
