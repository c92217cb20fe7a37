"""The hand-rolled service the benchmark compares against: plain FastAPI + ONNX Runtime, about 40 lines.

What a competent engineer writes in an afternoon: ``UploadFile``, a sync endpoint (so Starlette runs decode and
inference in its threadpool), the seed's Keras preprocessing with Pillow and numpy, no batching, no metrics, no
access log. Serve it with ``RESNET_BASELINE_MODEL=model.onnx uvicorn bench.baseline_app:app``.
"""

import json
import os
from importlib import resources
from typing import Annotated

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, File, UploadFile
from PIL import Image

session = ort.InferenceSession(os.environ["RESNET_BASELINE_MODEL"], providers=["CPUExecutionProvider"])
index = json.loads(resources.files("resnet_service").joinpath("data/imagenet_class_index.json").read_text())
labels = [index[str(i)][1] for i in range(len(index))]
mean = np.array([103.939, 116.779, 123.68], dtype=np.float32)
app = FastAPI()


@app.post("/predict")
def predict(image: Annotated[UploadFile, File()]) -> dict:
    picture = Image.open(image.file)
    if picture.mode != "RGB":
        picture = picture.convert("RGB")
    array = np.asarray(picture.resize((224, 224)), dtype=np.float32)[..., ::-1] - mean
    (probabilities,) = session.run(None, {"input": array[np.newaxis]})[0]
    top = probabilities.argsort()[-5:][::-1]
    predictions = [{"label": labels[i], "probability": float(probabilities[i])} for i in top]
    return {"predictions": predictions, "success": True}
