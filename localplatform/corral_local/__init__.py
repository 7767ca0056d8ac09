"""corral_local: the local platform corral's tests and `make dev` run on: a
real Kubernetes control plane built from source (`localcluster`), a node agent
that runs pod containers as host processes (`nodeagent`), a throwaway
PostgreSQL server (`postgres`) and host images (`hostimage`).

Its own distribution (`corral-localplatform`, localplatform/pyproject.toml),
installed editable in the dev virtualenv by the Makefile; it imports the
product (`corral`), never the other way round (an import contract in the
product's pyproject.toml). None of it is used in production deployments.
"""
