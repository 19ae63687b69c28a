"""The ``msfm`` command line (SPEC §5).

Exit code 0 on success; on bad input a one-line reason on stderr and a non-zero code
(2: usage or unreadable model; 1: no input could be processed).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

from . import __version__
from .errors import MSFMError

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "resources" / "models" / "default.pt"


def _fail(msg: str, code: int = 2) -> int:
    print(f"msfm: error: {msg}", file=sys.stderr)
    return code


def resolve_checkpoint(value: str) -> Path:
    if value == "default":
        if not DEFAULT_MODEL.is_file():
            raise MSFMError(f"no default model is bundled at {DEFAULT_MODEL}; pass --checkpoint FILE")
        return DEFAULT_MODEL
    return Path(value)


def _write_atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


CSV_FIELDS = [
    "file", "frame", "sop_instance_uid", "width", "height", "probability", "label",
    "p_main", "p_object", "p_parts", "object_x0", "object_y0", "object_x1", "object_y1",
    "fused_x0", "fused_y0", "fused_x1", "fused_y1", "model_sha256",
]


def _csv_row(p) -> dict:
    ob, fb = p.object_box, p.fused_box
    return {
        "file": p.file, "frame": "" if p.frame is None else p.frame, "sop_instance_uid": p.meta.get("SOPInstanceUID", ""),
        "width": p.width, "height": p.height, "probability": f"{p.probability:.6f}", "label": p.label,
        "p_main": f"{p.stages['main']:.6f}", "p_object": f"{p.stages['object']:.6f}", "p_parts": f"{p.stages['parts']:.6f}",
        "object_x0": f"{ob[0]:.2f}", "object_y0": f"{ob[1]:.2f}", "object_x1": f"{ob[2]:.2f}", "object_y1": f"{ob[3]:.2f}",
        "fused_x0": f"{fb[0]:.2f}", "fused_y0": f"{fb[1]:.2f}", "fused_x1": f"{fb[2]:.2f}", "fused_y1": f"{fb[3]:.2f}",
        "model_sha256": p.model.sha256,
    }


def cmd_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .infer import Predictor
    from .io.scan import iter_image_files

    try:
        predictor = Predictor.from_checkpoint(resolve_checkpoint(args.checkpoint), args.device, args.batch_size)
    except (MSFMError, RuntimeError) as exc:
        return _fail(str(exc))
    files = list(iter_image_files(args.paths))
    if not files:
        return _fail("no PNG, JPEG or DICOM files found in the given paths")
    preds, errors = [], []
    with tqdm(total=len(files), unit="file", desc="predict", disable=args.quiet, file=sys.stderr) as bar:
        for step in predictor.iter_predict(files):
            preds.extend(step.predictions)
            for e in step.errors:
                errors.append({"path": e.path, "reason": e.reason})
                tqdm.write(f"skipped {e.path}: {e.reason}", file=sys.stderr)
            bar.n = step.done
            bar.refresh()
    if args.json:
        doc = {"predictions": [p.to_json() for p in preds], "errors": errors}
        _write_atomic_text(Path(args.json), json.dumps(doc, indent=1))
    if args.csv:
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
        w.writeheader()
        for p in preds:
            w.writerow(_csv_row(p))
        _write_atomic_text(Path(args.csv), buf.getvalue())
    if args.overlays:
        from .overlay import save_overlay

        out = Path(args.overlays)
        for p in preds:
            save_overlay(p, out)
    if not args.json and not args.csv:
        for p in preds:
            print(json.dumps(p.to_json()))
    print(f"{len(preds)} image(s) predicted, {len(errors)} skipped", file=sys.stderr)
    return 0 if preds else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="msfm", description="MSFM abnormality classification and weakly supervised localisation")
    parser.add_argument("--version", action="version", version=f"msfm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="classify and localise radiographs")
    p.add_argument("paths", nargs="+", help="files or folders (recursive; DICOM detected by content)")
    p.add_argument("--checkpoint", default="default", help="model checkpoint file, or 'default'")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", metavar="OUT.json")
    p.add_argument("--csv", metavar="OUT.csv")
    p.add_argument("--overlays", metavar="DIR", help="write an overlay PNG per image")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="msfm: %(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except MSFMError as exc:
        return _fail(str(exc))


if __name__ == "__main__":
    sys.exit(main())
