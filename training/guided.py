"""Train, checkpoint and export ``cnn-s2``: the guided Sentinel-2 networks of ``dasksr.sharpen``.

The network refines dasksr's own GLP result: its input is ``[up(C), G, GLP(C, G)]`` on the fine
grid (computed by the same kernel functions the method runs, :mod:`dasksr.kernels.sharpen`), its
output the residual added to ``GLP``. Valid 3x3 convolutions, PReLU, no biases: the network is
positively homogeneous, so it runs on the bands' own DN with no normalisation (training divides by
1000 for the optimiser's sake, which changes nothing in the function).

Data: Wald pairs of the native Sentinel-2 scene (``rasters/sentinel2_l1c_18SVG_20160112_native``):

- ``x2``: guide B02 B03 B04 B08 at 10 m degraded to 20 m, coarse B05 B06 B07 B8A B11 B12 at 20 m
  degraded to 40 m, the 20 m bands as reference;
- ``x6``: the same guide degraded to 60 m, B01 B09 at 60 m degraded to 360 m, 60 m as reference.

Each pair is made with several draws of MTF gains around the published values, so the network
does not learn one blur. Rows split as everywhere in dasksr (``dasksr.scenes``): the top 50 % of
the reduced scene trains, 50-60 % validates (the checkpoint and the stopping step are chosen on
it), the bottom 40 % is the benchmark's and is never read here.

Examples::

    python training/guided.py train x2 --steps 3000
    python training/guided.py export training/checkpoints/cnn-s2_x2-best.npz
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dasksr.kernels import sharpen as K
from dasksr.scenes import sentinel2_native_pair

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE.parent / "dasksr" / "weights"
CHECKPOINTS = HERE / "checkpoints"
LOGS = HERE / "logs"

TASKS = {
    "x2": {
        "ratio": 2,
        "coarse": ("B05", "B06", "B07", "B8A", "B11", "B12"),
        "channels": 48,
        "layers": 7,
    },
    "x6": {"ratio": 6, "coarse": ("B01", "B09"), "channels": 32, "layers": 6},
}
GUIDE = ("B02", "B03", "B04", "B08")
#: Training and validation rows of the reduced scene (the rest is the benchmark's).
TRAIN_END, VALID_END = 0.5, 0.6
UNIT = 1000.0


class GuidedNet(nn.Module):
    """``layers`` valid 3x3 convolutions with PReLU and no biases: residual of the coarse bands."""

    def __init__(self, cin: int, cout: int, channels: int, layers: int) -> None:
        super().__init__()
        convs: list[nn.Module] = [nn.Conv2d(cin, channels, 3, bias=False), nn.PReLU(channels)]
        for _ in range(layers - 2):
            convs += [nn.Conv2d(channels, channels, 3, bias=False), nn.PReLU(channels)]
        last = nn.Conv2d(channels, cout, 3, bias=False)
        nn.init.zeros_(last.weight)  # start from GLP itself
        convs.append(last)
        self.body = nn.Sequential(*convs)
        self.layers, self.cin, self.cout, self.channels = layers, cin, cout, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def macs_per_pixel(self) -> int:
        c, n = self.channels, self.layers
        return 9 * (self.cin * c + c * c * (n - 2) + c * self.cout)


def pairs(task: str, draws: int, seed: int) -> list[dict]:
    """Wald pairs of the task: network inputs, GLP and reference on the reduced fine grid."""
    spec = TASKS[task]
    rng = np.random.default_rng(seed)
    out = []
    for d in range(draws):
        jitter = 1.0 if d == 0 else float(rng.uniform(0.75, 1.3))
        pair = sentinel2_native_pair(spec["coarse"], GUIDE, spec["ratio"], jitter=jitter)
        out.append(dict(pair, jitter=jitter))
    return out


def prepared(pair: dict, ratio: int) -> dict:
    """The network's input planes for a Wald pair, from dasksr's own kernel functions."""
    coarse, guide = pair["coarse"], pair["guide"]
    sigmas = [K.mtf_sigma(g, ratio) for g in pair["coarse_mtf"]]
    hc, hf = K.halos(ratio, max(sigmas))
    geometry = K.BlockGeometry(ratio, pair["offset"], hc, hf)
    # The coarse bands, cut as dasksr.sharpen aligns them: coarse position 0 covers offset.
    need = [
        math.ceil((n - e) / ratio) for n, e in zip(guide.shape[-2:], pair["offset"], strict=False)
    ]
    c = np.pad(
        coarse,
        [(0, 0), (0, max(0, need[0] - coarse.shape[1])), (0, max(0, need[1] - coarse.shape[2]))],
        mode="symmetric",
    )[:, : need[0], : need[1]]
    cp = np.pad(c, [(0, 0), (hc, hc), (hc, hc)], mode="symmetric")
    gp = np.pad(guide, [(0, 0), (hf, hf), (hf, hf)], mode="symmetric")
    valid = np.ones(cp.shape, bool)
    gvalid = np.ones(gp.shape, bool)
    stats = K.detail_statistics(cp, valid, gp, gvalid, geometry=geometry, sigmas=sigmas)
    weights = K.solve_weights(stats)[:, : guide.shape[0]]
    base, fused, _ = K.glp_planes(
        cp, valid, gp, gvalid, geometry=geometry, weights=weights, sigmas=sigmas
    )
    assert base is not None
    x = K.network_inputs(base, fused, gp, geometry, 0)
    return {
        "x": x / UNIT,
        "glp": fused / UNIT,
        "base": base / UNIT,
        "ref": pair["reference"] / UNIT,
    }


def rmse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a - b) ** 2).mean(axis=(-2, -1)))


def evaluate(model: GuidedNet, data: dict, rows: slice) -> dict:
    L = model.layers
    x = data["x"]
    lo, hi = max(rows.start - L, 0), min(rows.stop + L, x.shape[1])
    with torch.no_grad():
        widths = [(0, 0), (L - (rows.start - lo), L - (hi - rows.stop)), (L, L)]
        padded = np.pad(x[:, lo:hi], widths, mode="symmetric")
        res = model(torch.from_numpy(padded)[None])[0].numpy()
    pred = data["glp"][:, rows] + res
    ref = data["ref"][:, rows]
    bic = rmse(data["base"][:, rows], ref)
    return {
        "cnn": rmse(pred, ref) * UNIT,
        "glp": rmse(data["glp"][:, rows], ref) * UNIT,
        "bicubic": bic * UNIT,
    }


def train(args: argparse.Namespace) -> None:
    spec = TASKS[args.task]
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    started = time.time()
    data = [prepared(p, spec["ratio"]) for p in pairs(args.task, args.draws, args.seed)]
    H = data[0]["x"].shape[1]
    train_rows = slice(0, int(H * TRAIN_END))
    valid_rows = slice(int(H * TRAIN_END), int(H * VALID_END))
    cin, cout = data[0]["x"].shape[0], data[0]["glp"].shape[0]
    model = GuidedNet(cin, cout, spec["channels"], spec["layers"])
    name = f"cnn-s2_{args.task}"
    CHECKPOINTS.mkdir(exist_ok=True)
    LOGS.mkdir(exist_ok=True)
    log = open(LOGS / f"{name}.log", "a")  # noqa: SIM115  (open for the whole run)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps, eta_min=args.lr / 100)
    L, P = model.layers, args.patch
    best, history = math.inf, []
    print(
        json.dumps(
            {
                "task": args.task,
                "inputs": cin,
                "outputs": cout,
                "rows": H,
                "prep_s": round(time.time() - started, 1),
            }
        ),
        file=log,
        flush=True,
    )
    for step in range(1, args.steps + 1):
        xs, ts = [], []
        for _ in range(args.batch):
            d = data[rng.integers(len(data))]
            y0 = rng.integers(L, train_rows.stop - P - L)
            x0 = rng.integers(L, d["x"].shape[2] - P - L)
            x = d["x"][:, y0 - L : y0 + P + L, x0 - L : x0 + P + L]
            t = d["ref"][:, y0 : y0 + P, x0 : x0 + P] - d["glp"][:, y0 : y0 + P, x0 : x0 + P]
            k = rng.integers(4)
            if k & 1:
                x, t = x[..., ::-1], t[..., ::-1]
            if k & 2:
                x, t = x[..., ::-1, :], t[..., ::-1, :]
            xs.append(np.ascontiguousarray(x))
            ts.append(np.ascontiguousarray(t))
        xb, tb = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ts))
        loss = nn.functional.l1_loss(model(xb), tb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % args.every == 0 or step == args.steps:
            figures = evaluate(model, data[0], valid_rows)
            score = float(figures["cnn"].mean())
            entry = {
                "step": step,
                "loss": round(float(loss), 5),
                "valid_rmse": [round(float(v), 2) for v in figures["cnn"]],
                "valid_mean": round(score, 3),
                "glp_mean": round(float(figures["glp"].mean()), 3),
                "bicubic_mean": round(float(figures["bicubic"].mean()), 3),
                "wall_s": round(time.time() - started, 1),
            }
            history.append(entry)
            print(json.dumps(entry), file=log, flush=True)
            meta = {
                "task": args.task,
                "ratio": spec["ratio"],
                "coarse": list(spec["coarse"]),
                "guide": list(GUIDE),
                "channels": spec["channels"],
                "layers": spec["layers"],
                "cin": cin,
                "cout": cout,
                "seed": args.seed,
                "draws": args.draws,
                "steps": step,
                "history": history,
                "wall_s": time.time() - started,
                "lr": args.lr,
                "batch": args.batch,
                "patch": P,
            }
            save(CHECKPOINTS / f"{name}.npz", model, meta)
            if score < best:
                best = score
                save(CHECKPOINTS / f"{name}-best.npz", model, dict(meta, best_valid_mean=score))


def save(path: Path, model: nn.Module, meta: dict) -> None:
    arrays = {f"w/{k}": v.detach().numpy() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    tmp.replace(path)


def load(path: Path) -> tuple[GuidedNet, dict]:
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        model = GuidedNet(meta["cin"], meta["cout"], meta["channels"], meta["layers"])
        model.load_state_dict(
            {k[2:]: torch.from_numpy(f[k]) for k in f.files if k.startswith("w/")}
        )
    return model, meta


def export(args: argparse.Namespace) -> None:
    model, meta = load(args.checkpoint)
    model.eval()
    ratio = meta["ratio"]
    path = WEIGHTS / f"cnn-s2_x{ratio}.onnx"
    dummy = torch.zeros(1, meta["cin"], 32, 32)
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        input_names=["x"],
        output_names=["residual"],
        dynamic_axes={"x": {2: "h", 3: "w"}, "residual": {2: "oh", 3: "ow"}},
        opset_version=17,
        dynamo=False,
    )
    import onnx

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    best = min(meta["history"], key=lambda e: e["valid_mean"])
    record = {
        "name": "cnn-s2",
        "scale": ratio,
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "kind": "guided",
        "coarse_bands": meta["coarse"],
        "guide_bands": meta["guide"],
        "architecture": {
            "kind": "plain CNN on [up(C), G, GLP(C, G)], valid 3x3 convolutions, PReLU, no biases, "
            "residual added to GLP",
            "channels": meta["channels"],
            "layers": meta["layers"],
            "receptive_field_radius": meta["layers"],
            "inputs": meta["cin"],
            "outputs": meta["cout"],
            "parameters": int(sum(p.numel() for p in model.parameters())),
        },
        "macs_per_fine_pixel": model.macs_per_pixel(),
        "training_data": "Wald pairs of the native Sentinel-2 L1C scene 18SVG 2016-01-12 "
        f"(shared rasters), top {int(TRAIN_END * 100)} % of rows; MTF gains x U(0.75, 1.3) around the "
        f"published values, {meta['draws']} draws",
        "validation": f"rows {int(TRAIN_END * 100)}-{int(VALID_END * 100)} % of the reduced scene",
        "seed": meta["seed"],
        "steps": meta["steps"],
        "wall_time_s": round(meta["wall_s"], 1),
        "best_validation": best,
        "trained_on": "2-core AMD EPYC CPU, torch 2.13.0, 1 process",
        "schedule": f"cosine learning rate from {meta['lr']} over the run's planned steps",
        "note": args.note,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    path.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: record[k] for k in ("name", "scale", "steps", "best_validation")}))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("task", choices=sorted(TASKS))
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--patch", type=int, default=40)
    t.add_argument("--draws", type=int, default=3)
    t.add_argument("--every", type=int, default=100)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=2)
    e = sub.add_parser("export")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("--note", default="", help="how the run ended, for the record")
    args = ap.parse_args(argv)
    {"train": train, "export": export}[args.command](args)


if __name__ == "__main__":
    main()
