"""The delivery engine: lease due messages, pace senders, submit to the carrier, record results."""
