"""Benchmark the offer photo pipeline against a plain Pillow approach.

    python -m bench.bench_images [--repeat N] [--json out.json]

Generates one realistic 12-megapixel (4000x3000) JPEG in memory, then times, in
the same run and alternating, ``domain.images.process_offer_photo`` and a
baseline that opens the full image and resizes it from the original for each of
the three outputs. Both sides encode with the same JPEG settings and draw the
same card overlay, so the difference is the decoding and resampling strategy.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import random
import statistics
import sys
import time

import PIL
from PIL import Image, ImageOps

from domain import images

WIDTH, HEIGHT = 4000, 3000
QUALITY = 90
DEAL = {"price_minor": 450, "original_price_minor": 750, "currency": "EUR", "title": "Croissants"}


def make_photo_jpeg(width: int = WIDTH, height: int = HEIGHT, *, seed: int = 0,
                    quality: int = QUALITY) -> bytes:  # fmt: skip
    """A deterministic photo-like JPEG: smooth multi-scale colour structure, broad
    gradients and fine grain, so it compresses (and decodes) like a camera photo
    (about 3 MB at 12 MP, quality 90) rather than like a flat test card."""
    rnd = random.Random(seed)

    def field(cell: int) -> Image.Image:  # random colours every `cell` px, smoothly interpolated
        size = (width // cell + 2, height // cell + 2)
        small = Image.frombytes("RGB", size, rnd.randbytes(size[0] * size[1] * 3))
        return small.resize((width, height), Image.Resampling.BICUBIC)

    im = field(600)
    for cell, weight in ((150, 0.4), (40, 0.3), (8, 0.2)):
        im = Image.blend(im, field(cell), weight)
    gradients = Image.merge(
        "RGB",
        [
            Image.linear_gradient("L").resize((width, height)),
            Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize((width, height)),
            Image.radial_gradient("L").resize((width, height)),
        ],
    )
    im = ImageOps.autocontrast(Image.blend(im, gradients, 0.35), cutoff=1)
    grain = Image.frombytes("RGB", (width, height), rnd.randbytes(width * height * 3))
    im = Image.blend(im, grain, 0.08)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality)
    return out.getvalue()


def baseline(data: bytes) -> dict[str, bytes]:
    """The plain approach: decode the full image, resize it for each output."""
    im = Image.open(io.BytesIO(data))
    im = ImageOps.exif_transpose(im).convert("RGB")
    large = im.resize(images._fit(im.size, images.LARGE_MAX_SIDE))
    thumb = im.resize(images._fit(im.size, images.THUMBNAIL_MAX_SIDE))
    card = ImageOps.fit(im, images.CARD_SIZE)  # cover-crop from the full image
    images._draw_deal(card, **DEAL)  # the same overlay as the pipeline draws
    return {
        "large": images._jpeg(large, images.JPEG_QUALITY, progressive=images.LARGE_PROGRESSIVE),
        "thumbnail": images._jpeg(thumb, images.THUMBNAIL_QUALITY, progressive=False),
        "card": images._jpeg(card, images.JPEG_QUALITY, progressive=False),
    }


def pipeline(data: bytes) -> dict[str, bytes]:
    photo = images.process_offer_photo(data, **DEAL)
    return {"large": photo.large, "thumbnail": photo.thumbnail, "card": photo.card}


def _summary(times: list[float], outputs: dict[str, bytes]) -> dict:
    return {
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
        "times_s": [round(t, 4) for t in times],
        "output_bytes": {name: len(blob) for name, blob in outputs.items()},
        "output_sizes": {name: Image.open(io.BytesIO(blob)).size for name, blob in outputs.items()},
    }


def run(repeat: int = 5) -> dict:
    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    data = make_photo_jpeg()
    # Warm-up (plugin imports, font loading, caches), not timed.
    outputs = {"pipeline": pipeline(data), "baseline": baseline(data)}
    times: dict[str, list[float]] = {"pipeline": [], "baseline": []}
    for _ in range(repeat):
        for name, func in (("pipeline", pipeline), ("baseline", baseline)):
            start = time.perf_counter()
            outputs[name] = func(data)
            times[name].append(time.perf_counter() - start)
    result = {
        "input": {"width": WIDTH, "height": HEIGHT, "jpeg_quality": QUALITY, "bytes": len(data)},
        "repeat": repeat,
        "pipeline": _summary(times["pipeline"], outputs["pipeline"]),
        "baseline": _summary(times["baseline"], outputs["baseline"]),
        "environment": {
            "python": platform.python_version(),
            "pillow": PIL.__version__,
            "machine": platform.machine(),
        },
    }
    result["speedup"] = round(result["baseline"]["median_s"] / result["pipeline"]["median_s"], 2)
    return result


def _print(result: dict) -> None:
    inp = result["input"]
    print(f"input: {inp['width']}x{inp['height']} JPEG q{inp['jpeg_quality']}, "
          f"{inp['bytes'] / 1e6:.2f} MB; {result['repeat']} repeat(s)")  # fmt: skip
    for name in ("pipeline", "baseline"):
        r = result[name]
        sizes = ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in r["output_bytes"].items())
        print(f"{name:9s} median {r['median_s'] * 1000:7.1f} ms  "
              f"(min {r['min_s'] * 1000:.1f}, max {r['max_s'] * 1000:.1f})  {sizes}")  # fmt: skip
    print(f"speed-up (baseline median / pipeline median): {result['speedup']:.2f}x")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each (default 5)")
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    args = parser.parse_args(argv)
    result = run(args.repeat)
    _print(result)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
            fh.write("\n")
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
