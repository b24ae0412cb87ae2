"""The inbound flow: the SMS URL webhook of a receiving number, and acting on the TwiML it answers."""
