"""The wire codecs shared by the server and the client (app.wire.messages)."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import safetensors.numpy
from pycocotools import mask as coco_mask

from app.core import rle
from app.core.errors import WireError
from app.core.types import Box, MaskResult, Point, Prompt
from app.wire import codecs, container
from app.wire import messages as wire


def blob_mask(h: int = 120, w: int = 160) -> np.ndarray:
    """An ellipse with a hole: a realistic object mask."""
    yy, xx = np.mgrid[:h, :w]
    outer = ((xx - 80) / 50.0) ** 2 + ((yy - 60) / 35.0) ** 2 <= 1
    hole = ((xx - 90) / 10.0) ** 2 + ((yy - 55) / 8.0) ** 2 <= 1
    return outer & ~hole


def test_pack_unpack_round_trip_and_corruption() -> None:
    data = wire.pack({"a": 1}, {"x": b"123", "y": b"", "b": b"\xff" * 5})
    header, blobs = wire.unpack(data)
    assert header == {"a": 1}
    assert blobs == {"x": b"123", "y": b"", "b": b"\xff" * 5}
    assert list(blobs) == ["x", "y", "b"]  # in the order they were packed
    with pytest.raises(WireError, match="not a MaskLoop message"):
        wire.unpack(b"XXXX" + data[4:])
    with pytest.raises(WireError, match="truncated"):
        wire.unpack(data[:-1])
    with pytest.raises(WireError, match="trailing"):
        wire.unpack(data + b"!")
    flipped = bytearray(data)
    flipped[-1] ^= 0xFF
    with pytest.raises(WireError, match="checksum"):
        wire.unpack(bytes(flipped))


def test_messages_are_safetensors_files_of_their_kind_and_version() -> None:
    data = wire.pack({"a": [1, "two"]}, {"x": b"123"})
    loaded = safetensors.numpy.load(data)  # any safetensors reader opens a message
    assert loaded["x"].tobytes() == b"123"
    meta = safetensors_metadata(data)
    assert meta["format"] == "maskloop.message" and meta["version"] == str(wire.WIRE_VERSION)
    assert json.loads(meta["header"]) == {"a": [1, "two"]}
    # a cache file, another version, a foreign safetensors file, a version 1 message: refused
    with pytest.raises(WireError, match="not a MaskLoop message"):
        wire.unpack(container.encode("embedding", wire.WIRE_VERSION, {}, {"header": "{}"}))
    with pytest.raises(WireError, match="version 9, expected"):
        wire.unpack(container.encode("message", 9, {}, {"header": "{}"}))
    with pytest.raises(WireError, match="not a MaskLoop message"):
        wire.unpack(safetensors.numpy.save({"x": np.zeros(3, np.uint8)}))
    with pytest.raises(WireError, match="version 1"):
        wire.unpack(b"MLW1" + (2).to_bytes(4, "little") + b"{}")
    with pytest.raises(WireError, match="bad message header"):
        wire.unpack(container.encode("message", wire.WIRE_VERSION, {}, {"header": "[1]"}))


def safetensors_metadata(data: bytes) -> dict[str, str]:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n])["__metadata__"]


def test_rle_is_coco_column_major_and_round_trips() -> None:
    mask = blob_mask()
    encoded = rle.encode_json(mask)
    assert encoded["size"] == [120, 160] and isinstance(encoded["counts"], str)
    decoded = coco_mask.decode({"size": encoded["size"], "counts": encoded["counts"].encode()})
    np.testing.assert_array_equal(decoded.astype(bool), mask)
    np.testing.assert_array_equal(rle.decode(encoded), mask)
    # column-major: a mask whose first column is set starts with 0 then h ones
    m = np.zeros((5, 4), bool)
    m[:, 0] = True
    assert coco_mask.decode(coco_mask.frPyObjects(
        {"size": [5, 4], "counts": [0, 5, 15]}, 5, 4)).astype(bool).tolist() == m.tolist()
    np.testing.assert_array_equal(rle.decode(rle.encode_json(m)), m)


def test_png_mask_round_trip() -> None:
    mask = blob_mask()
    np.testing.assert_array_equal(codecs.png_decode(codecs.png_encode(mask)), mask)


@pytest.mark.parametrize("codec", codecs.LOGIT_CODECS)
def test_logit_codecs_keep_values_and_sign(codec: str) -> None:
    rng = np.random.default_rng(0)
    logits = np.clip(rng.normal(0, 8, (3, 256, 256)), -31.7, 31.7).astype(np.float32)
    back = codecs.decode_logits(codecs.encode_logits(logits, codec), codec, logits.shape)
    tolerance = codecs.Q8_STEP / 2 if codec == "q8z" else 0.02
    assert np.abs(back - logits).max() <= tolerance + 1e-6
    clear = np.abs(logits) > tolerance
    np.testing.assert_array_equal(back[clear] > 0, logits[clear] > 0)


def test_prompt_wire_round_trip_is_small() -> None:
    prompt = Prompt(points=(Point(120.5, 80.25, True), Point(30.0, 40.5, False)),
                    box=Box(10, 20, 300.5, 200), multimask=False)
    req = wire.PredictRequest(prompt, refine=wire.Refine(7, 2), return_logits=True)
    body = wire.prompt_to_wire(req)
    text = json.dumps(body, separators=(",", ":"))
    assert len(text) < 150
    back = wire.prompt_from_wire(json.loads(text))
    assert back.prompt == prompt
    assert back.refine == wire.Refine(7, 2) and back.return_logits
    assert back.mask_codec == "rle" and back.logits_codec == "q8z"


def test_prompt_with_mask_input_travels_quantised() -> None:
    logits = np.linspace(-30, 30, 256 * 256, dtype=np.float32).reshape(1, 256, 256)
    req = wire.PredictRequest(Prompt(points=(Point(1, 2),), mask_input=logits))
    back = wire.prompt_from_wire(json.loads(json.dumps(wire.prompt_to_wire(req))))
    assert back.prompt.mask_input is not None
    assert np.abs(back.prompt.mask_input - logits).max() <= codecs.Q8_STEP / 2 + 1e-6


@pytest.mark.parametrize("body, match", [
    ({"points": [[1, 2]]}, "bad predict request"),
    ({"points": [[1, 2, 1]], "mask_codec": "gif"}, "mask_codec"),
    ({"points": [[1, 2, 1]], "logits_codec": "f64"}, "logits_codec"),
    ({"points": [["nan", 2, 1]]}, "finite"),
    ({"box": [1, 2, 3]}, "bad predict request"),
    ({"points": [[1, 2, 1]], "mask_input": {"codec": "q8z", "data": "!!"}}, "base64"),
])
def test_bad_prompts_are_wire_errors(body: dict, match: str) -> None:
    with pytest.raises(WireError, match=match):
        wire.prompt_from_wire(body)


@pytest.mark.parametrize("mask_codec", codecs.MASK_CODECS)
def test_prediction_round_trip(mask_codec: str) -> None:
    mask = blob_mask()
    masks = np.stack([mask, ~mask, np.zeros_like(mask)])
    logits = np.where(masks, 5.0, -5.0).astype(np.float32)[:, :120, :120]
    logits = np.pad(logits, ((0, 0), (0, 136), (0, 136)), constant_values=-5.0)
    result = MaskResult(masks, np.array([0.9, 0.5, 0.1], np.float32), logits)
    data = wire.encode_prediction(result, 42, mask_codec=mask_codec, logits_codec="q8z",
                                  model_id="m", time=0.01)
    back = wire.decode_prediction(data)
    assert back.result_id == 42 and back.model_id == "m"
    np.testing.assert_array_equal(back.masks, masks)
    np.testing.assert_allclose(back.scores, result.scores, atol=1e-6)
    assert back.low_res_logits is not None
    np.testing.assert_allclose(back.low_res_logits, logits, atol=0.125)
    assert back.to_mask_result().best == 0
    # without logits the result still converts (zeros)
    bare = wire.decode_prediction(wire.encode_prediction(result, 1, mask_codec=mask_codec))
    assert bare.low_res_logits is None
    assert bare.to_mask_result().low_res_logits.shape == (3, 256, 256)


@pytest.mark.parametrize("compress", [False, True])
def test_embedding_round_trip(compress: bool) -> None:
    rng = np.random.default_rng(1)
    arrays = {"image_embed": rng.normal(size=(1, 4, 8, 8)).astype(np.float16),
              "high_res_feats_0": rng.normal(size=(1, 2, 16, 16)).astype(np.float16)}
    data = wire.encode_embedding(arrays, (48, 64), model_id="m", image_hash="h",
                                 compress=compress)
    back, size, header = wire.decode_embedding(data)
    assert size == (48, 64) and header["model_id"] == "m" and header["image_hash"] == "h"
    for name, a in arrays.items():
        np.testing.assert_array_equal(back[name], a)
        assert back[name].dtype == np.float16


def test_raw_embedding_message_is_a_safetensors_file_of_the_embedding() -> None:
    arrays = {"image_embed": np.arange(24, dtype=np.float16).reshape(1, 2, 3, 4)}
    data = wire.encode_embedding(arrays, (3, 4), model_id="m", image_hash="h")
    loaded = safetensors.numpy.load(data)
    np.testing.assert_array_equal(loaded["image_embed"], arrays["image_embed"])
    back, _, _ = wire.decode_embedding(data)
    assert back["image_embed"].flags.writeable  # torch.from_numpy wants that


def _embedding_message(entries: list[dict], blobs: dict[str, np.ndarray]) -> bytes:
    header = {"wire": wire.WIRE_VERSION, "model_id": "m", "image_hash": "h",
              "image_size": [4, 4], "arrays": entries}
    return container.encode("message", wire.WIRE_VERSION, blobs,
                            {"header": json.dumps(header)})


def _z(data: bytes) -> np.ndarray:
    return np.frombuffer(zlib.compress(data, 9), np.uint8)


@pytest.mark.parametrize("entries, blobs, match", [
    # a zlib bomb: 1 KiB that claims (and would inflate to) 1 GiB
    ([{"name": "a", "dtype": "<f2", "shape": [1 << 29], "codec": "zlib"}],
     {"a": _z(b"\0" * (1 << 20))}, "more than"),
    # a claim within the budget that inflates to more than it says
    ([{"name": "a", "dtype": "<f2", "shape": [8], "codec": "zlib"}],
     {"a": _z(b"\0" * (1 << 20))}, "does not inflate"),
    ([{"name": "a", "dtype": "<f2", "shape": [0], "codec": "zlib"}],
     {"a": _z(b"\0" * (1 << 20))}, "does not inflate"),
    ([{"name": "a", "dtype": "<f2", "shape": [-1], "codec": "zlib"}], {"a": _z(b"")}, "shape"),
    ([{"name": "a", "dtype": "|O", "shape": [1], "codec": "zlib"}], {"a": _z(b"\0" * 8)},
     "dtype"),
    # a raw array whose header disagrees with the container
    ([{"name": "a", "dtype": "<f2", "shape": [1 << 40], "codec": "raw"}],
     {"a": np.zeros(4, np.float16)}, "header says"),
    ([{"name": "b", "dtype": "<f2", "shape": [4], "codec": "raw"}],
     {"a": np.zeros(4, np.float16)}, "'b'"),
])
def test_hostile_embedding_messages_are_wire_errors(entries: list[dict],
                                                    blobs: dict[str, np.ndarray],
                                                    match: str) -> None:
    with pytest.raises(WireError, match=match):
        wire.decode_embedding(_embedding_message(entries, blobs))


@pytest.mark.parametrize("compress", [False, True])
def test_embedding_of_any_byte_order_and_layout_round_trips(compress: bool) -> None:
    arrays = {"big": np.arange(6, dtype=">f4").reshape(2, 3), "strided": np.eye(4)[:, ::2],
              "scalar": np.array(1.5, np.float16)}
    data = wire.encode_embedding(arrays, (2, 3), model_id="m", image_hash="h",
                                 compress=compress)
    back, _, _ = wire.decode_embedding(data)
    for name, a in arrays.items():
        np.testing.assert_array_equal(back[name], a)
        assert back[name].shape == a.shape and back[name].flags.writeable
