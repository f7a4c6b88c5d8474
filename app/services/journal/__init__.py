"""The replicated journal: events, HLC, write path, sequencer, outbox, follower, pages."""
