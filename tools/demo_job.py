"""The demo job, run by tools/demo.sh inside a temporary GRASS project.

Writes a synthetic scene (three band rasters with red squares and blue disks, and
training areas with a class column), trains a small model on the western half of
the region with i.ann.maskrcnn.train, detects in the eastern half with
i.ann.maskrcnn.detect, prints what was found against what is there, and draws
the detections over the image into a PNG (GRASS display commands, cairo driver).
"""
import json
import os
import sys
import time

import numpy as np

import grass.script as gs
from grass.script import array as garray

SIZE = 256  # cells per side of the scene; 1 m cells
EPOCHS = 4
COLORS = {"square": (230.0, 70.0, 70.0), "disk": (70.0, 70.0, 230.0)}


def scene(rng):
    """Image [SIZE, SIZE, 3] and objects [(class, row, col, radius)] that do not touch."""
    image = rng.normal(90, 12, (SIZE, SIZE, 3))
    yy, xx = np.mgrid[:SIZE, :SIZE]
    taken = np.zeros((SIZE, SIZE), bool)
    objects = []
    while len(objects) < 40:
        r = int(rng.integers(7, 13))
        cy, cx = (int(v) for v in rng.integers(r + 2, SIZE - r - 2, size=2))
        kind = ("square", "disk")[int(rng.integers(0, 2))]
        box = (abs(yy - cy) <= r + 3) & (abs(xx - cx) <= r + 3)
        if (box & taken).any():
            continue
        taken |= box
        if kind == "square":
            mask = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
        else:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        image[mask] = np.array(COLORS[kind]) + rng.uniform(-15, 15, 3)
        objects.append((kind, cy, cx, r))
    return np.clip(image, 0, 255), objects


def write_maps(image, objects):
    for band, name in enumerate(("demo_red", "demo_green", "demo_blue")):
        raster = garray.array(dtype=np.float64)
        raster[...] = image[:, :, band]
        raster.write(name, overwrite=True)
    lines = []
    for n, (kind, cy, cx, r) in enumerate(objects, start=1):
        north, south, west, east = SIZE - (cy - r), SIZE - (cy + r + 1), cx - r, cx + r + 1
        if kind == "square":
            ring = [(west, south), (west, north), (east, north), (east, south)]
        else:
            angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
            ring = [(cx + 0.5 + (r + 0.5) * np.cos(a), SIZE - cy - 0.5 + (r + 0.5) * np.sin(a))
                    for a in angles]
        ring.append(ring[0])
        lines.append("B {}\n".format(len(ring)) + "".join(" {} {}\n".format(*p) for p in ring))
        lines.append("C 1 1\n {} {}\n 1 {}\n".format(cx + 0.5, SIZE - cy - 0.5, n))
    gs.write_command("v.in.ascii", input="-", output="demo_objects", format="standard",
                     flags="n", stdin="".join(lines), overwrite=True, quiet=True)
    gs.run_command("v.db.addtable", map="demo_objects", columns="kind text", quiet=True)
    for kind in COLORS:
        cats = ",".join(str(n) for n, o in enumerate(objects, start=1) if o[0] == kind)
        gs.run_command("v.db.update", map="demo_objects", column="kind", value=kind,
                       where="cat in ({})".format(cats), quiet=True)


def main(work, png):
    started = time.monotonic()
    rng = np.random.default_rng(2026)
    image, objects = scene(rng)
    gs.run_command("g.region", n=SIZE, s=0, w=0, e=SIZE, res=1)
    write_maps(image, objects)
    written = time.monotonic()
    bands = "demo_red,demo_green,demo_blue"
    logs = os.path.join(work, "logs")
    gs.message("Training on the western half of the scene...")
    gs.run_command("g.region", n=SIZE, s=0, w=0, e=SIZE // 2, res=1)
    gs.run_command("i.ann.maskrcnn.train", input=bands, training_map="demo_objects",
                   class_column="kind", classes="square,disk", logs=logs, name="demo",
                   tile_size=128, overlap=32, backbone="resnet18", epochs=EPOCHS,
                   steps_per_epoch=30, images_per_gpu=2, rois_per_image=32,
                   learning_rate=0.01, seed=1, augment="flip_rotate")
    trained = time.monotonic()
    model = os.path.join(logs, "mask_rcnn_demo_{:04d}.h5".format(EPOCHS))
    gs.message("Detecting in the eastern half...")
    gs.run_command("g.region", n=SIZE, s=0, w=SIZE // 2, e=SIZE, res=1)
    report = os.path.join(work, "accuracy.json")
    gs.run_command("i.ann.maskrcnn.detect", input=bands, model=model, output="demo_found",
                   tile_size=128, overlap=32, reference="demo_objects",
                   reference_column="kind", report=report)
    found = gs.read_command("v.db.select", map="demo_found", columns="class,score,area",
                            separator="|", flags="c").split()
    there = [o for o in objects if o[2] >= SIZE // 2]  # centre in the eastern half
    print("\nIn the eastern half there are {} objects ({} squares, {} disks)".format(
        len(there), sum(o[0] == "square" for o in there), sum(o[0] == "disk" for o in there)))
    print("i.ann.maskrcnn.detect found {}:".format(len(found)))
    for kind in COLORS:
        print("  {}: {}".format(kind, sum(row.split("|")[0] == kind for row in found)))
    with open(report) as stream:
        figures = json.load(stream)
    print("Against the objects drawn: precision {precision:.2f}, recall {recall:.2f}, "
          "F1 {F1:.2f}, mask AP50 {AP50:.2f}, mAP {mAP:.2f} (table above)".format(**figures))
    draw(png, bands.split(","), "demo_found")
    print("The detections over the image: {}".format(png))
    print("Times: scene {:.0f} s, training {:.0f} s, detection, accuracy and drawing {:.0f} s"
          .format(written - started, trained - written, time.monotonic() - trained))


def draw(png, bands, found, outlines=None, pixels_per_cell=3):
    """The bands as RGB with outlines of vector areas in the current region, rendered
    to a PNG file without a monitor. outlines: [(vector map, SQL where or None,
    colour)], drawn in that order; by default the found objects' outlines (squares
    yellow, disks white). The bands get the grey255 colour table (0..255 as is)."""
    if outlines is None:
        outlines = [(found, "class = '{}'".format(kind), color)
                    for kind, color in (("square", "yellow"), ("disk", "white"))]
    region = gs.region()
    env = dict(os.environ, GRASS_RENDER_IMMEDIATE="cairo", GRASS_RENDER_FILE=png,
               GRASS_RENDER_WIDTH=str(round(pixels_per_cell * int(region["cols"]))),
               GRASS_RENDER_HEIGHT=str(round(pixels_per_cell * int(region["rows"]))),
               GRASS_RENDER_TRUECOLOR="TRUE", GRASS_RENDER_FILE_READ="TRUE")
    if os.path.exists(png):
        os.remove(png)
    for band in bands:
        gs.run_command("r.colors", map=band, color="grey255", quiet=True)
    gs.run_command("d.rgb", red=bands[0], green=bands[1], blue=bands[2], env=env, quiet=True)
    for vector, where, color in outlines:
        gs.run_command("d.vect", map=vector, type="area", color=color, fill_color="none",
                       width=2, where=where, env=env, quiet=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
