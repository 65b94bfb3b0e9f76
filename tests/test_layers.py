"""The package's shape: no import circle, and a fold's config walks down the layers, not back up."""

import ast
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))


def import_graph() -> dict[str, set[str]]:
    """{module: the ageest modules it imports}, at module level or inside functions alike."""
    graph = {}
    for p in (ROOT / "ageest").rglob("*.py"):
        mod = ".".join(("ageest", *p.relative_to(ROOT / "ageest").with_suffix("").parts)).removesuffix(".__init__")
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ageest"):
                # `from ageest import methods` imports the module ageest.methods
                deps |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("ageest")}
        graph[mod] = deps
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle among the modules below the package root, or None."""
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for d in sorted(graph[m]):
            if d == "ageest":  # the package root (version strings) imports nothing of ours back
                continue
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state:
                found = visit(d, path + [d])
                if found:
                    return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m, [m])
            if found:
                return found
    return None


def test_no_import_circle():
    graph = import_graph()
    assert "ageest.data.records" in graph and graph["ageest.data.reader"] >= {"ageest.data.fgnet", "ageest.data.manifest"}
    assert cycle(graph) is None, " -> ".join(cycle(graph))
    # The check finds a circle where there is one.
    assert cycle({**graph, "ageest.data.records": graph["ageest.data.records"] | {"ageest.data.reader"}})


@pytest.mark.slow
def test_a_folds_config_never_climbs_back_up_a_layer_and_its_data_is_fingerprinted_once(monkeypatch):
    import config_walk
    from ageest.data import fingerprint
    from ageest.pipeline import cache
    from ageest.config import load_config
    from ageest.data.synth import make_synthetic
    from ageest.train.fold import run_fold

    computed, digests = [], []
    real, real_digest = fingerprint.data_fingerprint, fingerprint.landmarks_digest
    monkeypatch.setattr(fingerprint, "data_fingerprint", lambda *a, **k: computed.append(1) or real(*a, **k))
    for module in (fingerprint, cache):  # cache.py imports it by name
        monkeypatch.setattr(module, "landmarks_digest", lambda *a, **k: digests.append(1) or real_digest(*a, **k))
    with tempfile.TemporaryDirectory() as tmp:
        make_synthetic(tmp, seed=0, n_subjects=3)
        config = load_config(None, ["epochs=1", "freeze_epochs=0", "image_size=32", "pretrained=none",
                                    "arch=resnet18", "batch_size=16", "threads=2", "align=landmarks"])
        calls = config_walk.walk(config, lambda: run_fold(Path(tmp) / "images", 1, "softmax", Path(tmp) / "o",
                                                          config, log=lambda *_: None))
    assert len(computed) == 1  # the fold's, handed to the cache's path and key
    assert len(digests) == 1  # the landmarks it aligns on: in the fingerprint and the cache's key, read once
    s = config_walk.summary(calls)
    assert len(s["stays"]) >= 10 and "ageest/data/splits.py" in s["files"]  # it saw the walk
    assert s["climbs"] == [], s["climbs"]
    # A call from the data layer up into train/ is what it counts.
    fake = [(str(ROOT / "ageest/data/splits.py"), str(ROOT / "ageest/train/outputs.py"), "fold_identity")]
    assert len(config_walk.summary(fake)["climbs"]) == 1
