"""Fault injection for the failover tests: links that can be cut, stalled, reset, delayed or
refused (links.py, a TCP proxy of our own), and test hosts in network namespaces joined by
veth pairs (netns.py).  See README.md beside this file."""
