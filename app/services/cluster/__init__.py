"""The cluster: election core, runtime (heartbeats, leases, sync rounds, links), the
transport it reaches peers through (transport.py), status, discovery."""
