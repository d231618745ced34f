"""Export a training checkpoint as a shipped model: ``dasksr/weights/<name>_x<scale>.onnx`` + JSON.

The JSON record holds the architecture, multiply-adds per low-resolution pixel, scale, degradation,
training data, seed, steps, wall time and date from the checkpoint, the ONNX file's SHA-256, and
the evaluation figures measured here on the exported file through dasksr itself (Set5 and Set14
with ``dasksr.evaluate_images``; for ``cnn-sensor`` also the held-out part of the shared scenes).

Example::

    python training/export.py training/checkpoints/cnn_x2-best.npz
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

# Siblings of this script (data, graph, model, train): `python training/export.py` puts its
# folder first on sys.path.
import data as datasets
import onnx
from graph import prelu_as_depthwise
from model import CompactSR, export_onnx
from train import load

WEIGHTS = Path(__file__).resolve().parent.parent / "dasksr" / "weights"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    ap.add_argument("--no-eval", action="store_true")
    args = ap.parse_args(argv)
    arrays, meta = load(args.checkpoint)
    oracle = [r["oracle_held_out_of"] for r in meta["runs"] if "oracle_held_out_of" in r]
    if oracle and args.out.resolve() == WEIGHTS.resolve():
        raise SystemExit(
            f"{args.checkpoint} was trained on the held-out rows of {oracle[0]!r} (--oracle): "
            "export it with --out elsewhere, never into the package"
        )
    name, scale = meta["model"], int(meta["scale"])
    model = CompactSR(scale, meta["channels"], meta["layers"])
    model.load_arrays({k[2:]: v for k, v in arrays.items() if k.startswith("w/")})
    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / f"{name}_x{scale}.onnx"
    tmp = onnx_path.with_suffix(".tmp.onnx")
    export_onnx(model, str(tmp))
    # One self-contained file, no external data, producer names stripped of versions for stability.
    proto = onnx.load(str(tmp))
    prelu_as_depthwise(proto)  # PReLU to within float32 rounding, 2x as fast in onnxruntime
    onnx.checker.check_model(proto)
    onnx.save(proto, str(onnx_path))
    tmp.unlink()
    steps, wall = meta["steps"], meta["wall_s"]
    init = meta.get("init")
    record = {
        "name": name,
        "scale": scale,
        "file": onnx_path.name,
        "sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        "architecture": {
            "kind": "plain CNN, valid 3x3 convolutions, PReLU (as 1x1 depthwise convolutions), "
            "no biases, depth-to-space, bicubic skip",
            "channels": meta["channels"],
            "layers": meta["layers"],
            "receptive_field_radius": meta["layers"],
            "parameters": int(sum(p.numel() for p in model.parameters())),
        },
        "macs_per_lr_pixel": model.macs_per_pixel(),
        "degradation": meta["degradation"],
        # Not meta["sources"] as the run wrote it: that omitted BSDS500-test200 for cnn-sensor,
        # and the note on benchmark images (excluded.json) postdates the shipped runs.
        "training_data": datasets.training_data(meta),
        "seed": meta["runs"][-1]["seed"],
        "steps": steps + (init["steps"] if init else 0),
        "wall_time_s": round(wall + (init["wall_s"] if init else 0.0), 1),
        "initialised_from": init,
        "runs": meta["runs"],
        "best_validation_psnr": meta.get("best_val_psnr"),
        # The exported weights' own figure: a shipped last step need not be the best one.
        "validation_psnr": _own_validation(meta),
        "trained_on": "2-core AMD EPYC CPU, torch 2.13.0; threads per run: training/schedule.sh",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "evaluation": {},
    }
    meta_path = onnx_path.with_suffix(".json")
    meta_path.write_text(json.dumps(record, indent=1) + "\n")
    if not args.no_eval:
        record["evaluation"] = evaluate(name, scale, args.out)
        meta_path.write_text(json.dumps(record, indent=1) + "\n")
    print(
        json.dumps(
            {k: record[k] for k in ("name", "scale", "steps", "wall_time_s", "evaluation")},
            indent=1,
        )
    )


def _own_validation(meta: dict) -> float | None:
    """The validation PSNR logged at the checkpoint's own step, if its last run logged one."""
    for step, psnr in meta["runs"][-1].get("val", []) if meta.get("runs") else []:
        if step == meta["steps"]:
            return psnr
    return None


def evaluate(name: str, scale: int, folder: Path) -> dict:
    """Figures of the exported file, through dasksr's own evaluation code."""
    from dasksr import methods as registry
    from dasksr import models as cnn

    for n, models in cnn.load_records(folder).items():
        registry.register(cnn.learned_method(n, models))
    from dasksr.data import data_path
    from dasksr.evaluate import evaluate_images

    out = {}
    root = data_path("sr-benchmarks")
    for bench in ("Set5", "Set14"):
        hr = str(root / bench / f"image_SRF_{scale}" / "*_HR.png")
        result = evaluate_images(hr, scale=scale, method=name)
        out[bench] = {"psnr": round(result["mean_psnr"], 4), "ssim": round(result["mean_ssim"], 5)}
    if name == "cnn-sensor":
        from dasksr.sensor import scene_figures

        out["scenes"] = scene_figures(scale, methods=(name, "cnn", "bicubic"))
        out["native_scenes"] = scene_figures(scale, methods=(name, "cnn", "bicubic"), native=True)
    return out


if __name__ == "__main__":
    main()
