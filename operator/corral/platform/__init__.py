"""The local platform corral's tests and `make dev` run on: a real Kubernetes
control plane built from source (`localcluster`), a node agent that runs pod
containers as host processes (`nodeagent`), and a throwaway PostgreSQL server
(`postgres`). None of it is used in production deployments.
"""
