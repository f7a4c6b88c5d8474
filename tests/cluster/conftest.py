import pytest

from tests.cluster.harness import Cluster

pytestmark = pytest.mark.cluster


@pytest.fixture
def make_cluster(tmp_path):
    """Factory for clusters of real node processes; all are killed at teardown."""
    made: list[Cluster] = []

    def factory(n: int = 3, **kwargs) -> Cluster:
        cluster = Cluster(n, str(tmp_path / f"c{len(made)}"), **kwargs)
        made.append(cluster)
        return cluster.start(wait_master=kwargs.pop("wait", True))

    yield factory
    for cluster in made:
        cluster.stop()
