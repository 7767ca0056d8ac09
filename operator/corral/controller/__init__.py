"""The operator: reconciles WorkerPools and Regions into Deployments and Secrets.

The deciding functions are plain functions of data: `deployment` (the
Deployment a pool should own), `enrollment` (its Secret and when to rotate the
token), `status` (phase and conditions) and `naming` (names and labels). The
kopf handlers call them and reach Kubernetes only through `corral.kube`.
"""
