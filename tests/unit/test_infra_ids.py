"""The ids the server launchers make must be accepted by the servers' own tools."""

from __future__ import annotations

import base64

from infra.servers import _kafka_cluster_id


def test_kafka_cluster_ids_never_look_like_an_option() -> None:
    # kafka-storage reads "-t -abc..." as a missing value; one random id in 64 starts with "-".
    ids = [_kafka_cluster_id() for _ in range(2000)]
    assert not [cluster_id for cluster_id in ids if cluster_id.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(cluster_id + "==")) == 16 for cluster_id in ids)
    assert len(set(ids)) == len(ids)
