"""``maskloop import`` on broken inputs: a one-line error (exit 2) or a warning and a skip, never
a traceback and never silent damage. Everything goes through the real CLI."""

from __future__ import annotations

import base64
import copy
import io
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from app.cli import main
from app.core.project import Project

WIDTH, HEIGHT = 160, 120


def write_png(path: Path, width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path.read_bytes()


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    for i in range(2):
        write_png(folder / f"img{i}.png", seed=i)
    return folder


@pytest.fixture
def project(tmp_path: Path, images: Path) -> Path:
    path = tmp_path / "p.maskloop"
    assert main(["new", str(path), "--images", str(images), "-q"]) == 0
    return path


def run_import(project: Path, src: Path, fmt: str,
               capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["import", str(project), str(src), "--format", fmt, "-q"])
    out, err = capsys.readouterr()
    return code, out, err


def warnings_of(out: str) -> list[str]:
    return [line.strip()[len("warning: "):] for line in out.splitlines()
            if line.strip().startswith("warning: ")]


def instance_count(project: Path) -> int:
    with Project.open(project) as p:
        return p.instance_count()


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("maskloop import: error: "), err
    assert "Traceback" not in err
    return lines[0]


# --- COCO -----------------------------------------------------------------------------------


def rle_of(mask: np.ndarray) -> dict[str, Any]:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode()}


def runs_of(mask: np.ndarray) -> list[int]:
    flat = mask.flatten(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    return np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()


def valid_coco() -> dict[str, Any]:
    """Two images, two categories, five annotations: polygons, compressed RLE, uncompressed
    RLE (a crowd) and a box-only one."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[30:70, 40:100] = True
    return {
        "images": [{"id": 1, "file_name": "img0.png", "width": WIDTH, "height": HEIGHT},
                   {"id": 2, "file_name": "img1.png", "width": WIDTH, "height": HEIGHT}],
        "categories": [{"id": 1, "name": "bird"}, {"id": 2, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
             "segmentation": [[10, 10, 50, 10, 50, 40, 10, 40]], "bbox": [10, 10, 40, 30]},
            {"id": 2, "image_id": 2, "category_id": 2, "iscrowd": 0,
             "segmentation": [[60, 60, 100, 60, 80, 100]]},
            {"id": 3, "image_id": 1, "category_id": 2, "iscrowd": 0,
             "segmentation": rle_of(mask)},
            {"id": 4, "image_id": 2, "category_id": 1, "iscrowd": 1,
             "segmentation": {"size": [HEIGHT, WIDTH], "counts": runs_of(mask)}},
            {"id": 5, "image_id": 2, "category_id": 1, "bbox": [5, 5, 20, 10], "score": 0.5},
        ],
    }


def write_coco(images: Path, data: Any, name: str = "annotations.json") -> Path:
    path = images / name
    path.write_text(json.dumps(data))
    return path


def test_valid_coco_imports_without_warnings(project: Path, images: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    src = write_coco(images, valid_coco())
    code, out, _ = run_import(project, src, "coco", capsys)
    assert code == 0 and warnings_of(out) == []
    assert instance_count(project) == 5


@pytest.mark.parametrize("table, index, field, message, imported", [
    ("annotations", 1, "image_id", "annotations[1].image_id: missing; skipped", 4),
    ("annotations", 0, "category_id", "annotations[0].category_id: missing; skipped", 4),
    ("annotations", 4, "bbox", "annotations[4].bbox: missing (the annotation has no "
     "segmentation); skipped", 4),
    ("categories", 1, "id", "categories[1].id: missing; skipped", 3),
    ("images", 1, "file_name", "images[1].file_name: missing; the image and its 3 "
     "annotation(s) skipped", 2),
])
def test_coco_record_missing_a_field_is_skipped_with_a_warning(
        project: Path, images: Path, capsys: pytest.CaptureFixture[str], table: str,
        index: int, field: str, message: str, imported: int) -> None:
    data = valid_coco()
    del data[table][index][field]
    src = write_coco(images, data)
    code, out, err = run_import(project, src, "coco", capsys)
    assert code == 0, err
    assert f"{src}: {message}" in warnings_of(out)
    assert instance_count(project) == imported


def test_coco_category_without_id_names_its_orphans(project: Path, images: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = valid_coco()
    del data["categories"][1]["id"]
    src = write_coco(images, data)
    code, out, _ = run_import(project, src, "coco", capsys)
    assert code == 0
    assert f"{src}: annotations[1].category_id: 2 is an unknown category id; skipped" \
        in warnings_of(out)


def test_coco_image_without_size_takes_it_from_the_image_file(
        project: Path, images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = valid_coco()
    del data["images"][1]["width"]
    data["images"][0]["height"] = "120"
    src = write_coco(images, data)
    code, out, _ = run_import(project, src, "coco", capsys)
    assert code == 0
    found = warnings_of(out)
    assert f"{src}: images[1].width: missing; the size {WIDTH}x{HEIGHT} was read from " \
        f"{images / 'img1.png'}" in found
    assert f'{src}: images[0].height: expected a positive integer, got "120"; the size ' \
        f"{WIDTH}x{HEIGHT} was read from {images / 'img0.png'}" in found
    assert instance_count(project) == 5


def test_coco_image_without_size_or_file_takes_the_project_size(
        project: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = valid_coco()
    del data["images"][1]["height"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    src = write_coco(elsewhere, data)  # no image files beside it; the project has img1.png
    code, out, _ = run_import(project, src, "coco", capsys)
    assert code == 0
    assert warnings_of(out) == [f"{src}: images[1].height: missing; the size {WIDTH}x{HEIGHT} "
                                "was taken from the project's image img1.png"]
    assert instance_count(project) == 5


def test_coco_image_without_size_file_or_project_image_is_skipped(
        project: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = valid_coco()
    del data["images"][1]["height"]
    data["images"][1]["file_name"] = "nowhere.png"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    src = write_coco(elsewhere, data)
    code, out, _ = run_import(project, src, "coco", capsys)
    assert code == 0
    assert warnings_of(out) == [
        f"{src}: images[1].height: missing, the image file was not found and the project has "
        "no such image; the image and its 3 annotation(s) skipped"]
    assert instance_count(project) == 2  # img0's, matched by name


@pytest.mark.parametrize("path, value, message", [
    (("annotations", 0, "image_id"), "1",
     'annotations[0].image_id: expected an integer, got "1"; skipped'),
    (("annotations", 0, "image_id"), 9,
     "annotations[0].image_id: 9 is an unknown image id; skipped"),
    (("annotations", 0, "category_id"), None,
     "annotations[0].category_id: expected an integer, got null; skipped"),
    (("annotations", 0, "segmentation"), "abc",
     'annotations[0].segmentation: expected a list of polygons or an RLE object, got "abc"; '
     "skipped"),
    (("annotations", 0, "segmentation"), [[10, 10, "x", 10, 50, 40]],
     'annotations[0].segmentation[0][2]: expected a number, got "x"; skipped'),
    (("annotations", 0, "segmentation"), [[10, 10, 50, 10, 50]],
     "annotations[0].segmentation[0]: 5 values, a polygon needs an even number; skipped"),
    (("annotations", 4, "bbox"), [1, 2],
     "annotations[4].bbox: expected [x, y, width, height], got [1, 2]; skipped"),
    (("annotations", 4, "score"), "high",
     'annotations[4].score: expected a number, got "high"; score ignored'),
    (("annotations", 2), [],
     "annotations[2]: expected an object, got []; skipped"),
    (("categories", 0, "id"), 1.5,
     "categories[0].id: expected an integer, got 1.5; skipped"),
    (("images", 0, "id"), {"a": 1},
     'images[0].id: expected an integer, got {"a": 1}; skipped'),
])
def test_coco_wrong_types_are_skipped_with_a_warning(
        project: Path, images: Path, capsys: pytest.CaptureFixture[str],
        path: tuple[Any, ...], value: Any, message: str) -> None:
    data = valid_coco()
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    src = write_coco(images, data)
    code, out, err = run_import(project, src, "coco", capsys)
    assert code == 0, err
    assert f"{src}: {message}" in warnings_of(out)


def test_coco_rle_of_another_size_is_skipped(project: Path, images: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = valid_coco()
    small = np.zeros((60, 80), dtype=bool)
    small[10:20, 10:20] = True
    data["annotations"][2]["segmentation"] = rle_of(small)
    data["annotations"][3]["segmentation"]["size"] = [60, 80]
    src = write_coco(images, data)
    code, out, _ = run_import(project, src, "coco", capsys)
    assert code == 0
    found = warnings_of(out)
    for index in (2, 3):
        assert f"{src}: annotations[{index}].segmentation.size: [60, 80] is not the image's " \
            f"size [{HEIGHT}, {WIDTH}] (height, width); skipped" in found
    assert instance_count(project) == 3


@pytest.mark.parametrize("change, covered", [(-1, HEIGHT * WIDTH - 1), (+5, HEIGHT * WIDTH + 5)])
def test_coco_uncompressed_rle_must_cover_the_image(
        project: Path, images: Path, capsys: pytest.CaptureFixture[str], change: int,
        covered: int) -> None:
    data = valid_coco()
    data["annotations"][3]["segmentation"]["counts"][-1] += change
    src = write_coco(images, data)
    code, out, _ = run_import(project, src, "coco", capsys)
    assert code == 0
    assert f"{src}: annotations[3].segmentation.counts: the runs cover {covered} pixels, the " \
        f"image has {HEIGHT * WIDTH} ({HEIGHT} x {WIDTH}); skipped" in warnings_of(out)
    assert instance_count(project) == 4


def test_coco_compressed_rle_must_cover_the_image(project: Path, images: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = valid_coco()
    short = np.zeros((HEIGHT - 1, WIDTH), dtype=bool)
    short[30:70, 40:100] = True
    data["annotations"][2]["segmentation"]["counts"] = rle_of(short)["counts"]
    data["annotations"][0]["segmentation"] = {"size": [HEIGHT, WIDTH], "counts": "\x01\x02"}
    src = write_coco(images, data)
    code, out, _ = run_import(project, src, "coco", capsys)
    assert code == 0
    found = warnings_of(out)
    assert f"{src}: annotations[2].segmentation.counts: the runs cover " \
        f"{(HEIGHT - 1) * WIDTH} pixels, the image has {HEIGHT * WIDTH} ({HEIGHT} x {WIDTH}); " \
        "skipped" in found
    assert f"{src}: annotations[0].segmentation.counts: not a compressed RLE string; " \
        "skipped" in found
    assert instance_count(project) == 3


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["images"].append(dict(d["images"][0], file_name="x.png")),
     "images[2].id: 1 is also the id of images[0]; image ids must be unique"),
    (lambda d: d["categories"].append({"id": 1, "name": "dog"}),
     "categories[2].id: 1 is also the id of categories[0] ('bird'); category ids must be "
     "unique"),
    (lambda d: d.update(images={"id": 1}), "images: expected a list, got an object"),
    (lambda d: d.pop("categories"), "no 'categories' list; not a COCO file"),
    (lambda d: d.update(annotations="none"), "annotations: expected a list, got a string"),
])
def test_coco_file_level_problems_are_one_line_errors(
        project: Path, images: Path, capsys: pytest.CaptureFixture[str], mutate: Any,
        message: str) -> None:
    data = valid_coco()
    mutate(data)
    src = write_coco(images, data)
    code, _, err = run_import(project, src, "coco", capsys)
    assert code == 2
    assert one_error_line(err) == f"maskloop import: error: {src}: {message}"
    assert instance_count(project) == 0


def test_coco_top_level_array_is_an_error(project: Path, images: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    src = write_coco(images, [valid_coco()])
    code, _, err = run_import(project, src, "coco", capsys)
    assert code == 2
    assert one_error_line(err) == f"maskloop import: error: {src}: not a COCO file (the top " \
        "level is an array, not an object)"


FUZZ_VALUES: list[Any] = [None, "x", "7", -1, 0, 1.5, 10**12, [], {}, True, [1, 2], [[1]],
                          {"size": [1, 1], "counts": "0"}, float("nan"), float("inf")]


def _mutations() -> list[tuple[str, Any]]:
    """(description, mutate(data)) pairs: every field of every record removed or replaced."""
    base = valid_coco()
    found: list[tuple[str, Any]] = []

    def setter(path: tuple[Any, ...], value: Any, delete: bool = False) -> Any:
        def mutate(data: Any) -> None:
            target = data
            for key in path[:-1]:
                target = target[key]
            if delete:
                del target[path[-1]]
            else:
                target[path[-1]] = value
        return mutate

    def walk(node: Any, path: tuple[Any, ...], depth: int) -> None:
        if isinstance(node, dict):
            items = list(node.items())
        elif isinstance(node, list):
            items = list(enumerate(node))[:4]
        else:
            return
        for key, child in items:
            child_path = (*path, key)
            found.append((f"del {child_path}", setter(child_path, None, delete=True)))
            for value in FUZZ_VALUES:
                found.append((f"{child_path} = {value!r}", setter(child_path, value)))
            if depth < 4:
                walk(child, child_path, depth + 1)

    walk(base, (), 0)
    return found


def test_coco_fuzz_never_gives_a_traceback(project: Path, images: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Every field of a valid file removed or replaced by a wrong value: the CLI exits 0 (with
    warnings) or 2 (with one line), never with a traceback."""
    mutations = _mutations()
    rng = random.Random(0)
    chosen = [m for m in mutations if m[0].startswith("del")] + rng.sample(mutations, 130)
    codes = set()
    for description, mutate in chosen:
        data = copy.deepcopy(valid_coco())
        mutate(data)
        src = write_coco(images, data)
        capsys.readouterr()
        try:
            code = main(["import", str(project), str(src), "--format", "coco", "-q",
                         "--keep-duplicates"])
        except Exception as exc:  # pragma: no cover - the failure being tested
            raise AssertionError(f"{description}: {exc!r}") from exc
        out, err = capsys.readouterr()
        assert code in (0, 2), description
        if code == 2:
            one_error_line(err)
        else:
            assert err == "", (description, err)
        codes.add(code)
    assert codes == {0, 2}


# --- YOLO -----------------------------------------------------------------------------------


def yolo_dataset(root: Path, labels: dict[str, str], images: tuple[str, ...] = ("a", "b")) -> Path:
    for i, name in enumerate(images):
        write_png(root / "images" / "train" / f"{name}.png", seed=10 + i)
    for name, text in labels.items():
        path = root / "labels" / "train" / f"{name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "data.yaml").write_text("train: images/train\nval: images/train\nnames: [cat, dog]\n")
    return root


def test_yolo_out_of_range_coordinates_skip_the_file(project: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = yolo_dataset(tmp_path / "ds", {
        "a": "0 0.1 0.1 0.5 0.1 0.5 0.5\n1 0.2 0.2 1.25 0.2 0.6 0.9\n",
        "b": "0 0.1 0.1 0.5 0.1 0.5 0.5\n1 0.5 0.5 0.2 0.2\n",
    })
    code, out, _ = run_import(project, root, "yolo", capsys)
    assert code == 0
    label = root / "labels" / "train" / "a.txt"
    assert f"{label}:2: point 2 x is 1.25, outside [0, 1] by more than Ultralytics' 0.01 " \
        "tolerance; all 2 line(s) of this file skipped, as Ultralytics skips such a file" \
        in warnings_of(out)
    assert instance_count(project) == 2  # b's two lines


@pytest.mark.parametrize("line, what", [
    ("0 0.5 -0.2 0.2 0.2", "y_center is -0.2"),
    ("0 0.5 0.5 nan 0.2", "width is nan"),
    ("0 12 30 80 30 80 90", "point 1 x is 12"),
])
def test_yolo_out_of_range_values_are_named(project: Path, tmp_path: Path, line: str, what: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = yolo_dataset(tmp_path / "ds", {"a": line + "\n"}, images=("a",))
    code, out, _ = run_import(project, root, "yolo", capsys)
    assert code == 0
    label = root / "labels" / "train" / "a.txt"
    assert any(w.startswith(f"{label}:1: {what}, outside [0, 1]") for w in warnings_of(out))
    assert instance_count(project) == 0


def test_yolo_within_tolerance_is_kept_and_clipped(project: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root = yolo_dataset(tmp_path / "ds", {"a": "0 -0.005 0.1 1.008 0.1 0.5 1.0\n"},
                        images=("a",))
    code, out, _ = run_import(project, root, "yolo", capsys)
    assert code == 0 and warnings_of(out) == []
    with Project.open(project) as p:
        record = p.image_by_path(p.relative_path(root / "images" / "train" / "a.png"))
        assert record is not None and record.id is not None
        (inst,) = p.instances(record.id)
    x0, y0, x1, y1 = inst.geometry.bounds
    assert x0 >= 0 and y0 >= 0 and x1 <= WIDTH and y1 <= HEIGHT


def test_yolo_label_file_without_image_warns(project: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    root = yolo_dataset(tmp_path / "ds", {"a": "0 0.5 0.5 0.2 0.2\n",
                                          "ghost": "0 0.5 0.5 0.2 0.2\n"}, images=("a",))
    code, out, _ = run_import(project, root, "yolo", capsys)
    assert code == 0
    ghost = root / "labels" / "train" / "ghost.txt"
    assert f"{ghost}: no image for this label file (looked for " \
        f"{root / 'images' / 'train' / 'ghost'}.*); skipped" in warnings_of(out)
    assert instance_count(project) == 1


def test_yolo_without_images_is_an_error(project: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [cat]\n")
    code, _, err = run_import(project, root, "yolo", capsys)
    assert code == 2
    assert one_error_line(err) == f"maskloop import: error: {root / 'data.yaml'}: no images " \
        f"found (looked in {root / 'images' / 'train'}, {root / 'images' / 'val'})"


# --- labelme --------------------------------------------------------------------------------


def labelme_doc(image_path: str, image_data: str | None = None) -> dict[str, Any]:
    return {"version": "5.5.0", "flags": {}, "imagePath": image_path, "imageData": image_data,
            "imageHeight": 30, "imageWidth": 40,
            "shapes": [{"label": "leaf", "points": [[5, 5], [30, 5], [30, 20]],
                        "shape_type": "polygon", "group_id": None, "flags": {}}]}


def test_labelme_folder_without_labelme_files_is_an_error(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "lm"
    folder.mkdir()
    (folder / "other.json").write_text(json.dumps({"not": "labelme"}))
    code, _, err = run_import(project, folder, "labelme", capsys)
    assert code == 2
    assert one_error_line(err) == f"maskloop import: error: {folder}: no labelme file found " \
        "(1 JSON file(s), none with 'shapes')"
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_import(project, empty, "labelme", capsys)
    assert code == 2
    assert one_error_line(err) == f"maskloop import: error: {empty}: no labelme file found " \
        "(0 JSON file(s), none with 'shapes')"


def png_b64(path: Path | None = None, seed: int = 3) -> tuple[str, bytes]:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode(), buf.getvalue()


def test_labelme_embedded_image_is_written_and_used(project: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "lm"
    folder.mkdir()
    data, raw = png_b64(seed=3)
    (folder / "leaf.json").write_text(json.dumps(labelme_doc("leaf.png", data)))
    other, other_raw = png_b64(seed=4)
    (folder / "second.json").write_text(json.dumps(labelme_doc("../gone/photo.png", other)))
    user_file = folder / "photo.png"  # a different file with that name: never overwritten
    user_bytes = write_png(user_file, 40, 30, seed=99)
    code, out, _ = run_import(project, folder, "labelme", capsys)
    assert code == 0
    found = warnings_of(out)
    assert f"{folder / 'leaf.json'}: image leaf.png not found; the image embedded in the file " \
        f"(imageData) was written to {folder / 'leaf.png'}" in found
    assert f"{folder / 'second.json'}: image ../gone/photo.png not found; the image embedded " \
        f"in the file (imageData) was written to {folder / 'second.png'}" in found
    assert (folder / "leaf.png").read_bytes() == raw
    assert (folder / "second.png").read_bytes() == other_raw
    assert user_file.read_bytes() == user_bytes
    with Project.open(project) as p:
        for name in ("leaf.png", "second.png"):
            record = p.image_by_path(p.relative_path(folder / name))
            assert record is not None and record.id is not None, name
            assert (record.width, record.height) == (40, 30)
            assert len(p.instances(record.id)) == 1
    # a second import finds the written files and adds nothing
    code, out, _ = run_import(project, folder, "labelme", capsys)
    assert code == 0 and warnings_of(out) == []
    assert instance_count(project) == 2


def test_labelme_missing_image_without_data_names_the_json(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "lm"
    folder.mkdir()
    (folder / "lost.json").write_text(json.dumps(labelme_doc("lost.png")))
    code, out, _ = run_import(project, folder, "labelme", capsys)
    assert code == 0
    assert f"{folder / 'lost.json'}: image lost.png not found and not in the project; its 1 " \
        "annotation(s) skipped" in warnings_of(out)


def test_labelme_bad_shapes_never_give_a_traceback(project: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "lm"
    write_png(folder / "x.png", 40, 30)
    doc = labelme_doc("x.png")
    doc["shapes"] += [
        {"label": "a", "points": [[1, 1], [9, 1], [9, 9]], "group_id": [1]},
        {"label": "b", "shape_type": "mask", "mask": "bm90IGEgcG5n", "points": [[1, 1], [4, 4]]},
        {"label": "c", "points": "nope"},
    ]
    (folder / "x.json").write_text(json.dumps(doc))
    bad = labelme_doc("x.png")
    bad["shapes"] = 5
    (folder / "y.json").write_text(json.dumps(bad))
    code, out, err = run_import(project, folder, "labelme", capsys)
    assert code == 0, err
    found = warnings_of(out)
    assert f"{folder / 'x.json'}: shapes[1].group_id: expected an integer, a string or null, " \
        "got [1]; skipped" in found
    assert any(w.startswith(f"{folder / 'x.json'}: shapes[2]: ") for w in found)
    assert any(w.startswith(f"{folder / 'x.json'}: shapes[3]: ") for w in found)
    assert f"{folder / 'y.json'}: shapes: expected a list, got 5; file skipped" in found
    assert instance_count(project) == 1


# --- PNG masks ------------------------------------------------------------------------------


def test_masks_entry_with_missing_or_wrong_size_png_is_skipped(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "m"
    (folder / "instances").mkdir(parents=True)
    ids = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    ids[10:40, 10:50] = 1
    Image.fromarray(ids).save(folder / "instances" / "img0.png")
    Image.fromarray(ids[:60, :80]).save(folder / "instances" / "small.png")
    (folder / "classes.json").write_text(json.dumps([{"index": 0, "name": "_background_"},
                                                     {"index": 1, "name": "bird"}]))
    entry = {"file_name": "img0.png", "width": WIDTH, "height": HEIGHT,
             "instances": "instances/img0.png"}
    (folder / "index.json").write_text(json.dumps({"images": [
        entry,
        dict(entry, file_name="img1.png", instances="instances/gone.png"),
        dict(entry, file_name="img1.png", instances="instances/small.png"),
        {"file_name": "nowhere.png", "instances": "instances/img0.png"},
        {"file_name": "img1.png", "height": HEIGHT, "instances": "instances/img0.png"},
    ]}))
    code, out, err = run_import(project, folder, "masks", capsys)
    assert code == 0, err
    index = folder / "index.json"
    assert warnings_of(out) == [
        f"{index}: images[1].instances: {folder / 'instances' / 'gone.png'} not found; skipped",
        f"{index}: images[2].instances: {folder / 'instances' / 'small.png'} is 80x60 pixels, "
        f"the image is {WIDTH}x{HEIGHT}; skipped",
        f"{index}: images[3].width: missing, the image file was not found and the project has "
        "no such image; skipped",
        f"{index}: images[4].width: missing; the size {WIDTH}x{HEIGHT} was taken from the "
        "project's image img1.png",
    ]
    assert instance_count(project) == 2


def test_labelme_without_size_reads_it_from_the_image(project: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "lm"
    write_png(folder / "x.png", 40, 30)
    doc = labelme_doc("x.png")
    del doc["imageWidth"]
    (folder / "x.json").write_text(json.dumps(doc))
    code, out, _ = run_import(project, folder, "labelme", capsys)
    assert code == 0
    assert warnings_of(out) == [f"{folder / 'x.json'}: imageWidth: missing; the size 40x30 was "
                                f"read from {folder / 'x.png'}"]
    assert instance_count(project) == 1
