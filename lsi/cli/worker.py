"""``lsi worker``: run a stream worker."""

from __future__ import annotations

import argparse

from lsi.cli.common import add_brokers, add_setting_flags, settings_from
from lsi.errors import LsiError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    w = sub.add_parser(
        "worker", help="run a stream worker (events -> state, scores, log; item statistics)"
    )
    add_brokers(w)
    add_setting_flags(w, "web_port", "web_host", "data_dir", "emit_policy")
    w.add_argument("--loglevel", default="warning", choices=["debug", "info", "warning", "error"])
    w.add_argument("--parent-pid", type=int, metavar="PID",
                   help="stop when process PID (the tool that started this worker) exits; "
                        "Linux only")  # fmt: skip
    w.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    from lsi.kafka.clients import ensure_topics, wait_for_group_coordinator
    from lsi.kafka.security import describe
    from lsi.serving.worker_process import die_with_parent
    from streams.app import run_worker

    if args.parent_pid is not None and not die_with_parent(args.parent_pid):
        raise LsiError(f"the process that started this worker (pid {args.parent_pid}) has "
                       "already exited; start the worker again, or drop --parent-pid")  # fmt: skip
    settings = settings_from(args)
    _check_web_port(settings.web_bind or settings.advertised_host, settings.web_port)
    ensure_topics(settings, changelogs=True)
    wait_for_group_coordinator(settings)
    print(f"lsi worker: brokers {settings.brokers} ({describe(settings)}), "
          f"web {settings.web_url}, tables in {settings.data_dir}", flush=True)  # fmt: skip
    run_worker(settings, loglevel=args.loglevel)
    return 0


def _check_web_port(host: str, port: int) -> None:
    """Fail before joining the group if the web port is taken (Faust would log a traceback
    later, after the worker had already started)."""
    import socket

    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise LsiError(f"cannot serve HTTP on {host}:{port} ({exc.strerror}): another "
                           "worker may be using it; give this one --web-port (or LSI_WEB_PORT)"
                           " a free port") from None  # fmt: skip
