"""What RESNET_RESIZE=fast changes, and what other JPEG decoders would gain; printed as a table and JSON.

    .venv/bin/python -m bench.resize_modes --model models/resnet50.onnx

For real photos at their own size and scaled up to 12 MP: the preprocessing time in exact and fast mode, the
largest and mean difference between the two tensors, and whether the model's top-1 and top-5 agree. Then the
time to decode a 12 MP JPEG to a ≥224² image with Pillow (full and draft), simplejpeg and PyTurboJPEG, when
they are installed, and where a typical 451×300 photo's preprocessing goes (decode, resize by filter).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image
from skimage import data

from bench.side_by_side import median_ms
from resnet_service.inference.preprocessing import preprocess

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def decoders(large: bytes) -> dict[str, float]:
    results = {"pillow full decode": median_ms(lambda: Image.open(io.BytesIO(large)).convert("RGB"))}

    def pillow_draft() -> Image.Image:
        image = Image.open(io.BytesIO(large))
        image.draft("RGB", (224, 224))
        return image.convert("RGB")

    results["pillow draft"] = median_ms(pillow_draft)
    try:
        import simplejpeg

        results["simplejpeg full"] = median_ms(lambda: simplejpeg.decode_jpeg(large))
        results["simplejpeg scaled"] = median_ms(lambda: simplejpeg.decode_jpeg(large, min_height=224, min_width=224))
    except ImportError:
        results["simplejpeg"] = float("nan")
    try:
        from turbojpeg import TurboJPEG

        decoder = TurboJPEG()
        results["PyTurboJPEG full"] = median_ms(lambda: decoder.decode(large))
        results["PyTurboJPEG 1/8"] = median_ms(lambda: decoder.decode(large, scaling_factor=(1, 8)))
    except (ImportError, RuntimeError, OSError):
        results["PyTurboJPEG"] = float("nan")
    return results


def typical_stages(typical: bytes) -> dict[str, float]:
    """Where a typical photo's preprocessing goes: decode, the resize to 224² by filter, and all of it."""
    decoded = Image.open(io.BytesIO(typical)).convert("RGB")
    results = {"pillow decode": median_ms(lambda: Image.open(io.BytesIO(typical)).convert("RGB"), 101)}
    try:
        import simplejpeg

        results["simplejpeg decode"] = median_ms(lambda: simplejpeg.decode_jpeg(typical), 101)
    except ImportError:
        results["simplejpeg decode"] = float("nan")
    for name in ("BICUBIC", "BILINEAR", "NEAREST"):
        flt = Image.Resampling[name]
        results[f"resize {name.lower()}"] = median_ms(lambda flt=flt: decoded.resize((224, 224), flt), 101)
    results["preprocess (exact: decode, bicubic, caffe)"] = median_ms(lambda: preprocess(typical, 10**9), 101)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/resnet50.onnx"))
    args = parser.parse_args()
    session = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    rows = []
    for name in PHOTOS:
        original = Image.fromarray(getattr(data, name)()).convert("RGB")
        for label, image in (
            ("own size", original),
            ("12 MP", original.resize((4000, 3000), Image.Resampling.LANCZOS)),
        ):
            encoded = jpeg(image)
            exact, fast = preprocess(encoded, 10**9), preprocess(encoded, 10**9, fast=True)
            (probabilities,) = session.run(None, {"input": np.concatenate([exact, fast])})
            top_exact, top_fast = np.argsort(-probabilities, axis=1)[:, :5]
            rows.append(
                {
                    "photo": f"{name} {label} {image.width}x{image.height}",
                    "exact_ms": median_ms(lambda e=encoded: preprocess(e, 10**9)),
                    "fast_ms": median_ms(lambda e=encoded: preprocess(e, 10**9, fast=True)),
                    "max_abs_diff": float(np.abs(exact - fast).max()),
                    "mean_abs_diff": float(np.abs(exact - fast).mean()),
                    "top1_agrees": bool(top_exact[0] == top_fast[0]),
                    "top5_overlap": len(set(top_exact) & set(top_fast)),
                }
            )
    large = jpeg(Image.fromarray(data.chelsea()).resize((4000, 3000), Image.Resampling.LANCZOS))
    typical = jpeg(Image.fromarray(data.chelsea()))
    result = {"rows": rows, "decoders_12mp_ms": decoders(large), "typical_451x300_ms": typical_stages(typical)}
    print(json.dumps(result, indent=2))
    print("\n| photo | exact ms | fast ms | max abs Δ | mean abs Δ | top-1 same | top-5 overlap |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['photo']} | {row['exact_ms']:.1f} | {row['fast_ms']:.1f} | {row['max_abs_diff']:.1f} | "
            f"{row['mean_abs_diff']:.2f} | {'yes' if row['top1_agrees'] else 'no'} | {row['top5_overlap']}/5 |"
        )
    print("\n| 12 MP JPEG decoder | ms |\n|---|---|")
    for decoder, ms in result["decoders_12mp_ms"].items():
        print(f"| {decoder} | {ms:.1f} |")
    print("\n| 451×300 JPEG, one step | ms |\n|---|---|")
    for step, ms in result["typical_451x300_ms"].items():
        print(f"| {step} | {ms:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
