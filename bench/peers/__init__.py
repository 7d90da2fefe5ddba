"""Peers run side by side with Modelship on the same local stack (issue 10 item 5)."""
