"""lane-agent: the checkout lane's device agent (flows, MQTT contract, providers)."""

__version__ = "0.1.0"
