import os
import re
import shutil
import sys
import time

import pytest

from tests.cluster.harness import ROOT, Cluster

pytestmark = pytest.mark.cluster

# Where a failed cluster test leaves its tills' logs and databases (pytest's tmp_path
# keeps only the last three runs, so a flake seen in a loop of 20 would be gone).
# LANPOS_KEEP_ARTIFACTS=1 keeps them for passing tests too (to compare with a failure).
ARTIFACTS = os.environ.get("LANPOS_TEST_ARTIFACTS") or os.path.join(ROOT, "artifacts", "cluster")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def keep_artifacts(nodeid: str, clusters: list[Cluster]) -> str:
    """Copy every till's log and data directory of a failed test; returns the folder."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::")[-1])[:120]
    dest = os.path.join(ARTIFACTS, f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{name}")
    for c, cluster in enumerate(clusters):
        for node in cluster.nodes.values():
            target = os.path.join(dest, f"c{c}", f"till{node.device_id}")
            os.makedirs(target, exist_ok=True)
            if os.path.exists(node.log_path):
                shutil.copyfile(node.log_path, target + ".log")
            if os.path.isdir(node.data_dir):
                shutil.copytree(node.data_dir, target, dirs_exist_ok=True)
    return dest


@pytest.fixture
def make_cluster(tmp_path, request):
    """Factory for clusters of real node processes; all are killed at teardown, and a
    failed test's logs and databases are kept under ARTIFACTS."""
    made: list[Cluster] = []

    def factory(n: int = 3, **kwargs) -> Cluster:
        wait = kwargs.pop("wait", True)
        cluster = Cluster(n, str(tmp_path / f"c{len(made)}"), **kwargs)
        made.append(cluster)
        return cluster.start(wait_master=wait)

    yield factory
    for cluster in made:
        cluster.stop()
    failed = any(getattr(getattr(request.node, f"report_{when}", None), "failed", False)
                 for when in ("setup", "call"))
    if made and (failed or os.environ.get("LANPOS_KEEP_ARTIFACTS") == "1"):
        print(f"cluster logs and databases kept in {keep_artifacts(request.node.nodeid, made)}",
              file=sys.stderr)
