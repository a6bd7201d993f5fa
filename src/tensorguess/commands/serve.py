"""serve: a classes or a points model over HTTP (an API, and a page with a live camera)."""

from __future__ import annotations

import argparse
import os

from tensorguess.commands.common import dir_argument, graph_flags, model_of, open_scorer, warn
from tensorguess.errors import UsageError

DESCRIPTION = ("Serve the model in DIR (classes or points) over HTTP: POST /predict, TF Serving's "
               "POST /v1/models/NAME:predict, GET /labels, GET /healthz, and a page at /.")


def add_arguments(serve: argparse.ArgumentParser) -> None:
    from tensorguess.serve.limits import Limits

    dir_argument(serve)
    serve.add_argument("--port", type=int, default=8080, help="TCP port (default: 8080; 0: any free one)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0: every "
                       "network)")
    limits = Limits()
    serve.add_argument("--queue_size", type=int, default=limits.queue_size,
                       help="photos waiting to be scored before requests get 503 "
                       f"(default: {limits.queue_size})")
    serve.add_argument("--batch_wait_ms", type=float, default=limits.batch_wait_ms,
                       help="how long a photo waits for others to be scored with it "
                       f"(default: {limits.batch_wait_ms:g})")
    serve.add_argument("--max_body_mb", type=float, default=limits.max_body_mb,
                       help=f"largest request body in MB (default: {limits.max_body_mb:g})")
    serve.add_argument("--timeout", type=float, default=limits.timeout_s,
                       help=f"seconds to receive a request and to score it (default: {limits.timeout_s:g})")
    serve.add_argument("--header_timeout", type=float, default=limits.header_timeout_s,
                       help="seconds a connection has to send a request's headers, after it opens or after "
                       f"its last answer; then it is closed (default: {limits.header_timeout_s:g})")
    serve.add_argument("--allowed_hosts", default="",
                       help="more host names the server answers to, separated by commas ('*': any), for "
                       "a name of this machine or a proxy in front (default: only the addresses it "
                       "listens on; on 127.0.0.1 also localhost and [::1])")
    serve.add_argument("--no_token", action="store_true",
                       help="serve beyond this machine (--host other than loopback) without a token; "
                       "otherwise the token is taken from TG_SERVE_TOKEN, and clients send "
                       "'Authorization: Bearer TOKEN' (the page: open /?token=TOKEN once)")
    # The address users reach the server at, when it differs from --host: serve.sh passes the host
    # side of Docker's published port, the container listening on 0.0.0.0.
    serve.add_argument("--shown_host", help=argparse.SUPPRESS)
    graph_flags(serve)


def run(args) -> int:
    import math

    from tensorguess.serve import server
    from tensorguess.serve.limits import Limits

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be a TCP port, 0 to 65535, not {args.port}")
    for flag, value, least in (("--queue_size", args.queue_size, 1),
                               ("--batch_wait_ms", args.batch_wait_ms, 0),
                               ("--max_body_mb", args.max_body_mb, 0.001),
                               ("--timeout", args.timeout, 0.001),
                               ("--header_timeout", args.header_timeout, 0.001)):
        if not (math.isfinite(value) and value >= least):
            raise UsageError(f"{flag} must be at least {least:g}, not {value:g}")
    limits = Limits(max_batch=args.batch_size, batch_wait_ms=args.batch_wait_ms, queue_size=args.queue_size,
                    max_body_mb=args.max_body_mb, timeout_s=args.timeout,
                    header_timeout_s=args.header_timeout)
    access = access_of(args)
    kind = model_of(args)
    build_app = kind.function("serve_app")
    with open_scorer(args, kind) as classifier:
        camera = None
        if getattr(args, "engine", "local") == "local":
            from tensorguess.serve.camera_model import camera_model, points_camera_model

            camera = points_camera_model(classifier, args.dir, args.model) if kind.name == "points" \
                else camera_model(classifier, args.dir, args.model, args.output_labels)
        try:
            app = build_app(classifier, limits, access=access, camera=camera)
            server.run(app, args.host, args.port, str(args.dir / args.output_graph),
                       say=lambda line: print(line, flush=True), warn=warn,
                       shown_host=args.shown_host, timeout_s=args.timeout,
                       header_timeout_s=args.header_timeout, needs_token=access.token is not None,
                       then=[camera.said] if camera else [])
        finally:
            if camera is not None:
                camera.close()
    return 0


def access_of(args):
    """serve's Access: the hosts it answers to, and its token (TG_SERVE_TOKEN), which a server
    reached beyond this machine must have unless --no_token says otherwise."""
    from tensorguess.serve.access import TOKEN_ENV, Access, AccessError, is_loopback

    reached_at = args.shown_host or args.host  # in Docker, the address the port is published on
    token = os.environ.get(TOKEN_ENV) or None
    if token and args.no_token:
        raise UsageError(f"{TOKEN_ENV} is set and --no_token is given; choose one")
    if not token and not args.no_token and not is_loopback(reached_at):
        raise UsageError(f"listening on {reached_at}, beyond this machine, needs a token: set {TOKEN_ENV} "
                         "(clients send 'Authorization: Bearer TOKEN'; the page: open /?token=TOKEN once), "
                         "or give --no_token to answer anyone who can reach it")
    hosts = tuple(host for host in (args.host, args.shown_host) if host)
    allowed = tuple(name.strip() for name in args.allowed_hosts.split(",") if name.strip())
    try:
        return Access(hosts=hosts, allowed_hosts=allowed, token=token)
    except AccessError as problem:
        raise UsageError(str(problem)) from None
