"""The JSON API over a tiny trained run: same numbers as ``funduslab predict``, every refusal
with its status and message, and concurrent requests queued rather than dropped."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from funduslab.data.cache import decode_preprocessed
from funduslab.preprocess import build_pipeline
from funduslab.inference.predict_images import (
    PredictionInputs,
    predict_saved,
    write_prediction_folder,
)
from funduslab.inference.saved_model import load_saved_model
from funduslab.web.app import create_app
from funduslab.web.service import ModelService
from funduslab.web.validate import MAX_FILE_BYTES

LABELS = ["D", "G", "A"]


@pytest.fixture(scope="module")
def client(web_service):
    with TestClient(create_app(web_service)) as c:
        yield c


def _post(client: TestClient, path: Path | None = None, *, data: bytes | None = None,
          name: str = "x.jpg", url: str = "/api/predict"):
    payload = data if data is not None else Path(path).read_bytes()
    return client.post(url, files={"file": (name, payload, "image/jpeg")})


def _png_array(b64: str) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def test_predict_json_equals_funduslab_predict(client, web_run: Path, sample_images):
    path = sample_images[0]
    response = _post(client, path, name=path.name)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == path.name and body["task"] == "multilabel" and body["model"] == "tiny"
    assert body["labels"] == LABELS
    assert list(body["probabilities"]) == LABELS and list(body["decisions"]) == LABELS
    assert "cams" not in body and "image" not in body  # only with ?cam=true

    saved = load_saved_model(web_run)
    logits = predict_saved(saved, [str(path)])
    expected = 1.0 / (1.0 + np.exp(-logits[0].astype(np.float64)))
    got = np.array([body["probabilities"][k] for k in LABELS])
    torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(expected))
    thresholds = json.loads((web_run / "metrics.json").read_text())["thresholds"]["tuned_on_val"]
    np.testing.assert_allclose([body["thresholds"][k] for k in LABELS], thresholds)
    assert [body["decisions"][k] for k in LABELS] == [int(p >= t)
                                                      for p, t in zip(expected, thresholds)]
    # … and what the run itself predicted for this image when it was trained (6 decimals)
    saved_csv = pd.read_csv(web_run / "predictions" / "onsite_test.csv").set_index("id")
    np.testing.assert_allclose(got, saved_csv.loc[path.name, [f"p_{k}" for k in LABELS]],
                               atol=2e-6)


def test_cam_adds_model_view_and_one_overlay_per_label(client, web_run: Path, sample_images):
    path = sample_images[1]
    body = _post(client, path, url="/api/predict?cam=true").json()
    seen = _png_array(body["image"])
    expected = decode_preprocessed(path, build_pipeline("none", 32), 32)
    np.testing.assert_array_equal(seen, expected)
    assert list(body["cams"]) == LABELS
    for maps in body["cams"].values():
        assert _png_array(maps["overlay"]).shape == (32, 32, 3)
        assert _png_array(maps["heatmap"]).shape == (32, 32, 3)


def test_models_lists_name_task_backbone_metrics_and_card(client, web_run: Path):
    body = client.get("/api/models").json()
    (model,) = body["models"]
    assert model["index"] == 0 and model["name"] == "tiny"
    assert model["task"] == "multilabel" and model["backbone"] == "tiny_cnn"
    assert model["cam"] is True and model["labels"] == LABELS
    metrics = json.loads((web_run / "metrics.json").read_text())
    block = metrics["splits"]["offsite_test"]["tuned_thresholds"]
    assert model["metrics"]["split"] == "offsite_test"
    assert model["metrics"]["thresholds"] == "tuned on val"
    figures = {f["name"]: f["value"] for f in model["metrics"]["figures"]}
    assert figures["course_average_f1"] == pytest.approx(block["course_average_f1"])
    card = model["card"]
    assert "Not a medical device" in card["not_a_medical_device"]
    assert "odir_course" in card["training_data"] and card["intended_use"] and card["limits"]
    assert body["limits"]["max_file_mb"] == 20


def test_predict_csv_matches_funduslab_predict_file(client, web_run: Path, sample_images,
                                                    tmp_path: Path):
    chosen = sample_images[:3]
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in chosen]
    response = client.post("/api/predict_csv?model=tiny", files=files)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    got = pd.read_csv(io.StringIO(response.text))
    assert list(got.columns) == ["id", "p_D", "p_G", "p_A", "D", "G", "A"]

    saved = load_saved_model(web_run)
    paths = [str(p) for p in chosen]
    inputs = PredictionInputs([p.name for p in chosen], paths, tmp_path)
    write_prediction_folder(tmp_path / "ref", saved, inputs, predict_saved(saved, paths))
    pd.testing.assert_frame_equal(got, pd.read_csv(tmp_path / "ref" / "predictions.csv"))


def _bomb_png() -> bytes:
    """A 64-MP one-bit PNG: a few KB on disk, 64 million pixels decoded."""
    buffer = io.BytesIO()
    Image.new("1", (8000, 8000)).save(buffer, format="PNG")
    return buffer.getvalue()


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="GIF")
    return buffer.getvalue()


@pytest.mark.parametrize(("case", "status", "message"), [
    ("too_large", 413, "x.jpg is 20.5 MB; the limit is 20 MB per file"),
    ("far_too_large", 413, "the upload is larger than the 20 MB limit per file"),
    ("bomb", 413, "bomb.png is 8000×8000 pixels (64 MP); the limit is 50 MP per image"),
    ("not_an_image", 415, "notes.jpg is not a JPEG, PNG or TIFF image (checked by its content"),
    ("gif_named_png", 415, "x.png is not a JPEG, PNG or TIFF image"),
    ("truncated_jpeg", 422, "broken.jpg could not be decoded as a JPEG image"),
    ("garbled_jpeg", 422, "garbled.jpg starts like a JPEG file but its header cannot be read"),
    ("empty", 400, "empty.jpg is empty (0 bytes)"),
    ("traversal_name", 415, "passwd is not a JPEG, PNG or TIFF image"),
])
def test_rejected_files(client, sample_images, case: str, status: int, message: str):
    jpeg = sample_images[0].read_bytes()
    name, data = {
        "too_large": ("x.jpg", b"\xff\xd8\xff" + bytes(41 * 512 * 1024 - 3)),
        "far_too_large": ("x.jpg", b"\xff\xd8\xff" + bytes(25 * 1024 * 1024)),
        "bomb": ("bomb.png", _bomb_png()),
        "not_an_image": ("notes.jpg", b"these are not the pixels you are looking for\n" * 20),
        "gif_named_png": ("x.png", _gif()),
        "truncated_jpeg": ("broken.jpg", jpeg[: len(jpeg) * 3 // 4]),
        "garbled_jpeg": ("garbled.jpg", b"\xff\xd8\xff" + b"\x00garbage" * 50),
        "empty": ("empty.jpg", b""),
        "traversal_name": ("../../etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n"),
    }[case]
    response = _post(client, data=data, name=name)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


@pytest.mark.parametrize(("model", "status", "message"), [
    ("nope", 404, "unknown model 'nope'; served: 0=tiny"),
    ("7", 404, "no model with index 7; served: 0=tiny"),
    ("../../etc/passwd", 400, "model must be an index or a name from GET /api/models, not a path"),
    ("/tmp/runs/tiny", 400, "not a path"),
    ("..", 400, "not a path"),
    ("C:\\runs\\tiny", 400, "not a path"),
])
def test_rejected_model_keys(client, sample_images, model: str, status: int, message: str):
    response = client.post("/api/predict", params={"model": model},
                           files={"file": ("a.jpg", sample_images[0].read_bytes(), "image/jpeg")})
    assert response.status_code == status and message in response.json()["error"]
    csv = client.post("/api/predict_csv", params={"model": model},
                      files=[("files", ("a.jpg", sample_images[0].read_bytes(), "image/jpeg"))])
    assert csv.status_code == status and message in csv.json()["error"]


def test_rejected_requests(client, sample_images):
    jpeg = sample_images[0].read_bytes()
    no_file = client.post("/api/predict", data={"other": "x"})
    assert no_file.status_code == 400 and "exactly one image" in no_file.json()["error"]
    bad_flag = client.post("/api/predict?cam=maybe", files={"file": ("a.jpg", jpeg)})
    assert bad_flag.status_code == 400 and "cam" in bad_flag.json()["error"]
    one_bad = client.post("/api/predict_csv", files=[("files", ("good.jpg", jpeg)),
                                                     ("files", ("bad.jpg", b"nope" * 10))])
    assert one_bad.status_code == 415 and one_bad.json()["error"].startswith("bad.jpg ")
    many = [("files", (f"{i}.jpg", jpeg)) for i in range(65)]
    too_many = client.post("/api/predict_csv", files=many)
    assert too_many.status_code == 400 and "at most 64" in too_many.json()["error"]
    for path in ("/static/../app.py", "/static/..%2F..%2Fpyproject.toml", "/static/secret.py"):
        response = client.get(path)
        assert response.status_code == 404 and "error" in response.json()


def test_page_is_self_contained(client):
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js"' in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    for path in ("/", "/static/app.js", "/static/style.css"):
        text = client.get(path).text
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path


def test_eight_concurrent_requests_all_succeed(client, sample_images):
    paths = [sample_images[i % len(sample_images)] for i in range(16)]
    reference = {p.name: _post(client, p).json()["probabilities"] for p in set(paths)}

    def call(path: Path) -> tuple[str, int, dict]:
        r = client.post("/api/predict?cam=true",
                        files={"file": (path.name, path.read_bytes(), "image/jpeg")})
        return path.name, r.status_code, r.json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, paths))
    assert [status for _, status, _ in results] == [200] * len(paths)
    for name, _, body in results:
        assert body["probabilities"] == reference[name] and list(body["cams"]) == LABELS


def test_full_queue_answers_503_instead_of_waiting_forever(web_service, sample_images):
    service = ModelService(web_service.models, max_waiting=1)
    jpeg = sample_images[0].read_bytes()
    with TestClient(create_app(service)) as client:
        service._lock.acquire()  # the model is busy
        try:
            waiting = threading.Thread(target=lambda: client.post(
                "/api/predict", files={"file": ("a.jpg", jpeg)}))
            waiting.start()
            deadline = time.time() + 10
            while service._waiting < 1 and time.time() < deadline:
                time.sleep(0.01)
            refused = client.post("/api/predict", files={"file": ("b.jpg", jpeg)})
        finally:
            service._lock.release()
        waiting.join(timeout=30)
    assert refused.status_code == 503 and "busy" in refused.json()["error"]


def test_oversized_constant_is_twenty_megabytes():
    assert MAX_FILE_BYTES == 20 * 1024 * 1024
