"""The cluster: election core, runtime (heartbeats, leases, sync rounds, links), discovery."""
