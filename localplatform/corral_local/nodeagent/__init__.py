"""corral's node agent: plays the kubelet for N Nodes and runs pod containers as
host processes (no container runtime needed).

Run it with `python -m corral_local.nodeagent --kubeconfig K --node name:zone=z`;
tests drive it through `chaos.ChaosClient`. See NOT_EMULATED.md beside this file
for what a real kubelet does that this agent does not.
"""

from corral_local.nodeagent.chaos import ChaosClient, ChaosError

__all__ = ["ChaosClient", "ChaosError"]
