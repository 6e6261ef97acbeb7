"""``flywheel-chaos lab build | up | status | down | node stop|start NAME``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from harness.cli.output import add_command, err, out, print_json
from harness.errors import EXIT_FAILED, EXIT_OK


def _lab(args: argparse.Namespace) -> Any:
    from harness.lab.cluster import Lab
    from harness.lab.paths import LabPaths

    return Lab(LabPaths.from_env(args.lab_dir), topology=getattr(args, "topology", None))


def _progress(args: argparse.Namespace) -> Any:

    started = time.monotonic()

    def report(message: str) -> None:
        if not args.json:
            err.print(f"[dim]{time.monotonic() - started:6.1f}s[/] {message}")

    return report


def _print_status(args: argparse.Namespace, status: dict[str, Any]) -> None:
    from rich.table import Table

    if args.json:
        print_json(status)
        return
    out.print(
        f"lab {status['lab_dir']}: {'[green]up[/]' if status['up'] else '[red]down[/]'}"
        f"  topology={status['topology']}  kubernetes {status['versions']['kubernetes']}"
        f"  etcd {status['versions']['etcd']}"
    )
    table = Table(title_justify="left")
    table.add_column("component")
    table.add_column("pid", justify="right")
    table.add_column("state")
    for component in status["components"]:
        state = "[green]healthy[/]" if component.get("healthy") else "[yellow]unhealthy[/]"
        if not component["running"]:
            state = "[red]stopped[/]"
        elif component.get("frozen"):
            state = "[yellow]frozen[/]"
        elif component.get("power") == "off":
            state = "[red]powered off[/]"
        table.add_row(component["name"], str(component["pid"]), state)
    if status["components"]:
        out.print(table)
    for node in status["nodes"]:
        extra = " (cordoned)" if node["unschedulable"] else ""
        taints = f" taints={','.join(node['taints'])}" if node["taints"] else ""
        out.print(f"node {node['name']}: Ready={node['ready']}{extra}{taints}")
    for name, value in status["endpoints"].items():
        if value:
            out.print(f"{name}: {value}")
    if status.get("up_seconds"):
        out.print(f"started in {status['up_seconds']:.1f}s")


def _cmd_build(args: argparse.Namespace) -> int:
    from harness.lab.build import build
    from harness.lab.paths import bin_dir

    started = time.monotonic()
    timings = build(progress=_progress(args), rustfs=args.rustfs)
    total = time.monotonic() - started
    if args.json:
        print_json({"bin_dir": str(bin_dir()), "timings_s": timings, "total_s": round(total, 1)})
    else:
        out.print(f"lab binaries in {bin_dir()} ({total:.0f}s)")
    return EXIT_OK


def _cmd_up(args: argparse.Namespace) -> int:
    lab = _lab(args)
    status = lab.up(_progress(args))
    _print_status(args, status)
    if not args.json:
        out.print(
            f"next: source {status['endpoints']['env']} && chaos run experiments/state-authority-smoke.yaml"
        )
    return EXIT_OK if status["up"] else EXIT_FAILED


def _cmd_status(args: argparse.Namespace) -> int:
    status = _lab(args).status()
    _print_status(args, status)
    return EXIT_OK if status["up"] else EXIT_FAILED


def _cmd_down(args: argparse.Namespace) -> int:
    _lab(args).down(_progress(args), clean=args.clean)
    if args.json:
        json.dump({"up": False}, sys.stdout)
        sys.stdout.write("\n")
    return EXIT_OK


def _cmd_node(args: argparse.Namespace) -> int:

    lab = _lab(args)
    act = {"stop": lab.node_stop, "crash": lab.node_crash, "start": lab.node_start}[args.action]
    pids = act(args.node)
    if args.json:
        print_json({"node": args.node, "action": args.action, "pids": pids})
    else:
        verb = {
            "stop": "frozen (a hung node: no heartbeats, pods stopped)",
            "crash": "powered off (agent and pods killed)",
            "start": "running again",
        }[args.action]
        out.print(f"node {args.node} {verb}: {len(pids)} process group(s)")
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the lab commands to the top-level parser."""
    lab = add_command(
        sub, common, "lab", help="the local lab: a real control plane with process-backed nodes"
    )
    lab.add_argument(
        "--lab-dir", default=None, help="lab state directory (default: FLYWHEEL_LAB_DIR or .lab/)"
    )
    verbs = lab.add_subparsers(
        dest="lab_command", metavar="ACTION", required=True, parser_class=type(lab)
    )

    build = add_command(
        verbs,
        common,
        "build",
        help="build etcd, the control plane and OpenTofu (Go module proxy) and RustFS (crates.io)",
    )
    build.add_argument(
        "--rustfs",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also build RustFS 1.0.1 from crates.io (about an hour on 2 cores, once)",
    )
    build.set_defaults(handler=_cmd_build)

    up = verbs.add_parser("up", parents=[common], help="start the lab and apply a topology")
    up.add_argument(
        "--topology",
        default=None,
        help="topology under lab/topologies: interim (the live read), ha-seaweedfs or "
        "ha-rustfs (replicated candidates; ha is an alias of ha-seaweedfs for one release); "
        "default: the one the lab's kept data belongs to, else interim",
    )
    up.set_defaults(handler=_cmd_up)

    status = verbs.add_parser(
        "status", parents=[common], help="each component's health and the nodes"
    )
    status.set_defaults(handler=_cmd_status)

    down = verbs.add_parser("down", parents=[common], help="stop everything in reverse order")
    down.add_argument("--clean", action="store_true", help="also delete the lab's data")
    down.set_defaults(handler=_cmd_down)

    node = add_command(
        verbs,
        common,
        "node",
        help="freeze a node (stop), power it off (crash), or bring it back (start)",
    )
    node.add_argument("action", choices=["stop", "crash", "start"])
    node.add_argument("node", metavar="NAME")
    node.set_defaults(handler=_cmd_node)
