"""``lsi kafka``: run a local single-node Kafka broker (up, down, status, logs) and Kafka's own
command-line tools of the same release (tool)."""

from __future__ import annotations

import argparse

from lsi.cli.common import at_least

_ACTIONS = ["up", "down", "status", "logs", "tool"]
_TOOL_HELP = (
    "tool: the name of one of Kafka's tools (kafka-topics, kafka-consumer-groups, "
    "kafka-configs, kafka-console-consumer …; `lsi kafka tool --list` names them all) and its "
    "arguments, passed through unchanged. lsi adds --bootstrap-server $LSI_BROKERS when the "
    "tool takes it and no --bootstrap-server (or --bootstrap-controller) is given, and, when "
    "LSI_KAFKA_SECURITY_PROTOCOL is not PLAINTEXT, a client properties file with the "
    "tool's flag (--command-config, --consumer.config …) unless that flag is given"
)


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lines", type=at_least(0), default=50, help="log lines to show (logs)")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    k = sub.add_parser("kafka", help="run a local single-node Kafka broker (KRaft) and its tools")
    k.add_argument("action", choices=_ACTIONS)
    _add_options(k)
    k.add_argument("tool_args", nargs=argparse.REMAINDER, metavar="NAME ARGS", help=_TOOL_HELP)
    k.set_defaults(func=cmd_kafka)


def _late_options(action: str, words: list[str], args: argparse.Namespace) -> None:
    """Parse the options that follow an action other than ``tool`` (``logs --lines 3``): the
    tool's arguments, a REMAINDER, take every word after the action."""
    late = argparse.ArgumentParser(prog=f"lsi kafka {action}", add_help=False)
    _add_options(late)
    late.parse_args(words, namespace=args)


def cmd_kafka(args: argparse.Namespace) -> int:
    if args.action == "tool":
        return cmd_tool(args.tool_args)
    if args.tool_args:
        _late_options(args.action, args.tool_args, args)

    from lsi.kafka.broker import BrokerSettings, KafkaBroker

    broker = KafkaBroker(BrokerSettings.from_env())
    if args.action == "up":
        st = broker.up()
        print(f"Kafka {st.version} is up at {st.bootstrap} (pid {st.pid}, data {st.data_dir})")
    elif args.action == "down":
        stopped = broker.down()
        print("Kafka stopped" if stopped else "Kafka was not running")
    elif args.action == "status":
        st = broker.status()
        state = "running" if st.running else "stopped"
        answer = ", answering" if st.answering else (", not answering" if st.running else "")
        print(f"Kafka {st.version}: {state}{answer} at {st.bootstrap} (pid {st.pid}); "
              f"log {st.log_file}")  # fmt: skip
        return 0 if st.running and st.answering else 1
    elif args.action == "logs":
        for line in broker.tail_logs(args.lines):
            print(line)
    return 0


def cmd_tool(words: list[str]) -> int:
    """``lsi kafka tool NAME ARGS…``, ``--list`` (the names), ``--help`` (usage and names)."""
    import sys

    from lsi.kafka.broker.tools import TOOLS, run_tool

    usage = "usage: lsi kafka tool NAME [ARGS ...] | --list"
    if words[:1] == ["--list"]:
        print("\n".join(TOOLS))
        return 0
    if words[:1] in (["-h"], ["--help"]):
        print(f"{usage}\n\n{_TOOL_HELP}.\n\nthe tools: {', '.join(TOOLS)}")
        return 0
    if not words:
        print(f"{usage}\nlsi kafka: error: name a Kafka tool: {', '.join(TOOLS)}", file=sys.stderr)
        return 2
    return run_tool(words[0], words[1:])
