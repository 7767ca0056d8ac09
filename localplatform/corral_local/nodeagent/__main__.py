"""`python -m corral_local.nodeagent`: run the node agent, or drive a running one.

    python -m corral_local.nodeagent --kubeconfig K --node eu-1:region=eu,zone=eu-a \\
        --node us-1:region=us,zone=us-a --state-dir /tmp/agent
    python -m corral_local.nodeagent chaos --socket /tmp/agent/control.sock kill-pod ns/name

Used by `make dev` and by the e2e session fixture (tests/e2e/_nodes.py).
SIGTERM or Ctrl-C stops every container and removes the pod network it made.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType


def _run(argv: list[str]) -> int:
    from corral_local.nodeagent._agent import AgentConfig, NodeAgent
    from corral_local.nodeagent._control import serve
    from corral_local.nodeagent._nodespec import parse_nodes
    from corral_local.nodeagent._pod import Backoff

    parser = argparse.ArgumentParser(
        prog="python -m corral_local.nodeagent",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="admin kubeconfig of the cluster (default $KUBECONFIG)",
    )
    parser.add_argument(
        "--node",
        action="append",
        default=[],
        metavar="NAME[:k=v,...]",
        help="a node: region=, zone=, instance-type= set the well-known labels, cpu=/memory=/pods= the capacity, other keys are labels (repeatable)",
    )
    parser.add_argument(
        "--nodes",
        nargs="+",
        default=[],
        metavar="SPEC",
        help="several nodes at once: a count N (node-1..node-N) or node specs",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("CORRAL_NODEAGENT_DIR", "/tmp/corral-nodeagent")),
        help="pod folders, container logs and control.sock live here",
    )
    parser.add_argument(
        "--images",
        type=Path,
        help="extra image->command mapping YAML, tried before the built-in images.yaml",
    )
    parser.add_argument(
        "--network",
        choices=["auto", "bridge", "host"],
        default="auto",
        help="bridge: a netns + veth per pod on --bridge (needs root); host: pods share the host network; auto: bridge when possible",
    )
    parser.add_argument("--bridge", default="corral0")
    parser.add_argument("--pod-cidr", default="10.244.0.0/16")
    parser.add_argument(
        "--crash-backoff-base",
        type=float,
        default=10.0,
        help="seconds before the first restart after a crash (doubles, kubelet: 10)",
    )
    parser.add_argument(
        "--crash-backoff-max",
        type=float,
        default=300.0,
        help="cap of the crash back-off in seconds (kubelet: 300)",
    )
    parser.add_argument(
        "--lease-renew", type=float, default=10.0, help="seconds between node Lease renewals"
    )
    parser.add_argument(
        "--ready-file",
        type=Path,
        help="written (JSON: pid, socket, network) once the nodes are registered",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s nodeagent %(levelname)s %(message)s",
    )
    if not args.kubeconfig:
        parser.error("--kubeconfig is required (or set KUBECONFIG)")
    try:
        nodes = parse_nodes(args.nodes + [n.replace(";", "") for n in args.node])
    except ValueError as exc:
        parser.error(str(exc))
    if not nodes:
        nodes = parse_nodes(["1"])
    agent = NodeAgent(
        AgentConfig(
            kubeconfig=Path(args.kubeconfig),
            nodes=nodes,
            state_dir=args.state_dir,
            images_file=args.images,
            bridge=args.bridge,
            pod_cidr=args.pod_cidr,
            lease_renew_s=args.lease_renew,
            backoff=Backoff(args.crash_backoff_base, args.crash_backoff_max),
            network=args.network,
        )
    )
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.start()
    socket_path = args.state_dir / "control.sock"
    server = serve(agent, socket_path)
    state = agent.describe()
    if args.ready_file:
        args.ready_file.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "socket": str(socket_path),
                    "network": state["network"],
                    "privateMounts": state["privateMounts"],
                    # why not "bridge" / privateMounts (None when they are)
                    "networkProblem": state["networkProblem"],
                    "privateMountsProblem": state["privateMountsProblem"],
                }
            )
        )
    print(
        f"node agent ready: nodes {', '.join(n.name for n in nodes)}; network {state['network']}; control socket {socket_path}",
        flush=True,
    )
    while not done.wait(1.0):
        pass
    logging.info("stopping: containers get SIGTERM, then SIGKILL after 2 s")
    server.shutdown()
    agent.stop()
    socket_path.unlink(missing_ok=True)
    return 0


def _chaos(argv: list[str]) -> int:
    from corral_local.nodeagent.chaos import ChaosClient, ChaosError

    parser = argparse.ArgumentParser(prog="python -m corral_local.nodeagent chaos")
    parser.add_argument(
        "--socket",
        type=Path,
        default=Path(os.environ.get("CORRAL_NODEAGENT_DIR", "/tmp/corral-nodeagent"))
        / "control.sock",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    kill = sub.add_parser("kill-pod", help="kill -9 a pod's processes")
    kill.add_argument("pod", help="namespace/name")
    kill.add_argument("--container")
    for name in ("stop-node", "start-node"):
        sub.add_parser(name).add_argument("node")
    sub.add_parser("state", help="nodes and pods as the agent sees them (JSON)")
    args = parser.parse_args(argv)
    client = ChaosClient(args.socket)
    try:
        if args.action == "kill-pod":
            namespace, _, name = args.pod.rpartition("/")
            print(
                json.dumps(
                    {"killed": client.kill_pod(namespace or "default", name, args.container)}
                )
            )
        elif args.action == "stop-node":
            print(json.dumps({"stopped": args.node, "pods": client.stop_node(args.node)}))
        elif args.action == "start-node":
            client.start_node(args.node)
            print(json.dumps({"started": args.node}))
        else:
            print(json.dumps(client.state(), indent=2))
    except (ChaosError, OSError) as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["chaos"]:
        return _chaos(argv[1:])
    return _run(argv)


if __name__ == "__main__":
    sys.exit(main())
