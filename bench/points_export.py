"""The exported points graph: the module once (a graph function both stages call) or twice.

    python bench/points_export.py [--out bench/results/points_export.json] [--rounds 5]

A two-stage model on MobileNet v1 (locate at 160 px, points at 224 px on the crop, both at the
stride-16 tap; untrained heads, whose points are as costly as trained ones, min_side 0.2 so the
crop is a real one) is written by export/points_graph.py both ways; baseline: the module imported
once a stage (`share_trunk = False`). Each graph runs on the mouse frames (640x480) in a session,
fed decoded photos: ms per frame at batch 1 and 8, the ways alternating, best of --rounds. The
one-stage graph (224 px) gives the cost of the second stage. Also each graph's bytes and how far
apart the ways' points are.
"""

from __future__ import annotations

import numpy as np

import common

MOUSE = common.SHARED / "datasets" / "keypoints" / "openfield-mouse"


def session_of(graph_def):
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    return tf.compat.v1.Session(graph=graph)


def main() -> None:
    parse = common.parser(__doc__)
    parse.add_argument("--rounds", type=int, default=5)
    args = parse.parse_args()
    common.quiet_tensorflow()

    from tensorguess.data.images import read_image
    from tensorguess.export import points_graph
    from tensorguess.features.modules import resolve
    from tensorguess.features.spatial import SpatialTrunk
    from tensorguess.head.points_model import PointsModel, PointsStage
    from tensorguess.head.points_net import HeatmapHead

    results = {"machine": common.machine()}
    spec, loaded = resolve(str(common.SHARED / "models" / "mobilenet_v1_100_224" / "feature_vector"))
    trunk = SpatialTrunk(spec, loaded, 224)
    heads = [HeatmapHead(trunk.shape[-1], 4, seed=seed) for seed in (1, 2)]
    locate, points = PointsStage(heads[0], 160, trunk.tap.node), PointsStage(heads[1], 224, trunk.tap.node)
    models = {"one stage": PointsModel(list("abcd"), [], [], points=points),
              "two stages, module once": PointsModel(list("abcd"), [], [], points=points, locate=locate,
                                                     min_side=0.2)}
    models["two stages, module twice"] = models["two stages, module once"]
    graphs = {}
    for name, model in models.items():
        points_graph.share_trunk = name != "two stages, module twice"
        seconds, graphs[name] = common.timed(points_graph.points_graph, spec, loaded, model)
        results.setdefault("graph_mb", {})[name] = round(len(graphs[name].SerializeToString()) / 1e6, 2)
        results.setdefault("build_s", {})[name] = round(seconds, 2)
    points_graph.share_trunk = True
    frames = np.stack([read_image(path) for path in sorted(MOUSE.glob("*.png"))[:8]])
    sessions = {name: session_of(graph_def) for name, graph_def in graphs.items()}
    for batch, repeats in ((1, 8), (8, 2)):  # a round runs 8 or 16 frames: common.alternate keeps 10 ms

        def way(session, batch=batch, repeats=repeats):
            feed = {"photos:0": frames[:batch]}
            return lambda _round: [session.run("points:0", feed) for _ in range(repeats)]

        ways = {name: way(session) for name, session in sessions.items()}
        for run in ways.values():
            run(0)  # warmed: grappler's rewrite and the first allocation are not timed
        best, _ = common.alternate(ways, args.rounds).best()
        results[f"ms_per_frame_batch_{batch}"] = {name: round(1000 * s / (batch * repeats), 1)
                                                  for name, s in best.items()}
    once, twice = (sessions[name].run("points:0", {"photos:0": frames})
                   for name in ("two stages, module once", "two stages, module twice"))
    results["once_vs_twice_max_px"] = float(np.abs(once - twice).max())
    common.finish(results, args.out)


if __name__ == "__main__":
    main()
