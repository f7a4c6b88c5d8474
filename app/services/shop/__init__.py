"""The shop: rules, use cases, read models, and the state machine journal entries drive."""
