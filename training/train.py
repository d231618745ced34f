"""Train a compact super-resolution network (``cnn`` or ``cnn-sensor``) on this machine's CPU.

Seeded; a run takes ``--steps`` Adam steps (L1 loss, or L2 with ``--loss l2``) with a cosine
learning-rate schedule from ``--lr`` down to ``--lr / 100`` and writes a checkpoint (weights and
optimiser moments in a NumPy ``.npz``, no pickle) every ``--save-every`` steps and at the end.
``--resume`` continues a checkpoint of the same model (a new cosine cycle over ``--steps`` more
steps); with more ``--layers`` than the checkpoint it deepens it first (identity layers, the same
function to start from). ``--init`` starts from another checkpoint's weights (for example x3 from
x2), keeping every tensor whose shape fits. The validation PSNR (Y, border = scale, on the
held-out split of the training images) is logged; the checkpoint with the best one is kept beside
the last as ``*-best.npz``.

Example::

    python training/train.py --model cnn --scale 2 --steps 4000 --out training/checkpoints/cnn_x2.npz
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

# data and model are this script's siblings: `python training/train.py` puts its folder first on
# sys.path.
import data as datasets
import numpy as np
import torch
from model import CompactSR, deepen

from dasksr.blockwise import pad_block
from dasksr.methods import get_method
from dasksr.metrics import psnr
from dasksr.sensor import SIGMA, SNR

#: Failed patch draws in a row after which `sample` gives up (no patch fits anywhere).
MAX_MISSES = 100_000


def sample(pairs, weights, batch, patch, scale, rng, context=0):
    """A batch of aligned (lr, bicubic, hr) patches, with random flips and transposes.

    ``context`` more low-resolution pixels on every side of each LR patch (the network's halo, for
    valid convolutions): the HR and bicubic patches cover the central ``patch`` pixels only.
    """
    c = context
    lr_b = np.empty((batch, 1, patch + 2 * c, patch + 2 * c), np.float32)
    hr_b = np.empty((batch, 1, patch * scale, patch * scale), np.float32)
    bic_b = np.empty_like(hr_b)
    i = misses = 0
    while i < batch:
        if misses > MAX_MISSES:  # rejection sampling that can't succeed must not spin for ever
            raise SystemExit(
                f"no {patch + 2 * c}-pixel square LR patch free of fill found in the training "
                f"images after {MAX_MISSES} draws in a row: use a smaller --patch or more images"
            )
        misses += 1
        p = pairs[rng.choice(len(pairs), p=weights)]
        h, w = p.lr.shape
        if h < patch + 2 * c or w < patch + 2 * c:
            continue
        y = int(rng.integers(c, h - patch - c + 1))
        x = int(rng.integers(c, w - patch - c + 1))
        lr = p.lr[y - c : y + patch + c, x - c : x + patch + c]
        if p.valid is not None and not p.valid[y - c : y + patch + c, x - c : x + patch + c].all():
            continue
        ys, xs = slice(y * scale, (y + patch) * scale), slice(x * scale, (x + patch) * scale)
        hr, bic = p.hr[ys, xs], p.bicubic[ys, xs]
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        trio = [np.rot90(a, k) for a in (lr, hr, bic)]
        if flip:
            trio = [a[:, ::-1] for a in trio]
        lr_b[i, 0], hr_b[i, 0], bic_b[i, 0] = trio
        i += 1
        misses = 0
    return torch.from_numpy(lr_b), torch.from_numpy(bic_b), torch.from_numpy(hr_b)


@torch.no_grad()
def validate(model, pairs, scale, boundary="reflect"):
    model.eval()
    values = []
    for p in pairs:
        if p.valid is not None:  # scenes with fill are not validation images
            continue
        lr = p.lr
        if model.padding == 0:  # valid convolutions: extend the image as dasksr's method does
            lr = pad_block(lr, model.layers, boundary)
        x = torch.from_numpy(np.ascontiguousarray(lr))[None, None]
        out = (model.residual(x)[0, 0].numpy() + p.bicubic).clip(0, 1)
        values.append(psnr(p.hr, out, crop=scale, data_range=1.0))
    model.train()
    return float(np.mean(values))


def save(path: Path, model, opt, meta):
    arrays = {f"w/{k}": v for k, v in model.state_arrays().items()}
    names = [n for n, _ in model.named_parameters()]
    for name, param in zip(names, model.parameters(), strict=True):
        state = opt.state.get(param, {})
        if "exp_avg" in state:
            arrays[f"m/{name}"] = state["exp_avg"].numpy()
            arrays[f"v/{name}"] = state["exp_avg_sq"].numpy()
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def load(path: Path):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays.pop("meta").tobytes().decode())
    return arrays, meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["cnn", "cnn-sensor"], required=True)
    ap.add_argument("--scale", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--resume", type=Path)
    ap.add_argument("--init", type=Path)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument(
        "--layers",
        type=int,
        help="3x3 layers (default 10, or the resumed checkpoint's; more than it deepens it with "
        "identity layers that start out computing the same function)",
    )
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=0, help="LR patch size (default 96 // scale)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument(
        "--loss",
        choices=["l1", "l2"],
        default="l1",
        help="l1 (mean absolute error) or l2 (mean squared error, what PSNR measures: for a "
        "last fine-tuning)",
    )
    ap.add_argument(
        "--valid",
        action="store_true",
        help="valid convolutions on LR patches with the network's real context around them, "
        "as at inference (default: zero-padded convolutions on the patch alone)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", type=int, default=3, help="sensor degradations per band")
    ap.add_argument(
        "--scene-variants",
        type=int,
        help="cnn-sensor: sensor degradations per band of the shared scenes (default: --variants); "
        "more noise draws keep the network from learning a scene's few draws by heart",
    )
    ap.add_argument(
        "--scene-share",
        type=float,
        default=0.0,
        help="cnn-sensor: fraction of the patches drawn from the shared satellite/aerial scenes "
        "(default 0: every pixel alike, about 4%% from the scenes)",
    )
    ap.add_argument(
        "--scene-weights",
        type=datasets.scene_weights,
        help="cnn-sensor, with --scene-share: how the scenes' patches are shared among the scenes, "
        "as NAME=W pairs where NAME is part of a scene's folder name, for example "
        "'sentinel2=1,landsat8=1,aerial=1' (default: by area, every pixel alike)",
    )
    ap.add_argument(
        "--more-scenes",
        action="store_true",
        help="cnn-sensor: also train on the top part of the Landsat 8 multispectral bands and on "
        "the Landsat 7 RGB scene (dasksr.scenes.MORE_SCENES; no evaluation scores them)",
    )
    ap.add_argument(
        "--native",
        action="store_true",
        help="cnn-sensor: also train on the native scenes' top 45%% rows "
        "(dasksr.scenes.native_training_files, among the scenes of --scene-share) and validate "
        "on rows 45-60%% of their scored bands, degraded as the evaluation degrades (sigma 0.5, "
        "40 dB), instead of the AID tiles",
    )
    ap.add_argument(
        "--oracle",
        metavar="SCENE",
        help="cnn-sensor diagnostic: train only on the held-out rows of the scenes whose folder "
        "name contains SCENE (the pixels benchmarks/sensor_eval.py scores), to measure the most a "
        "network of this size can gain there; export.py refuses to ship such weights",
    )
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--val-every", type=int, default=500)
    ap.add_argument(
        "--minutes", type=float, default=float("inf"), help="stop (and save) after this"
    )
    args = ap.parse_args(argv)
    if args.model != "cnn-sensor" and (
        args.oracle
        or args.scene_weights
        or args.scene_share
        or args.scene_variants
        or args.more_scenes
        or args.native
    ):
        ap.error(
            "--oracle, --scene-share, --scene-weights, --scene-variants, --more-scenes and "
            "--native are for --model cnn-sensor"
        )
    if args.variants < 1 or (args.scene_variants is not None and args.scene_variants < 1):
        ap.error("--variants and --scene-variants must be at least 1")
    if args.scene_weights and not (args.scene_share or args.oracle):
        ap.error("--scene-weights shares the scenes' patches: give --scene-share too")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    scale = args.scale
    patch = args.patch or 96 // scale
    t_prep = time.time()
    # The image files' splits, benchmark images (excluded.json) left out.
    lists = datasets.image_lists()
    natural_train, natural_val = lists["natural_train"], lists["natural_val"]
    if args.model == "cnn":
        train = datasets.natural_pairs(scale, natural_train)
        val = datasets.natural_pairs(scale, natural_val)
        degradation = "bicubic (MATLAB imresize, antialiased), Y channel, /255"
    else:
        bands = datasets.sensor_bands(held_out_of=args.oracle, more=args.more_scenes)
        if args.oracle:
            if not any("/" in name for name, _ in bands):
                raise SystemExit(f"--oracle: no shared scene matches {args.oracle!r}")
            args.scene_share = 1.0
        aid = {name: raw for name, raw in bands if name.endswith(".jpg")}
        aid_train = [(f, aid[f]) for f in lists["aid_train"]]
        aid_val = [(f, aid[f]) for f in lists["aid_val"]]
        scenes = [b for b in bands if not b[0].endswith(".jpg")]
        if args.native:
            scenes = datasets.native_bands("fit") + scenes
        nat = [(f, datasets.luma(f)) for f in natural_train]
        # The scenes' pairs come first in `train` (``scene_variants`` per band).
        scene_variants = args.scene_variants or args.variants
        train = datasets.sensor_pairs(scenes, scale, scene_variants, rng)
        train += datasets.sensor_pairs(aid_train + nat, scale, args.variants, rng)
        val = datasets.sensor_pairs(aid_val, scale, 1, np.random.default_rng(1234))
        if args.native:
            val = datasets.sensor_pairs(
                datasets.native_bands("validation"),
                scale,
                1,
                np.random.default_rng(1234),
                fixed=(SIGMA, SNR),
            )
        degradation = "dasksr.degrade_sensor: Gaussian PSF sigma U(0.3, 0.7) LR px, white noise SNR U(30, 50) dB"
    areas = np.array([p.lr.size for p in train], dtype=float)
    if args.model == "cnn-sensor":
        shares = None
        if args.scene_weights:
            shares = datasets.scene_shares([name for name, _ in scenes], args.scene_weights)
        weights = datasets.draw_weights(
            areas, len(scenes), scene_variants, args.scene_share, shares
        )
    else:
        weights = datasets.draw_weights(areas, 0, 0, 0.0)
    print(
        f"{len(train)} training, {len(val)} validation images, prepared in "
        f"{time.time() - t_prep:.0f} s",
        flush=True,
    )

    resumed = load(args.resume) if args.resume else None
    if args.layers is None:
        args.layers = resumed[1]["layers"] if resumed else 10
    model = CompactSR(scale, args.channels, args.layers, padding=0 if args.valid else 1)
    context = args.layers if args.valid else 0
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    meta = {
        "model": args.model,
        "scale": scale,
        "channels": args.channels,
        "layers": args.layers,
        "steps": 0,
        "wall_s": 0.0,
        "runs": [],
        "best_val_psnr": None,
        "degradation": degradation,
        "sources": datasets.SOURCES[args.model],
    }
    deepened_from = None
    if resumed:
        arrays, meta = resumed
        if args.layers != meta["layers"]:
            arrays = deepen(arrays, meta["layers"], args.layers, prefix="w/")
            deepened_from, meta["layers"] = meta["layers"], args.layers
        model.load_arrays({k[2:]: v for k, v in arrays.items() if k.startswith("w/")})
        for name, param in model.named_parameters():
            if f"m/{name}" in arrays:
                opt.state[param] = {
                    "step": torch.tensor(float(meta["steps"])),
                    "exp_avg": torch.from_numpy(arrays[f"m/{name}"]).clone(),
                    "exp_avg_sq": torch.from_numpy(arrays[f"v/{name}"]).clone(),
                }
    elif args.init:
        arrays, init_meta = load(args.init)
        model.load_arrays({k[2:]: v for k, v in arrays.items() if k.startswith("w/")}, strict=False)
        # Totals along the whole chain of initialisations (x2 -> x4 -> sensor x4, say).
        before = init_meta.get("init") or {"steps": 0, "wall_s": 0.0}
        meta["init"] = {
            "from": args.init.name,
            "steps": init_meta["steps"] + before["steps"],
            "wall_s": init_meta["wall_s"] + before["wall_s"],
        }
    if args.more_scenes and datasets.MORE_SOURCES not in meta["sources"]:
        meta["sources"] += datasets.MORE_SOURCES
    args.out.parent.mkdir(parents=True, exist_ok=True)
    best_path = args.out.with_name(args.out.stem + "-best.npz")
    best = meta.get("best_val_psnr")
    if meta["runs"] and (
        args.valid != bool(meta["runs"][-1].get("valid"))
        or args.native != bool(meta["runs"][-1].get("native"))
    ):
        # Validation pads differently in the two modes (zeros / dasksr's symmetric rule), or
        # validates on other images (--native): the figures do not compare, so the best
        # checkpoint starts afresh with this run.
        best = None
    run = {
        "steps": 0,
        "lr": args.lr,
        "batch": args.batch,
        "patch": patch,
        **({"valid": True} if args.valid else {}),
        **({"loss": args.loss} if args.loss != "l1" else {}),
        "seed": args.seed,
        **({"scene_share": args.scene_share} if args.scene_share else {}),
        **({"scene_weights": args.scene_weights} if args.scene_weights else {}),
        **({"scene_variants": args.scene_variants} if args.scene_variants else {}),
        **({"oracle_held_out_of": args.oracle} if args.oracle else {}),
        **({"more_scenes": True} if args.more_scenes else {}),
        **({"native": True} if args.native else {}),
        **({"deepened_from_layers": deepened_from} if deepened_from else {}),
        # The benchmark images this run left out (data.training_data reads it for the record).
        "excluded": sorted(datasets.excluded()),
        "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    meta["runs"].append(run)
    t0 = time.time()
    wall0 = meta["wall_s"]
    loss_avg = 0.0
    for step in range(1, args.steps + 1):
        lr_now = args.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (step - 1) / args.steps)))
        for g in opt.param_groups:
            g["lr"] = lr_now
        x, bic, hr = sample(train, weights, args.batch, patch, scale, rng, context)
        err = model.residual(x) + bic - hr
        loss = err.abs().mean() if args.loss == "l1" else err.square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_avg = 0.98 * loss_avg + 0.02 * loss.item()
        meta["steps"] += 1
        run["steps"] = step
        meta["wall_s"] = wall0 + time.time() - t0
        out_of_time = (time.time() - t0) / 60 > args.minutes
        last = step == args.steps or out_of_time
        if step % args.val_every == 0 or last:
            psnr = validate(model, val, scale, get_method(args.model).boundary)
            run.setdefault("val", []).append([meta["steps"], round(psnr, 3)])
            print(
                f"step {meta['steps']} loss {loss_avg:.5f} lr {lr_now:.2e} val {psnr:.3f} dB "
                f"{time.time() - t0:.0f} s",
                flush=True,
            )
            if best is None or psnr > best:
                best = meta["best_val_psnr"] = psnr
                save(best_path, model, opt, meta)
        if step % args.save_every == 0 or last:
            save(args.out, model, opt, meta)
        if out_of_time:
            print("time limit reached", flush=True)
            break


if __name__ == "__main__":
    main()
