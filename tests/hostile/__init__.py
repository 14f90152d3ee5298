"""The hostile-client suite (issue 12): real processes attacked as a client on loopback would."""
