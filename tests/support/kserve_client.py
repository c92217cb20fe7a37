"""KServe's own Python SDK against the service, run as a script: ``python kserve_client.py HTTP_URL GRPC_ADDRESS FILE``.

It prints one JSON object: each transport's probabilities for the file, and what became of raw bytes over REST.
A script of its own because kserve's generated protobuf modules and tritonclient's (which the server imports)
declare the same ``inference.*`` messages, and protobuf refuses both in one process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path

import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest
from kserve.inference_client import RESTConfig

MODEL = "resnet50"


async def main(http_url: str, grpc_address: str, image: bytes) -> dict[str, object]:
    rest = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    # JSON has no bytes: a BYTES element goes as base64, which the service decodes.
    as_base64 = InferInput("image", [1], "BYTES", data=[base64.b64encode(image).decode()])
    answer = await rest.infer(http_url, InferRequest(model_name=MODEL, infer_inputs=[as_base64]), model_name=MODEL)
    raw_refused = None
    try:
        raw = InferInput("image", [1], "BYTES", data=[image])
        await rest.infer(http_url, InferRequest(model_name=MODEL, infer_inputs=[raw]), model_name=MODEL)
    except Exception as exc:  # the SDK's own JSON encoder cannot write bytes: reported, not hidden
        raw_refused = f"{type(exc).__name__}: {exc}"
    await rest.close()
    grpc_client = InferenceGRPCClient(grpc_address, retries=0)
    as_bytes = InferInput("image", [1], "BYTES")
    as_bytes.set_data_from_numpy(np.array([image], dtype=np.object_), binary_data=True)
    grpc_answer = await grpc_client.infer(InferRequest(model_name=MODEL, infer_inputs=[as_bytes]))
    await grpc_client.close()
    return {
        "rest": answer.outputs[0].as_numpy().tolist(),
        "rest_raw_bytes_refused": raw_refused,
        "grpc": grpc_answer.outputs[0].as_numpy().tolist(),
        "grpc_output": [grpc_answer.outputs[0].name, grpc_answer.outputs[0].datatype, grpc_answer.outputs[0].shape],
    }


if __name__ == "__main__":
    http_url, grpc_address, file = sys.argv[1:]
    print(json.dumps(asyncio.run(main(http_url, grpc_address, Path(file).read_bytes()))))
