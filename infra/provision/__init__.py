"""Operator tools for the distributed mode: the deployment's secrets and each service's least-privilege access.

``mdd secrets init`` writes the secrets compose.yaml refuses to start without; ``mdd provision``
(compose's one-shot ``provision`` service) creates one MinIO user and policy and one PostgreSQL role
per service from the access table in :mod:`infra.provision.access`.
"""
