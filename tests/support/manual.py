"""The manual pages' examples as a test runs them (tests/integration/test_manual_examples.py).

code_blocks() reads every <div class="code"><pre> block of a page; substitute()
makes an example small, fast and local (the table is its docstring); commands()
and python_commands() tell the GRASS commands a block runs, and expect() what
each of them promises: maps, files, checkpoints. A command it does not know
fails the test, so that a new example cannot go unchecked.
"""
import ast
import html
import json
import math
import os
import re
import shlex
import time
from dataclasses import dataclass, field

CODE_BLOCK = re.compile(r'<div class="code"><pre>(.*?)</pre></div>', re.S)
# commands whose only promise is their exit status (0)
EXIT_STATUS_ONLY = {"export", "set", "g.region", "v.db.select", "v.info", "r.univar"}


def code_blocks(page_html):
    """The text of each code block, entities unescaped; fails on a <pre> outside one."""
    blocks = [html.unescape(text).strip("\n") for text in CODE_BLOCK.findall(page_html)]
    if page_html.count("<pre") != len(blocks):
        raise ValueError("the page has a <pre> that is not a <div class=\"code\"><pre> block")
    return blocks


def substitute(text, data, source=None, hosts=None):
    """The example as the test runs it.

    | in the manual               | in the test                                     |
    |-----------------------------|-------------------------------------------------|
    | /data                       | data, a temporary directory with the scene's    |
    |                             | files (tests/support/story.py)                  |
    | /path/to/i.ann.maskrcnn     | source, a copy of the source tree               |
    | epochs=E                    | epochs=ceil(E/20): 20 -> 1, 40 -> 2             |
    | mask_rcnn_<name>_<E>.h5     | mask_rcnn_<name>_<ceil(E/20)>.h5: the checkpoint|
    |                             | that the shortened run wrote for epoch E        |
    | steps_per_epoch=N           | steps_per_epoch=1                               |
    | validation_steps=N          | validation_steps=1                              |
    | backbone=resnet50/101/34    | backbone=resnet18                               |
    | model=coco                  | backbone=resnet18: from scratch, as the         |
    |                             | published file cannot be fetched here (the      |
    |                             | download: tests/integration/                    |
    |                             | test_train_pretrained.py)                       |
    | images_min_dim, _max_dim=N  | 64                                              |
    | tile_size=T                 | tile_size=T/4, at least 64: 256 -> 64, 512 -> 128|
    | overlap=O                   | overlap=O/2: 32 -> 16, 64 -> 32                 |
    | gpu_count=N                 | gpu_count=0: the CPU (no GPU here; replicas on  |
    |                             | logical devices: tests/unit/test_distribute.py) |
    | node1:12345, node2:12345    | hosts: 127.0.0.1 and free ports (TF_CONFIG)     |

    Values may be quoted (Python keyword arguments). Region settings (g.region)
    stay as they are: the scene lies where the manual says.
    """
    def option(name, new_value):
        pattern = r"\b({})=([\"']?)(\d+|resnet\d+)\2".format(name)
        return lambda s: re.sub(pattern, lambda m: "{}={q}{}{q}".format(
            m.group(1), new_value(m.group(3)), q=m.group(2)), s)

    steps = [
        option("epochs", lambda v: math.ceil(int(v) / 20)),
        option("steps_per_epoch", lambda v: 1),
        option("validation_steps", lambda v: 1),
        option("backbone", lambda v: "resnet18"),
        lambda s: re.sub(r"\bmodel=([\"']?)coco\1", r"backbone=\1resnet18\1", s),
        option("images_min_dim", lambda v: 64),
        option("images_max_dim", lambda v: 64),
        option("tile_size", lambda v: max(64, int(v) // 4)),
        option("overlap", lambda v: int(v) // 2),
        option("gpu_count", lambda v: 0),
        lambda s: re.sub(r"(mask_rcnn_\w+?_)(\d{4})\.h5",
                         lambda m: "{}{:04d}.h5".format(m.group(1),
                                                        math.ceil(int(m.group(2)) / 20)), s),
        lambda s: re.sub(r"(?<![\w.])/data(?=/|\b)", lambda m: str(data), s),
    ]
    if source is not None:
        steps.append(lambda s: s.replace("/path/to/i.ann.maskrcnn", str(source)))
    for host, address in (hosts or {}).items():
        steps.append(lambda s, host=host, address=address: s.replace(host, address))
    for step in steps:
        text = step(text)
    return text


def is_python(block):
    return block.startswith("#!/usr/bin/env python3")


def logical_lines(block):
    """[(line, heredoc body or None)]: continuations joined, comments and blanks dropped."""
    lines, raw = [], block.replace("\\\n", " ").splitlines()
    index = 0
    while index < len(raw):
        line = raw[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        body = None
        heredoc = re.search(r"<<-?\s*['\"]?(\w+)['\"]?\s*$", line)
        if heredoc:
            end = raw.index(heredoc.group(1), index)
            body, index = "\n".join(raw[index:end]) + "\n", end + 1
        lines.append((line, body))
    return lines


def commands(block):
    """[tokens] of the shell commands of a block (a heredoc's body is not run)."""
    return [shlex.split(line) for line, _ in logical_lines(block)]


def python_commands(source):
    """(mapset path of its grass_session Session, [tokens] of its run_command calls)."""
    tree = ast.parse(source)
    constants = {}
    for node in tree.body:  # NAME = "..." and NAME, OTHER = "...", "..."
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
            pairs = zip(target.elts, value.elts) if isinstance(target, ast.Tuple) and \
                isinstance(value, ast.Tuple) else [(target, value)]
            for name, item in pairs:
                if isinstance(name, ast.Name) and isinstance(item, ast.Constant):
                    constants[name.id] = item.value

    def value(node):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and node.id in constants:
            return constants[node.id]
        return None

    mapset, calls = None, []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", getattr(node.func, "id", None))
        keywords = {k.arg: value(k.value) for k in node.keywords}
        if name == "Session":
            mapset = os.path.join(keywords["gisdb"], keywords["location"],
                                  keywords.get("mapset") or "PERMANENT")
        elif name in ("run_command", "read_command", "write_command", "parse_command"):
            tokens = [value(node.args[0])]
            for key, item in keywords.items():
                tokens.append("-" + item if key == "flags" else "{}={}".format(key, item))
            calls.append((node.lineno, tokens))
    return mapset, [tokens for _, tokens in sorted(calls, key=lambda call: call[0])]


def mapset_of(env):
    """The mapset directory of the GRASS session of env (its GISRC file)."""
    with open(env["GISRC"]) as stream:
        rc = dict(line.split(":", 1) for line in stream if ":" in line)
    return os.path.join(*(rc[key].strip() for key in ("GISDBASE", "LOCATION_NAME", "MAPSET")))


def expand(word, env):
    return re.sub(r"\$(\w+)|\$\{(\w+)\}", lambda m: env.get(m.group(1) or m.group(2), ""),
                  word)


@dataclass
class Expectations:
    """What the commands of a block promise, checked once the block has run."""

    env: dict
    started: float = field(default_factory=time.time)
    maps: list = field(default_factory=list)  # [mapset, kind, {names: any one}, why]
    absent: list = field(default_factory=list)  # (mapset, kind, name, why)
    files: list = field(default_factory=list)  # (path, check(path) -> bool, why)

    def map(self, mapset, kind, names, why):
        if mapset is not None:  # None: a temporary mapset, gone with its maps
            self.maps.append([mapset, kind, set(names), why])

    def file(self, path, why, check=os.path.exists):
        self.files.append((path, check, why))

    def written(self, path, why):
        self.file(path, why, lambda p: os.path.isfile(p)
                  and os.path.getmtime(p) >= self.started - 1)

    def failures(self):
        found = []
        for mapset, kind, names, why in self.maps:
            if not any(map_exists(mapset, kind, name) for name in names):
                found.append("{}: no {} map {} in {}".format(why, kind, "/".join(sorted(names)),
                                                             mapset))
        for mapset, kind, name, why in self.absent:
            if map_exists(mapset, kind, name):
                found.append("{}: {} map {} still in {}".format(why, kind, name, mapset))
        for path, check, why in self.files:
            if not check(path):
                found.append("{}: {} is not as promised".format(why, path))
        return found

    def expect(self, tokens, mapset):
        """Add what one command (shell words) promises when run in mapset."""
        words = [expand(word, self.env) for word in tokens]
        redirect = words[words.index(">") + 1] if ">" in words else None
        words = [w for i, w in enumerate(words) if not (w in (">", "<<") or i > 0 and
                                                        words[i - 1] in (">", "<<"))]
        module, why = words[0], " ".join(tokens)
        flags = {w.lstrip("-") for w in words[1:] if w.startswith("-") and "=" not in w}
        options = dict(w.split("=", 1) for w in words[1:] if "=" in w and
                       not w.startswith("-"))
        if redirect:
            self.file(redirect, why)
        if module in EXIT_STATUS_ONLY or (module in ("echo", "cat") and redirect):
            return
        handler = HANDLERS.get(module)
        if handler is None:
            raise AssertionError("no promise known for {!r}: add it to tests/support/manual.py"
                                 .format(why))
        handler(self, words, flags, options, mapset, why)


def map_exists(mapset, kind, name):
    element = {"raster": ("cell", name), "vector": ("vector", name, "head")}[kind]
    return os.path.exists(os.path.join(mapset, *element))


def _mkdir(exp, words, flags, options, mapset, why):
    for path in words[1:]:
        if not path.startswith("-"):
            exp.file(path, why, os.path.isdir)


def _g_extension(exp, words, flags, options, mapset, why):
    scripts = os.path.join(exp.env["GRASS_ADDON_BASE"], "scripts")
    for module in ("i.ann.maskrcnn.train", "i.ann.maskrcnn.detect"):
        exp.file(os.path.join(scripts, module), why, lambda p: os.access(p, os.X_OK))


def _import(exp, words, flags, options, mapset, why):
    kind = "raster" if words[0].startswith("r.") else "vector"
    output = options["output"]
    exp.map(mapset, kind, [output, output + ".1"] if kind == "raster" else [output], why)


def _g_rename(exp, words, flags, options, mapset, why):
    for kind in ("raster", "vector"):
        names = options.get(kind, "").split(",") if options.get(kind) else []
        for old, new in zip(names[::2], names[1::2]):
            for promised in exp.maps:
                if promised[0] == mapset and promised[1] == kind and old in promised[2]:
                    promised[2] = {new}
            exp.map(mapset, kind, [new], why)
            exp.absent.append((mapset, kind, old, why))


def _read_json(path):
    with open(path) as stream:
        return json.load(stream)


def _train(exp, words, flags, options, mapset, why):
    # what the test shrinks must be named: the defaults (resnet101, 200 epochs of
    # 3000 steps, images padded to 1280 cells) would take hours
    needed = ["epochs", "steps_per_epoch"]
    needed += [] if "model" in options else ["backbone"]
    needed += ["images_max_dim"] if "training_dataset" in options else []
    missing = [key for key in needed if key not in options]
    if missing:
        raise AssertionError("{}: give {} (the test shrinks them)".format(why, ", ".join(
            key + "=" for key in missing)))
    logs, name, epochs = options["logs"], options["name"], int(options["epochs"])
    checkpoint = os.path.join(logs, "mask_rcnn_{}_{:04d}".format(name, epochs))
    exp.written(checkpoint + ".h5", why)
    exp.file(checkpoint + ".json", why, lambda p: _read_json(p)["epoch"] == epochs)
    if "s" in flags:
        exp.written(os.path.join(logs, "held_out.txt"), why)
    if "chips_directory" in options:
        exp.file(options["chips_directory"], why, lambda p: bool(os.listdir(p)))


def _detect(exp, words, flags, options, mapset, why):
    exp.map(mapset, "vector", [options["output"]], why)
    rasters = [options[key] for key in ("instances", "scores") if key in options]
    if rasters:
        exp.map(mapset, "raster", rasters, why)
    if "report" in options:
        keys = {"AP50", "AP75", "mAP", "precision", "recall", "F1", "classes"}
        exp.file(options["report"], why, lambda p: keys <= set(_read_json(p)))


def _grass(exp, words, flags, options, mapset, why):
    if "c" in flags:  # grass -e -c CRS PATH: a new project
        exp.file(os.path.join(words[-1], "PERMANENT", "DEFAULT_WIND"), why)
        return
    if "exec" not in flags:
        raise AssertionError("{}: only grass -c and grass --exec are known".format(why))
    # grass --tmp-mapset PROJECT: maps made there go with the mapset
    project = words[1] if "tmp-mapset" not in flags else None
    rest = words[words.index("--exec") + 1:]
    if rest[0] == "bash":
        exp.file(rest[1], why)
        with open(rest[1]) as stream:
            for tokens in commands(stream.read()):
                exp.expect(tokens, project)
    else:
        exp.expect(rest, project)


HANDLERS = {"mkdir": _mkdir, "g.extension": _g_extension, "r.import": _import,
            "r.in.gdal": _import, "v.import": _import, "v.in.ogr": _import,
            "g.rename": _g_rename, "i.ann.maskrcnn.train": _train,
            "i.ann.maskrcnn.detect": _detect, "grass": _grass}
